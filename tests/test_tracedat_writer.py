"""The writer: files it writes read back equal, and trace-cmd reports them as ptreplay does."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import CORPUS, require_shared
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ptreplay.formats.rawreport import raw_report_lines
from ptreplay.formats.tracedat.writer import TraceDatWriter
from ptreplay.trace import LostEvents, open_trace

UPROBE_TRACE = "tracedat/rec_v7_uprobe_args/trace.dat"
EVENTS = ("libc_open", "libc_open_ret", "sched_switch")


def _formats() -> dict[str, tuple[str, str]]:
    require_shared()
    out = {}
    with open_trace(CORPUS / UPROBE_TRACE) as t:
        for i in t.formats.ids():
            system, name = t.formats.name_of(i)
            if name in EVENTS:
                out[name] = (system, t.formats.get(i).text)
    return out


def _payload(w: TraceDatWriter, kind: int, k: int) -> bytes:
    if kind == 0:
        return w.build_event("libc_open", {"__probe_ip": 0x7F0000001000 + k,
                                           "path": f"/tmp/f{k}", "flags": k & 0xFFFFFFFF,
                                           "mode": k & 0xFFFF}, pid=100)
    if kind == 1:
        return w.build_event("libc_open_ret", {"__probe_func": 0x7F00001000,
                                               "__probe_ret_ip": 0x55000000 + k,
                                               "ret": -(k % 1000)}, pid=200)
    return w.build_event("sched_switch", {"prev_comm": "bash", "prev_pid": 100,
                                          "prev_prio": 120, "prev_state": 1,
                                          "next_comm": "cat", "next_pid": 200,
                                          "next_prio": 120}, pid=100)


def _writer(version: int, compression: str | None, page_size: int = 4096, *,
            little: bool = True, long_size: int = 8) -> TraceDatWriter:
    w = TraceDatWriter(version=version, compression=compression, page_size=page_size,
                       little=little, long_size=long_size)
    for system, text in _formats().values():
        w.add_event_format(system, text)
    w.cmdlines.update({100: "bash", 200: "cat"})
    w.cpu_stats[""] = {0: "CPU: 0\nentries: 0\noverrun: 42\n", 1: "CPU: 1\noverrun: 0\n"}
    return w


def _fill(w: TraceDatWriter, n: int = 2000) -> None:
    ts = 1_000_000_000
    for k in range(n):
        ts += 700 + (k % 7) * 13 + (300_000_000 if k == n // 2 else 0)
        if k == 11:
            w.add_missed(1, 42)
        w.add_event(k % 2, ts, _payload(w, k % 3, k))


@pytest.mark.skipif(shutil.which("trace-cmd") is None, reason="trace-cmd not installed")
@pytest.mark.parametrize("version,compression,page,little,long_size", [
    (6, None, 4096, True, 8), (7, None, 4096, True, 8), (7, "zstd", 4096, True, 8),
    (7, "zstd", 16384, True, 8), (6, None, 8192, True, 8), (6, None, 4096, False, 8),
    (7, "zstd", 4096, False, 8), (6, None, 4096, True, 4), (7, "zstd", 8192, False, 4)])
def test_trace_cmd_reads_what_we_write(tmp_path: Path, version: int, compression: str | None,
                                       page: int, little: bool, long_size: int) -> None:
    w = _writer(version, compression, page, little=little, long_size=long_size)
    _fill(w)
    path = tmp_path / "w.dat"
    w.write(path)
    with open_trace(path) as t:
        mine = list(raw_report_lines(t, nsec=True))
    r = subprocess.run(["trace-cmd", "report", "-R", "-t", str(path)], capture_output=True,
                       text=True, check=True)
    assert r.stdout.splitlines() == mine
    assert any("[42 EVENTS DROPPED]" in line for line in mine)
    assert len(mine) == 2000 + 2


def test_zlib_round_trip(tmp_path: Path) -> None:
    # Debian's trace-cmd 3.1.6 is built without zlib, so only our reader checks this one.
    w = _writer(7, "zlib")
    _fill(w, 500)
    w.write(tmp_path / "z.dat")
    with open_trace(tmp_path / "z.dat") as t:
        assert t.info.compression == "zlib"
        evs = [e for e in t.events() if not isinstance(e, LostEvents)]
    assert len(evs) == 500 and evs[0].fields["path"] == "/tmp/f0"


def test_two_buffers_and_absolute_timestamps(tmp_path: Path) -> None:
    w = _writer(7, "zstd")
    w.absolute_ts = True
    for b in w.buffers:
        for p in b.cpus.values():
            p.absolute_ts = True
    w.add_buffer("second")
    ts = 5_000_000_000
    for k in range(300):
        ts += 1 << 28 if k % 50 == 0 else 999
        w.add_event(k % 2, ts, _payload(w, k % 3, k), buffer="second" if k % 5 == 0 else "")
    w.write(tmp_path / "b.dat")
    with open_trace(tmp_path / "b.dat") as t:
        got = [(e.buffer, e.ts) for e in t.events(lost=False)]
        mine = list(raw_report_lines(t))
    assert sorted(ts for _, ts in got) == [ts for _, ts in got]
    assert {b for b, _ in got} == {"", "second"} and len(got) == 300
    if shutil.which("trace-cmd"):
        r = subprocess.run(["trace-cmd", "report", "-R", "-t", str(tmp_path / "b.dat")],
                           capture_output=True, text=True, check=True)
        assert r.stdout.splitlines() == mine


_event = st.tuples(st.integers(0, 3), st.integers(0, 1 << 30), st.integers(0, 2),
                   st.integers(0, (1 << 32) - 1))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(events=st.lists(_event, min_size=0, max_size=300),
       version=st.sampled_from([(6, None), (7, None), (7, "zstd"), (7, "zlib")]),
       page=st.sampled_from([4096, 8192]), missed=st.integers(-1, 5))
def test_property_write_then_read_is_identity(tmp_path: Path, events, version, page,
                                              missed) -> None:
    w = _writer(version[0], version[1], page)
    want = []
    clock = {c: 0 for c in range(4)}
    for i, (cpu, delta, kind, k) in enumerate(events):
        clock[cpu] += delta
        if i == 3 and missed >= 0:
            w.add_missed(cpu, missed or None)
        payload = _payload(w, kind, k)
        w.add_event(cpu, clock[cpu], payload)
        want.append((clock[cpu], cpu, EVENTS[kind], payload))
    path = tmp_path / f"p{len(events)}.dat"
    w.write(path)
    with open_trace(path) as t:
        got = []
        for r in t.records():
            got.append((r.ts, r.cpu, r.format.name, bytes(r.data[r.offset:r.offset + r.size])))
        fields = [e.fields for e in t.events(lost=False)]
    # merge order: by timestamp, ties to the lower CPU; payloads padded to 4 bytes
    want.sort(key=lambda x: (x[0], x[1]))
    assert [(a, b, c) for a, b, c, _ in got] == [(a, b, c) for a, b, c, _ in want]
    for (_, _, _, p1), (_, _, _, p2) in zip(got, want, strict=False):
        assert p1[:len(p2)] == p2 and not p1[len(p2):].strip(b"\0")
    for f, (_, _, name, _) in zip(fields, want, strict=False):
        if name == "libc_open":
            assert f["path"].startswith("/tmp/f")
