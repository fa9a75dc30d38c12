/*
 * Test fixture for ptreplay's kprobe-set checker (ptreplay/capture/vmlinux.py).
 *
 * Written for ptreplay, not taken from the kernel: it only reproduces what the
 * checker reads from a kernel image, namely a struct kvm_pgtable with the
 * member layout of Linux 6.1 (arch/arm64/include/asm/kvm_pgtable.h) and one
 * out-of-line function for every function the linux-6.1 kprobe set probes.
 * The bodies are stubs; what matters is the symbol table and the DWARF.
 *
 * Built for the host (x86-64): struct member offsets and sizes in DWARF are the
 * same as on arm64 for this layout (LP64, natural alignment).
 *
 * -DPTREPLAY_FIXTURE_SHIFTED adds a member before pgd (pgd moves from +8 to
 * +16) and makes kvm_host_zalloc_pages_exact static inline, so it has no
 * symbol, as in Debian's 6.1 build where the compiler inlined it.
 */

typedef unsigned char u8;
typedef unsigned int u32;
typedef unsigned long long u64;
typedef u64 kvm_pte_t;
typedef u64 phys_addr_t;
typedef u64 gfn_t;
typedef _Bool bool;

struct kvm_pgtable_mm_ops;
struct kvm_s2_mmu { u64 vmid; };
struct kvm { struct kvm_s2_mmu mmu; };
struct kvm_memory_slot { gfn_t base_gfn; };
struct kvm_gfn_range {
	struct kvm_memory_slot *slot;
	gfn_t start;
	gfn_t end;
	u64 pte;
	bool may_block;
};

enum kvm_pgtable_stage2_flags { KVM_PGTABLE_S2_NOFWB = 1, KVM_PGTABLE_S2_IDMAP = 2 };
enum kvm_pgtable_prot { KVM_PGTABLE_PROT_X = 1, KVM_PGTABLE_PROT_W = 2, KVM_PGTABLE_PROT_R = 4 };
typedef bool (*kvm_pgtable_force_pte_cb_t)(u64 addr, u64 end, enum kvm_pgtable_prot prot);

struct kvm_pgtable {
	u32 ia_bits;
	u32 start_level;
#ifdef PTREPLAY_FIXTURE_SHIFTED
	void *shifted_by_fixture;
#endif
	kvm_pte_t *pgd;
	struct kvm_pgtable_mm_ops *mm_ops;
	struct kvm_s2_mmu *mmu;
	enum kvm_pgtable_stage2_flags flags;
	kvm_pgtable_force_pte_cb_t force_pte_cb;
};

/* Keeps every stub out of line and its arguments live. */
#define STUB __attribute__((noinline, used))

volatile u64 fixture_sink;

static void touch(u64 v) { fixture_sink += v; }

static u64 walk(struct kvm_pgtable *pgt, u64 addr)
{
	return pgt->ia_bits + pgt->start_level + (pgt->pgd ? pgt->pgd[0] : 0) + addr;
}

/* ---- arch/arm64/kvm/hyp/pgtable.c ---- */
STUB int kvm_pgtable_stage2_map(struct kvm_pgtable *pgt, u64 addr, u64 size, u64 phys,
				enum kvm_pgtable_prot prot, void *mc)
{ touch(walk(pgt, addr) + size + phys + prot + (u64)mc); return 0; }
STUB int kvm_pgtable_stage2_unmap(struct kvm_pgtable *pgt, u64 addr, u64 size)
{ touch(walk(pgt, addr) + size); return 0; }
STUB int kvm_pgtable_stage2_set_owner(struct kvm_pgtable *pgt, u64 addr, u64 size, void *mc,
				      u8 owner_id)
{ touch(walk(pgt, addr) + size + (u64)mc + owner_id); return 0; }
STUB int kvm_pgtable_stage2_wrprotect(struct kvm_pgtable *pgt, u64 addr, u64 size)
{ touch(walk(pgt, addr) + size); return 0; }
STUB int kvm_pgtable_stage2_relax_perms(struct kvm_pgtable *pgt, u64 addr, enum kvm_pgtable_prot prot)
{ touch(walk(pgt, addr) + prot); return 0; }
STUB kvm_pte_t kvm_pgtable_stage2_mkyoung(struct kvm_pgtable *pgt, u64 addr)
{ return walk(pgt, addr) | 0x400; }
STUB kvm_pte_t kvm_pgtable_stage2_mkold(struct kvm_pgtable *pgt, u64 addr)
{ return walk(pgt, addr) & ~0x400ULL; }
STUB bool kvm_pgtable_stage2_is_young(struct kvm_pgtable *pgt, u64 addr)
{ return walk(pgt, addr) & 0x400; }
STUB int kvm_pgtable_stage2_flush(struct kvm_pgtable *pgt, u64 addr, u64 size)
{ touch(walk(pgt, addr) + size); return 0; }
STUB int __kvm_pgtable_stage2_init(struct kvm_pgtable *pgt, struct kvm_s2_mmu *mmu,
				   struct kvm_pgtable_mm_ops *mm_ops,
				   enum kvm_pgtable_stage2_flags flags,
				   kvm_pgtable_force_pte_cb_t force_pte_cb)
{
	pgt->mmu = mmu;
	pgt->mm_ops = mm_ops;
	pgt->flags = flags;
	pgt->force_pte_cb = force_pte_cb;
	return 0;
}
STUB void kvm_pgtable_stage2_destroy(struct kvm_pgtable *pgt)
{ touch(walk(pgt, 0)); pgt->pgd = 0; }

