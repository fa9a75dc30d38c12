"""Scenarios: one stage-2 operation per JSON line, run through the model.

The input and output formats are the kernel oracle's
(``shared/conformance/oracle/FORMAT.md``): for every operation, one op line
(the input fields in input order, numbers exactly as written, ``"ret"``
appended) followed by the effect lines of what the kernel code did. The
harness rules are the oracle's too: ``init`` settings the harness refuses
give ``"ret":-22`` and no effects; one page table is live at a time; every
``init`` goes on allocating where the last table left off (one bump
allocator per run, from PA 0x40000000, never reusing a page).

Bad input (not JSON, unknown op, bad or missing field, a number that does not
fit in 64 bits, an op before ``init`` or ``init`` while one is live) raises
:class:`~ptreplay.errors.ScenarioError` with the line number.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator
from typing import Any, NamedTuple, TextIO

from ptreplay.effects import Effect, Info, effect_to_json
from ptreplay.errors import ScenarioError
from ptreplay.model import stage2
from ptreplay.model.geometry import (
    ID_AA64MMFR0_EL1_PARANGE_48,
    ID_AA64MMFR1_EL1_VMIDBITS_16,
    VTCR_EL2_SL0_MASK,
    VTCR_EL2_SL0_SHIFT,
    Granule,
    kvm_get_vtcr,
    kvm_pgd_pages,
)
from ptreplay.model.memory import (
    ORACLE_ARENA_BASE,
    ORACLE_ARENA_PAGES,
    Machine,
    Memcache,
    OracleMmOps,
    Platform,
)
from ptreplay.model.profiles import Profile
from ptreplay.model.pte import KVM_PGTABLE_S2_IDMAP, KVM_PGTABLE_S2_NOFWB
from ptreplay.model.state import check_invariants, dump_tables
from ptreplay.model.structs import EINVAL, KvmArch, KvmPgtable

__all__ = [
    "RawNumber",
    "ScenarioOp",
    "InitSettings",
    "init_settings",
    "parse_line",
    "iter_scenario",
    "ScenarioRunner",
    "run_scenario",
]

_U64_MAX = (1 << 64) - 1
_STRTOULL = re.compile(r"0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*")
_FLAG_NAMES = {"NOFWB": KVM_PGTABLE_S2_NOFWB, "IDMAP": KVM_PGTABLE_S2_IDMAP}


class RawNumber:
    """A JSON number kept as written (``0x`` strings are strings, not these)."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


