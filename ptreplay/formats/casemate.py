"""Reader of casemate logs (rems-project/casemate 3.0.2, shared/conformance/casemate/FORMAT.md).

A casemate log is a sequence of s-expression records::

    (mem-write (id 7) (tid 0) (mem-order plain) (address 0x40003000) (value 8000004ff)
               (src "f.c:12"))
    (barrier 8 0 dsb ish "f.c:13")

This reader accepts exactly what casemate-check's parser accepts: whitespace
is only space, TAB and LF (CR is an ordinary character, so CRLF files fail);
every field may be named ``(key value)`` or positional, field by field, in a
fixed order; every number but ``id`` and ``tid`` is hexadecimal with an
optional ``0x`` (``(size 1000)`` is 0x1000; ``0x`` alone is 0; more than 16
digits wrap modulo 2**64 as in C); ``id`` and ``tid`` are read like C
``atoi`` (non-digits give 0) and ``tid`` must be 0..3; ``src`` is required
and must contain ``:``; words and strings are at most 511 characters; a
``!`` where the next record would start ends the log (the text after it is
the verdict the log expects, kept in :attr:`CasemateReader.expected`).

Speed: records in the canonical one-record-per-line named form (what
casemate itself writes) are matched by one compiled regular expression per
kind over large chunks; anything else (positional fields, records across
lines, odd spacing) falls back to a character-level parser that mirrors
casemate's ``parser.c``. Both give the same records and the same errors.
Memory: one chunk at a time.

Records are tuples ``(kind, id, tid, a, b, c, src, line)``; see the ``K_*``
constants for what ``a``, ``b``, ``c`` hold per kind. :meth:`CasemateReader.run`
hands canonical lines to callbacks as raw regular-expression groups instead
(:data:`FAST_FIELDS` says which group is which), for callers that convert
only what they need.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from typing import IO

from ptreplay.errors import TraceFormatError

__all__ = [
    "CasemateReader",
    "looks_like_casemate",
    "K_MEM_WRITE", "K_MEM_READ", "K_MEM_INIT", "K_MEM_FREE", "K_MEM_SET", "K_SYSREG",
    "K_DSB", "K_ISB", "K_TLBI", "K_HINT", "K_LOCK", "K_TRYLOCK", "K_UNLOCK", "KIND_NAMES",
    "TLBI_OPS", "TLBI_WITH_VALUE", "SYSREGS", "HINTS", "FAST_FIELDS", "record_builder",
]

# Record kinds. Fields (a, b, c):
K_MEM_WRITE = 0   # a: 0 plain / 1 release, b: address, c: value
K_MEM_READ = 1    # b: address, c: value
K_MEM_INIT = 2    # b: address, c: size
K_MEM_FREE = 3    # b: address, c: size
K_MEM_SET = 4     # a: value, b: address, c: size
K_SYSREG = 5      # a: sysreg name, c: value
K_DSB = 6         # a: "ish" / "ishst" / "nsh"
K_ISB = 7
K_TLBI = 8        # a: op name, c: Xt value (None for ops without one)
K_HINT = 9        # a: hint kind, b: location, c: value
K_LOCK = 10       # b: address
K_TRYLOCK = 11    # b: address
K_UNLOCK = 12     # b: address

KIND_NAMES = ("mem-write", "mem-read", "mem-init", "mem-free", "mem-set", "sysreg-write",
              "barrier dsb", "barrier isb", "tlbi", "hint", "lock", "trylock", "unlock")

TLBI_OPS = ("vmalls12e1", "vmalls12e1is", "vmalle1is", "vmalle1", "alle1", "alle1is", "alle2",
            "alle2is", "vale2is", "vae2is", "ipas2e1is")
TLBI_WITH_VALUE = frozenset({"vale2is", "vae2is", "ipas2e1is"})
SYSREGS = ("vttbr_el2", "ttbr0_el2", "vtcr_el2", "hcr_el2", "tcr_el2", "sctlr_el2", "mair_el2")
HINTS = ("set_root_lock", "set_owner_root", "release_table", "set_pte_thread_owner")
_DSB_KINDS = ("nsh", "ish", "ishst")
_MEM_ORDERS = {"plain": 0, "release": 1}
_MAX_CPU = 4
_MAX_TOKEN = 511
_U64 = (1 << 64) - 1
_CHUNK = 1 << 22
_WS = " \t\n"


def looks_like_casemate(head: bytes) -> bool:
    """Whether the first bytes of a file look like a casemate log."""
    text = head.lstrip(b" \t\n")
    return text.startswith(b"(") and not text.startswith(b"{")


# --- the fast path: one regular expression per kind, canonical named form -----------------

_H = r"(?:0x)?([0-9a-fA-F]{1,16})"     # ("0x" alone, or 17+ digits: the careful way)
_D = r"(\d{1,18})"
_SRC = r'\(src "([^":]*:[^"]*)"\)\)'
_HEAD = r"\(id " + _D + r"\) \(tid ([0-3])\) "
_TLBI_NOVALUE = "|".join(op for op in TLBI_OPS if op not in TLBI_WITH_VALUE)
_TLBI_VALUE = "|".join(op for op in TLBI_OPS if op in TLBI_WITH_VALUE)
# keyed by the first 10 characters of a line
_FAST = {
    "(mem-write": (K_MEM_WRITE, re.compile(
        r"\(mem-write " + _HEAD + r"\(mem-order (plain|release)\) \(address " + _H
        + r"\) \(value " + _H + r"\) " + _SRC)),
    "(barrier (": (K_DSB, re.compile(
        r"\(barrier " + _HEAD + r"(?:dsb \(kind (ish|ishst|nsh)\)|(isb)) " + _SRC)),
    "(tlbi (id ": (K_TLBI, re.compile(
        r"\(tlbi " + _HEAD + r"(?:(" + _TLBI_VALUE + r") \(value " + _H + r"\)|("
        + _TLBI_NOVALUE + r")) " + _SRC)),
    "(lock (id ": (K_LOCK, re.compile(r"\(lock " + _HEAD + r"\(address " + _H + r"\) " + _SRC)),
    "(unlock (i": (K_UNLOCK, re.compile(
        r"\(unlock " + _HEAD + r"\(address " + _H + r"\) " + _SRC)),
    "(trylock (": (K_TRYLOCK, re.compile(
        r"\(trylock " + _HEAD + r"\(address " + _H + r"\) " + _SRC)),
    "(mem-init ": (K_MEM_INIT, re.compile(
        r"\(mem-init " + _HEAD + r"\(address " + _H + r"\) \(size " + _H + r"\) " + _SRC)),
    "(mem-free ": (K_MEM_FREE, re.compile(
        r"\(mem-free " + _HEAD + r"\(address " + _H + r"\) \(size " + _H + r"\) " + _SRC)),
    "(mem-read ": (K_MEM_READ, re.compile(
        r"\(mem-read " + _HEAD + r"\(address " + _H + r"\) \(value " + _H + r"\) " + _SRC)),
    "(mem-set (": (K_MEM_SET, re.compile(
        r"\(mem-set " + _HEAD + r"\(address " + _H + r"\) \(size " + _H + r"\) \(value "
        + _H + r"\) " + _SRC)),
    "(sysreg-wr": (K_SYSREG, re.compile(
        r"\(sysreg-write " + _HEAD + r"\(sysreg (" + "|".join(SYSREGS) + r")\) \(value " + _H
        + r"\) " + _SRC)),
    "(hint (id ": (K_HINT, re.compile(
        r"\(hint " + _HEAD + r"\(kind (" + "|".join(HINTS) + r")\) \(location " + _H
        + r"\) \(value " + _H + r"\) " + _SRC)),
}
assert all(len(key) == 10 for key in _FAST)

#: The match groups :meth:`CasemateReader.run` passes per kind: hex groups are
#: 1-16 hex digits (without 0x), ``id`` decimal digits, ``tid`` one of 0-3.
FAST_FIELDS = {
    K_MEM_WRITE: ("id", "tid", "mem-order", "address", "value", "src"),
    K_DSB: ("id", "tid", "dsb kind or None", "'isb' or None", "src"),
    K_TLBI: ("id", "tid", "op with value or None", "value or None", "op without value or None",
             "src"),
    K_LOCK: ("id", "tid", "address", "src"),
    K_UNLOCK: ("id", "tid", "address", "src"),
    K_TRYLOCK: ("id", "tid", "address", "src"),
    K_MEM_INIT: ("id", "tid", "address", "size", "src"),
    K_MEM_FREE: ("id", "tid", "address", "size", "src"),
    K_MEM_READ: ("id", "tid", "address", "value", "src"),
    K_MEM_SET: ("id", "tid", "address", "size", "value", "src"),
    K_SYSREG: ("id", "tid", "sysreg", "value", "src"),
    K_HINT: ("id", "tid", "kind", "location", "value", "src"),
}


def _hex(digits: str) -> int:
    """casemate's ``hextoi``: empty is 0; overflow wraps modulo 2**64."""
    if not digits:
        return 0
    value = int(digits, 16)
    return value & _U64 if len(digits) > 16 else value


