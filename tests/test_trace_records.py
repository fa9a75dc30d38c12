"""The trace reader's record classes behave like the frozen dataclasses they replace."""

from __future__ import annotations

import pytest

from ptreplay.formats.eventformat import Field, PrintArg
from ptreplay.trace import BufferInfo, Event, LostEvents, RawRecord


def test_frozen_records_compare_hash_and_refuse_changes() -> None:
    a = LostEvents("", 1, 100, 5)
    assert a == LostEvents("", 1, 100, 5, True) and a != LostEvents("", 1, 100, 6)
    assert hash(a) == hash(LostEvents("", 1, 100, 5)) and len({a, LostEvents("", 1, 100, 5)}) == 1
    assert repr(a) == "LostEvents(buffer='', cpu=1, ts=100, count=5, shown_by_trace_cmd=True)"
    with pytest.raises(AttributeError):
        a.count = 6  # type: ignore[misc]
    with pytest.raises(AttributeError):
        del a.cpu
    f = Field("x", "int", 8, 4, True)
    assert f.is_number and not f.is_array and f == Field("x", "int", 8, 4, True, False)
    with pytest.raises(AttributeError):
        f.size = 8  # type: ignore[misc]
    assert BufferInfo("", "local", 4096, (0, 1), {0: 1}).stats == ()


def test_event_compares_without_format_and_index() -> None:
    e1 = Event("", 0, 5, "sched", "sched_switch", 1, "a", {"x": 1}, {}, None, 3)  # type: ignore
    e2 = Event("", 0, 5, "sched", "sched_switch", 1, "a", {"x": 1}, {}, object(), 9)  # type: ignore
    assert e1 == e2 and e1["x"] == 1 and e1.index == 3
    assert e1 != Event("", 0, 5, "sched", "sched_switch", 1, "a", {"x": 2}, {}, None)  # type: ignore


def test_mutable_records_and_raw_record() -> None:
    p = PrintArg("REC->x", "x")
    p.casts = ("u8",)
    assert p == PrintArg("REC->x", "x", ("u8",)) and p.number is None
    with pytest.raises(TypeError):
        hash(p)
    r = RawRecord(1, 0, None, b"", 0, 0, "")
    assert r.ts == 1 and r == (1, 0, None, b"", 0, 0, "")
