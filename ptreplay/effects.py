"""The vocabulary of stage-2 page-table side effects.

One record type per effect line of the kernel oracle's log format
(``shared/conformance/oracle/FORMAT.md``): an entry store, a TLB invalidation,
a barrier, a cache-maintenance call, a table-page allocation or free, a
``get_page``/``put_page`` with the page's count after it, a ``WARN_ON`` that
fired, harness information, and (Linux 6.12) RCU events.

The model produces these records, trace decoders turn observed probes into
them, and the checkers consume them. :func:`effect_to_json` prints the exact
compact JSON line of the oracle format; :func:`effect_from_json` reads one
back. Addresses, sizes and entry values are ints here and lower-case ``0x``
hex strings in JSON; counts, levels and return codes are JSON integers.
"""

from __future__ import annotations

import json
from typing import Any, NamedTuple

__all__ = [
    "Pte",
    "Tlbi",
    "Dsb",
    "Isb",
    "Cmo",
    "Alloc",
    "AllocFail",
    "Free",
    "Get",
    "Put",
    "Warn",
    "Info",
    "Table",
    "HarnessError",
    "Rcu",
    "Effect",
    "effect_to_json",
    "effect_from_json",
]


def _h(value: int) -> str:
    """Format an address or entry value as the oracle does: ``"0x…"``, lower case."""
    return f'"{value:#x}"'


class Pte(NamedTuple):
    """A store to the 8-byte entry at physical address ``ptep``.

    ``how`` is ``None`` for ``WRITE_ONCE``/``smp_store_release`` and
    ``"cmpxchg"`` for a compare-and-exchange (6.12 shared walks); a failed
    compare has ``ok=False`` and ``expect`` the value the code expected.
    """

    ptep: int
    old: int
    new: int
    how: str | None = None
    expect: int | None = None
    ok: bool = True

    def to_json(self) -> str:
        line = f'{{"ev":"pte","ptep":{_h(self.ptep)},"old":{_h(self.old)},"new":{_h(self.new)}'
        if self.how is not None:
            line += f',"how":"{self.how}"'
            if not self.ok:
                line += f',"expect":{_h(self.expect or 0)},"ok":false'
        return line + "}"


class Tlbi(NamedTuple):
    """A TLB invalidation hypercall.

    ``kind`` is ``vmid_ipa`` (``__kvm_tlb_flush_vmid_ipa``: ``ipa``, ``level``),
    ``vmid`` (``__kvm_tlb_flush_vmid``), ``vmid_ipa_nsh`` (``ipa``, ``level``)
    or ``vmid_range`` (``ipa``, ``pages``).
    """

    kind: str
    ipa: int | None = None
    level: int | None = None
    pages: int | None = None

    def to_json(self) -> str:
        line = f'{{"ev":"tlbi","kind":"{self.kind}"'
        if self.ipa is not None:
            line += f',"ipa":{_h(self.ipa)}'
        if self.level is not None:
            line += f',"level":{self.level}'
        if self.pages is not None:
            line += f',"pages":{_h(self.pages)}'
        return line + "}"


class Dsb(NamedTuple):
    """``dsb(opt)``: ``opt`` is ``ishst``, ``ish``, ``nsh``, ..."""

    opt: str

    def to_json(self) -> str:
        return f'{{"ev":"dsb","opt":"{self.opt}"}}'


class Isb(NamedTuple):
    """``isb()``."""

    def to_json(self) -> str:
        return '{"ev":"isb"}'


class Cmo(NamedTuple):
    """Cache maintenance of ``size`` bytes at physical address ``pa``.

    ``kind`` names the kernel helper: ``__flush_dcache_area`` (5.13),
    ``dcache_clean_inval_poc`` / ``icache_inval_pou`` (the 6.1 mm_ops callbacks).
    """

    kind: str
    pa: int
    size: int

    def to_json(self) -> str:
        return f'{{"ev":"cmo","kind":"{self.kind}","pa":{_h(self.pa)},"size":{_h(self.size)}}}'


class Alloc(NamedTuple):
    """``zalloc_page`` (``size`` None: one page) or ``zalloc_pages_exact(size)``."""

    pa: int
    size: int | None = None

    def to_json(self) -> str:
        if self.size is None:
            return f'{{"ev":"alloc","pa":{_h(self.pa)}}}'
        return f'{{"ev":"alloc","pa":{_h(self.pa)},"size":{_h(self.size)}}}'


class AllocFail(NamedTuple):
    """``zalloc_page`` returned NULL (memory cache exhausted)."""

    def to_json(self) -> str:
        return '{"ev":"alloc_fail"}'


class Free(NamedTuple):
    """A page freed: after a ``put`` reached 0 (``size`` None) or ``free_pages_exact``."""

    pa: int
    size: int | None = None

    def to_json(self) -> str:
        if self.size is None:
            return f'{{"ev":"free","pa":{_h(self.pa)}}}'
        return f'{{"ev":"free","pa":{_h(self.pa)},"size":{_h(self.size)}}}'


class Get(NamedTuple):
    """``get_page`` on the table page at ``pa``; ``count`` is the refcount after."""

    pa: int
    count: int  # type: ignore[assignment]  # the oracle key; shadows tuple.count

    def to_json(self) -> str:
        return f'{{"ev":"get","pa":{_h(self.pa)},"count":{self.count}}}'