class ScenarioOp:
    """One parsed input line: ``op``, its fields in input order, where it came from."""

    __slots__ = ("op", "fields", "line", "source")

    def __init__(self, op: str, fields: dict[str, Any], line: int, source: str) -> None:
        self.op = op
        self.fields = fields
        self.line = line
        self.source = source

    def error(self, what: str) -> ScenarioError:
        """A :class:`ScenarioError` for this line."""
        return ScenarioError(what, self.source, line=self.line)

    # -- typed field access ---------------------------------------------------

    def has(self, key: str) -> bool:
        """Whether the line has field ``key``."""
        return key in self.fields

    def number(self, key: str, default: int | None = None) -> int:
        """A ``u64`` field: a JSON integer, or a string as C ``strtoull(s, 0, 0)`` reads it."""
        if key not in self.fields:
            if default is None:
                raise self.error(f"{self.op}: missing field {key!r}")
            return default
        value = self.fields[key]
        if isinstance(value, RawNumber):
            text = value.text
            if not re.fullmatch(r"-?(0|[1-9][0-9]*)", text):
                raise self.error(f"{self.op}: {key}: bad number {text} (not an integer)")
            n = int(text)
        elif isinstance(value, str):
            if not _STRTOULL.fullmatch(value):
                raise self.error(f"{self.op}: {key}: bad number {value!r}")
            n = int(value, 16) if value[:2] in ("0x", "0X") else int(value, 8 if
                                                                    value[:1] == "0" else 10)
        else:
            raise self.error(f"{self.op}: {key}: expected a number, got {_json_type(value)}")
        if n < 0 or n > _U64_MAX:
            raise self.error(f"{self.op}: {key}: {n:#x} out of range (not a u64)")
        return n

    def boolean(self, key: str, default: bool) -> bool:
        """A ``true``/``false`` field."""
        value = self.fields.get(key, default)
        if not isinstance(value, bool):
            raise self.error(f"{self.op}: {key}: expected true or false, got {_json_type(value)}")
        return value

    def names(self, key: str, known: dict[str, int] | Any, what: str,
              required: bool = True) -> int:
        """An array of names, OR-ed together through ``known``."""
        if key not in self.fields:
            if required:
                raise self.error(f"{self.op}: missing field {key!r}")
            return 0
        value = self.fields[key]
        if not isinstance(value, list):
            raise self.error(f"{self.op}: {key}: expected an array of {what} names")
        bits = 0
        for name in value:
            if not isinstance(name, str) or name not in known:
                shown = name.text if isinstance(name, RawNumber) else json.dumps(name)
                raise self.error(f"{self.op}: {key}: unknown {what} {shown}"
                                 f" (known: {' '.join(known)})")
            bits |= known[name]
        return bits

    def memcache(self) -> Memcache | None:
        """The ``mc`` / ``mc_pages`` fields: NULL, a limited or an unlimited memcache."""
        if "mc" in self.fields:
            if self.fields["mc"] != "none":
                raise self.error(f"{self.op}: mc: expected \"none\"")
            return None
        if "mc_pages" in self.fields:
            return Memcache(self.number("mc_pages"))
        return Memcache()


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if value is None:
        return "null"
    if isinstance(value, RawNumber):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _echo(value: Any) -> str:
    """Compact JSON of an input value, numbers as written."""
    if isinstance(value, RawNumber):
        return value.text
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return "null"
    if isinstance(value, list):
        return "[" + ",".join(_echo(v) for v in value) + "]"
    return "{" + ",".join(f"{json.dumps(k, ensure_ascii=False)}:{_echo(v)}"
                          for k, v in value.items()) + "}"


def parse_line(text: str, line: int, source: str) -> ScenarioOp | None:
    """Parse one input line; ``None`` for blank lines and ``#`` comments."""
    stripped = text.strip()
    if not stripped or stripped.startswith("#"):
        return None
    try:
        obj = json.loads(stripped, parse_int=RawNumber, parse_float=RawNumber,
                         parse_constant=RawNumber)
    except (json.JSONDecodeError, RecursionError) as err:
        what = err.msg if isinstance(err, json.JSONDecodeError) else "nested too deeply"
        raise ScenarioError(f"not a JSON object: {what}", source, line=line) from None
    if not isinstance(obj, dict):
        raise ScenarioError("not a JSON object", source, line=line)
    op = obj.get("op")
    if op is None:
        raise ScenarioError("missing field 'op'", source, line=line)
    if not isinstance(op, str):
        raise ScenarioError("op: expected a string", source, line=line)
    return ScenarioOp(op, obj, line, source)


def iter_scenario(lines: Iterable[str], source: str) -> Iterator[ScenarioOp]:
    """The operations of a scenario, lazily, with their line numbers."""
    for n, text in enumerate(lines, 1):
        op = parse_line(text, n, source)
        if op is not None:
            yield op


class InitSettings(NamedTuple):
    """What an ``init`` line asks for, once the harness accepted it."""

    ia_bits: int
    start_level: int  #: the level the VTCR_EL2 below selects
    vtcr: int
    fwb: bool
    flags: int  #: ``KVM_PGTABLE_S2_NOFWB`` / ``KVM_PGTABLE_S2_IDMAP`` bits
    mm_cmo: bool  #: the mm_ops have the 6.1 CMO callbacks
    force_pte: bool  #: a ``force_pte_cb`` that always forces pages (6.1)
    tlb_range: bool = False  #: ``system_supports_tlb_range()`` (6.12)


