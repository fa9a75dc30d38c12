"""Where the replay's operations come from: this process, or a reader process.

Reading a trace and pairing its probes into operations (the events layer and
:class:`~ptreplay.stage2.operations.OperationBuilder`) is about half of a
replay's work, and depends on nothing the model does. :class:`Feed` runs it
either here, or in a second process (``jobs=2``) that sends the operations
as compact records (:mod:`ptreplay.stage2.records`) through a pipe in
batches, so that reading and modelling use two CPUs. The records, their
order and everything derived from them are the same either way; memory stays
bounded (the pipe holds a few batches; the reader waits when it is full).
"""

from __future__ import annotations

import gc
import marshal
import multiprocessing
import os
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from ptreplay.errors import InputError
from ptreplay.stage2.operations import LOST_EVENTS, Gap, Operation, OperationBuilder, Root
from ptreplay.stage2.records import NOTE, Note, OpRecord, decode, encode, encode_gap
from ptreplay.stage2.source import MARKER, ScanEvent, Stage2Trace
from ptreplay.trace import LOST, open_trace

__all__ = ["Feed", "fewer_collections"]

_BATCH = 256


@contextmanager
def fewer_collections() -> Iterator[None]:
    """Run the cyclic garbage collector less often (a replay allocates many short-lived,
    acyclic objects, which reference counting frees; a collection every 700 of them
    only costs time)."""
    old = gc.get_threshold()
    gc.set_threshold(100_000, 50, 100)
    try:
        yield
    finally:
        gc.set_threshold(*old)


def _with_markers(handlers: dict[str, Any]) -> dict[str, Any]:
    """The builder's handlers, and a placeholder for markers (read by the loops)."""
    return {**handlers, MARKER: _ignore}


def _ignore(_ev: Any) -> None:
    return None


def _encode(rec: Operation | Gap) -> tuple:
    return encode(rec) if type(rec) is Operation else encode_gap(rec)  # type: ignore[arg-type]


def _produce(st: Stage2Trace, emit: Callable[[list[tuple], int], None],
             progress_every: int = 0x3FFF) -> tuple[int, OperationBuilder]:
    """Read ``st``, build its operations, and hand them to ``emit`` encoded, in batches."""
    builder = OperationBuilder(st.page_size)
    handlers: dict[str, Any] = builder._handlers  # type: ignore[assignment]
    ready = builder.ready
    feed = st.event_makers(_with_markers(handlers))
    batch: list[tuple] = []
    n = 0
    for ts, cpu, name, vals in st.trace.scan(st.fields, lost=True):
        if name == MARKER:
            batch.append((NOTE, n, ts, vals[1]))
            n += 1
            continue
        if name is LOST:
            handlers[LOST_EVENTS](ScanEvent(n, cpu, ts, 0, LOST_EVENTS, {"count": vals[0]}))
        else:
            feed[name](n, cpu, ts, vals)
            n += 1
            if not n & progress_every:
                emit(batch, n)
                batch = []
        if ready:
            for rec in ready:
                batch.append(_encode(rec))
            ready.clear()
            if len(batch) >= _BATCH:
                emit(batch, n)
                batch = []
    builder.finish()
    for rec in ready:
        batch.append(_encode(rec))
    ready.clear()
    emit(batch, n)
    return n, builder


def _widen(conn: Any) -> None:
    """Give the pipe a larger buffer (Linux: up to /proc/sys/fs/pipe-max-size), so that
    the reader can run ahead of the replay by more than a batch or two."""
    try:
        import fcntl
        fcntl.fcntl(conn.fileno(), getattr(fcntl, "F_SETPIPE_SZ", 1031), 1 << 20)
    except (OSError, ImportError, ValueError):
        pass


def _root_tuple(r: Root) -> tuple:
    return (r.id, r.pgt, r.pgd, r.mmu, r.vm, r.ia_bits, r.start_level, r.init_seen,
            r.first_index, r.destroy_seen, r.retired)


def _child(path: str, conn: Any) -> None:
    """The reader process: operations of the trace at ``path`` into ``conn``."""
    gc.freeze()
    gc.set_threshold(100_000, 50, 100)
    try:
        with open_trace(path) as trace:
            st = Stage2Trace(trace)

            def emit(batch: list[tuple], n: int) -> None:
                conn.send_bytes(marshal.dumps(("batch", n, batch)))

            n, builder = _produce(st, emit)
            conn.send_bytes(marshal.dumps(
                ("end", n, builder.stats, [_root_tuple(r) for r in builder.roots.values()])))
    except InputError as err:
        conn.send_bytes(marshal.dumps(("error", type(err).__name__, err.what, err.source,
                                       err.offset, err.line, err.index)))
    except BaseException:  # noqa: BLE001 - reported to the parent, which raises
        conn.send_bytes(marshal.dumps(("crash", traceback.format_exc())))
    finally:
        conn.close()


