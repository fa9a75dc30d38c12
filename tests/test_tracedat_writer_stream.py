"""The writer's streaming mode (spooled pages) and its fast event packer."""

from __future__ import annotations

from pathlib import Path

import pytest

from ptreplay.capture.catalog import event_format, load_probe_set
from ptreplay.formats.eventformat import parse_format
from ptreplay.formats.tracedat.writer import TraceDatWriter, build_event, event_packer


def _fill(w: TraceDatWriter, n: int) -> None:
    w.add_event_format("kprobes", event_format("6.1", "kvm_host_get_page", 1500))
    pack = w.event_packer("kvm_host_get_page", ("__probe_ip", "addr"))
    ts = 10**9
    for k in range(n):
        ts += 300 + (k % 5) * 7 + (1 << 28 if k % 997 == 0 else 0)
        w.add_event(k % 3, ts, pack(280 + k % 2, 0xFFFFA7F9F4A5D3B0, 0xFFFF00000DDDC000 + 8 * k))


@pytest.mark.parametrize("version,compression", [(6, None), (7, None), (7, "zstd")])
def test_spooled_pages_write_the_same_file(tmp_path: Path, version: int,
                                           compression: str | None) -> None:
    files = []
    for spool in (False, True):
        w = TraceDatWriter(version, compression, spool=spool, chunk_pages=3)
        _fill(w, 20000)
        path = tmp_path / f"s{int(spool)}.dat"
        w.write(path)
        w.close()
        files.append(path.read_bytes())
    assert files[0] == files[1]


def test_packer_equals_build_event_for_every_probe_of_a_series() -> None:
    for series in ("5.13", "6.1", "6.12"):
        for entry in load_probe_set(series).entries:
            fmt = parse_format(event_format(series, entry.definition.event, 1234), "kprobes")
            names = [f.name for f in fmt.fields]
            values = [(0x8765432112345678 >> (64 - 8 * f.size)) if not f.signed else -5
                      for f in fmt.fields]
            for little in (True, False):
                pack = event_packer(fmt, names, little=little)
                want = build_event(fmt, dict(zip(names, values, strict=True)), pid=77,
                                   little=little)
                assert pack(77, *values) == want


def test_packer_refuses_strings() -> None:
    text = event_format("6.1", "kvm_host_get_page", 7).replace("u64 addr", "char addr[8]")
    with pytest.raises(ValueError):
        event_packer(parse_format(text, "kprobes"), ["addr"])
