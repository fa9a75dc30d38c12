"""Run the checker stack over one input (the ``run`` functions of :mod:`ptreplay.checks.inputs`)."""

from __future__ import annotations

import io
from typing import IO

from ptreplay.checks.casemate_model import CasemateChecker
from ptreplay.checks.engine import EffectChecker
from ptreplay.checks.inputs import CheckOptions, CheckRun
from ptreplay.checks.stream import Step, StreamInfo, read_effect_log
from ptreplay.formats.casemate import CasemateReader
from ptreplay.model.profiles import get_profile

__all__ = ["run_effect_log", "run_casemate_log", "CountingReader"]


class CountingReader(io.RawIOBase):
    """A raw binary stream that counts the bytes read through it (for progress bars)."""

    def __init__(self, raw: IO[bytes]):
        super().__init__()
        self.raw = raw
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buf) -> int:  # type: ignore[no-untyped-def, override]
        data = self.raw.read(len(buf))
        n = len(data)
        buf[:n] = data
        self.count += n
        return n


def _truncate(step: Step, at: int) -> Step | None:
    """``step`` cut after event ``at``; None if it starts after it."""
    if step.op is not None and step.op.index > at:
        return None
    base = step.effect_base
    indexes = step.effect_indexes or ([base + i for i in range(len(step.effects))]
                                      if base is not None else None)
    if indexes is None:
        return step
    keep = sum(1 for i in indexes if i <= at)
    if keep == len(step.effects):
        return step
    return Step(step.op, step.effects[:keep], effect_base=base,
                effect_indexes=indexes[:keep] if step.effect_indexes else None,
                observed=step.observed, observed_kinds=step.observed_kinds,
                predicted_ret=step.predicted_ret)


def run_effect_log(stream: IO[bytes], source: str, options: CheckOptions) -> CheckRun:
    """Check an effect log (JSON lines, optionally gzip) with :class:`EffectChecker`."""
    counter = CountingReader(stream)
    buffered = io.BufferedReader(counter)  # type: ignore[arg-type]
    checker = EffectChecker(StreamInfo(source, options.profile))
    at = options.at_index
    progress = options.progress
    n = 0
    for step in read_effect_log(buffered, source):
        if at is not None:
            cut = _truncate(step, at)
            if cut is None:
                break
            if cut is not step:
                # the operation had not finished by then: no end-of-operation checks
                checker.feed_partial(cut)
                break
            step = cut
        checker.feed(step)
        n += 1
        if progress is not None and not n & 255:
            progress(counter.count)
    if progress is not None:
        progress(counter.count)
    return CheckRun("effects", checker.finish(), checker.events, checker.shadow,
                    checker.profile, options.profile, fwb=dict(checker.fwb))


def run_casemate_log(stream: IO[bytes], source: str, options: CheckOptions) -> CheckRun:
    """Check a casemate log with :class:`CasemateChecker`."""
    reader = CasemateReader(stream, source)
    checker = CasemateChecker(source)
    at = options.at_index
    progress = options.progress
    if at is None:
        for _ in checker.check(reader):
            if progress is not None:
                progress(reader.bytes_read)
    else:
        for batch in reader.batches():
            if checker.records + len(batch) > at + 1:
                checker.feed(batch[:max(0, at + 1 - checker.records)])
                break
            checker.feed(batch)
    notes = {}
    if reader.expected is not None:
        notes["log's own verdict"] = (f"{reader.expected!r} after record "
                                      f"{checker.records - 1} (line {reader.expected_line})")
    return CheckRun("casemate", checker.finish(), checker.records, checker.shadow,
                    get_profile("linux-6.1"), None, notes)
