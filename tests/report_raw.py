"""Test helper: read ``trace-cmd report -R`` text into the generic event protocol.

The arm64 recordings in ../shared/corpus carry ``trace.report-raw.txt.gz``, what
trace-cmd 3.1.6 printed for their trace.dat: one line per event,
``COMM-PID [CPU] SECONDS.MICROS: NAME: field=value ...``. This turns each line
into a :class:`ptreplay.stage2.operations.TraceEvent` (timestamps in ns at
microsecond resolution; the ``__probe_*`` address fields are left out), so the
operations layer can be checked against the corpus before the binary reader is
connected.
"""

from __future__ import annotations

import gzip
import re
from collections.abc import Iterator
from pathlib import Path

from ptreplay.stage2.operations import TraceEvent

_LINE = re.compile(r"\s*(.*?)-(\d+)\s+\[(\d+)\]\s+(\d+)\.(\d+):\s+(\w+):\s*(.*)")


def _value(text: str) -> int | str:
    if text[:2] == "0x":
        return int(text, 16)
    try:
        return int(text)
    except ValueError:
        return text


def parse_line(index: int, line: str) -> TraceEvent | None:
    """One report line as an event, or ``None`` for a line that is not an event."""
    m = _LINE.match(line)
    if m is None:
        return None
    _comm, pid, cpu, secs, micros, name, rest = m.groups()
    fields = {}
    for item in rest.split():
        key, _, val = item.partition("=")
        if key[:7] != "__probe":
            fields[key] = _value(val)
    return TraceEvent(index, int(cpu), int(secs) * 1_000_000_000 + int(micros) * 1000,
                      int(pid), name, fields)


def report_lines(path: Path, limit: int | None = None) -> list[str]:
    """The event lines of a report (gzip or plain), at most ``limit`` of them."""
    opener = gzip.open if path.suffix == ".gz" else open
    out = []
    with opener(path, "rt", encoding="utf-8", errors="replace") as f:
        for line in f:
            if "[" not in line:
                continue  # the "cpus=N" header
            out.append(line)
            if limit is not None and len(out) >= limit:
                break
    return out


def read_report_raw(path: Path, limit: int | None = None) -> Iterator[TraceEvent]:
    """Yield the events of a ``trace-cmd report -R`` file, in order."""
    opener = gzip.open if path.suffix == ".gz" else open
    index = 0
    with opener(path, "rt", encoding="utf-8", errors="replace") as f:
        for line in f:
            ev = parse_line(index, line)
            if ev is None:
                continue
            yield ev
            index += 1
            if limit is not None and index >= limit:
                return
