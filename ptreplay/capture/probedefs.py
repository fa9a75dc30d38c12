"""Kprobe event definitions in the kernel's own ``kprobe_events`` syntax.

One line of ``/sys/kernel/tracing/kprobe_events`` (Documentation/trace/
kprobetrace.rst) defines one probe event::

    p[:[GRP/]EVENT] SYM[+OFFS] [NAME=FETCHARG[:TYPE] ...]      entry probe
    r[MAXACTIVE][:[GRP/]EVENT] SYM[+0] [NAME=FETCHARG[:TYPE] ...]  return probe
    -:[GRP/]EVENT                                              removal

This module parses such a line into a :class:`ProbeDefinition` (what the
kernel's ``trace_kprobe_create()`` / ``traceprobe_parse_probe_arg()`` in
kernel/trace/trace_kprobe.c and trace_probe.c accept), keeping each fetch
argument's name, fetch expression and type. It is the single reader of the
``schemas/kprobes/*.txt`` files and of the ``kprobe_events`` files that
recordings carry (``r10:kprobes/NAME ...`` as the kernel prints them back).

Only the parts ptreplay needs are interpreted (registers, dereferences,
``$retval``, ``$comm``, ``$stackN``, ``@symbol``, immediates); anything else
is kept as text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "FetchArg",
    "ProbeDefinition",
    "ProbeSyntaxError",
    "parse_probe_definition",
    "BASIC_TYPES",
    "DEFAULT_TYPE",
]

#: Fetch types every supported kernel knows (trace_probe.c ``probe_fetch_types``).
BASIC_TYPES = frozenset(
    ["u8", "u16", "u32", "u64", "s8", "s16", "s32", "s64", "x8", "x16", "x32", "x64",
     "string", "ustring", "symstr", "symbol", "char"]
)

#: The type of an argument written without ``:TYPE`` on a 64-bit kernel
#: (``__DEFAULT_FETCH_TYPE(t) x##t`` in kernel/trace/trace_probe.h).
DEFAULT_TYPE = "x64"

# kernel/trace/trace_probe.h: MAX_TRACE_ARGS, MAX_EVENT_NAME_LEN
_MAX_ARGS = 128
_MAX_NAME = 64

# trace_probe.c reserved_field_names: an argument may not shadow these.
_RESERVED_NAMES = frozenset(
    ["common_type", "common_flags", "common_preempt_count", "common_pid", "common_tgid",
     "__probe_ip", "__probe_ret_ip", "__probe_func"]
)

_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_HEAD_RE = re.compile(r"(?P<kind>[pr])(?P<maxactive>[0-9]*)(?::(?P<target>\S*))?\Z")
_BITFIELD_RE = re.compile(r"b(?P<width>[0-9]+)@(?P<shift>[0-9]+)/(?P<container>[0-9]+)\Z")
_ARRAY_RE = re.compile(r"(?P<base>[^\[\]]+)\[(?P<count>[0-9]+)\]\Z")
_DEREF_RE = re.compile(
    r"(?P<sign>[+-])(?P<user>u?)(?P<off>(?:0x[0-9a-fA-F]+|[0-9]+))\((?P<inner>.*)\)\Z"
)


class ProbeSyntaxError(ValueError):
    """A probe definition line the kernel would reject (says what and where)."""


@dataclass(frozen=True)
class FetchArg:
    """One ``NAME=FETCHARG[:TYPE]`` of a probe definition.

    :param name: the field name in the event (``pgt``).
    :param fetch: the fetch expression as written (``+8(%x0)``).
    :param type: the fetch type as written (``x64``, ``s8``, ``u64[4]``,
        ``b4@2/32``); ``DEFAULT_TYPE`` when the line gave none.
    """

    name: str
    fetch: str
    type: str

    @property
    def base_type(self) -> str:
        """The element type without an array suffix (``u64`` for ``u64[4]``)."""
        m = _ARRAY_RE.match(self.type)
        return m.group("base") if m else self.type

    @property
    def count(self) -> int:
        """Array length (0 when the argument is not an array)."""
        m = _ARRAY_RE.match(self.type)
        return int(m.group("count")) if m else 0

    @property
    def register(self) -> str | None:
        """The register the value (or the pointer it dereferences) comes from.

        ``%x1`` and ``+8(%x1)`` both give ``"x1"``; ``$retval`` gives ``"x0"``
        (AAPCS64 returns in x0); other fetch kinds give ``None``.
        """
        inner = self.fetch
        while True:
            m = _DEREF_RE.match(inner)
            if not m:
                break
            inner = m.group("inner")
        if inner.startswith("%"):
            return inner[1:]
        if inner == "$retval":
            return "x0"
        return None

    @property
    def offsets(self) -> tuple[int, ...]:
        """Dereference offsets from the outermost inwards (``+8(%x0)`` -> ``(8,)``)."""
        out: list[int] = []
        inner = self.fetch
        while True:
            m = _DEREF_RE.match(inner)
            if not m:
                break
            value = int(m.group("off"), 0)
            out.append(-value if m.group("sign") == "-" else value)
            inner = m.group("inner")
        return tuple(out)


@dataclass(frozen=True)
class ProbeDefinition:
    """One kprobe or kretprobe event definition.

    :param kind: ``"p"`` (entry probe) or ``"r"`` (return probe).
    :param group: the event system (``kprobes`` unless the line names one).
    :param event: the event name (``kvm_pgtable_stage2_map__return``).
    :param symbol: the probed function (``kvm_pgtable_stage2_map``).
    :param offset: the byte offset into ``symbol`` (0 for a function entry).
    :param maxactive: the ``rN`` instance count of a return probe (0: default).
    :param args: the fetch arguments, in order.
    """

    kind: str
    group: str
    event: str
    symbol: str
    offset: int
    maxactive: int
    args: tuple[FetchArg, ...]

    @property
    def is_return(self) -> bool:
        """True for a kretprobe (``r``) definition."""
        return self.kind == "r"

    def line(self) -> str:
        """The definition as one ``kprobe_events`` line, without group or maxactive.

        This is the form ptreplay writes into ``kprobe_events``; the group is
        left to the kernel's default (``kprobes``).
        """
        head = f"{self.kind}:{self.event}"
        target = self.symbol if not self.offset else f"{self.symbol}+{self.offset}"
        parts = [head, target]
        parts += [f"{a.name}={a.fetch}:{a.type}" for a in self.args]
        return " ".join(parts)


def _split_target(text: str, where: str) -> tuple[str, int]:
    """Split ``SYM[+OFFS]`` (``MOD:SYM`` is kept as the symbol)."""
    if "+" in text:
        sym, _, off = text.partition("+")
        try:
            offset = int(off, 0)
        except ValueError:
            raise ProbeSyntaxError(f"bad offset {off!r} in {where}") from None
    else:
        sym, offset = text, 0
    if not sym or not re.fullmatch(r"[A-Za-z0-9_.:$]+", sym):
        raise ProbeSyntaxError(f"bad probe point {text!r} in {where}")
    return sym, offset


def _check_type(t: str, where: str) -> None:
    base = t
    m = _ARRAY_RE.match(t)
    if m:
        base = m.group("base")
        count = int(m.group("count"))
        if not 0 < count <= 64:  # MAX_ARRAY_LEN in trace_probe.h
            raise ProbeSyntaxError(f"bad array length in type {t!r} in {where}")
    if base in BASIC_TYPES:
        return
    b = _BITFIELD_RE.match(base)
    if b and int(b.group("container")) in (8, 16, 32, 64):
        width, shift = int(b.group("width")), int(b.group("shift"))
        if 0 < width and width + shift <= int(b.group("container")):
            return
    raise ProbeSyntaxError(f"unknown fetch type {t!r} in {where}")


def _parse_arg(text: str, position: int, where: str) -> FetchArg:
    if "=" in text:
        name, _, rest = text.partition("=")
    else:
        name, rest = f"arg{position}", text
    if not _NAME_RE.match(name):
        raise ProbeSyntaxError(f"bad argument name {name!r} in {where}")
    # The type follows the last ':' that is not inside a dereference.
    depth = 0
    split_at = -1
    for i, ch in enumerate(rest):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == ":" and depth == 0:
            split_at = i
    if split_at >= 0:
        fetch, t = rest[:split_at], rest[split_at + 1:]
    else:
        fetch, t = rest, ""
    if not fetch:
        raise ProbeSyntaxError(f"argument {name!r} has no fetch expression in {where}")
    if fetch == "$comm" and not t:
        t = "string"
    t = t or DEFAULT_TYPE
    _check_type(t, where)
    return FetchArg(name, fetch, t)


def parse_probe_definition(line: str, where: str = "probe definition") -> ProbeDefinition:
    """Parse one ``p:``/``r:`` line of ``kprobe_events`` syntax.

    :param line: the definition, without a trailing comment.
    :param where: what to name in error messages (``linux-6.1.txt line 12``).
    :raises ProbeSyntaxError: the line is not a definition the kernel accepts.
    """
    words = line.split()
    if len(words) < 2:
        raise ProbeSyntaxError(f"expected 'p:EVENT SYMBOL ARGS...' in {where}")
    head = _HEAD_RE.match(words[0])
    if not head:
        raise ProbeSyntaxError(f"bad probe head {words[0]!r} in {where}")
    kind = head.group("kind")
    maxactive = int(head.group("maxactive") or 0)
    if kind == "p" and head.group("maxactive"):
        raise ProbeSyntaxError(f"maxactive is only for return probes in {where}")
    symbol, offset = _split_target(words[1], where)
    if kind == "r" and offset:
        raise ProbeSyntaxError(f"a return probe must be at offset 0 in {where}")
    target = head.group("target") or ""
    group, _, event = target.rpartition("/")
    group = group or "kprobes"
    if not event:
        # trace_kprobe.c: "%c_%s_%ld" from the kind, symbol and offset.
        event = f"{kind}_{symbol.replace(':', '_').replace('.', '_')}_{offset}"
    for what, name in (("group", group), ("event", event)):
        if not _NAME_RE.match(name) or len(name) >= _MAX_NAME:
            raise ProbeSyntaxError(f"bad {what} name {name!r} in {where}")
    raw_args = words[2:]
    if len(raw_args) > _MAX_ARGS:
        raise ProbeSyntaxError(f"more than {_MAX_ARGS} arguments in {where}")
    args = tuple(_parse_arg(a, i + 1, where) for i, a in enumerate(raw_args))
    seen: set[str] = set()
    for a in args:
        if a.name in seen:
            raise ProbeSyntaxError(f"argument name {a.name!r} used twice in {where}")
        if a.name in _RESERVED_NAMES:
            raise ProbeSyntaxError(f"argument name {a.name!r} is reserved in {where}")
        if a.fetch == "$retval" and kind != "r":
            raise ProbeSyntaxError(f"$retval is only valid in a return probe in {where}")
        seen.add(a.name)
    return ProbeDefinition(kind, group, event, symbol, offset, maxactive, args)