def init_settings(op: ScenarioOp, profile: Profile,
                  granule: Granule | None = None) -> InitSettings | None:
    """Read an ``init`` line as the oracle harness does.

    Returns ``None`` when the harness refuses the settings itself (``ia_bits`` outside
    16..48, a start level whose SL0 encoding is not 0..2 (4K: levels 0..2,
    16K: 1..3), more than 16 pgd pages, or
    ``ia_bits <= kvm_granule_shift(start_level)``): ``ret`` -22, no kernel call.
    ``tlb_range`` is read for the 6.12 profiles only (older ones echo and ignore it).

    :raises ScenarioError: an ill-typed field.
    """
    g = granule if granule is not None else profile.granule
    ia_bits = op.number("ia_bits", 40)
    start_level = op.number("start_level") if op.has("start_level") else None
    fwb = op.boolean("fwb", False)
    flags = op.names("flags", _FLAG_NAMES, "flag", required=False)
    mm_cmo = op.boolean("mm_cmo", True) if profile.has_force_pte_cb else False
    force_pte = op.boolean("force_pte", False) if profile.has_force_pte_cb else False
    tlb_range = op.boolean("tlb_range", False) if profile.shared_walks else False
    if not profile.cmo_via_mm_ops:
        mm_cmo = False

    # The harness refuses these itself, before any kernel call.
    if not 16 <= ia_bits <= 48:
        return None
    if start_level is not None and not 0 <= g.tgran_sl0_base - start_level <= 2:
        return None
    vtcr = kvm_get_vtcr(ID_AA64MMFR0_EL1_PARANGE_48, ID_AA64MMFR1_EL1_VMIDBITS_16 << 4,
                        ia_bits, g)
    if start_level is not None:
        vtcr = (vtcr & ~VTCR_EL2_SL0_MASK) | (
            (g.tgran_sl0_base - start_level) << VTCR_EL2_SL0_SHIFT)
    level = g.tgran_sl0_base - ((vtcr & VTCR_EL2_SL0_MASK) >> VTCR_EL2_SL0_SHIFT)
    if kvm_pgd_pages(ia_bits, level, g) > 16 or ia_bits <= g.kvm_granule_shift(level):
        return None
    return InitSettings(ia_bits, level, vtcr, fwb, flags, mm_cmo, force_pte, tlb_range)


