/*
 * gmem: guest RAM as a set of blocks, each a memfd mapped into the monitor
 * and given to KVM as one memory slot with dirty logging.
 *
 * The blocks are exposed as the ram_block array the RAM codec walks
 * (checkpoint/ram.h).  Their dirty bitmaps collect two sources: pages the
 * guest wrote (KVM's log, fetched by gmem_sync_dirty) and pages the monitor
 * wrote on the guest's behalf (hypercall results, received frames), which
 * KVM cannot see and which vCPU threads record with gmem_mark_dirty.  Bits
 * are only ever OR-ed in: the codec clears them as it sends.
 *
 * Every guest address the monitor follows goes through gmem_ptr, which
 * refuses any range not wholly inside one block.
 */
#ifndef FTVM_VM_GMEM_H
#define FTVM_VM_GMEM_H

#include <stddef.h>
#include <stdint.h>

#include "checkpoint/ram.h"
#include "vm/kvm.h"

#define GMEM_MAX_BLOCKS 8

typedef struct gmem_region {
    uint64_t gpa;
    int memfd;
    unsigned long *kvm_bits;    /* scratch for one KVM_GET_DIRTY_LOG */
    unsigned long *mon_bits;    /* monitor's writes; atomic */
} gmem_region;

typedef struct gmem {
    kvm_vm *kvm;
    size_t n;
    ram_block blocks[GMEM_MAX_BLOCKS]; /* blocks[i] is slot i */
    gmem_region regions[GMEM_MAX_BLOCKS];
} gmem;

void gmem_init(gmem *g, kvm_vm *kvm);
/*
 * Adds a block of len bytes (a nonzero multiple of the page size) named
 * name at guest-physical gpa.  0 or -errno with a message.
 */
int gmem_add(gmem *g, const char *name, uint64_t gpa, uint64_t len, char *err,
             size_t errlen);
void gmem_free(gmem *g);

/* Host address of [gpa, gpa + len), or NULL unless it lies in one block. */
void *gmem_ptr(const gmem *g, uint64_t gpa, uint64_t len);
/* Records that the monitor wrote [gpa, gpa + len) (already checked). */
void gmem_mark_dirty(gmem *g, uint64_t gpa, uint64_t len);
/* Moves KVM's log and the monitor's marks into the blocks' bitmaps. */
int gmem_sync_dirty(gmem *g);
/*
 * Marks dirty every page the guest's memory holds data for, for a full
 * copy to a receiver that starts from zeroed RAM.  Pages never written are
 * holes in the memfd: they are skipped without being read, since reading
 * a hole of a memfd allocates it (a first copy of a mostly idle 4 GiB VM
 * would otherwise commit all 4 GiB on the host).
 */
void gmem_mark_allocated_dirty(gmem *g);
/* Bytes of RAM in all blocks. */
uint64_t gmem_total(const gmem *g);

#endif
