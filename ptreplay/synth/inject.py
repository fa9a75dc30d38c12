"""Injected bugs: one known bug planted at one place of a synthetic trace.

Each :class:`InjectionKind` is a bug a kernel developer could make in
pgtable.c or its callers, and says how it shows in a trace and which
finding a checker should report for it. Kinds act at one of three levels:

* ``mm`` — the kernel really does something else at one mm_ops call (skips
  a ``put_page``, calls ``get_page`` or ``put_page`` twice): the model's
  state follows the bug, so everything after it in the trace is what the
  buggy kernel would do;
* ``trace`` — a call's effects differ where the difference does not change
  page-table state (a TLB invalidation left out or with a wrong level hint,
  an entry store without its break, a cache clean left out, a changed return
  value);
* ``workload`` — the caller misuses the API (maps or unmaps a page the pKVM
  host stage-2 had annotated as owned by another owner, without giving it
  back first).

A candidate place is one where the change is a real bug that the trace
proves: a TLBI left out must be the only one covering its (leaf) break, a
wrong level hint must leave its break uncovered, a removed invalid write must
be one the change needs (:mod:`ptreplay.synth.breaks` works these out from
the architecture's rules), a changed return value must not be one hardware
access-flag management could explain.

:class:`Planter` counts the candidate places of a kind as the workload runs
(the hooks below are called from the recorder, the generator and the
workload); ``ptreplay gen`` runs the workload once to count them, picks one
at random from the seed, and runs it again planting the bug there. The
result describes what was planted (:meth:`Planter.take`); the generator adds
where it ended up in the trace and writes the sidecar.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ptreplay.effects import Cmo, Pte, Tlbi
from ptreplay.synth.breaks import Break, CallBreaks, TableGeometry, needs_bbm
from ptreplay.synth.calls import Call
from ptreplay.synth.driver import OpResult, Root
from ptreplay.synth.kernel import LINEAR_OFFSET
from ptreplay.synth.recorder import Seen

__all__ = ["InjectionKind", "KINDS", "Planter"]


@dataclass(frozen=True)
class InjectionKind:
    """One kind of injected bug.

    :param name: the ``--inject`` name.
    :param level: ``mm``, ``trace`` or ``workload`` (see the module docstring).
    :param expected: the finding kind a checker should report (docs/checks.md names).
    :param accepted: every finding kind that reports this bug correctly.
    :param summary: what the bug is, in one sentence.
    :param shows: what it looks like in the trace.
    :param needs_vhe: only visible where the TLB helpers are (VHE).
    :param needs_pte_events: only visible with the entry-store instrumentation events.
    :param needs_host: needs a pKVM host stage-2 in the workload.
    """

    name: str
    level: str
    expected: str
    accepted: tuple[str, ...]
    summary: str
    shows: str
    needs_vhe: bool = False
    needs_pte_events: bool = False
    needs_host: bool = False


KINDS: dict[str, InjectionKind] = {k.name: k for k in [
    InjectionKind(
        "leaked-table", "mm", "refcount-leak", ("refcount-leak",),
        "the last put_page of a table page is missing (e.g. stage2_unmap_walker forgets "
        "mm_ops->put_page(childp) once the table is empty), so the page is never freed",
        "the table's parent entry is cleared and put, but the kvm_s2_put_page of the table "
        "page itself that would free it never fires; the page is never seen again"),
    InjectionKind(
        "extra-get", "mm", "refcount-leak", ("refcount-leak",),
        "get_page is called twice for one new entry of a table page, so its refcount stays "
        "one too high and the table is never freed",
        "two kvm_host_get_page events with the same entry address in one map; later unmaps "
        "see page_count() > 1 for the emptied table and leave it linked; destroy leaves it "
        "allocated"),
    InjectionKind(
        "double-put", "mm", "refcount-non-table", ("refcount-non-table",),
        "put_page is called twice on a table page that is being freed (e.g. both in the "
        "walker and in a helper): the first put frees the page, the second is a put on a "
        "freed page (a use-after-free in a real kernel)",
        "two kvm_s2_put_page events on the table page's own address, the second one after "
        "the first freed it"),
    InjectionKind(
        "missing-tlbi", "trace", "bbm-missing-tlbi", ("bbm-missing-tlbi",),
        "the TLB invalidation after an entry was invalidated is missing (break-before-make "
        "without the TLBI), so stale translations survive; only where no other TLBI of the "
        "same call covers the entry (a table zap's TLBI at the same IPA would)",
        "a leaf entry is cleared (kvm_s2_put_page / the next store follow) with no "
        "__kvm_tlb_flush_vmid_ipa (or __kvm_tlb_flush_vmid) covering it before the call "
        "returns",
        needs_vhe=True),
    InjectionKind(
        "wrong-tlbi-level", "trace", "tlbi-wrong-level", ("tlbi-wrong-level",),
        "the TLB invalidation after a leaf was invalidated passes the wrong level hint "
        "(TTL), which the architecture allows to invalidate nothing; only where no other "
        "TLBI of the same call covers the leaf",
        "a __kvm_tlb_flush_vmid_ipa whose level is not the level of the entry it follows",
        needs_vhe=True),
    InjectionKind(
        "missing-invalid-write", "trace", "bbm-valid-to-valid", ("bbm-valid-to-valid",),
        "break-before-make without the break: a valid entry is replaced by another valid "
        "entry with no invalid write in between, where the change needs the break (output "
        "address, block size, memory type; not only permissions or the Access flag)",
        "a ptreplay:stage2_pte_store from a valid old value to a different valid new value "
        "(the TLBI that should follow the break still fires)",
        needs_pte_events=True),
    InjectionKind(
        "missing-cmo", "trace", "divergence-effect", ("divergence-effect",),
        "the data-cache clean to PoC of a guest page is missing before it is mapped (or "
        "after it is unmapped) on a machine without FWB",
        "no clean_dcache_guest_page (5.13: __flush_dcache_area) where the kernel makes one; "
        "no checker rule is about cache maintenance, so only the replay's comparison sees it"),
    InjectionKind(
        "wrong-ret", "trace", "divergence-return", ("divergence-return",),
        "a stage-2 call returns another value than the one its code computes (an error "
        "for a success, the new PTE instead of the old one from mkold, ...); with hardware "
        "AF management never a change the hardware could explain (an AF set behind the "
        "kernel's back)",
        "the return probe's ret / pte differs from what the call did"),
    InjectionKind(
        "lost-owner", "workload", "owned-page-mapped",
        ("owned-page-mapped", "owner-annotation-lost"),
        "the pKVM host stage-2 maps or unmaps a page annotated as owned by another owner "
        "(set_owner) without giving it back to the host first, losing the annotation",
        "a kvm_pgtable_stage2_map (identity map) or kvm_pgtable_stage2_unmap over a page "
        "whose entry holds a non-zero owner id, with no set_owner(..., 0) before it",
        needs_host=True),
]}


_AF = 1 << 10
_EAGAIN, _ENOMEM = -11, -12


def _break_details(b: Break, n: int) -> dict[str, Any]:
    """Where the break left without its TLB invalidation is (for the sidecar)."""
    return {"break": {"ptep": b.ptep, "old": b.old, "level": b.level, "ipa": [b.lo, b.hi]},
            "breaks_left": n}


class Planter:
    """Counts the candidate places of one kind and plants the bug at the ``target``-th.

    :param kind: what to plant.
    :param target: which candidate (0-based); ``None`` only counts.
    :param choice: a number in [0, 1) the kind may use to choose how (map or unmap for
        ``lost-owner``), fixed by the seed.
    :param hw_af: the platform has hardware access-flag management (``wrong-ret`` then
        avoids changes the hardware could have made).
    :param no_hint: TLBI ``level`` values that carry no level hint (the profile's).
    """

    def __init__(self, kind: InjectionKind, target: int | None = None,
                 choice: float = 0.0, *, hw_af: bool = True,
                 no_hint: frozenset[int] = frozenset({0})) -> None:
        self.kind = kind
        self.hw_af = hw_af
        self.no_hint = no_hint
        self._geometry = TableGeometry(LINEAR_OFFSET)
        self.name = kind.name
        self.target = target
        self.choice = choice
        #: candidates seen so far.
        self.count = 0
        #: candidates of the whole workload (from the counting run), when known.
        self.total: int | None = None
        #: what was planted (once it has been).
        self.planted: dict[str, Any] | None = None
        self._fresh: dict[str, Any] | None = None

    def _hit(self) -> bool:
        i = self.count
        self.count += 1
        return self.target is not None and i == self.target and self.planted is None

    def _plant(self, **details: Any) -> None:
        details.setdefault("expected", self.kind.expected)
        self.planted = self._fresh = details

    def take(self) -> dict[str, Any] | None:
        """What was planted during the call that just ran (``None`` if nothing)."""
        fresh, self._fresh = self._fresh, None
        return fresh

    # -- mm level (RecordingMmOps hooks) -----------------------------------------------

    def on_get(self, addr: int, page: int, refcount: int, is_pgd: bool) -> int:
        """``get_page``: ``extra-get`` calls it twice at its target."""
        if self.name == "extra-get" and refcount >= 1 and not is_pgd and self._hit():
            self._plant(table=page, ptep=addr, what="get_page called twice")
            return 2
        return 1

    def on_put(self, addr: int, page: int, refcount: int, is_pgd: bool) -> int:
        """``put_page``: ``leaked-table`` skips, ``double-put`` repeats, the put that frees
        a (non-pgd) table page."""
        if self.name in ("leaked-table", "double-put") and refcount == 1 and not is_pgd \
                and self._hit():
            if self.name == "leaked-table":
                self._plant(table=page, ptep=addr, what="the put_page that frees the table "
                                                        "page is missing")
                return 0
            self._plant(table=page, ptep=addr, what="put_page called again on the table page "
                                                    "it just freed")
            return 2
        return 1

    # -- trace level (after each call) ------------------------------------------------

    def on_call(self, call: Call, root: Root, result: OpResult) -> None:
        """Look at one call's effects; plant a trace-level bug there if it is the target."""
        name = self.name
        if self.kind.level != "trace":
            return
        seen = result.seen
        if name == "wrong-ret":
            self._wrong_ret(call, result)
            return
        if name == "missing-cmo":
            self._missing_cmo(seen)
            return
        geometry = self._geometry
        geometry.add_root(root.id, root.pgd, root.ia_bits, root.start_level)
        if not any(type(s.effect) is Pte for s in seen):
            return
        calls = CallBreaks([s.effect for s in seen], geometry, self.no_hint)
        if name == "missing-invalid-write":
            self._missing_invalid_write(seen, calls)
        elif name == "missing-tlbi":
            self._missing_tlbi(seen, calls)
        elif name == "wrong-tlbi-level":
            self._wrong_tlbi_level(seen, calls)

    def _missing_tlbi(self, seen: list[Seen], calls: CallBreaks) -> None:
        """A TLBI that is the only one covering the (leaf) breaks it completes."""
        for pos, t in calls.tlbis.items():
            if t.kind not in ("vmid_ipa", "vmid"):
                continue
            left = calls.sole_cover(pos)
            if left and self._hit():
                seen[pos] = Seen(None, planted=True)
                b = left[0]
                self._plant(ipa=t.ipa if t.ipa is not None else b.lo, level=t.level,
                            tlbi=t.kind, removed={"kind": t.kind, "ipa": t.ipa, "level": t.level},
                            **_break_details(b, len(left)),
                            what="the TLB invalidation after a break is missing: no other TLBI "
                                 "of the call covers the invalidated entry")
                return

    def _wrong_tlbi_level(self, seen: list[Seen], calls: CallBreaks) -> None:
        """A by-IPA TLBI with a level hint whose wrong hint leaves its break uncovered."""
        for pos, t in calls.tlbis.items():
            if t.kind != "vmid_ipa" or not t.level or t.level in self.no_hint:
                continue
            level = t.level - 1 if t.level == 3 else t.level + 1
            left = calls.uncovered_by_level(pos, level)
            if left and self._hit():
                seen[pos] = Seen(Tlbi("vmid_ipa", t.ipa, level), planted=True)
                self._plant(ipa=t.ipa, level=t.level, wrong_level=level,
                            **_break_details(left[0], len(left)),
                            what=f"the TLBI level hint is {level}, the entry's level is "
                                 f"{t.level}")
                return

    def _missing_invalid_write(self, seen: list[Seen], calls: CallBreaks) -> None:
        """A break whose make changes what needs break-before-make (not only permissions
        or the Access flag)."""
        for b in calls.breaks:
            i = b.pos
            j = next((k for k in range(i + 1, len(seen)) if type(seen[k].effect) is Pte
                      and seen[k].effect.ptep == b.ptep), None)
            if j is None:
                continue
            make = seen[j].effect
            if not make.new & 1 or not needs_bbm(b.old, make.new, b.level):
                continue
            if self._hit():
                seen[j] = Seen(Pte(make.ptep, b.old, make.new), planted=True)
                seen[i] = Seen(None)
                self._plant(ptep=b.ptep, old=b.old, new=make.new,
                            removed={"ptep": b.ptep, "old": b.old, "new": 0},
                            level=b.level, ipa=b.lo,
                            what="the invalid write of a break-before-make is missing")
                return

    def _missing_cmo(self, seen: list[Seen]) -> None:
        for i, s in enumerate(seen):
            e = s.effect
            if type(e) is Cmo and e.kind != "icache_inval_pou" and self._hit():
                seen[i] = Seen(None, planted=True)
                self._plant(va=e.pa, size=e.size, cmo=e.kind,
                            removed={"kind": e.kind, "va": e.pa, "size": e.size},
                            what="the data-cache clean of a guest page is missing")
                return

    def _wrong_ret(self, call: Call, result: OpResult) -> None:
        """A changed return value the replay cannot explain: with hardware AF management
        the CPU may set an entry's AF behind the kernel's back, so a return that differs
        only by AF being set (mkold/mkyoung's old entry, is_young, a map's -EAGAIN on an
        entry that only lacked AF) is not a divergence; those are not chosen."""
        ret = result.ret
        if call.op in ("init", "destroy") or ret is None:
            return
        if call.op in ("mkyoung", "mkold"):
            if not ret or (self.hw_af and not ret & _AF):
                return
            wrong = ret ^ _AF  # the new PTE instead of the old one
        elif call.op == "is_young":
            if self.hw_af and not ret:
                return
            wrong = 1 - ret
        elif ret == 0:
            # -EAGAIN for a success; a map's -EAGAIN is what the kernel returns for an
            # entry that is already there, so a map says -ENOMEM
            wrong = _ENOMEM if call.op == "map" else _EAGAIN
        else:
            wrong = 0  # success for an error
        if self._hit():
            result.ret = wrong
            result.ret_planted = True
            self._plant(ret=ret, wrong_ret=wrong,
                        what=f"{call.op} returns {wrong} where its code returns {ret}")

    # -- workload level (the random workload asks) -------------------------------------

    def violate_owner(self) -> bool:
        """``lost-owner``: the workload has an owned page it could misuse now; plant here?"""
        return self.name == "lost-owner" and self._hit()

    def planted_call(self, call: Call, page: int, owner: int) -> None:
        """Record the misusing call the workload made (``lost-owner``)."""
        expected = "owned-page-mapped" if call.op == "map" else "owner-annotation-lost"
        self._plant(ipa=page, owner_id=owner, expected=expected, accepted=[expected],
                    what=f"{call.op} over a page owned by owner {owner} without set_owner(0) "
                         "first")