class ScenarioRunner:
    """Runs scenario operations on one model page table, like the oracle harness.

    This class runs the linux-5.13 and linux-6.1 profiles (the functions of
    :mod:`ptreplay.model.stage2`); :meth:`for_profile` picks the 6.12 runner
    (:class:`ptreplay.model.scenario612.ScenarioRunner612`) where it applies.

    :param profile: the kernel profile.
    :param granule: the build's page size (default: the profile's, 4 KiB for
        the linux-5.13/6.1 oracle).
    :param check: run the harness's invariant checks after every operation;
        violations go to :attr:`problems` (the oracle harness exits 3 on them).
    """

    #: the module with the profile's pgtable.c functions.
    s2: Any = stage2

    @staticmethod
    def for_profile(profile: Profile, *, check: bool = False) -> ScenarioRunner:
        """The runner for ``profile``'s kernel: this class, or the 6.12 one."""
        if profile.shared_walks:
            from ptreplay.model.scenario612 import ScenarioRunner612

            return ScenarioRunner612(profile, check=check)
        return ScenarioRunner(profile, check=check)

    def __init__(self, profile: Profile, *, granule: Granule | None = None,
                 check: bool = False) -> None:
        self.profile = profile
        self.granule = granule if granule is not None else profile.granule
        self.check = check
        self.pgt: KvmPgtable | None = None
        self.effects: list[Effect] = []
        self.problems: list[tuple[int, str]] = []
        self._warned_once: set[str] = set()
        self._arena_next = ORACLE_ARENA_BASE  # the harness's one bump allocator
        self._mm_ops: OracleMmOps | None = None
        self._ops: dict[str, Callable[[ScenarioOp, KvmPgtable], Any]] = {
            "map": self._map,
            "set_owner": self._set_owner,
            "unmap": self._unmap,
            "wrprotect": self._wrprotect,
            "relax_perms": self._relax_perms,
            "mkyoung": self._mkyoung,
            "mkold": self._mkold,
            "is_young": self._is_young,
            "flush": self._flush,
            "destroy": self._destroy,
            "dump": self._dump,
        }

    # -- running --------------------------------------------------------------

    def run(self, op: ScenarioOp) -> tuple[str, list[Effect]]:
        """Run one operation; returns its op line and its effects (in order).

        The effect list is reused: consume it before the next call.
        """
        self.effects.clear()
        ret = self._call(op)
        if self.check and self.pgt is not None:
            self._check(op, self.pgt)
        fields = ",".join(f"{json.dumps(k, ensure_ascii=False)}:{_echo(v)}"
                          for k, v in op.fields.items())
        line = "{" + fields + ',"ret":' + _ret(ret) + "}"
        return line, self.effects

    def _call(self, op: ScenarioOp) -> Any:
        """Run the kernel call (or harness query) of one operation; its return value."""
        if op.op == "init":
            return self._init(op)
        handler = self._ops.get(op.op)
        if handler is None:
            raise op.error(f"unknown op {op.op!r}")
        if self.pgt is None:
            raise op.error(f"{op.op} before init (no live page table)")
        return handler(op, self.pgt)

    def _check(self, op: ScenarioOp, pgt: KvmPgtable) -> None:
        """The harness's checks after an operation, into :attr:`problems`."""
        for problem in check_invariants(pgt):
            self.problems.append((op.line, problem))

    def _machine(self, settings: InitSettings) -> Machine:
        """The machine of a new table: the platform ``init`` asked for."""
        platform = Platform(granule=self.granule, fwb=settings.fwb, tlb_range=settings.tlb_range)
        m = Machine(self.profile, platform, self.effects.append)
        m.warned_once = self._warned_once  # WARN_ON_ONCE: once per process
        return m

    def _mm_ops_for(self, m: Machine, settings: InitSettings) -> OracleMmOps:
        """The harness's mm_ops, allocating where the previous table left off."""
        arena_end = ORACLE_ARENA_BASE + ORACLE_ARENA_PAGES * self.granule.page_size
        mm_ops = OracleMmOps(m, cmo=settings.mm_cmo, arena_base=self._arena_next,
                             arena_size=arena_end - self._arena_next)
        self._mm_ops = mm_ops
        return mm_ops

    def _emit(self, e: Effect) -> None:
        self.effects.append(e)

    # -- operations -----------------------------------------------------------

    def _init(self, op: ScenarioOp) -> int:
        if self.pgt is not None:
            raise op.error("init while a page table is live (destroy it first)")
        profile = self.profile
        settings = init_settings(op, profile, self.granule)
        if settings is None:
            return -EINVAL
        flags, force_pte, vtcr = settings.flags, settings.force_pte, settings.vtcr
        g = self.granule

        m = self._machine(settings)
        mm_ops = self._mm_ops_for(m, settings)
        arch = KvmArch(vtcr)
        pgt = KvmPgtable(m)
        arch.mmu.pgt = pgt
        if profile.has_force_pte_cb:  # __kvm_pgtable_stage2_init (6.1, 6.12)
            cb = (lambda addr, end, prot: True) if force_pte else None
            ret = getattr(self.s2, "__kvm_pgtable_stage2_init")(pgt, arch.mmu, mm_ops, flags, cb)
        else:
            ret = stage2.kvm_pgtable_stage2_init_flags(pgt, arch, mm_ops, flags)
        if ret == 0:
            self.pgt = pgt
            self._emit(Info(pgt.ia_bits, pgt.start_level,
                            kvm_pgd_pages(pgt.ia_bits, pgt.start_level, g), vtcr))
        return ret

    def _prot(self, op: ScenarioOp) -> int:
        return op.names("prot", self.profile.prot_names, "prot")

    def _map(self, op: ScenarioOp, pgt: KvmPgtable) -> int:
        addr, size, phys = op.number("addr"), op.number("size"), op.number("phys")
        prot = self._prot(op)
        return self.s2.kvm_pgtable_stage2_map(pgt, addr, size, phys, prot, op.memcache())

    def _set_owner(self, op: ScenarioOp, pgt: KvmPgtable) -> int:
        addr, size = op.number("addr"), op.number("size")
        owner_id = op.number("owner_id") & 0xFF  # the harness passes (u8)owner_id
        return self.s2.kvm_pgtable_stage2_set_owner(pgt, addr, size, op.memcache(), owner_id)

    def _unmap(self, op: ScenarioOp, pgt: KvmPgtable) -> int:
        return self.s2.kvm_pgtable_stage2_unmap(pgt, op.number("addr"), op.number("size"))

    def _wrprotect(self, op: ScenarioOp, pgt: KvmPgtable) -> int:
        return self.s2.kvm_pgtable_stage2_wrprotect(pgt, op.number("addr"), op.number("size"))

    def _relax_perms(self, op: ScenarioOp, pgt: KvmPgtable) -> int:
        addr = op.number("addr")
        return self.s2.kvm_pgtable_stage2_relax_perms(pgt, addr, self._prot(op))

    def _mkyoung(self, op: ScenarioOp, pgt: KvmPgtable) -> str:
        return f'"{self.s2.kvm_pgtable_stage2_mkyoung(pgt, op.number("addr")):#x}"'

    def _mkold(self, op: ScenarioOp, pgt: KvmPgtable) -> str | int:
        return f'"{self.s2.kvm_pgtable_stage2_mkold(pgt, op.number("addr")):#x}"'

    def _is_young(self, op: ScenarioOp, pgt: KvmPgtable) -> int:
        return int(self.s2.kvm_pgtable_stage2_is_young(pgt, op.number("addr")))

    def _flush(self, op: ScenarioOp, pgt: KvmPgtable) -> int:
        return self.s2.kvm_pgtable_stage2_flush(pgt, op.number("addr"), op.number("size"))

    def _destroy(self, op: ScenarioOp, pgt: KvmPgtable) -> None:
        self.s2.kvm_pgtable_stage2_destroy(pgt)
        self.pgt = None
        if self._mm_ops is not None:
            self._arena_next = self._mm_ops.next_pa
        if self.check:
            self._check(op, pgt)

    def _dump(self, op: ScenarioOp, pgt: KvmPgtable) -> None:
        self.effects.extend(dump_tables(pgt))


def _ret(ret: Any) -> str:
    if ret is None:
        return "null"
    if isinstance(ret, str):
        return ret  # already formatted (a hex string)
    return str(int(ret))


def run_scenario(lines: Iterable[str], profile: Profile, out: TextIO, *, source: str = "-",
                 check: bool = False) -> ScenarioRunner:
    """Run a scenario and write the oracle-format output to ``out``, streaming.

    Raises :class:`~ptreplay.errors.ScenarioError` at the first bad line (the
    output of the lines before it has been written).
    """
    runner = ScenarioRunner.for_profile(profile, check=check)
    write = out.write
    for op in iter_scenario(lines, source):
        line, effects = runner.run(op)
        write(line + "\n")
        if effects:
            write("\n".join(map(effect_to_json, effects)) + "\n")
    return runner
