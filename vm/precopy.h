/*
 * precopy: copying a running VM's RAM into a stream while the guest keeps
 * running, until what is left is small enough for a short pause to copy.
 * One driver for the two jobs that need it: the live phase of a
 * checkpoint to disk (vm/snapshot.c) and the bring-up of a secondary
 * (primary/package.c).
 *
 * precopy_run writes the registry's START sections, then passes of PART
 * sections (registry_save_iterate), and hands what each one left in the
 * stream to the caller's flush: the file's qfile_flush, or a write to the
 * link.  The caller then pauses the VM and copies the rest (the END
 * sections and the devices).
 *
 * A disk's chunks ("block", vm/vm_disk.c) go in the same passes, after
 * RAM's, and count as the pages they weigh (PRECOPY_PAGES_PER_CHUNK) in
 * the sweep and the budget: a sweep ends when both are clean.
 *
 * The end rule.  A pass sends at most a slice of the dirty pages; a sweep
 * is the passes from one empty dirty set to the next.  The live copy ends:
 *
 *  - when a sweep sent at most PRECOPY_FINAL_PAGES pages (16 MiB).  What
 *    the pause must copy is what the guest dirtied during the last sweep,
 *    and a sweep that sent little took little time, so little could be
 *    dirtied meanwhile.  Judging one pass instead would end on the small
 *    tail of a large sweep, with the guest having dirtied a sweep's worth
 *    of pages while it ran.  Every page the sweep took counts, zero and
 *    unchanged ones too: the pause has to look at each of them.
 *
 *  - or once RAM size x PRECOPY_BUDGET_ROUNDS pages were taken in all.  A
 *    guest that dirties memory faster than the sink takes it never
 *    converges; further passes only send the same pages again, and the
 *    pause cannot copy more than all of RAM anyway.
 *
 * It stops with -ESHUTDOWN if the VM stops meanwhile.
 */
#ifndef FTVM_VM_PRECOPY_H
#define FTVM_VM_PRECOPY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "checkpoint/qfile.h"
#include "checkpoint/ram.h"
#include "vm/vm.h"

#define PRECOPY_FINAL_PAGES 4096u   /* a sweep this small ends it (16 MiB) */
#define PRECOPY_BUDGET_ROUNDS 8u    /* RAM size x this many pages at most */
/* A disk chunk weighs what its bytes would as pages (1 MiB / 4 KiB). */
#define PRECOPY_PAGES_PER_CHUNK (DISK_CHUNK_SIZE / RAM_PAGE_SIZE)

typedef enum precopy_end {
    PRECOPY_RUNNING,        /* not over yet */
    PRECOPY_CONVERGED,      /* a sweep sent little */
    PRECOPY_BUDGET,         /* the page budget is spent */
} precopy_end;

typedef struct precopy_stats {
    uint64_t passes;        /* PART sections written */
    uint64_t sweeps;        /* sweeps of the dirty set completed */
    uint64_t pages;         /* dirty pages taken: sent, or unchanged */
    uint64_t sweep_pages;   /* ... by the sweep under way */
    uint64_t last_sweep_pages; /* ... by the last completed sweep */
    uint64_t budget;        /* pages allowed in all */
    uint64_t ns;            /* the whole run */
    precopy_end end;
} precopy_stats;

/*
 * Hands what f holds to its destination: 0, or -errno with a message for
 * a person in err.
 */
typedef int (*precopy_flush_fn)(void *opaque, qfile *f, char *err,
                                size_t errlen);

/*
 * Writes the START sections and the live passes of v's registry into f,
 * calling flush after the START sections and after every pass (before the
 * guest changes the pages again).  The caller has written what comes
 * before (the stream header, ...).  Nothing else may save v meanwhile.
 * 0 once the end rule says so, or -errno with a message in err (the
 * stream's error, flush's, or the VM stopped).
 */
int precopy_run(vm *v, qfile *f, precopy_flush_fn flush, void *opaque,
                precopy_stats *st, char *err, size_t errlen);

/* Starts stats for a VM of ram_pages pages of RAM. */
void precopy_begin(precopy_stats *st, uint64_t ram_pages);
/*
 * The end rule: accounts one pass (iterate_rc from registry_save_iterate,
 * rs the RAM codec's stats for it) and says whether the live copy is over
 * (st->end says why); disk_chunks is the disk chunks the pass sent.
 */
bool precopy_account(precopy_stats *st, int iterate_rc,
                     const ram_save_stats *rs, uint64_t disk_chunks);

#endif
