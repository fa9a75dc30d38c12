"""What ``ptreplay events`` and ``ptreplay info`` print, without the command-line layer.

The typer commands (:mod:`ptreplay.cli.events`, :mod:`ptreplay.cli.info`)
and the console script's fast dispatch (:mod:`ptreplay.console`) both call
:func:`run_events` and :func:`run_info`, so the two paths print the same
bytes. Nothing here imports typer.
"""

from __future__ import annotations

import sys

__all__ = ["run_events", "run_info", "summarize", "render_text"]


def run_events(trace: str, event: list[str] | None, cpu: list[int] | None,
               buffer: str | None, fmt: str, usec: bool) -> None:
    """The body of ``ptreplay events``: stream the lines in batches."""
    from ptreplay.trace import open_trace

    out = sys.stdout
    with open_trace(trace) as t:
        if fmt == "raw":
            from ptreplay.formats.rawreport import raw_report_batches

            for batch in raw_report_batches(t, nsec=not usec, names=event, cpus=cpu,
                                            buffer=buffer):
                batch.append("")
                out.write("\n".join(batch))
        else:
            lines: list[str] = []
            for line in _json_lines(t, event, cpu, buffer):
                lines.append(line)
                if len(lines) >= 4096:
                    lines.append("")
                    out.write("\n".join(lines))
                    lines = []
            if lines:
                lines.append("")
                out.write("\n".join(lines))
        out.flush()


def _json_lines(t, names, cpus, buffer):
    import json

    from ptreplay.trace import LostEvents

    dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"),
                             default=_default).encode
    for ev in t.events(names=names, cpus=cpus, buffer=buffer):
        if isinstance(ev, LostEvents):
            yield dumps({"buffer": ev.buffer, "cpu": ev.cpu, "ts": ev.ts,
                         "lost_events": ev.count})
            continue
        yield dumps({"buffer": ev.buffer, "cpu": ev.cpu, "ts": ev.ts, "system": ev.system,
                     "name": ev.name, "pid": ev.pid, "comm": ev.comm, "fields": ev.fields})


def _default(obj):
    if isinstance(obj, bytes):
        return obj.hex()
    if isinstance(obj, tuple):
        return list(obj)
    raise TypeError(type(obj).__name__)


def run_info(trace: str, fmt: str, count: bool) -> None:
    """The body of ``ptreplay info``: the summary as text or JSON on stdout."""
    from ptreplay.trace import open_trace

    with open_trace(trace) as t:
        data = summarize(t, count)
    if fmt == "json":
        import json

        sys.stdout.write(json.dumps(data, indent=2, sort_keys=False) + "\n")
    else:
        sys.stdout.write(render_text(data))


def summarize(t, count: bool = True) -> dict:
    """The information ``info`` prints, as plain data."""
    i = t.info
    d: dict = {
        "path": i.path,
        "kind": i.kind,
        "version": i.version,
        "endian": i.endianness,
        "long_size": i.long_size,
        "page_size": i.page_size,
        "compression": (f"{i.compression} {i.compression_version}".strip()
                        if i.compression else "none"),
        "clock": i.clock,
        "uname": i.uname,
        "kernel_release": i.kernel_release,
        "tracer_version": i.tracer_version,
        "cpus": i.cpus,
        "buffers": [
            {"name": b.name, "clock": b.clock, "page_size": b.page_size, "cpus": list(b.cpus),
             "data_bytes": {str(k): v for k, v in b.data_bytes.items()}}
            for b in i.buffers],
        "event_formats": len(t.formats),
        "saved_cmdlines": len(i.cmdlines),
        "kallsyms_bytes": i.kallsyms_size,
        "cpu_stats": [
            {"cpu": s.cpu, "entries": s.entries, "overrun": s.overrun,
             "commit_overrun": s.commit_overrun, "dropped_events": s.dropped_events}
            for s in i.cpu_stats],
    }
    if count:
        result = t.count_events()
        counts = result.counts
        per_buffer: dict[str, int] = {}
        per_cpu: dict[int, int] = {}
        per_event: dict[str, int] = {}
        lost: dict[str, int | None] = {}
        markers = []
        for m in result.lost:
            key = f"{m.buffer}:{m.cpu}" if m.buffer else str(m.cpu)
            if m.count is None or lost.get(key, 0) is None:
                lost[key] = None
            else:
                lost[key] = lost.get(key, 0) + m.count
            if m.shown_by_trace_cmd:
                prefix = f"{m.buffer}: " if m.buffer else ""
                n = f"{m.count} " if m.count is not None else ""
                markers.append(f"{prefix}CPU:{m.cpu} [{n}EVENTS DROPPED]")
        total = 0
        for (buf, cpu, eid), n in sorted(counts.items()):
            total += n
            per_buffer[buf] = per_buffer.get(buf, 0) + n
            per_cpu[cpu] = per_cpu.get(cpu, 0) + n
            name = t.formats.name_of(eid)[1] if eid in t.formats else f"<unknown id {eid}>"
            per_event[name] = per_event.get(name, 0) + n
        d["events"] = {
            "total": total,
            "per_buffer": {(k or "(top)"): v for k, v in per_buffer.items()},
            "per_cpu": {str(k): v for k, v in sorted(per_cpu.items())},
            "per_event": dict(sorted(per_event.items(), key=lambda kv: (-kv[1], kv[0]))),
        }
        d["lost_events"] = {
            "markers": markers,
            "per_cpu": lost,
        }
    return d


def render_text(d: dict) -> str:
    """``info``'s text layout."""
    out = [f"trace:        {d['path']}"]
    if d["kind"] == "trace.dat":
        out.append(f"format:       trace.dat version {d['version']}")
    else:
        out.append("format:       raw tracefs copy")
    out.append(f"endianness:   {d['endian']}")
    out.append(f"long size:    {d['long_size']}")
    out.append(f"page size:    {d['page_size']}")
    out.append(f"compression:  {d['compression']}")
    out.append(f"clock:        {d['clock']}")
    if d["uname"]:
        out.append(f"uname:        {d['uname']}")
    if d["tracer_version"]:
        out.append(f"recorded by:  trace-cmd {d['tracer_version']}")
    out.append(f"cpus:         {d['cpus']}")
    out.append(f"event formats: {d['event_formats']}, saved cmdlines: {d['saved_cmdlines']}")
    out.append("buffers:")
    for b in d["buffers"]:
        name = b["name"] or "(top)"
        cpus = ",".join(str(c) for c in b["cpus"])
        out.append(f"  {name}: clock {b['clock']}, page {b['page_size']}, cpus {cpus}")
    if "events" in d:
        e = d["events"]
        out.append(f"total_events {e['total']}")
        out.append("per_buffer " + " ".join(f"{k}={v}" for k, v in e["per_buffer"].items()))
        out.append("per_cpu " + " ".join(f"{k}={v}" for k, v in e["per_cpu"].items()))
        lost = d["lost_events"]
        out.append(f"dropped_markers {len(lost['markers'])}")
        for m in lost["markers"]:
            out.append(f"  {m}")
        out.append("per_event:")
        for name, n in e["per_event"].items():
            out.append(f"{n:>11} {name}")
    if d["cpu_stats"]:
        out.append("cpu stats (as recorded):")
        for s in d["cpu_stats"]:
            out.append(f"  cpu {s['cpu']}: entries {s['entries']} overrun {s['overrun']} "
                       f"commit_overrun {s['commit_overrun']} dropped {s['dropped_events']}")
    return "\n".join(out) + "\n"