class Put(NamedTuple):
    """``put_page`` on the table page at ``pa``; ``count`` is the refcount after."""

    pa: int
    count: int  # type: ignore[assignment]  # the oracle key; shadows tuple.count

    def to_json(self) -> str:
        return f'{{"ev":"put","pa":{_h(self.pa)},"count":{self.count}}}'


class Warn(NamedTuple):
    """A ``WARN_ON(cond)`` that fired; ``cond`` is the C expression text."""

    cond: str

    def to_json(self) -> str:
        return '{"ev":"warn","cond":' + json.dumps(self.cond) + "}"


class Info(NamedTuple):
    """Harness information after a successful ``init`` (not a kernel effect)."""

    ia_bits: int
    start_level: int
    pgd_pages: int
    vtcr: int

    def to_json(self) -> str:
        return (
            f'{{"ev":"info","ia_bits":{self.ia_bits},"start_level":{self.start_level},'
            f'"pgd_pages":{self.pgd_pages},"vtcr":{_h(self.vtcr)}}}'
        )


class Table(NamedTuple):
    """One table page of a ``dump``: its non-zero ``entries`` as (index, value)."""

    pa: int
    level: int
    refcount: int
    entries: tuple[tuple[int, int], ...]

    def to_json(self) -> str:
        entries = ",".join(f"[{i},{_h(v)}]" for i, v in self.entries)
        return (
            f'{{"ev":"table","pa":{_h(self.pa)},"level":{self.level},'
            f'"refcount":{self.refcount},"entries":[{entries}]}}'
        )


class HarnessError(NamedTuple):
    """Misuse detected by the harness (store to a freed page, double free, ...)."""

    what: str
    pa: int

    def to_json(self) -> str:
        return '{"ev":"error","what":' + json.dumps(self.what) + f',"pa":{_h(self.pa)}}}'


class Rcu(NamedTuple):
    """An RCU event (6.12): ``read_lock``, ``read_unlock``, ``call_rcu``, ``callback``."""

    kind: str
    fn: str | None = None
    pa: int | None = None
    level: int | None = None

    def to_json(self) -> str:
        line = f'{{"ev":"rcu","kind":"{self.kind}"'
        if self.fn is not None:
            line += f',"fn":"{self.fn}"'
        if self.pa is not None:
            line += f',"pa":{_h(self.pa)}'
        if self.level is not None:
            line += f',"level":{self.level}'
        return line + "}"


Effect = (
    Pte
    | Tlbi
    | Dsb
    | Isb
    | Cmo
    | Alloc
    | AllocFail
    | Free
    | Get
    | Put
    | Warn
    | Info
    | Table
    | HarnessError
    | Rcu
)


def effect_to_json(e: Effect) -> str:
    """Return the compact JSON line of one effect, keys in the oracle's order."""
    return e.to_json()


def _num(obj: dict[str, Any], key: str) -> int:
    """Read a hex-string or integer field of an effect line."""
    value = obj[key]
    if isinstance(value, bool):
        raise ValueError(f"{key}: expected a number")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        return int(value, 0)
    raise ValueError(f"{key}: expected a number")


def _opt(obj: dict[str, Any], key: str) -> int | None:
    return _num(obj, key) if key in obj else None


def effect_from_json(obj: dict[str, Any]) -> Effect:
    """Build the effect record of one parsed ``{"ev": ...}`` line.

    Raises ``KeyError`` or ``ValueError`` for a malformed line; callers turn
    those into an :class:`~ptreplay.errors.InputError` with the line number.
    """
    ev = obj["ev"]
    if ev == "pte":
        how = obj.get("how")
        ok = obj.get("ok", True)
        return Pte(
            _num(obj, "ptep"),
            _num(obj, "old"),
            _num(obj, "new"),
            how,
            _opt(obj, "expect"),
            bool(ok),
        )
    if ev == "get":
        return Get(_num(obj, "pa"), int(obj["count"]))
    if ev == "put":
        return Put(_num(obj, "pa"), int(obj["count"]))
    if ev == "dsb":
        return Dsb(str(obj["opt"]))
    if ev == "isb":
        return Isb()
    if ev == "tlbi":
        level = obj.get("level")
        return Tlbi(
            str(obj["kind"]),
            _opt(obj, "ipa"),
            None if level is None else int(level),
            _opt(obj, "pages"),
        )
    if ev == "cmo":
        return Cmo(str(obj["kind"]), _num(obj, "pa"), _num(obj, "size"))
    if ev == "alloc":
        return Alloc(_num(obj, "pa"), _opt(obj, "size"))
    if ev == "alloc_fail":
        return AllocFail()
    if ev == "free":
        return Free(_num(obj, "pa"), _opt(obj, "size"))
    if ev == "warn":
        return Warn(str(obj["cond"]))
    if ev == "info":
        return Info(
            int(obj["ia_bits"]), int(obj["start_level"]), int(obj["pgd_pages"]), _num(obj, "vtcr")
        )
    if ev == "table":
        entries = tuple(
            (int(i), int(v, 0) if isinstance(v, str) else int(v)) for i, v in obj["entries"]
        )
        return Table(_num(obj, "pa"), int(obj["level"]), int(obj["refcount"]), entries)
    if ev == "error":
        return HarnessError(str(obj["what"]), _num(obj, "pa"))
    if ev == "rcu":
        level = obj.get("level")
        return Rcu(
            str(obj["kind"]), obj.get("fn"), _opt(obj, "pa"), None if level is None else int(level)
        )
    raise ValueError(f"unknown effect {ev!r}")