class CasemateReader:
    """Reads the records of one casemate log, chunk by chunk.

    :param stream: the log, opened in binary mode.
    :param source: its name, for error messages.

    :meth:`batches` yields lists of records; afterwards :attr:`expected` holds
    the log's own verdict line (the text after ``!``), or None for a log that
    claims to be clean, and :attr:`records` the number of records read.
    """

    def __init__(self, stream: IO[bytes], source: str = "-"):
        self.stream = stream
        self.source = source
        self.expected: str | None = None
        self.expected_line: int | None = None
        self.records = 0
        self.bytes_read = 0
        self._eof = False

    # --- chunking --------------------------------------------------------------------------
    def _read(self) -> str:
        if self._eof:
            return ""
        data = self.stream.read(_CHUNK)
        if not data:
            self._eof = True
            return ""
        self.bytes_read += len(data)
        return data.decode("latin-1")

    def run(self, handlers: Mapping[int, Callable[[tuple, int], object]],
            on_records: Callable[[list[tuple]], object]) -> Iterator[None]:
        """Push the log through callbacks, one chunk per step of this generator.

        A canonical line of kind ``k`` calls ``handlers[k](groups, line)`` with
        the raw match groups (see :data:`FAST_FIELDS`); anything else goes
        through the careful parser and ``on_records(records)``. Checking code
        uses this to skip building record tuples; :meth:`batches` builds them.
        """
        table = {prefix: (pattern.fullmatch, handlers[kind])
                 for prefix, (kind, pattern) in _FAST.items()}
        get = table.get
        pending = ""           # unparsed text; starts at the start of a line
        line_no = 1            # 1-based line of pending[0]
        while True:
            more = self._read()
            at_eof = not more
            lines = (pending + more).split("\n")
            pending = "" if at_eof else lines.pop()
            consumed = len(lines)
            stop = False
            for i, line in enumerate(lines):
                entry = get(line[:10])
                if entry is not None:
                    m = entry[0](line)
                    if m is not None:
                        entry[1](m.groups(), line_no + i)
                        continue
                if not line:
                    continue
                if line[0] == "!":
                    self._verdict(line, line_no + i)
                    stop = True
                else:
                    consumed = i
                break
            if consumed < len(lines) and not stop:
                # the careful way, from this line on, until a record ends a line
                rest = "\n".join(lines[consumed:]) + ("" if at_eof else "\n" + pending)
                slow = _Slow(rest, line_no + consumed, self)
                recs, line_no, pending, stop = slow.run()
                if recs:
                    on_records(recs)
            else:
                line_no += len(lines)
            yield None
            if stop or (at_eof and not pending):
                return

    def batches(self) -> Iterator[list[tuple]]:
        """Yield the records in lists (one list per chunk of input)."""
        out: list[tuple] = []
        append = out.append
        handlers = {kind: record_builder(kind, append) for kind in range(len(KIND_NAMES))}
        for _ in self.run(handlers, out.extend):
            if out:
                batch = out[:]
                out.clear()
                self.records += len(batch)
                yield batch

    def __iter__(self) -> Iterator[tuple]:
        for batch in self.batches():
            yield from batch

    def _verdict(self, text: str, line: int) -> None:
        message = text[1:].split("\n", 1)[0].strip(" \t")
        self.expected = message
        self.expected_line = line

    def error(self, what: str, line: int, col: int) -> TraceFormatError:
        """A parse error at 1-based ``line``, 0-based ``col`` (casemate counts from 0)."""
        return TraceFormatError(f"casemate parse error: {what} (column {col})", self.source,
                                line=line)


