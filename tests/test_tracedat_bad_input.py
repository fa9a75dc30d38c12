"""Bad input: one line, exit 2, never a traceback, never a silent partial read."""

from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import CORPUS, require_shared

from ptreplay.errors import TraceFormatError
from ptreplay.formats.tracedat.writer import TraceDatWriter
from ptreplay.trace import open_trace

SMALL_V6 = "tracedat/ext_trappy_tests_trace_32bit/trace.dat"  # v6, 32-bit, 2.5 MB
SMALL_V7 = "tracedat/rec_v7_kvm_x86/trace.dat"  # v7 zstd, 1 MB


def _read_all(path: Path) -> int:
    with open_trace(path) as t:
        n = 0
        for _ in t.events():
            n += 1
        return n


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ptreplay", *args], capture_output=True,
                          text=True)


def _offsets(size: int, dense: int, step: int) -> list[int]:
    return sorted(set(list(range(0, dense)) + list(range(dense, size, step))))


@pytest.mark.parametrize("rel,dense,step", [(SMALL_V7, 600, 4093), (SMALL_V6, 400, 9973)])
def test_truncated_anywhere_is_an_error(tmp_path: Path, rel: str, dense: int,
                                        step: int) -> None:
    require_shared()
    data = (CORPUS / rel).read_bytes()
    out = tmp_path / "cut.dat"
    for cut in _offsets(len(data), dense, step):
        out.write_bytes(data[:cut])
        with pytest.raises(TraceFormatError) as info:
            _read_all(out)
        assert info.value.source == str(out)


def test_truncated_cli_says_what_was_lost(tmp_path: Path) -> None:
    require_shared()
    data = (CORPUS / SMALL_V6).read_bytes()
    out = tmp_path / "cut.dat"
    out.write_bytes(data[:len(data) - 5000])
    r = _cli("events", str(out))
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert r.stderr.startswith(f"ptreplay: error: {out}: file truncated")
    assert "bytes of trace data lost" in r.stderr and ", at offset " in r.stderr


def _patched(tmp_path: Path, rel: str, offset: int, new: bytes) -> Path:
    data = bytearray((CORPUS / rel).read_bytes())
    data[offset:offset + len(new)] = new
    out = tmp_path / "bad.dat"
    out.write_bytes(bytes(data))
    return out


def test_wrong_magic(tmp_path: Path) -> None:
    require_shared()
    p = _patched(tmp_path, SMALL_V7, 0, b"\x18")
    r = _cli("info", str(p))
    assert r.returncode == 2
    assert r.stderr == f"ptreplay: error: {p}: not a trace-cmd file (bad magic), at offset 0\n"


def test_unknown_version(tmp_path: Path) -> None:
    require_shared()
    p = _patched(tmp_path, SMALL_V7, 10, b"8")
    r = _cli("events", str(p))
    assert r.returncode == 2
    assert "unsupported trace-cmd file version 8, at offset 10" in r.stderr


def test_corrupt_compressed_chunk(tmp_path: Path) -> None:
    require_shared()
    with open_trace(CORPUS / SMALL_V7) as t:
        cpu = t._backend.buffers[0].cpus[1]
    # garble the zstd frame of the first chunk of CPU 1 (after count + chunk header)
    p = _patched(tmp_path, SMALL_V7, cpu.offset + 4 + 8 + 20, b"\xff" * 16)
    with pytest.raises(TraceFormatError, match="corrupt zstd block|zstd block gives"):
        _read_all(p)
    r = _cli("events", str(p))
    assert r.returncode == 2 and "Traceback" not in r.stderr


def _tiny_writer(version: int = 6, compression: str | None = None) -> TraceDatWriter:
    require_shared()
    w = TraceDatWriter(version=version, compression=compression)
    with open_trace(CORPUS / "tracedat/rec_v6_sched_syscalls/trace.dat") as t:
        fmt = t.formats.by_name("sched_wakeup")[0]
    w.add_event_format("sched", fmt.text)
    for k in range(50):
        w.add_event(0, 1000 + k, w.build_event("sched_wakeup", {"comm": "a", "pid": k}))
    return w


def test_page_commit_exceeds_size(tmp_path: Path) -> None:
    w = _tiny_writer()
    data = bytearray(w.to_bytes())
    p = tmp_path / "good.dat"
    p.write_bytes(bytes(data))
    with open_trace(p) as t:
        cpu = t._backend.buffers[0].cpus[0]
    struct.pack_into("<Q", data, cpu.offset + 8, 5000)  # commit of the first page
    p.write_bytes(bytes(data))
    r = _cli("events", str(p))
    assert r.returncode == 2
    assert r.stderr == (f"ptreplay: error: {p}: ring-buffer page commit 5000 exceeds the page "
                        f"size 4096, at offset {cpu.offset}\n")


def test_size_field_claiming_gigabytes(tmp_path: Path) -> None:
    w = _tiny_writer()
    data = bytearray(w.to_bytes())
    # v6: after the initial format comes "header_page\0" and its u64 size
    off = data.index(b"header_page\0") + 12
    struct.pack_into("<Q", data, off, 0x7FFFFFFF00)
    p = tmp_path / "huge.dat"
    p.write_bytes(bytes(data))
    r = _cli("info", str(p))
    assert r.returncode == 2 and "truncated header_page: needs 549755813632 bytes" in r.stderr
    # a compressed block claiming gigabytes is refused before any allocation
    w7 = _tiny_writer(7, "zstd")
    d7 = bytearray(w7.to_bytes())
    p7 = tmp_path / "huge7.dat"
    p7.write_bytes(bytes(d7))
    with open_trace(p7) as t:
        cpu = t._backend.buffers[0].cpus[0]
    struct.pack_into("<I", d7, cpu.offset + 4 + 4, 0xFFFFFFF0)  # usize of chunk 0
    p7.write_bytes(bytes(d7))
    with pytest.raises(TraceFormatError, match="claims 4294967280 uncompressed bytes"):
        _read_all(p7)


def test_event_id_without_format(tmp_path: Path) -> None:
    w = _tiny_writer()
    payload = bytearray(w.build_event("sched_wakeup", {"comm": "x", "pid": 1}))
    payload[0:2] = (4242).to_bytes(2, "little")
    w.add_event(0, 5000, bytes(payload))
    p = tmp_path / "noformat.dat"
    w.write(p)
    r = _cli("events", str(p))
    assert r.returncode == 2
    assert r.stderr == (f"ptreplay: error: {p}: event id 4242 on CPU 0 has no format in this "
                        f"trace, at event 50\n")
    with pytest.raises(TraceFormatError, match="event id 4242"):
        _read_all(p)


def test_missing_file_and_empty_file(tmp_path: Path) -> None:
    r = _cli("info", str(tmp_path / "nope.dat"))
    assert r.returncode == 2 and "no such file" in r.stderr
    (tmp_path / "empty.dat").write_bytes(b"")
    r = _cli("events", str(tmp_path / "empty.dat"))
    assert r.returncode == 2 and "bad magic" in r.stderr


def test_truncated_tracefs_page(tmp_path: Path) -> None:
    require_shared()
    import shutil

    src = CORPUS / "tracedat/rawdump_4k_overrun"
    dst = tmp_path / "raw"
    shutil.copytree(src, dst)
    pipe = dst / "per_cpu/cpu0/trace_pipe_raw"
    pipe.chmod(0o644)
    data = pipe.read_bytes()
    pipe.write_bytes(data[:len(data) - 100])
    with pytest.raises(TraceFormatError, match="ends inside a page"):
        _read_all(dst)
