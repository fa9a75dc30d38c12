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
from ptreplay.synth.calls import Call
from ptreplay.synth.driver import OpResult, Root
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
        "double-put", "mm", "refcount-underflow",
        ("refcount-underflow", "refcount-non-table", "double-free"),
        "put_page is called twice on a table page that is being freed (e.g. both in the "
        "walker and in a helper), dropping its refcount below zero (a use-after-free in a "
        "real kernel)",
        "two kvm_s2_put_page events on the table page's own address, the second one after "
        "the first freed it"),
    InjectionKind(
        "missing-tlbi", "trace", "bbm-missing-tlbi", ("bbm-missing-tlbi", "divergence-effect"),
        "the TLB invalidation after an entry was invalidated is missing (break-before-make "
        "without the TLBI), so stale translations survive",
        "an entry is cleared (kvm_s2_put_page / the next store follow) with no "
        "__kvm_tlb_flush_vmid_ipa (or __kvm_tlb_flush_vmid) between the break and what "
        "comes next",
        needs_vhe=True),
    InjectionKind(
        "wrong-tlbi-level", "trace", "tlbi-wrong-level", ("tlbi-wrong-level", "divergence-effect"),
        "the TLB invalidation after a leaf was invalidated passes the wrong level hint "
        "(TTL), which the architecture allows to invalidate nothing",
        "a __kvm_tlb_flush_vmid_ipa whose level is not the level of the entry it follows",
        needs_vhe=True),
    InjectionKind(
        "missing-invalid-write", "trace", "bbm-valid-to-valid",
        ("bbm-valid-to-valid", "divergence-effect"),
        "break-before-make without the break: a valid entry is replaced by another valid "
        "entry with no invalid write in between",
        "a ptreplay:stage2_pte_store from a valid old value to a different valid new value "
        "(the TLBI that should follow the break still fires)",
        needs_pte_events=True),
    InjectionKind(
        "missing-cmo", "trace", "divergence-effect", ("divergence-effect",),
        "the data-cache clean to PoC of a guest page is missing before it is mapped (or "
        "after it is unmapped) on a machine without FWB",
        "no clean_dcache_guest_page (5.13: __flush_dcache_area) where the kernel makes one"),
    InjectionKind(
        "wrong-ret", "trace", "divergence-return", ("divergence-return",),
        "a stage-2 call returns another value than the one its code computes (an error "
        "for a success, the new PTE instead of the old one from mkold, ...)",
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


def _valid(pte: int) -> bool:
    return bool(pte & 1)


class Planter:
    """Counts the candidate places of one kind and plants the bug at the ``target``-th.

    :param kind: what to plant.
    :param target: which candidate (0-based); ``None`` only counts.
    :param choice: a number in [0, 1) the kind may use to choose how (map or unmap for
        ``lost-owner``), fixed by the seed.
    """

    def __init__(self, kind: InjectionKind, target: int | None = None,
                 choice: float = 0.0) -> None:
        self.kind = kind
        self.name = kind.name
        self.target = target
        self.choice = choice
        #: candidates seen so far.
        self.count = 0
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
        broken = False  # an entry was invalidated earlier in this call
        for i, s in enumerate(seen):
            e = s.effect
            t = type(e)
            if t is Pte:
                if name == "missing-invalid-write" and _valid(e.old) and e.new == 0:
                    j = next((k for k in range(i + 1, len(seen)) if type(seen[k].effect) is Pte
                              and seen[k].effect.ptep == e.ptep), None)
                    if j is not None and _valid(seen[j].effect.new) and self._hit():
                        make = seen[j].effect
                        seen[j] = Seen(Pte(make.ptep, e.old, make.new), planted=True)
                        seen[i] = Seen(None)
                        self._plant(ptep=e.ptep, old=e.old, new=make.new,
                                    removed={"ptep": e.ptep, "old": e.old, "new": 0},
                                    what="the invalid write of a break-before-make is missing")
                        return
                if _valid(e.old) and not _valid(e.new):
                    broken = True
            elif t is Tlbi and broken:
                if name == "missing-tlbi" and e.kind in ("vmid_ipa", "vmid") and self._hit():
                    seen[i] = Seen(None, planted=True)
                    self._plant(ipa=e.ipa, level=e.level, tlbi=e.kind,
                                removed={"kind": e.kind, "ipa": e.ipa, "level": e.level},
                                what="the TLB invalidation after a break is missing")
                    return
                if (name == "wrong-tlbi-level" and e.kind == "vmid_ipa" and e.level
                        and e.level >= 1 and self._hit()):
                    level = e.level - 1 if e.level == 3 else e.level + 1
                    seen[i] = Seen(Tlbi("vmid_ipa", e.ipa, level), planted=True)
                    self._plant(ipa=e.ipa, level=e.level, wrong_level=level,
                                what=f"the TLBI level hint is {level}, the entry's level is "
                                     f"{e.level}")
                    return
            elif t is Cmo and name == "missing-cmo" and e.kind != "icache_inval_pou":
                if self._hit():
                    seen[i] = Seen(None, planted=True)
                    self._plant(va=e.pa, size=e.size, cmo=e.kind,
                                removed={"kind": e.kind, "va": e.pa, "size": e.size},
                                what="the data-cache clean of a guest page is missing")
                    return

    def _wrong_ret(self, call: Call, result: OpResult) -> None:
        ret = result.ret
        if call.op in ("init", "destroy") or ret is None:
            return
        if call.op in ("mkyoung", "mkold"):
            if not ret:
                return
            wrong = ret ^ (1 << 10)  # the AF bit: the new PTE instead of the old
        elif call.op == "is_young":
            wrong = 1 - ret
        else:
            wrong = -11 if ret == 0 else 0  # -EAGAIN for a success, 0 for an error
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
        self._plant(ipa=page, owner_id=owner, expected=expected,
                    what=f"{call.op} over a page owned by owner {owner} without set_owner(0) "
                         "first")