_TID = {"0": 0, "1": 1, "2": 2, "3": 3}


def record_builder(kind: int, append: Callable[[tuple], object]) -> Callable[[tuple, int], None]:
    """A fast-path handler that builds the record tuple of a canonical line of ``kind``."""
    if kind == K_MEM_WRITE:
        def build(g: tuple, line: int) -> None:
            append((K_MEM_WRITE, int(g[0]), _TID[g[1]], 0 if g[2] == "plain" else 1,
                    int(g[3], 16), int(g[4], 16), g[5], line))
    elif kind in (K_DSB, K_ISB):
        def build(g: tuple, line: int) -> None:
            if g[3] is not None:
                append((K_ISB, int(g[0]), _TID[g[1]], None, None, None, g[4], line))
            else:
                append((K_DSB, int(g[0]), _TID[g[1]], g[2], None, None, g[4], line))
    elif kind == K_TLBI:
        def build(g: tuple, line: int) -> None:
            if g[2] is not None:
                append((K_TLBI, int(g[0]), _TID[g[1]], g[2], None, int(g[3], 16), g[5], line))
            else:
                append((K_TLBI, int(g[0]), _TID[g[1]], g[4], None, None, g[5], line))
    elif kind in (K_LOCK, K_UNLOCK, K_TRYLOCK):
        def build(g: tuple, line: int) -> None:
            append((kind, int(g[0]), _TID[g[1]], None, int(g[2], 16), None, g[3], line))
    elif kind in (K_MEM_INIT, K_MEM_FREE, K_MEM_READ):
        def build(g: tuple, line: int) -> None:
            append((kind, int(g[0]), _TID[g[1]], None, int(g[2], 16), int(g[3], 16), g[4],
                    line))
    elif kind == K_MEM_SET:
        def build(g: tuple, line: int) -> None:
            append((kind, int(g[0]), _TID[g[1]], int(g[4], 16), int(g[2], 16), int(g[3], 16),
                    g[5], line))
    elif kind == K_SYSREG:
        def build(g: tuple, line: int) -> None:
            append((kind, int(g[0]), _TID[g[1]], g[2], None, int(g[3], 16), g[4], line))
    else:
        def build(g: tuple, line: int) -> None:
            append((kind, int(g[0]), _TID[g[1]], g[2], int(g[3], 16), int(g[4], 16), g[5],
                    line))
    return build