/* ---- arch/arm64/kvm/mmu.c: the kvm_s2_mm_ops callbacks ---- */
STUB void *stage2_memcache_zalloc_page(void *arg) { touch((u64)arg); return arg; }
#ifdef PTREPLAY_FIXTURE_SHIFTED
static inline void *kvm_host_zalloc_pages_exact(u64 size)
#else
STUB void *kvm_host_zalloc_pages_exact(u64 size)
#endif
{ touch(size); return (void *)size; }
STUB void *kvm_s2_zalloc_pages_exact(u64 size) { return kvm_host_zalloc_pages_exact(size); }
STUB void kvm_s2_free_pages_exact(void *virt, u64 size) { touch((u64)virt + size); }
STUB void kvm_host_get_page(void *addr) { touch((u64)addr); }
STUB void kvm_host_put_page(void *addr) { touch((u64)addr); }
STUB void kvm_s2_put_page(void *addr) { touch((u64)addr); }
STUB int kvm_host_page_count(void *addr) { return (int)(u64)addr; }
STUB void clean_dcache_guest_page(void *va, u64 size) { touch((u64)va + size); }
STUB void invalidate_icache_guest_page(void *va, u64 size) { touch((u64)va + size); }

/* ---- arch/arm64/kvm/mmu.c: callers ---- */
STUB bool kvm_unmap_gfn_range(struct kvm *kvm, struct kvm_gfn_range *range)
{ touch((u64)kvm + range->start + range->end + range->may_block); return 0; }
STUB bool kvm_set_spte_gfn(struct kvm *kvm, struct kvm_gfn_range *range)
{ touch((u64)kvm + range->start + range->end + range->pte); return 0; }
STUB bool kvm_age_gfn(struct kvm *kvm, struct kvm_gfn_range *range)
{ touch((u64)kvm + range->start + range->end); return 0; }
STUB bool kvm_test_age_gfn(struct kvm *kvm, struct kvm_gfn_range *range)
{ touch((u64)kvm + range->start + range->end); return 0; }
STUB int kvm_init_stage2_mmu(struct kvm *kvm, struct kvm_s2_mmu *mmu)
{ touch((u64)kvm + (u64)mmu); return 0; }
STUB void kvm_free_stage2_pgd(struct kvm_s2_mmu *mmu) { touch((u64)mmu); }
STUB void kvm_arch_flush_shadow_memslot(struct kvm *kvm, struct kvm_memory_slot *slot)
{ touch((u64)kvm + slot->base_gfn); }
STUB void kvm_arch_mmu_enable_log_dirty_pt_masked(struct kvm *kvm, struct kvm_memory_slot *slot,
						   gfn_t gfn_offset, unsigned long mask)
{ touch((u64)kvm + slot->base_gfn + gfn_offset + mask); }
STUB void kvm_mmu_wp_memory_region(struct kvm *kvm, int slot) { touch((u64)kvm + slot); }
STUB void stage2_unmap_vm(struct kvm *kvm) { touch((u64)kvm); }
STUB int kvm_phys_addr_ioremap(struct kvm *kvm, phys_addr_t guest_ipa, phys_addr_t pa,
			       unsigned long size, bool writable)
{ touch((u64)kvm + guest_ipa + pa + size + writable); return 0; }
STUB void kvm_flush_remote_tlbs(struct kvm *kvm) { touch((u64)kvm); }

/* ---- arch/arm64/kvm/hyp/vhe/tlb.c ---- */
STUB void __kvm_tlb_flush_vmid_ipa(struct kvm_s2_mmu *mmu, phys_addr_t ipa, int level)
{ touch(mmu->vmid + ipa + level); }
STUB void __kvm_tlb_flush_vmid(struct kvm_s2_mmu *mmu) { touch(mmu->vmid); }
STUB void __kvm_flush_cpu_context(struct kvm_s2_mmu *mmu) { touch(mmu->vmid); }
STUB void __kvm_flush_vm_context(void) { touch(1); }
