"""A random but realistic stage-2 workload: what KVM and the host's mm do to guests.

:class:`RandomWorkload` yields :class:`~ptreplay.synth.calls.Call` records
for a host running a few KVM guests (and, by default, a pKVM-style host
stage-2), the way the arm64 recordings show it, deterministically for a seed:

* VM creation: ``kvm_init_stage2_mmu`` -> init, with the geometry of a QEMU
  guest (40-bit IPA, start level 1, two concatenated pgd pages, like the
  recordings; or 44/48 bits, start level 0); short-lived "scratch" VMs that
  QEMU creates to probe the host (init, destroy, nothing else); the GIC
  CPU interface mapped with ``kvm_phys_addr_ioremap`` (device pages, a stack
  memory cache);
* guest faults (``kvm_guest_fault`` -> ``user_mem_abort``): 2 MiB blocks for
  transparent huge pages, 4 KiB pages elsewhere, with the vCPU's memory
  cache; permission faults -> ``relax_perms`` (write after write-protection,
  exec); spurious faults on what is already mapped (-EAGAIN); with dirty
  logging on, pages only (a write to a write-protected block splits it);
  collapsing a fully faulted region back into a block when logging is off;
* the host mm through the MMU notifiers: reclaim and compaction unmap pages
  and huge pages (``kvm_unmap_hva_range`` -> ``kvm_unmap_gfn_range``), KSM
  merges a page (unmap, then ``kvm_set_spte_gfn`` maps it read-only with no
  memory cache: -ENOMEM where no last-level table exists), aging
  (``kvm_age_gfn`` -> ``mkold``, ``kvm_test_age_gfn`` -> ``is_young``);
* access-flag faults -> ``mkyoung`` when the CPU has no hardware AF;
* dirty logging (live migration): write-protect the whole memslot, then clear
  the dirty log 64 pages at a time (``kvm_arch_mmu_enable_log_dirty_pt_masked``);
* cache maintenance when the guest turns its caches on (``kvm_toggle_cache``
  -> ``flush``; with FWB it returns at once);
* a pKVM-style host stage-2 (identity-mapped, ``IDMAP|NOFWB``): host faults
  map blocks and pages, pages are donated (``set_owner`` to owner 1) and
  given back (``set_owner`` to 0); donated pages come from host RAM no guest
  ever maps (``DONATION_POOL``), so no guest stage-2 maps a page another owner
  holds; the workload never maps or unmaps an owned page (the ``lost-owner``
  injection does);
* at the end every root is destroyed (owned pages given back first).

Several tasks (QEMU threads, vCPU threads, ksmd, kswapd0, kcompactd0) on
several CPUs make the calls; tasks move between CPUs now and then. The total
number of stage-2 calls is exactly ``n_ops``.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field

from ptreplay.model import stage2_vtcr
from ptreplay.model.pte import (
    KVM_PGTABLE_PROT_DEVICE,
    KVM_PGTABLE_PROT_R,
    KVM_PGTABLE_PROT_W,
    KVM_PGTABLE_PROT_X,
    KVM_PGTABLE_S2_IDMAP,
    KVM_PGTABLE_S2_NOFWB,
)
from ptreplay.synth.calls import Call, Task
from ptreplay.synth.driver import OpResult, Root, Stage2Driver
from ptreplay.synth.inject import Planter
from ptreplay.synth.memory import DONATION_POOL, GUEST_POOL, RAM_BASE

__all__ = ["RandomWorkload", "GEOMETRIES", "min_ops"]

R, W, X = KVM_PGTABLE_PROT_R, KVM_PGTABLE_PROT_W, KVM_PGTABLE_PROT_X
RW, RWX = R | W, R | W | X
PAGE = 0x1000
BLOCK = 0x200000
GIB = 1 << 30
PAGES_PER_BLOCK = BLOCK // PAGE

#: (ia_bits, start_level, weight): QEMU's default 40-bit IPA at level 1 (the recordings),
#: or a 44/48-bit IPA at level 0.
GEOMETRIES = ((40, 1, 6), (44, 0, 2), (48, 0, 2))

_HOST_TASKS = ((33, "ksmd"), (50, "kswapd0"), (32, "kcompactd0"), (34, "khugepaged"))
_EAGAIN, _ENOMEM = -11, -12


def min_ops(vms: int, host: bool) -> int:
    """Calls a workload needs at least: init and destroy of each root."""
    return 2 * (vms + int(host))


@dataclass(slots=True, eq=False)
class Region:
    """2 MiB of IPA of one root, as the workload believes it is mapped."""

    chunk: int  # host PA of the 2 MiB chunk backing it
    thp: bool  # the host backs it with a huge page (block mappings possible)
    block: bool = False
    block_prot: int = RW
    block_wp: bool = False
    pages: dict[int, int] = field(default_factory=dict)  # page index -> prot
    wp: set[int] = field(default_factory=set)  # write-protected pages
    moved: dict[int, int] = field(default_factory=dict)  # page -> PA after KSM/migration

    def unmap_block(self) -> None:
        """The block (or what was believed mapped) is gone: no pages, none protected."""
        self.block = False
        self.pages.clear()
        self.wp.clear()


@dataclass(slots=True, eq=False)
class Space:
    """The stage-2 of one VM (or of the pKVM host), and who uses it."""

    root: Root
    host: bool
    base: int  # first IPA of the memslot (guest RAM) / host RAM
    nregions: int
    hva: int  # QEMU's mapping of the memslot
    slot: int  # struct kvm_memory_slot *
    main: Task
    vcpus: list[Task]
    mcs: list[int]  # memory cache per vCPU (host: the hyp pool)
    regions: dict[int, Region] = field(default_factory=dict)
    old: set[int] = field(default_factory=set)  # pages aged (AF clear), by IPA page number
    owned: dict[int, int] = field(default_factory=dict)  # page number -> owner id (host)
    dirty_logging: bool = False
    boot_left: int = 0
    live: bool = True
    resident: int = 0  # mapped pages, recounted now and then
    steps: int = 0

    def regions_in(self, start: int, end: int) -> Iterator[tuple[int, Region]]:
        """``(first IPA, region)`` of every region that ``[start, end)`` touches."""
        first = max(0, (start - self.base) // BLOCK)
        last = min(self.nregions - 1, (end - 1 - self.base) // BLOCK)
        for index in range(first, last + 1):
            reg = self.regions.get(index)
            if reg is not None:
                yield self.base + index * BLOCK, reg


class RandomWorkload:
    """The calls of a random workload (see the module docstring).

    Iterate to get the calls; after each call has run, pass its result to :meth:`done`.

    :param driver: the model driver (roots and kernel object addresses).
    :param n_ops: total number of stage-2 calls.
    :param seed: the seed; the same seed gives the same calls.
    :param vms: guest VMs.
    :param host: include a pKVM-style host stage-2 with owner annotations.
    :param cpus: CPUs of the host.
    :param fwb: stage-2 FWB (no cache maintenance by flush, none on unmap).
    :param hw_af: hardware access-flag management (no access faults, no mkyoung).
    :param geometry: ``(ia_bits, start_level)`` for every guest, else chosen per guest.
    :param planter: a ``workload``-level injection, or ``None``.
    """

    def __init__(self, driver: Stage2Driver, n_ops: int, seed: int, *, vms: int = 2,
                 host: bool = True, cpus: int = 2, fwb: bool = False, hw_af: bool = True,
                 geometry: tuple[int, int] | None = None, planter: Planter | None = None,
                 kvm_mmu_offset: int = 0x9C8) -> None:
        if n_ops < min_ops(1, False):
            raise ValueError(f"a workload needs at least {min_ops(1, False)} operations")
        self.driver = driver
        self.n = n_ops
        self.rng = random.Random(f"workload:{seed}")
        self.cpus = cpus
        self.fwb = fwb
        self.hw_af = hw_af
        self.geometry = geometry
        self.planter = planter
        self.kvm_mmu_offset = kvm_mmu_offset
        # Shrink the cast when there are few operations: each root needs init and destroy.
        while vms > 1 and min_ops(vms, host) + 4 > n_ops:
            vms -= 1
        if host and min_ops(vms, host) + 2 > n_ops:
            host = False
        self.vms = vms
        self.host = host
        self.issued = 0
        self.spaces: list[Space] = []
        self._by_root: dict[int, Space] = {}
        self._next_pid = 268
        self.cmdlines: dict[int, str] = {pid: comm for pid, comm in _HOST_TASKS}
        self.kthreads = [Task(pid, comm, self.rng.randrange(cpus)) for pid, comm in _HOST_TASKS]
        self.host_tasks = [Task(29, "kworker/u4:1", 0), Task(16, "kworker/0:1", 0)]
        for t in self.host_tasks:
            self.cmdlines[t.pid] = t.comm
        self._last: Call | None = None
        self._queue: list[Call] = []

    # -- protocol ---------------------------------------------------------------------

    def __iter__(self) -> Iterator[Call]:
        return self._calls()

    def done(self, call: Call, result: OpResult) -> None:
        """Take the result of ``call`` (the workload's picture of the tables follows it)."""
        handler = getattr(self, "_done_" + call.op, None)
        if handler is not None:
            handler(call, result)

    # -- the run ------------------------------------------------------------------------

    def _emit(self, call: Call) -> Call:
        self.issued += 1
        if self.rng.random() < 0.03:
            call.task.cpu = self.rng.randrange(self.cpus)  # the scheduler moved it
        return call

    def _reserve(self) -> int:
        """Calls the end needs: destroy of every live root, owned pages given back."""
        n = 0
        bound = 0
        for sp in self.spaces:
            if sp.live:
                n += 1
                bound += len(sp.owned)
        if self.n - self.issued - n - bound > 0:
            return n + bound  # not near the end: an upper bound will do
        return n + sum(len(_runs(sorted(sp.owned))) for sp in self.spaces if sp.live)

    def _calls(self) -> Iterator[Call]:
        rng = self.rng
        guests_left = self.vms
        scratch = rng.random() < 0.7 and self.n >= min_ops(self.vms, self.host) + 12
        if self.host:
            yield from self._init_space(host=True, room=0)
        if scratch:  # QEMU probes the host with short-lived VMs first
            yield from self._scratch_vm()
        while guests_left:
            guests_left -= 1
            # calls left once this VM is made and every root destroyed
            room = self.n - self.issued - 2 * (guests_left + 1) - self._reserve()
            yield from self._init_space(host=False, room=room)
        while True:
            budget = self.n - self.issued - self._reserve()
            if budget <= 0:
                break
            live = [sp for sp in self.spaces if sp.live]
            # guests are busier than the host stage-2
            weights = [1 if sp.host else 3 for sp in live]
            sp = rng.choices(live, weights)[0]
            calls = self._step(sp, budget)
            for call in calls[:budget]:
                yield self._emit(call)
        # the end: give owned pages back, destroy every root
        for sp in self.spaces:
            if not sp.live:
                continue
            for start, count in _runs(sorted(sp.owned)):
                yield self._emit(self._set_owner(sp, start, count, 0))
            yield self._emit(self._destroy(sp))

    # -- roots ---------------------------------------------------------------------------

    def _task(self, comm: str) -> Task:
        pid = self._next_pid
        self._next_pid += 1 + self.rng.randrange(4)
        self.cmdlines[pid] = comm
        return Task(pid, comm, self.rng.randrange(self.cpus))

    def _geometry(self) -> tuple[int, int]:
        if self.geometry is not None:
            return self.geometry
        total = sum(w for *_, w in GEOMETRIES)
        pick = self.rng.randrange(total)
        for ia, sl, w in GEOMETRIES:
            if pick < w:
                return ia, sl
            pick -= w
        raise AssertionError

    def _init_space(self, host: bool, room: int) -> Iterator[Call]:
        rng = self.rng
        d = self.driver
        # pKVM's host stage-2 mm_ops (host_mmu.mm_ops at EL2) have no CMO callbacks.
        root = d.new_root(host=host, fwb=self.fwb, mm_cmo=not host,
                          kvm_mmu_offset=self.kvm_mmu_offset)
        if host:
            main = Task(1, "swapper/0", 0)  # pKVM initialises the host stage-2 at boot
            self.cmdlines.setdefault(1, "swapper/0")
            space = Space(root, True, RAM_BASE, 256, 0, 0, main, self.host_tasks,
                          [d.memcache_ptr()])
            ia, sl = 40, 1
            flags = KVM_PGTABLE_S2_IDMAP | KVM_PGTABLE_S2_NOFWB
        else:
            main = self._task("qemu-system-aar")
            nvcpus = 1 + rng.randrange(min(self.cpus, 4))
            vcpus = [self._task("qemu-system-aar") for _ in range(nvcpus)]
            mb = rng.choice((128, 256, 512))
            hva = 0xFFFF00000000 - (256 + rng.randrange(0x4000)) * BLOCK  # QEMU's mmap
            space = Space(root, False, 0x40000000, mb // 2, hva, d.object_ptr(0x40), main,
                          vcpus, [d.memcache_ptr() for _ in vcpus], boot_left=20)
            ia, sl = self._geometry()
            flags = 0
        self.spaces.append(space)
        self._by_root[root.id] = space
        call = Call(root.id, "init", {"vtcr": stage2_vtcr(ia, sl), "flags": flags}, main,
                    "host_init" if host else "init")
        yield self._emit(call)
        if not host and room >= 2 and rng.random() < 0.5:
            # the GIC CPU interface (kvm_vgic_map_resources -> kvm_phys_addr_ioremap)
            ipa, pa = 0x8010000, 0x2C02F000
            mc = d.memcache_ptr()
            for k in range(2):
                yield self._emit(Call(root.id, "map", {"addr": ipa + k * PAGE, "size": PAGE,
                                                       "phys": pa + k * PAGE,
                                                       "prot": KVM_PGTABLE_PROT_DEVICE | RW},
                                      main, "ioremap", mc=mc,
                                      ctx={"first": k == 0, "guest_ipa": ipa, "pa": pa,
                                           "size": 2 * PAGE, "writable": 1}))

    def _scratch_vm(self) -> Iterator[Call]:
        d = self.driver
        root = d.new_root(fwb=self.fwb, kvm_mmu_offset=self.kvm_mmu_offset)
        main = self._task("qemu-system-aar")
        sp = Space(root, False, 0x40000000, 1, 0, 0, main, [main], [0], live=True)
        self.spaces.append(sp)
        self._by_root[root.id] = sp
        yield self._emit(Call(root.id, "init", {"vtcr": stage2_vtcr(48, 0), "flags": 0}, main,
                              "init"))
        yield self._emit(self._destroy(sp))

    def _destroy(self, sp: Space) -> Call:
        sp.live = False
        return Call(sp.root.id, "destroy", {}, sp.main, "destroy")

    # -- one step of a live root ---------------------------------------------------------

    def _step(self, sp: Space, budget: int) -> list[Call]:
        if sp.host:
            return self._host_step(sp, budget)
        rng = self.rng
        r = rng.random()
        sp.steps += 1
        if sp.steps % 64 == 0:
            sp.resident = sum(PAGES_PER_BLOCK if reg.block else len(reg.pages)
                              for reg in sp.regions.values())
        if sp.resident > sp.nregions * PAGES_PER_BLOCK // 2 and r < 0.3:
            # the VM's memory cgroup is at its limit: the host reclaims (memory.reclaim)
            return self._reclaim(sp, huge=True)
        if sp.boot_left > 0:
            sp.boot_left -= 1
            if sp.boot_left == 10 and budget >= 2:
                # the guest turns its caches on (with FWB the flush returns at once)
                return self._toggle_cache(sp)
            return [self._fault(sp)]
        if r < 0.38:
            return [self._fault(sp)]
        if r < 0.46:
            return self._reclaim(sp)
        if r < 0.54:
            return self._ksm(sp) if budget >= 2 else [self._fault(sp)]
        if r < 0.68:
            return [self._age(sp)]
        if r < 0.72:
            return [self._test_age(sp)]
        if r < 0.80:
            if not self.hw_af and sp.old:
                return [self._access_fault(sp)]
            return [self._fault(sp)]
        if r < 0.82:
            if sp.dirty_logging:  # clear the dirty log (or stop logging)
                return self._dirty_log(sp, budget)
            if r < 0.8001:  # migration starts: dirty logging on
                return self._dirty_log(sp, budget)
            return [self._fault(sp)]
        if r < 0.82002:
            return self._unmap_memslot(sp, budget)
        return [self._fault(sp)]

    # -- guests ------------------------------------------------------------------------------

    def _region(self, sp: Space, index: int) -> Region:
        reg = sp.regions.get(index)
        if reg is None:
            lo, hi = GUEST_POOL
            chunk = lo + self.rng.randrange((hi - lo) // BLOCK) * BLOCK
            reg = sp.regions[index] = Region(chunk, self.rng.random() < 0.7)
        return reg

    def _phys(self, reg: Region, page: int) -> int:
        return reg.moved.get(page, reg.chunk + page * PAGE)

    def _fault_ctx(self, ipa: int, exec_: bool = False, write: bool = True) -> dict:
        rng = self.rng
        if exec_:
            hsr = 0x82000006
            far = 0xFFFFA882D4000000 + (ipa & 0x3FFFFF)
        else:
            hsr = 0x92000046 if write else 0x92000006
            far = 0xFFFF000000000000 + (ipa - 0x40000000)
        return {"ipa": ipa, "vcpu_pc": 0xFFFFA882D4000000 + rng.randrange(0x1000000) * 4,
                "hsr": hsr, "far": far}

    def _vcpu(self, sp: Space) -> tuple[Task, int]:
        i = self.rng.randrange(len(sp.vcpus))
        return sp.vcpus[i], sp.mcs[i]

    def _fault(self, sp: Space) -> Call:
        rng = self.rng
        index = rng.randrange(sp.nregions)
        reg = self._region(sp, index)
        page = rng.randrange(PAGES_PER_BLOCK)
        base = sp.base + index * BLOCK
        ipa = base + page * PAGE
        task, mc = self._vcpu(sp)
        exec_ = rng.random() < 0.15
        prot = RWX if exec_ else RW
        root = sp.root.id
        if reg.block:
            if sp.dirty_logging and reg.block_wp:
                # write to a write-protected block while logging: map a page over it
                return Call(root, "map", {"addr": ipa, "size": PAGE, "phys": self._phys(reg, page),
                                          "prot": RW}, task, "fault", mc=mc,
                            ctx=self._fault_ctx(ipa))
            if exec_ and not reg.block_prot & X:
                return Call(root, "relax_perms", {"addr": ipa, "prot": RWX}, task, "fault_relax",
                            ctx=self._fault_ctx(ipa, exec_=True))
            # two vCPUs faulted on the same block: the second finds it mapped (-EAGAIN)
            return Call(root, "map", {"addr": base, "size": BLOCK, "phys": reg.chunk,
                                      "prot": reg.block_prot}, task, "fault", mc=mc,
                        ctx=self._fault_ctx(ipa))
        if page in reg.pages:
            if page in reg.wp:
                return Call(root, "relax_perms", {"addr": ipa, "prot": reg.pages[page] | W},
                            task, "fault_relax", ctx=self._fault_ctx(ipa))
            if exec_ and not reg.pages[page] & X:
                return Call(root, "relax_perms", {"addr": ipa, "prot": RWX}, task, "fault_relax",
                            ctx=self._fault_ctx(ipa, exec_=True))
            return Call(root, "map", {"addr": ipa, "size": PAGE, "phys": self._phys(reg, page),
                                      "prot": reg.pages[page]}, task, "fault", mc=mc,
                        ctx=self._fault_ctx(ipa))
        can_block = reg.thp and not sp.dirty_logging and not reg.moved
        if can_block and (not reg.pages or (len(reg.pages) > 8 and rng.random() < 0.1)):
            # a huge page: a block (collapsing the pages mapped so far, if any)
            return Call(root, "map", {"addr": base, "size": BLOCK, "phys": reg.chunk,
                                      "prot": prot}, task, "fault", mc=mc,
                        ctx=self._fault_ctx(ipa, exec_))
        if sp.dirty_logging and rng.random() < 0.3:
            prot = R  # a read fault while logging maps read-only
        return Call(root, "map", {"addr": ipa, "size": PAGE, "phys": self._phys(reg, page),
                                  "prot": prot}, task, "fault", mc=mc,
                    ctx=self._fault_ctx(ipa, exec_, write=prot & W != 0))

    def _mapped_page(self, sp: Space) -> tuple[int, Region, int] | None:
        """A mapped page (region index, region, page), or None."""
        rng = self.rng
        regions = sp.regions
        for _ in range(24):
            index = rng.randrange(sp.nregions)
            reg = regions.get(index)
            if reg is not None and (reg.block or reg.pages):
                break
        else:
            return None
        if reg.block:
            return index, reg, rng.randrange(PAGES_PER_BLOCK)
        pages = list(reg.pages)
        return index, reg, pages[rng.randrange(len(pages))]

    def _unmap_call(self, sp: Space, addr: int, size: int, task: Task) -> Call:
        hva = sp.hva + (addr - sp.base)
        return Call(sp.root.id, "unmap", {"addr": addr, "size": size}, task, "notifier_unmap",
                    ctx={"hva": hva})

    def _reclaim(self, sp: Space, huge: bool = False) -> list[Call]:
        rng = self.rng
        hit = self._mapped_page(sp)
        task = self.kthreads[rng.choice((1, 2))]
        if hit is None:
            index, page = rng.randrange(sp.nregions), rng.randrange(PAGES_PER_BLOCK)
        else:
            index, _, page = hit
        base = sp.base + index * BLOCK
        r = rng.random()
        if r < 0.1 or huge:
            return [self._unmap_call(sp, base, BLOCK, task)]  # a huge page split/reclaimed
        if r < 0.2:
            n = 1 + rng.randrange(16)
            page = min(page, PAGES_PER_BLOCK - n)
            return [self._unmap_call(sp, base + page * PAGE, n * PAGE, task)]
        return [self._unmap_call(sp, base + page * PAGE, PAGE, task)]

    def _ksm(self, sp: Space) -> list[Call]:
        hit = self._mapped_page(sp)
        if hit is None:
            return [self._fault(sp)]
        index, reg, page = hit
        ipa = sp.base + index * BLOCK + page * PAGE
        ksmd = self.kthreads[0]
        lo, hi = GUEST_POOL
        new = lo + self.rng.randrange((hi - lo) // PAGE) * PAGE
        unmap = self._unmap_call(sp, ipa, PAGE, ksmd)
        spte = Call(sp.root.id, "map", {"addr": ipa, "size": PAGE, "phys": new, "prot": R},
                    ksmd, "set_spte", mc=0,
                    ctx={"hva": sp.hva + (ipa - sp.base), "host_pte": new | 0x60000000000FC3})
        return [unmap, spte]

    def _age(self, sp: Space) -> Call:
        hit = self._mapped_page(sp)
        rng = self.rng
        if hit is None or rng.random() < 0.1:
            ipa = sp.base + rng.randrange(sp.nregions * PAGES_PER_BLOCK) * PAGE
        else:
            index, _, page = hit
            ipa = sp.base + index * BLOCK + page * PAGE
        task = self.kthreads[1]
        return Call(sp.root.id, "mkold", {"addr": ipa}, task, "age",
                    ctx={"hva": sp.hva + (ipa - sp.base)})

    def _test_age(self, sp: Space) -> Call:
        hit = self._mapped_page(sp)
        if hit is None:
            ipa = sp.base
        else:
            index, _, page = hit
            ipa = sp.base + index * BLOCK + page * PAGE
        return Call(sp.root.id, "is_young", {"addr": ipa}, self.kthreads[1], "test_age",
                    ctx={"hva": sp.hva + (ipa - sp.base)})

    def _access_fault(self, sp: Space) -> Call:
        pages = sorted(sp.old) if len(sp.old) < 256 else list(sp.old)
        ipa = pages[self.rng.randrange(len(pages))] * PAGE
        sp.old.discard(ipa // PAGE)
        task, _ = self._vcpu(sp)
        ctx = self._fault_ctx(ipa)
        ctx["hsr"] = 0x9200004B  # access flag fault
        return Call(sp.root.id, "mkyoung", {"addr": ipa}, task, "access_fault", ctx=ctx)

    def _split_ranges(self, sp: Space, addr: int, size: int) -> list[tuple[int, int]]:
        """stage2_apply_range(): one call per level-``start_level`` entry the range spans."""
        ia, sl = self.driver.geometry(sp.root.vtcr)
        span = 1 << (12 + 9 * (3 - sl))
        out = []
        end = addr + size
        while addr < end:
            nxt = min(end, (addr // span + 1) * span)
            out.append((addr, nxt - addr))
            addr = nxt
        return out

    def _dirty_log(self, sp: Space, budget: int) -> list[Call]:
        rng = self.rng
        size = sp.nregions * BLOCK
        if not sp.dirty_logging:
            # migration starts: kvm_mmu_wp_memory_region (inlined) + kvm_flush_remote_tlbs
            parts = self._split_ranges(sp, sp.base, size)
            if len(parts) > budget:
                return [self._fault(sp)]
            sp.dirty_logging = True
            calls = [Call(sp.root.id, "wrprotect", {"addr": a, "size": s}, sp.main, "wp_region",
                          ctx={"flush_after": i == len(parts) - 1})
                     for i, (a, s) in enumerate(parts)]
            return calls
        if rng.random() < 0.02:
            sp.dirty_logging = False  # migration done or cancelled
            return [self._fault(sp)]
        calls = []
        for _ in range(min(budget, 1 + rng.randrange(2))):
            gfn_offset = rng.randrange(sp.nregions * PAGES_PER_BLOCK // 64) * 64
            addr = sp.base + gfn_offset * PAGE
            calls.append(Call(sp.root.id, "wrprotect", {"addr": addr, "size": 64 * PAGE},
                              sp.main, "dirty_log",
                              ctx={"slot": sp.slot, "gfn_offset": gfn_offset,
                                   "mask": 0xFFFFFFFFFFFFFFFF}))
        return calls

    def _unmap_memslot(self, sp: Space, budget: int) -> list[Call]:
        parts = self._split_ranges(sp, sp.base, sp.nregions * BLOCK)
        if len(parts) > budget:
            return [self._fault(sp)]
        return [Call(sp.root.id, "unmap", {"addr": a, "size": s}, sp.main, "memslot_flush",
                     ctx={"slot": sp.slot, "first": i == 0}) for i, (a, s) in enumerate(parts)]

    def _toggle_cache(self, sp: Space) -> list[Call]:
        task, _ = self._vcpu(sp)
        parts = self._split_ranges(sp, sp.base, sp.nregions * BLOCK)
        pc = 0x40EFD8F8
        return [Call(sp.root.id, "flush", {"addr": a, "size": s}, task, "toggle_cache",
                     ctx={"first": i == 0, "vcpu_pc": pc}) for i, (a, s) in enumerate(parts)]

    # -- the pKVM host stage-2 ------------------------------------------------------------------

    def _host_step(self, sp: Space, budget: int) -> list[Call]:
        rng = self.rng
        planter = self.planter
        if sp.owned and budget >= 2 and planter is not None and planter.violate_owner():
            page = sorted(sp.owned)[rng.randrange(len(sp.owned))]
            return [self._misuse_owned(sp, page)]
        r = rng.random()
        task = self.host_tasks[rng.randrange(len(self.host_tasks))]
        if r < 0.55:
            return [self._host_fault(sp, task)]
        if r < 0.8 and len(sp.owned) < 64 and budget >= 2:
            # donated pages come from a pool no guest maps (pKVM: a donated page belongs to
            # its new owner only)
            lo, hi = DONATION_POOL
            start = lo // PAGE + rng.randrange((hi - lo) // PAGE - 4)
            count = 1 + rng.randrange(4)
            pages = [p for p in range(start, start + count) if p not in sp.owned]
            if len(pages) == count:
                return [self._set_owner(sp, start, count, 1, task)]
            return [self._host_fault(sp, task)]
        if sp.owned and budget >= 1:
            runs = _runs(sorted(sp.owned))
            start, count = runs[rng.randrange(len(runs))]
            return [self._set_owner(sp, start, count, 0, task)]
        return [self._host_fault(sp, task)]

    def _host_fault(self, sp: Space, task: Task) -> Call:
        rng = self.rng
        index = rng.randrange(sp.nregions)
        reg = sp.regions.setdefault(index, Region(sp.base + index * BLOCK, True))
        base = sp.base + index * BLOCK
        first = base // PAGE
        owned_here = any(first <= p < first + PAGES_PER_BLOCK for p in sp.owned)
        if not owned_here and not reg.block and not reg.pages and rng.random() < 0.6:
            return Call(sp.root.id, "map", {"addr": base, "size": BLOCK, "phys": base,
                                            "prot": RWX}, task, "host", mc=sp.mcs[0])
        for _ in range(8):
            page = rng.randrange(PAGES_PER_BLOCK)
            if first + page not in sp.owned:
                ipa = base + page * PAGE
                return Call(sp.root.id, "map", {"addr": ipa, "size": PAGE, "phys": ipa,
                                                "prot": RWX}, task, "host", mc=sp.mcs[0])
        return Call(sp.root.id, "is_young", {"addr": base}, task, "host")

    def _set_owner(self, sp: Space, start: int, count: int, owner: int,
                   task: Task | None = None) -> Call:
        for p in range(start, start + count):
            if owner:
                sp.owned[p] = owner
            else:
                sp.owned.pop(p, None)
        return Call(sp.root.id, "set_owner", {"addr": start * PAGE, "size": count * PAGE,
                                              "owner_id": owner},
                    task or self.host_tasks[0], "host", mc=sp.mcs[0])

    def _misuse_owned(self, sp: Space, page: int) -> Call:
        """``lost-owner``: map or unmap an owned page without giving it back first."""
        assert self.planter is not None
        owner = sp.owned.pop(page)
        task = self.host_tasks[0]
        ipa = page * PAGE
        if self.planter.choice < 0.5:
            call = Call(sp.root.id, "map", {"addr": ipa, "size": PAGE, "phys": ipa,
                                            "prot": RWX}, task, "host", mc=sp.mcs[0],
                        planted=True)
        else:
            call = Call(sp.root.id, "unmap", {"addr": ipa, "size": PAGE}, task, "host",
                        planted=True)
        self.planter.planted_call(call, ipa, owner)
        return call

    # -- results ------------------------------------------------------------------------------

    def _space(self, call: Call) -> Space:
        return self._by_root[call.root]

    def _done_map(self, call: Call, result: OpResult) -> None:
        if result.ret != 0:
            return
        sp = self._space(call)
        a = call.args
        index, off = divmod(a["addr"] - sp.base, BLOCK)
        if not 0 <= index < sp.nregions:
            return
        reg = sp.regions.get(index)
        if reg is None:
            return
        if a["size"] == BLOCK:
            reg.block, reg.block_prot, reg.block_wp = True, a["prot"], False
            reg.pages.clear()
            reg.wp.clear()
        else:
            page = off // PAGE
            if reg.block:  # a page over a block: the block became a table with this page
                reg.unmap_block()
            reg.pages[page] = a["prot"]
            reg.wp.discard(page)
            if a["phys"] != reg.chunk + page * PAGE:
                reg.moved[page] = a["phys"]

    def _done_unmap(self, call: Call, result: OpResult) -> None:
        sp = self._space(call)
        a = call.args
        start, end = a["addr"], a["addr"] + a["size"]
        for base, reg in sp.regions_in(start, end):
            if reg.block:  # any part of a block unmaps the whole block
                reg.unmap_block()
                continue
            for page in list(reg.pages):
                if start <= base + page * PAGE < end:
                    del reg.pages[page]
                    reg.wp.discard(page)
        if sp.old:
            if end - start <= 64 * PAGE:
                for p in range(start // PAGE, end // PAGE):
                    sp.old.discard(p)
            else:
                sp.old -= {p for p in sp.old if start <= p * PAGE < end}

    def _done_set_owner(self, call: Call, result: OpResult) -> None:
        # The annotations replace mappings; a block around them became a table whose other
        # pages are unmapped (set_owner maps pages only).
        sp = self._space(call)
        a = call.args
        start, end = a["addr"], a["addr"] + a["size"]
        for base, reg in sp.regions_in(start, end):
            if reg.block and a["size"] < BLOCK:
                reg.block = False
                reg.pages.clear()
            for page in list(reg.pages):
                if start <= base + page * PAGE < end:
                    del reg.pages[page]

    def _done_wrprotect(self, call: Call, result: OpResult) -> None:
        sp = self._space(call)
        a = call.args
        start, end = a["addr"], a["addr"] + a["size"]
        for base, reg in sp.regions_in(start, end):
            if reg.block:
                reg.block_wp = True
            for page in reg.pages:
                if start <= base + page * PAGE < end:
                    reg.wp.add(page)

    def _done_relax_perms(self, call: Call, result: OpResult) -> None:
        if result.ret != 0:
            return
        sp = self._space(call)
        index, off = divmod(call.args["addr"] - sp.base, BLOCK)
        reg = sp.regions.get(index)
        if reg is None:
            return
        if reg.block:
            reg.block_prot |= call.args["prot"]
            if call.args["prot"] & W:
                reg.block_wp = False
        elif off // PAGE in reg.pages:
            reg.pages[off // PAGE] |= call.args["prot"]
            if call.args["prot"] & W:
                reg.wp.discard(off // PAGE)

    def _done_mkold(self, call: Call, result: OpResult) -> None:
        ret = result.ret or 0
        if ret & 1 and ret & (1 << 10) and not self.hw_af:
            sp = self._space(call)
            sp.old.add(call.args["addr"] // PAGE)


def _runs(pages: list[int]) -> list[tuple[int, int]]:
    """Consecutive runs of page numbers: ``[(start, count)]``."""
    out: list[tuple[int, int]] = []
    for p in pages:
        if out and out[-1][0] + out[-1][1] == p:
            out[-1] = (out[-1][0], out[-1][1] + 1)
        else:
            out.append((p, 1))
    return out
