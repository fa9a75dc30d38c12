"""Reading releases the file pages it has read (so RSS does not grow with the file),
and a released page still reads back the same (it faults in again from the cache)."""

from __future__ import annotations

import pytest
from conftest import CORPUS, require_shared

from ptreplay.formats.tracedat import reader
from ptreplay.trace import open_trace

# an uncompressed v6 file (CPU data read straight from the mapping) and a zstd v7 one
FILES = ["rec_v6_sched_syscalls", "rec_v7_zstd_sched_syscalls"]


def _events(path) -> list[tuple]:
    with open_trace(path) as t:
        return [(getattr(e, "ts", None), getattr(e, "name", None), getattr(e, "cpu", None))
                for e in t.events()]


@pytest.mark.parametrize("name", FILES)
def test_releasing_every_page_reads_the_same_events(name, monkeypatch) -> None:
    require_shared()
    path = CORPUS / "tracedat" / name / "trace.dat"
    normal = _events(path)
    released: list[tuple[int, int]] = []
    original = reader.TraceDatFile._release

    def spy(self, start: int, end: int) -> int:
        released.append((start, end))
        return original(self, start, end)

    monkeypatch.setattr(reader, "_RELEASE_STEP", 1)
    monkeypatch.setattr(reader.TraceDatFile, "_release", spy)
    assert _events(path) == normal
    assert len(normal) > 1000 and len(released) > 10
