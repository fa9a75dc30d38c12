"""Findings: what the checkers report, and the catalogue of finding kinds.

A :class:`Finding` says what went wrong (``kind``, a one-line
``explanation``), where (stage-2 root, IPA and PA ranges, table page, entry,
level) and when (event index in the input, CPU, timestamp, the operation).
``uncertain`` marks findings that depend on state the input never showed
(a trace that starts after the stage-2 already existed).

:data:`KINDS` lists every kind with its severity, its family, the rule behind
it, and the casemate-check messages it is the counterpart of. docs/checks.md
explains each one.

Findings live here (not in :mod:`ptreplay.report`) because the checkers
create them and imports point downwards; ``ptreplay.report`` re-exports them.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import NamedTuple

__all__ = ["Finding", "Kind", "KINDS", "SEVERITIES", "finding_sort_key", "kind_of"]

SEVERITIES = ("error", "warning")


class Kind(NamedTuple):
    """One kind of finding.

    :param name: the kind, as reports print it (``bbm-missing-tlbi``).
    :param severity: ``error`` (the architecture or a kernel invariant is
        broken) or ``warning`` (suspicious, or the input is inconsistent).
    :param family: ``bbm``, ``refcount``, ``ownership``, ``differential``,
        ``kernel``, ``discipline`` (casemate's software rules), ``memory``.
    :param summary: one line: what it means.
    :param rule: the Arm ARM rule or kernel invariant behind it.
    :param casemate: casemate-check messages this kind answers (may be empty).
    """

    name: str
    severity: str
    family: str
    summary: str
    rule: str
    casemate: tuple[str, ...] = ()


_D8_14_1 = "DDI 0487 J.a D8.14.1 (break-before-make when updating translation table entries)"
_TTL = ("DDI 0487 J.a D8.13 (TLB maintenance: an incorrect TTL hint need not invalidate "
        "anything); Linux commit 36e008323926 \"Don't pass a TLBI level hint when zapping "
        "table entries\"")
_REFCNT = ("pgtable.c: a table page's refcount is 1 + its entries counted by "
           "stage2_pte_is_counted() whenever no walk is in progress")

KINDS: dict[str, Kind] = {k.name: k for k in [
    # --- break-before-make (architecture) -------------------------------------------------
    Kind("bbm-valid-to-valid", "error", "bbm",
         "a live valid entry was replaced by a different valid entry without a break",
         _D8_14_1, ("BBM valid->valid",)),
    Kind("bbm-missing-tlbi", "error", "bbm",
         "an invalidated entry was made valid again (or its operation returned, or its "
         "table was freed) before a DSB; TLBI covering it; DSB sequence completed",
         _D8_14_1, ("BBM invalid unclean->valid",)),
    Kind("bbm-missing-dsb", "error", "bbm",
         "the TLBI of a break was issued before a DSB made the invalid entry visible, or "
         "no DSB ISH completed it", _D8_14_1, ("BBM invalid unclean->valid",)),
    Kind("tlbi-before-break", "error", "bbm",
         "the TLBI that should complete a break was issued before the invalid write",
         _D8_14_1, ("BBM invalid unclean->valid",)),
    Kind("tlbi-wrong-vmid", "error", "bbm",
         "the TLBI after a break invalidated another VMID than the entry's stage-2",
         _D8_14_1, ("BBM invalid unclean->valid",)),
    Kind("tlbi-wrong-ipa", "error", "bbm",
         "the TLBI after a break did not cover the IPA range of the broken entry",
         _D8_14_1, ("BBM invalid unclean->valid",)),
    Kind("tlbi-wrong-level", "error", "bbm",
         "the TLBI after a break carried a level hint (TTL) that does not match the broken "
         "entry: another level, or a hint on a table entry", _TTL,
         ("BBM invalid unclean->valid",)),
    Kind("tlbi-not-broadcast", "error", "bbm",
         "the break was completed only with non-broadcast maintenance (local TLBI or DSB NSH)",
         _D8_14_1, ("Unsupported TLBI (expected broadcast)", "Unsupported DSB NSH")),
    Kind("bbm-unclean-children", "error", "bbm",
         "a former table entry was completed or rewritten while entries of its old subtree "
         "were still invalid-but-not-TLB-clean", _D8_14_1,
         ("BBM write table descriptor with unclean children",)),
    Kind("write-under-broken-table", "error", "bbm",
         "an entry of a table was modified while the entry that unlinked that table was not "
         "TLB-clean yet", _D8_14_1, ("Wrote on a page with an unclean parent",)),
    Kind("table-freed-unclean", "error", "bbm",
         "a table page was freed, released or reused before the TLBI covering its last "
         "walk completed", _D8_14_1,
         ("cannot release table where children are still unclean",)),
    Kind("table-double-use", "error", "bbm",
         "a table page was linked while it was still reachable from another table entry "
         "(live, or unlinked but not TLB-clean)", _D8_14_1, ("double-use pte",)),
    Kind("invalid-descriptor", "error", "bbm",
         "a valid descriptor with a reserved encoding (block at level 0, 0b01 at level 3)",
         "DDI 0487 J.a D8.3 (translation table descriptor formats)",
         ("Saw invalid pte encoding",)),
    # --- refcounts and table-page lifetime (kernel invariants) -----------------------------
    Kind("refcount-leak", "error", "refcount",
         "a table page's refcount is above 1 + its counted entries after an operation (an "
         "extra get_page or a missing put_page), or a table page became unreachable, or its "
         "stage-2 was destroyed, and it was not freed",
         _REFCNT + "; every allocated table page is reachable or freed"),
    Kind("refcount-underflow", "error", "refcount",
         "a table page's refcount is below 1 + its counted entries, or a put_page "
         "dropped it below zero", _REFCNT),
    Kind("refcount-inconsistent", "warning", "refcount",
         "the count an input reports after get/put does not follow from its own get/put "
         "sequence (an event was lost or duplicated)", _REFCNT),
    Kind("refcount-non-table", "error", "refcount",
         "get_page/put_page on a page that is not a live table page",
         "pgtable.c only takes references on its own table pages"),
    Kind("double-free", "error", "refcount", "a table page was freed twice",
         "mm_ops: every page is freed once"),
    Kind("free-with-references", "error", "refcount",
         "a table page was freed while its refcount was not zero", _REFCNT),
    Kind("table-freed-while-linked", "error", "refcount",
         "a table page was freed or released while a live entry still pointed at it",
         "a table page is freed only after its parent entry was cleared",
         ("can't free location which is currently a PTE", "root does not exist")),
    Kind("write-to-non-table", "error", "refcount",
         "an entry store hit a page that is not a live table page (freed, or never allocated)",
         "pgtable.c stores only into its live table pages"),
    Kind("store-old-mismatch", "warning", "refcount",
         "a store's old value differs from what the earlier stores of the input left there",
         "an input's stores must chain"),
    # --- ownership (pKVM host stage-2 annotations) -----------------------------------------
    Kind("owned-page-mapped", "error", "ownership",
         "a page annotated as owned by a non-host owner became mapped without being given "
         "back (set_owner to 0) first",
         "pKVM: an owner annotation in the host stage-2 is given back before the page is "
         "mapped again"),
    Kind("owner-annotation-lost", "error", "ownership",
         "an owner annotation was cleared or replaced by an operation other than "
         "set_owner back to the host",
         "pKVM: only set_owner(host) ends an ownership"),
    # --- differential -----------------------------------------------------------------------
    Kind("divergence-effect", "error", "differential",
         "an observed effect differs from the model's prediction for that operation",
         "the kernel's pgtable.c and the model agree effect by effect"),
    Kind("divergence-return", "error", "differential",
         "an operation returned another value than the model predicts",
         "the kernel's pgtable.c and the model agree on return values"),
    # --- kernel signals ----------------------------------------------------------------------
    Kind("kernel-warn", "warning", "kernel", "a WARN_ON in pgtable.c fired",
         "a WARN_ON marks a caller's misuse of the page-table API"),
    Kind("harness-error", "error", "kernel",
         "the oracle harness reported misuse (store to a freed page, double free, ...)",
         "shared/conformance/oracle/FORMAT.md"),
    # --- casemate's software discipline ------------------------------------------------------
    Kind("unlocked-pte-write", "error", "discipline",
         "an entry of a live table was written without holding its root's lock",
         "casemate: a live page table is written under its root's lock",
         ("must write to pte while holding owner lock",)),
    Kind("root-without-lock", "error", "discipline",
         "an entry of a live table was written but its root was never given a lock",
         "casemate: set_root_lock before the first write",
         ("must have associated root with a lock",)),
    Kind("plain-write-without-dsb", "error", "discipline",
         "a second plain store to a live entry in one critical section without a DSB "
         "in between", "casemate: plain stores to live entries are separated by a DSB",
         ("Wrote plain without authorization",)),
    Kind("thread-owner-violation", "error", "discipline",
         "an entry owned by one thread (set_pte_thread_owner) was written or frozen by another",
         "casemate thread-owner hint",
         ("Location owned by a thread but accessed by another",
          "Cannot freeze a location that is thread-locally owned")),
    Kind("lock-misuse", "error", "discipline",
         "a lock was taken twice, released when not held, or released by another thread",
         "casemate lock model",
         ("Tried to lock a component that was alerady held",
          "Tried to reacquire lock on different thread",
          "Tried to unlock a component that was not held",
          "Tried to unlock a cpmponent that was held by another thread")),
    Kind("bad-hint", "error", "discipline",
         "a hint named a location it cannot apply to",
         "casemate hints",
         ("cannot set thread owner for uninitialised PTE", "cannot set thread owner for non PTE",
          "cannot set thread owner for non-final-level PTE",
          "cannot change owned root if already in a tree")),
    Kind("duplicate-vmid", "error", "discipline",
         "two live roots were loaded with the same VMID/ASID",
         "TLB entries are tagged by VMID/ASID: two live tables must not share one",
         ("duplicate (VM/AS)ID",)),
    Kind("root-vmid-changed", "error", "discipline",
         "a root already loaded with one VMID/ASID was loaded with another",
         "casemate: a root keeps its VMID/ASID until released",
         ("root already associated with an (VM/AS)ID",)),
    Kind("ttbr0-el2-asid", "error", "discipline",
         "TTBR0_EL2 was written with a non-zero ASID field",
         "non-VHE EL2 has no ASID: TTBR0_EL2.ASID is RES0", ("TTBR0_EL2 ASID is reserved 0",)),
    Kind("root-release-in-use", "error", "discipline",
         "a root was released while a CPU still had it loaded",
         "casemate root lifecycle", ("cannot release table still in use",)),
    Kind("uninitialised-table", "warning", "memory",
         "a page became a table (linked, or loaded as a root) without ever being initialised",
         "table pages are zeroed before use",
         ("Saw uninitialised PTE on pgtable walk", "Saw uninitialised PTE on pgtable traversal")),
    Kind("memory-reinitialised", "error", "memory",
         "memory holding live data or entries was initialised again",
         "casemate memory tracking",
         ("cannot initialise used location", "cannot initialise an already-initialised location")),
    Kind("read-mismatch", "warning", "memory",
         "a logged read returned another value than the logged stores left there",
         "casemate ghost memory", ("the ghost model detected a PTE that changed under it",)),
    Kind("unsupported-translation-config", "error", "memory",
         "VTCR_EL2/TCR_EL2 select an input size or start level that cannot be walked",
         "DDI 0487 J.a D8.2 (translation table walk configuration)",
         ("unsupported input address size", "unsupported translation table start level")),
]}

_KIND_ORDER = {name: i for i, name in enumerate(KINDS)}


def kind_of(name: str) -> Kind:
    """The :class:`Kind` called ``name``."""
    return KINDS[name]


@dataclass(frozen=True, slots=True)
class Finding:
    """One problem found in the input.

    Ranges are half-open ``(start, end)``. ``index`` is the 0-based event index
    in the input (line of an effect log, record of a casemate log, event of a
    trace); ``line`` the 1-based line in a text input. ``op`` describes the
    operation being executed (``"map addr=0x200000 size=0x1000 ..."``) and
    ``op_index`` is its event index. ``related`` lists event indexes of the
    events that explain the finding (the break, the TLBI, ...). ``src`` is the
    source location a casemate record carries.
    """

    kind: str
    explanation: str
    index: int | None = None
    root: int | None = None
    ipa: tuple[int, int] | None = None
    pa: tuple[int, int] | None = None
    table: int | None = None
    entry: int | None = None
    level: int | None = None
    cpu: int | None = None
    ts: int | None = None
    op: str | None = None
    op_index: int | None = None
    line: int | None = None
    src: str | None = None
    uncertain: bool = False
    related: tuple[int, ...] = field(default=())

    @property
    def severity(self) -> str:
        """``error`` or ``warning``, from the kind."""
        kind = KINDS.get(self.kind)
        return kind.severity if kind else "error"

    def with_(self, **changes: object) -> Finding:
        """A copy with some fields changed."""
        return replace(self, **changes)  # type: ignore[arg-type]


def finding_sort_key(f: Finding) -> tuple:
    """Deterministic report order: by event index, then kind, then location."""
    return (
        f.index if f.index is not None else 1 << 62,
        _KIND_ORDER.get(f.kind, len(_KIND_ORDER)),
        f.kind,
        f.root if f.root is not None else -1,
        f.ipa or (-1, -1),
        f.table if f.table is not None else -1,
        f.entry if f.entry is not None else -1,
        f.explanation,
    )
