"""Test helper: read ``trace-cmd report -R`` text into the generic event protocol.

The arm64 recordings in ../shared/corpus carry ``trace.report-raw.txt.gz``, what
trace-cmd 3.1.6 printed for their trace.dat: one line per event,
``COMM-PID [CPU] SECONDS.MICROS: NAME: field=value ...``. This turns each line
into a :class:`ptreplay.stage2.operations.TraceEvent` (timestamps in ns at
microsecond resolution), so the operations layer can be checked against the
corpus before the binary reader is connected.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from pathlib import Path

from ptreplay.stage2.operations import TraceEvent

_HEX_FIELDS = frozenset(["__probe_ip", "__probe_func", "__probe_ret_ip"])


def _value(name: str, text: str) -> int | str:
    if name in _HEX_FIELDS:
        return int(text, 16)
    if text.startswith("0x"):
        return int(text, 16)
    if text.startswith("-0x"):
        return -int(text[3:], 16)
    try:
        return int(text)
    except ValueError:
        return text


def read_report_raw(path: Path, limit: int | None = None) -> Iterator[TraceEvent]:
    """Yield the events of a ``trace-cmd report -R`` file (gzip or plain), in order."""
    opener = gzip.open if path.suffix == ".gz" else open
    index = 0
    with opener(path, "rt", encoding="utf-8", errors="replace") as f:
        for line in f:
            head, sep, rest = line.partition("]")
            if not sep or "[" not in head:
                continue  # the "cpus=N" header
            who, _, cpu = head.rpartition("[")
            comm_pid = who.strip()
            pid = int(comm_pid.rpartition("-")[2])
            stamp, _, rest = rest.partition(":")
            name, _, rest = rest.partition(":")
            secs, _, micros = stamp.strip().partition(".")
            fields: dict[str, int | str] = {}
            for item in rest.split():
                key, eq, val = item.partition("=")
                if eq:
                    fields[key] = _value(key, val)
            yield TraceEvent(index, int(cpu), int(secs) * 1_000_000_000 + int(micros) * 1000,
                             pid, name.strip(), fields)
            index += 1
            if limit is not None and index >= limit:
                return
