"""Runs stage-2 calls through the model, one machine per root, recording what probes see.

:class:`Stage2Driver` holds the stage-2 roots of a synthetic host: each is a
model :class:`~ptreplay.model.structs.KvmPgtable` on its own
:class:`~ptreplay.model.memory.Machine` (the platform, e.g. FWB, can differ
per root in a scenario) with a :class:`~ptreplay.synth.recorder.RecordingMmOps`;
all roots share one page allocator (their table pages never collide, and a
page one root freed may become another's) and one
:class:`~ptreplay.synth.recorder.Recorder`. :meth:`Stage2Driver.run` calls the
profile's pgtable.c function for a :class:`~ptreplay.synth.calls.Call` and
returns its return value and the :class:`~ptreplay.synth.recorder.Seen`
records of what it did.

The kernel objects of each root get addresses a real kernel would show: the
``struct kvm`` (vmalloc), ``&kvm->arch.mmu``, the ``struct kvm_pgtable``
(a kmalloc object in the linear map).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from ptreplay.model import stage2
from ptreplay.model.geometry import GRANULE_4K, VTCR_EL2_IPA, vtcr_start_level
from ptreplay.model.memory import Machine, Memcache, Platform
from ptreplay.model.profiles import Profile
from ptreplay.model.structs import KvmArch, KvmPgtable
from ptreplay.synth.calls import Call
from ptreplay.synth.kernel import LINEAR_OFFSET
from ptreplay.synth.memory import PageAllocator, SlabAllocator
from ptreplay.synth.recorder import MmHooks, Recorder, RecordingMmOps, Seen

__all__ = ["Root", "OpResult", "Stage2Driver", "VMALLOC_KVM"]

#: where ``struct kvm`` objects live (vmalloc, as ``kvm_arch_alloc_vm`` gives them).
VMALLOC_KVM = 0xFFFF800008045000


@dataclass(slots=True, eq=False)
class Root:
    """One stage-2 page table of the synthetic host.

    :param id: the driver's id.
    :param kvm: ``struct kvm *`` (for a pKVM host stage-2: the ``host_mmu`` object).
    :param mmu: ``struct kvm_s2_mmu *``.
    :param pgt_ptr: ``struct kvm_pgtable *``.
    :param host: a pKVM host stage-2 (identity map, owner annotations).
    :param fwb: the platform's stage-2 FWB for this root.
    """

    id: int
    kvm: int
    mmu: int
    pgt_ptr: int
    host: bool
    machine: Machine
    mm_ops: RecordingMmOps
    pgt: KvmPgtable | None = None
    vtcr: int = 0
    live: bool = False

    @property
    def pgd(self) -> int:
        """Kernel VA of the pgd (0 before init / after destroy)."""
        return self.pgt.pgd or 0 if self.pgt is not None else 0

    @property
    def ia_bits(self) -> int:
        """``pgt->ia_bits`` as the probes read it (0 before init)."""
        return self.pgt.ia_bits if self.pgt is not None else 0

    @property
    def start_level(self) -> int:
        """``pgt->start_level`` as the probes read it (0 before init)."""
        return self.pgt.start_level if self.pgt is not None else 0


@dataclass(slots=True)
class OpResult:
    """What one call did: its return value (``None`` for void) and the probe-visible effects.

    ``ret_planted``: an injection changed the return value.
    """

    ret: int | None
    seen: list[Seen]
    ret_planted: bool = False


class Stage2Driver:
    """The synthetic host's stage-2 roots (see the module docstring).

    :param profile: the model profile (linux-6.1, linux-5.13).
    :param rng: the random source for addresses (seeded by the caller).
    :param hooks: an injection's mm_ops hooks, or ``None``.
    :param pages: where table pages come from (default: a random, reusing
        :class:`~ptreplay.synth.memory.PageAllocator`).
    """

    def __init__(self, profile: Profile, rng: random.Random,
                 hooks: MmHooks | None = None, pages: PageAllocator | None = None) -> None:
        self.profile = profile
        self.rng = rng
        self.hooks = hooks
        self.recorder = Recorder(LINEAR_OFFSET)
        self.pages = pages if pages is not None else PageAllocator(rng)
        self.objects = SlabAllocator(rng)
        self.roots: dict[int, Root] = {}
        self._next_kvm = VMALLOC_KVM
        self._warned_once: set[str] = set()

    # -- roots ------------------------------------------------------------------

    def new_root(self, *, host: bool = False, fwb: bool = False, mm_cmo: bool = True,
                 kvm_mmu_offset: int = 0x9C8) -> Root:
        """Make the kernel objects of a new stage-2 (before its init call)."""
        m = Machine(self.profile, Platform(granule=GRANULE_4K, fwb=fwb),
                    self.recorder.model_effect, linear_offset=LINEAR_OFFSET)
        m.warned_once = self._warned_once
        mm_ops = RecordingMmOps(m, self.recorder, self.pages,
                                cmo=mm_cmo and self.profile.cmo_via_mm_ops, hooks=self.hooks)
        kvm = self._next_kvm
        self._next_kvm += 0x8000 + 0x1000 * self.rng.randrange(8)
        pgt_ptr = self.objects.alloc(0x80) + LINEAR_OFFSET
        root = Root(len(self.roots), kvm, kvm + kvm_mmu_offset, pgt_ptr, host, m, mm_ops)
        self.roots[root.id] = root
        return root

    def memcache_ptr(self) -> int:
        """Address of a memory cache object (a vCPU's ``mmu_page_cache``, a stack cache)."""
        return self.objects.alloc(0x20) + LINEAR_OFFSET

    def object_ptr(self, align: int = 0x80) -> int:
        """Address of some other kernel object in the linear map (a memslot)."""
        return self.objects.alloc(align) + LINEAR_OFFSET

    # -- calls --------------------------------------------------------------------

    def run(self, call: Call) -> OpResult:
        """Make one call on the model; returns its result and what the probes saw."""
        seen: list[Seen] = []
        self.recorder.seen = seen
        root = self.roots[call.root]
        ret = getattr(self, "_" + call.op)(root, call)
        return OpResult(ret, seen)

    def _init(self, root: Root, call: Call) -> int:
        a = call.args
        vtcr = a["vtcr"]
        arch = KvmArch(vtcr)
        pgt = KvmPgtable(root.machine)
        arch.mmu.pgt = pgt
        root.vtcr = vtcr
        if self.profile.has_force_pte_cb:
            cb = (lambda addr, end, prot: True) if a.get("force_pte") else None
            init = getattr(stage2, "__kvm_pgtable_stage2_init")
            ret = init(pgt, arch.mmu, root.mm_ops, a.get("flags", 0), cb)
        else:
            ret = stage2.kvm_pgtable_stage2_init_flags(pgt, arch, root.mm_ops, a.get("flags", 0))
        if ret == 0:
            root.pgt = pgt
            root.live = True
        return ret

    @staticmethod
    def _mc(call: Call) -> Memcache | None:
        return Memcache(call.mc_limit) if call.mc else None

    def _map(self, root: Root, call: Call) -> int:
        a = call.args
        assert root.pgt is not None
        return stage2.kvm_pgtable_stage2_map(root.pgt, a["addr"], a["size"], a["phys"],
                                             a["prot"], self._mc(call))

    def _set_owner(self, root: Root, call: Call) -> int:
        a = call.args
        assert root.pgt is not None
        return stage2.kvm_pgtable_stage2_set_owner(root.pgt, a["addr"], a["size"],
                                                   self._mc(call), a["owner_id"] & 0xFF)

    def _unmap(self, root: Root, call: Call) -> int:
        assert root.pgt is not None
        return stage2.kvm_pgtable_stage2_unmap(root.pgt, call.args["addr"], call.args["size"])

    def _wrprotect(self, root: Root, call: Call) -> int:
        assert root.pgt is not None
        return stage2.kvm_pgtable_stage2_wrprotect(root.pgt, call.args["addr"],
                                                   call.args["size"])

    def _relax_perms(self, root: Root, call: Call) -> int:
        assert root.pgt is not None
        return stage2.kvm_pgtable_stage2_relax_perms(root.pgt, call.args["addr"],
                                                     call.args["prot"])

    def _mkyoung(self, root: Root, call: Call) -> int:
        assert root.pgt is not None
        return stage2.kvm_pgtable_stage2_mkyoung(root.pgt, call.args["addr"])

    def _mkold(self, root: Root, call: Call) -> int:
        assert root.pgt is not None
        return stage2.kvm_pgtable_stage2_mkold(root.pgt, call.args["addr"])

    def _is_young(self, root: Root, call: Call) -> int:
        assert root.pgt is not None
        return int(stage2.kvm_pgtable_stage2_is_young(root.pgt, call.args["addr"]))

    def _flush(self, root: Root, call: Call) -> int:
        assert root.pgt is not None
        return stage2.kvm_pgtable_stage2_flush(root.pgt, call.args["addr"], call.args["size"])

    def _destroy(self, root: Root, call: Call) -> None:
        assert root.pgt is not None
        stage2.kvm_pgtable_stage2_destroy(root.pgt)
        root.live = False
        return None

    # -- state for a workload -------------------------------------------------------

    def geometry(self, vtcr: int) -> tuple[int, int]:
        """``(ia_bits, start_level)`` a VTCR_EL2 selects."""
        return VTCR_EL2_IPA(vtcr), vtcr_start_level(vtcr, GRANULE_4K)