class _Slow:
    """casemate's ``parser.c``, character by character, from one line on.

    Parses records until the text runs out or a record ends at the end of a
    line (then the fast path takes over again). Returns what it parsed, the
    line number of the unparsed rest, the rest itself, and whether a ``!``
    (or the end of the input) stopped the log.
    """

    def __init__(self, text: str, line: int, reader: CasemateReader):
        self.s = text
        self.pos = 0
        self.line = line          # 1-based line of s[line_start]
        self.line_start = 0
        self.reader = reader
        self.exhausted = False

    # character access --------------------------------------------------------------------
    def _fill(self) -> bool:
        more = self.reader._read()
        if not more:
            self.exhausted = True
            return False
        self.s += more
        return True

    def peek(self) -> str | None:
        while self.pos >= len(self.s):
            if not self._fill():
                return None
        return self.s[self.pos]

    def next(self) -> str:
        c = self.peek()
        if c is None:
            raise self.err("reached end of file unexpectedly")
        self.pos += 1
        if c == "\n":
            self.line += 1
            self.line_start = self.pos
        return c

    def err(self, what: str) -> TraceFormatError:
        return self.reader.error(what, self.line, self.pos - self.line_start)

    def ws(self) -> None:
        while True:
            c = self.peek()
            if c is None or c not in _WS:
                return
            self.next()

    def accept(self, want: str) -> None:
        got = self.next()
        if got != want:
            raise self.err(f"expected '{want}' but got {got!r}")

    def word(self) -> str:
        self.ws()
        start = self.pos
        self.next()
        while True:
            c = self.peek()
            if c is None or c in _WS or c in "()":
                break
            if self.pos - start >= _MAX_TOKEN:
                raise self.err("word of unexpectedly long length")
            self.next()
        w = self.s[start:self.pos]
        self.ws()
        return w

    def string(self) -> str:
        self.ws()
        self.accept('"')
        start = self.pos
        while True:
            c = self.peek()
            if c is None:
                raise self.err("reached end of file unexpectedly")
            if c == '"':
                break
            if self.pos - start >= _MAX_TOKEN:
                raise self.err("str of unexpectedly long length")
            self.next()
        text = self.s[start:self.pos]
        self.accept('"')
        self.ws()
        return text

    def hexnum(self) -> int:
        w = self.word()
        digits = w[2:] if w.startswith("0x") else w
        if any(c not in "0123456789abcdefABCDEF" for c in digits):
            raise self.err(f"expected hex integer, but got '{w}'")
        return _hex(digits)

    def decimal(self) -> int:
        return _atoi(self.word())

    def enum(self, names: tuple[str, ...] | dict, what: str) -> str:
        w = self.word()
        if w not in names:
            raise self.err(f"unexpected word '{w}', expected a {what}")
        return w

    def field(self, key: str, read):  # type: ignore[no-untyped-def]
        c = self.peek()
        if c is None:
            raise self.err("reached end of file unexpectedly")
        named = c == "("
        if named:
            self.ws()
            self.accept("(")
            self.ws()
            w = self.word()
            if w != key:
                raise self.err(f"unexpected word, expected '{key}' but got {w}'")
            self.ws()
        value = read()
        self.ws()
        if named:
            self.ws()
            self.accept(")")
            self.ws()
        return value

    # records -----------------------------------------------------------------------------------
    def record(self) -> tuple:
        line = None
        self.ws()
        self.accept("(")
        self.ws()
        line = self.line
        kind_word = self.word()
        seq = self.field("id", self.decimal)
        tid = self.field("tid", self.decimal)
        if tid & _U64 >= _MAX_CPU:
            raise self.err("tid out of range")
        a: int | str | None = None
        b: int | None = None
        c: int | None = None
        if kind_word == "mem-write":
            kind = K_MEM_WRITE
            a = _MEM_ORDERS[self.field("mem-order", lambda: self.enum(_MEM_ORDERS,
                                                                      "memory_order"))]
            b = self.field("address", self.hexnum)
            c = self.field("value", self.hexnum)
        elif kind_word == "mem-read":
            kind = K_MEM_READ
            b = self.field("address", self.hexnum)
            c = self.field("value", self.hexnum)
        elif kind_word in ("mem-init", "mem-free"):
            kind = K_MEM_INIT if kind_word == "mem-init" else K_MEM_FREE
            b = self.field("address", self.hexnum)
            c = self.field("size", self.hexnum)
        elif kind_word == "mem-set":
            kind = K_MEM_SET
            b = self.field("address", self.hexnum)
            c = self.field("size", self.hexnum)
            a = self.field("value", self.hexnum)
        elif kind_word == "sysreg-write":
            kind = K_SYSREG
            a = self.field("sysreg", lambda: self.enum(SYSREGS, "sysreg"))
            c = self.field("value", self.hexnum)
        elif kind_word == "barrier":
            which = self.enum(("dsb", "isb"), "barrier_kind")
            if which == "dsb":
                kind = K_DSB
                a = self.field("kind", lambda: self.enum(_DSB_KINDS, "barrier_dxb_kind"))
            else:
                kind = K_ISB
        elif kind_word == "tlbi":
            kind = K_TLBI
            a = self.enum(TLBI_OPS, "tlbi_kind")
            if a in TLBI_WITH_VALUE:
                c = self.field("value", self.hexnum)
        elif kind_word == "hint":
            kind = K_HINT
            a = self.field("kind", lambda: self.enum(HINTS, "hint"))
            b = self.field("location", self.hexnum)
            c = self.field("value", self.hexnum)
        elif kind_word in ("lock", "trylock", "unlock"):
            kind = {"lock": K_LOCK, "trylock": K_TRYLOCK, "unlock": K_UNLOCK}[kind_word]
            b = self.field("address", self.hexnum)
        else:
            raise self.err(f"unexpected transition kind '{kind_word}'")
        src = self.field("src", self.string)
        if ":" not in src:
            raise self.err("bad src format: expected FUNC:FILE:LINENO")
        self.ws()
        self.accept(")")
        self.ws()
        return (kind, seq, tid, a, b, c, src, line)

    def run(self) -> tuple[list[tuple], int, str, bool]:
        """(records, line of the rest, the rest, whether the log ended)."""
        out: list[tuple] = []
        while True:
            self.ws()
            c = self.peek()
            if c is None:
                return out, self.line, "", True
            if c == "!":
                rest_end = self.s.find("\n", self.pos)
                while rest_end < 0 and self._fill():
                    rest_end = self.s.find("\n", self.pos)
                end = rest_end if rest_end >= 0 else len(self.s)
                self.reader._verdict(self.s[self.pos:end], self.line)
                return out, self.line, "", True
            out.append(self.record())
            # back to the fast path once a record ends a line
            if self.pos == self.line_start:
                return out, self.line, self.s[self.pos:], False


def _atoi(word: str) -> int:
    """C ``atoi``: optional spaces and sign, then leading digits; anything else gives 0."""
    text = word.lstrip(" \t\n\v\f\r")
    sign = 1
    if text[:1] in "+-" and text[:1]:
        sign = -1 if text[0] == "-" else 1
        text = text[1:]
    digits = ""
    for ch in text:
        if not ch.isdigit() or not ch.isascii():
            break
        digits += ch
    value = sign * int(digits) if digits else 0
    # atoi returns an int; the parser stores it in a u64
    value &= 0xFFFFFFFF
    if value & 0x80000000:
        value -= 1 << 32
    return value
