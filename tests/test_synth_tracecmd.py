"""trace-cmd (Debian's 3.1.6) reads every kind of file ptreplay gen writes, as ptreplay does.

``trace-cmd report -R -t`` and ``ptreplay events --format raw`` print the same
lines for v7 zstd, v7 uncompressed and v6 files, both kernel series, with the
instrumentation events, nVHE, injected bugs and scenarios.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import ORACLE, require_shared

from ptreplay.capture.catalog import event_format, load_probe_set
from ptreplay.formats.rawreport import raw_report_lines
from ptreplay.synth import GenConfig, generate
from ptreplay.synth.tracefile import print_format
from ptreplay.trace import open_trace

pytestmark = pytest.mark.skipif(shutil.which("trace-cmd") is None,
                                reason="trace-cmd not installed")


def _compare(path: Path) -> list[str]:
    with open_trace(path) as t:
        mine = list(raw_report_lines(t, nsec=True))
    r = subprocess.run(["trace-cmd", "report", "-R", "-t", str(path)], capture_output=True,
                       text=True, check=True)
    assert r.stdout.splitlines() == mine
    assert "error" not in r.stderr.lower() and "fail" not in r.stderr.lower(), r.stderr
    return mine


@pytest.mark.parametrize("profile", ["linux-6.1", "linux-5.13"])
@pytest.mark.parametrize("version,compression,extra", [
    (7, "zstd", {}),
    (7, None, {"pte_events": True}),
    (6, None, {"vhe": False, "hw_af": False}),
    (7, "zstd", {"inject": "missing-invalid-write"}),
    (6, None, {"fwb": True, "cpus": 4, "vms": 3}),
])
def test_trace_cmd_prints_what_ptreplay_prints(tmp_path: Path, profile: str, version: int,
                                               compression: str | None, extra: dict) -> None:
    path = tmp_path / "g.dat"
    result = generate(GenConfig(profile=profile, random_ops=600, seed=4, version=version,
                                compression=compression, **extra), path)
    lines = _compare(path)
    assert len(lines) == result.events + 1  # + "cpus=N"
    with open_trace(path) as t:
        assert t.info.version == version
        assert t.info.compression == (compression or ("none" if version == 7 else None))
        assert t.info.kernel_release in ("6.1.0-56-arm64", "5.13.0-1-arm64")


def test_trace_cmd_reads_a_scenario_trace(tmp_path: Path) -> None:
    require_shared()
    path = tmp_path / "s.dat"
    scenario = (ORACLE / "scenarios" / "08_split_2m_block.jsonl").read_text().splitlines()
    generate(GenConfig(scenario=scenario, version=6, compression=None, pte_events=True), path)
    lines = _compare(path)
    assert any("stage2_pte_store:" in line for line in lines)


def test_the_formats_written_are_the_capture_kits(tmp_path: Path) -> None:
    path = tmp_path / "f.dat"
    generate(GenConfig(random_ops=50, seed=1, pte_events=True), path)
    with open_trace(path) as t:
        for entry in load_probe_set("6.1").entries:
            fmt = t.formats.by_name(entry.definition.event)[0]
            assert fmt.text == event_format("6.1", fmt.name, fmt.id)
        assert t.formats.by_name("stage2_pte_store")[0].system == "ptreplay"
        assert t.formats.by_name("print")[0].text == print_format()


def test_print_format_is_the_kernels() -> None:
    """The ftrace print format gen writes equals the one a real 6.1 kernel recorded."""
    require_shared()
    from conftest import CORPUS

    with open_trace(CORPUS / "arm64" / "vhe-rich-v7" / "trace.dat") as t:
        assert t.formats.by_name("print")[0].text == print_format()