class Feed:
    """The operations of a trace, as :class:`OpRecord` and ``Gap`` records in trace order
    (and the trace's ``trace_marker`` lines, as :class:`~ptreplay.stage2.records.Note`).

    :param trace: the trace (its ``source`` is re-opened by the reader process).
    :param jobs: 2 to read in a second process, 1 to read here.
    :param progress: called now and then with the number of events read.

    After :meth:`records` ran out: :attr:`roots`, :attr:`stats` (the operations
    layer's counters) and :attr:`events_read`.
    """

    def __init__(self, trace: Stage2Trace, jobs: int = 1,
                 progress: Callable[[int], None] | None = None) -> None:
        self.trace = trace
        self.jobs = jobs
        self.progress = progress
        self.roots: dict[int, Root] = {}
        self.stats: dict[str, int] = {}
        self.events_read = 0

    def records(self) -> Iterator[OpRecord | Gap | Note]:
        """The records, as the operations complete."""
        for batch in self.batches():
            yield from batch

    def batches(self) -> Iterator[list[OpRecord | Gap | Note]]:
        """The records in batches (a few hundred at a time, or fewer), in order."""
        if self.jobs > 1 and os.path.exists(self.trace.source):
            yield from self._remote()
        else:
            yield from self._local()

    def _local(self) -> Iterator[list[OpRecord | Gap | Note]]:
        st = self.trace
        builder = OperationBuilder(st.page_size)
        handlers: dict[str, Any] = builder._handlers  # type: ignore[assignment]
        ready = builder.ready
        feed = st.event_makers(_with_markers(handlers))
        progress = self.progress
        n = 0
        # the loop of _produce, yielding as the operations complete
        for ts, cpu, name, vals in st.trace.scan(st.fields, lost=True):
            if name == MARKER:
                yield [Note(n, ts, vals[1])]
                n += 1
                continue
            if name is LOST:
                handlers[LOST_EVENTS](ScanEvent(n, cpu, ts, 0, LOST_EVENTS, {"count": vals[0]}))
            else:
                feed[name](n, cpu, ts, vals)
                n += 1
                if not n & 0x3FFF and progress is not None:
                    progress(n)
            if ready:
                yield [decode(_encode(rec)) for rec in ready]
                ready.clear()
        builder.finish()
        yield [decode(_encode(rec)) for rec in ready]
        ready.clear()
        if progress is not None:
            progress(n)
        self.events_read = n
        self.roots = builder.roots
        self.stats = dict(builder.stats)

    def _remote(self) -> Iterator[list[OpRecord | Gap | Note]]:
        ctx = multiprocessing.get_context("fork")
        recv, send = ctx.Pipe(duplex=False)
        _widen(send)
        proc = ctx.Process(target=_child, args=(self.trace.source, send), daemon=True)
        proc.start()
        send.close()
        progress = self.progress
        done = False
        try:
            while True:
                try:
                    msg = marshal.loads(recv.recv_bytes())
                except EOFError:
                    raise RuntimeError("the trace reader process ended without a word "
                                       f"(exit code {proc.exitcode})") from None
                tag = msg[0]
                if tag == "batch":
                    yield [decode(item) for item in msg[2]]
                    if progress is not None:
                        progress(msg[1])
                elif tag == "end":
                    self.events_read = msg[1]
                    self.stats = dict(msg[2])
                    self.roots = {t[0]: Root(*t) for t in msg[3]}
                    done = True
                    return
                elif tag == "error":
                    cls = {"TraceFormatError": _trace_format_error()}.get(msg[1], InputError)
                    raise cls(msg[2], msg[3], offset=msg[4], line=msg[5], index=msg[6])
                else:
                    raise RuntimeError("the trace reader process failed:\n" + msg[1])
        finally:
            recv.close()
            if done:
                proc.join()
            else:
                proc.kill()
                proc.join()


def _trace_format_error() -> type[InputError]:
    from ptreplay.errors import TraceFormatError
    return TraceFormatError
