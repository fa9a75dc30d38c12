"""The model equals the kernel oracle byte for byte: every scenario, every profile.

The expected files are the output of the kernel's own pgtable.c compiled in
user space (shared/conformance/oracle/FORMAT.md); a mismatch names the first
differing line and the operation that produced it. Scenario sets: the common
``scenarios/`` on every profile (on linux-6.12-16k minus
``scenarios-16k/EXCLUDE``), ``scenarios-6.12/`` on both 6.12 profiles,
``scenarios-16k/`` on linux-6.12-16k.
"""

from __future__ import annotations

import gzip
import io
import subprocess
import sys

import pytest
from conftest import ORACLE, require_shared

from ptreplay.model.profiles import get_profile
from ptreplay.model.scenario import run_scenario

PROFILES = ("linux-5.13", "linux-6.1", "linux-6.12", "linux-6.12-16k")
SCENARIOS = sorted(p.name for p in (ORACLE / "scenarios").glob("*.jsonl"))


def _names(directory: str) -> list[str]:
    return sorted(p.name for p in (ORACLE / directory).glob("*.jsonl"))


def _excluded_16k() -> set[str]:
    path = ORACLE / "scenarios-16k" / "EXCLUDE"
    if not path.is_file():
        return set()
    lines = path.read_text(encoding="utf-8").splitlines()
    return {f"{line.strip()}.jsonl" for line in lines if line.strip() and not line.startswith("#")}


def _cases() -> list[tuple[str, str, str]]:
    """(profile, scenario directory, scenario file) for every applicable pair."""
    cases = []
    for profile in PROFILES:
        dirs = ["scenarios"]
        if profile.startswith("linux-6.12"):
            dirs.append("scenarios-6.12")
        if profile == "linux-6.12-16k":
            dirs.append("scenarios-16k")
        for d in dirs:
            skip = _excluded_16k() if profile == "linux-6.12-16k" and d == "scenarios" else set()
            cases += [(profile, d, name) for name in _names(d) if name not in skip]
    return cases


CASES = _cases()


def _first_difference(got: list[str], expected: list[str]) -> str | None:
    for i in range(max(len(got), len(expected))):
        g = got[i] if i < len(got) else "<end of output>"
        e = expected[i] if i < len(expected) else "<end of expected>"
        if g != e:
            ops = [line for line in expected[: i + 1] if line.startswith('{"op"')]
            return (f"first difference at output line {i + 1}\n"
                    f"  operation: {ops[-1] if ops else '(none)'}\n"
                    f"  model:     {g}\n  kernel:    {e}")
    return None


def test_the_oracle_is_there():
    require_shared()
    assert len(SCENARIOS) >= 47
    counts = {p: sum(1 for c in CASES if c[0] == p) for p in PROFILES}
    assert counts["linux-6.12"] >= 61 and counts["linux-6.12-16k"] >= 68, counts
    for profile, _, scenario in CASES:
        assert (ORACLE / "expected" / profile / f"{scenario}.gz").is_file(), (profile, scenario)
    # every expected file is checked by some case
    for profile in PROFILES:
        expected = {p.name[:-3] for p in (ORACLE / "expected" / profile).glob("*.jsonl.gz")}
        assert expected == {s for p, _, s in CASES if p == profile}, profile


@pytest.mark.parametrize(("profile", "directory", "scenario"), CASES,
                         ids=[f"{p}/{s}" for p, _, s in CASES])
def test_model_equals_kernel(profile, directory, scenario):
    require_shared()
    out = io.StringIO()
    with open(ORACLE / directory / scenario, encoding="utf-8") as f:
        run_scenario(f, get_profile(profile), out, source=scenario)
    with gzip.open(ORACLE / "expected" / profile / f"{scenario}.gz", "rt") as f:
        expected = f.read()
    got = out.getvalue()
    if got != expected:
        diff = _first_difference(got.splitlines(), expected.splitlines())
        pytest.fail(f"{profile}/{scenario}: {diff or 'line endings differ'}", pytrace=False)


@pytest.mark.parametrize("profile", PROFILES)
def test_cli_prints_the_expected_bytes(profile):
    require_shared()
    scenario = ORACLE / "scenarios" / "20_set_owner_over_mappings.jsonl"
    done = subprocess.run(
        [sys.executable, "-m", "ptreplay", "model", "run", str(scenario), "--profile", profile],
        capture_output=True, check=False,
    )
    assert done.returncode == 0, done.stderr
    with gzip.open(ORACLE / "expected" / profile / f"{scenario.name}.gz", "rb") as f:
        assert done.stdout == f.read()


@pytest.mark.parametrize(("profile", "scenario"), [
    ("linux-6.1", "scenarios/39_destroy_populated.jsonl"),
    ("linux-6.12", "scenarios-6.12/605_shared_map_bbm.jsonl"),  # deferred table frees
    ("linux-6.12-16k", "scenarios-16k/703_16k_split_32m_bbm.jsonl"),
])
def test_cli_reads_stdin_and_checks_invariants(profile, scenario):
    require_shared()
    text = (ORACLE / scenario).read_bytes()
    done = subprocess.run([sys.executable, "-m", "ptreplay", "model", "run", "-", "--check",
                           "--profile", profile],
                          input=text, capture_output=True, check=False)
    assert done.returncode == 0, done.stderr
    name = scenario.split("/")[1]
    with gzip.open(ORACLE / "expected" / profile / f"{name}.gz") as f:
        assert done.stdout == f.read()
