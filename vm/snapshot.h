/*
 * snapshot: a complete checkpoint of a running VM, written to a file while
 * the guest runs.
 *
 * As a live migration to a file: the stream header and RAM block list,
 * then passes over the RAM while the guest keeps running (vm/precopy.h:
 * each pass sends what the last one left dirty), and once what is left is
 * small, a short pause to send the remaining dirty pages and all vCPU and
 * device state, EOF and the VM description.  The guest is paused only for that last
 * copy into the file's page cache; the fsync and rename that make the
 * file durable and visible happen after it runs again (checkpoint/
 * ckptfile.h).  Pages sent in one pass and dirtied again are simply sent
 * again later: loading applies records in order.
 *
 * The job runs on a thread of its own and tells the event loop when it is
 * done, so the loop keeps serving the network and the control socket.
 */
#ifndef FTVM_VM_SNAPSHOT_H
#define FTVM_VM_SNAPSHOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "checkpoint/qfile.h"
#include "vm/vm.h"

struct event_base;

typedef struct snapshot_stats {
    uint64_t total_ns;      /* from start to the file in place */
    uint64_t pause_ns;      /* the guest's pause for the final copy */
    uint64_t live_passes;   /* RAM sections sent while the guest ran */
    uint64_t live_pages;    /* dirty pages taken while the guest ran */
    uint64_t final_pages;   /* pages sent while it was paused */
    uint64_t bytes;         /* size of the checkpoint file */
    /* A disk's delta: the file it is on ("" for the whole image). */
    char disk_base[VM_DISK_BASE_LEN];
} snapshot_stats;

/*
 * The key, in a checkpoint file's VM description, of its disk's place in
 * a chain (docs/checkpoints.md, "Disks"): {"id", "base_id", "base"}.
 */
#define SNAPSHOT_CHAIN_KEY "ftvm-disk-chain"

/*
 * Called on the loop's thread when the job ends: rc 0 and the file's path,
 * or rc < 0 and a message for a person.  The job is freed after it.
 */
typedef void (*snapshot_done_fn)(void *opaque, int rc, const char *path,
                                 const char *err, const snapshot_stats *st);

typedef struct snapshot_job snapshot_job;

/*
 * For a VM whose state another thread writes while it is not running (a
 * secondary's RAM cache, which its receiver applies checkpoints to): the
 * live phase runs alongside that writer (the RAM codec's dirty bits are
 * atomic, so pages it changes are sent again), and the final phase runs
 * between close() and open(), which keep the writer out.  close() may
 * refuse, with a message, when the state is not one to save.
 */
typedef struct snapshot_gate {
    int (*close)(void *opaque, char *err, size_t errlen);
    void (*open)(void *opaque);
    void *opaque;
} snapshot_gate;

typedef enum snapshot_target {
    SNAPSHOT_TO_DIR,  /* a new numbered checkpoint in a directory */
    SNAPSHOT_TO_FILE, /* exactly this path (replaced atomically) */
} snapshot_target;

/* What to write, and where. */
typedef struct snapshot_req {
    snapshot_target kind;
    const char *path;       /* the directory, or the file */
    /*
     * SNAPSHOT_TO_DIR: after a good checkpoint, keep only the newest keep
     * files (0: prune nothing).  Done on the job's thread: removing a
     * multi-GiB file can take a second, which the event loop must not.
     */
    unsigned keep;
    const snapshot_gate *gate; /* may be NULL; copied */
} snapshot_req;

/*
 * The end of every checkpoint file, after its last device section: the
 * trailer (checkpoint id, and the CRC-32 from the stream's first byte,
 * where f's running sum must have started), EOF and the VM description.
 * desc is the description of the sections written so far, built while
 * they were written (registry_save_devices); the trailer's entry is added
 * to it, and so are those of the sections a replication stream of the
 * same VM carries besides (ftvm-vm, ftvm-pkg), so that this file's
 * description also reads such a stream (docs/stream-format.md, "Streams
 * without a description").  section_id is the trailer's: one above the
 * registry's.  0, or the error latched on f.
 */
int snapshot_seal(qfile *f, uint32_t section_id, uint64_t id, json_t *desc);

/*
 * Starts writing a checkpoint of v.  One job at a time per VM is the
 * caller's rule.  Requires libevent's pthreads support
 * (evthread_use_pthreads) on base.  0, or -errno with a message.
 */
int snapshot_start(snapshot_job **out, vm *v, struct event_base *base,
                   const snapshot_req *rq, snapshot_done_fn done, void *opaque,
                   char *err, size_t errlen);

#endif
