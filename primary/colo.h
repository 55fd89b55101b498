/*
 * colo: the primary's side of COLO mode (docs/colo.md): its console bytes
 * compared with those of the secondary's running VM (the SVM), matched
 * bytes released at once, divergence turned into a checkpoint, and the
 * causes of checkpoints counted.
 *
 * Since checkpoint k both VMs run on from the same state, so a guest that
 * behaves deterministically writes the same bytes on both.  The primary's
 * bytes go into the output-commit queue as in checkpoint mode (held,
 * tagged with checkpoint k's epoch) and into this comparator; the SVM's
 * come back on the return path tagged with the checkpoint it last reset
 * to.  The first n bytes of epoch k that agree on both sides are released
 * (outqueue_release_console); the rest wait, as in checkpoint mode, for
 * the ACK of the next checkpoint.  A byte that differs (mismatch), or a
 * primary byte not matched within the compare timeout (timeout), asks
 * for that checkpoint now; then comparison starts over from the new one.
 *
 * Threads: colo_console from vCPU threads; the rest from the loop's.  One
 * lock, taken before the queue's (the same order on both paths).
 */
#ifndef FTVM_PRIMARY_COLO_H
#define FTVM_PRIMARY_COLO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "primary/colonet.h"
#include "primary/outqueue.h"

#define COLO_DEFAULT_TIMEOUT_NS 100000000ull      /* --compare-timeout */
#define COLO_DEFAULT_INTERVAL_NS 10000000000ull   /* --checkpoint-interval */
/* Unmatched bytes kept per side; more on one side is a divergence. */
#define COLO_MAX_PENDING (1u << 20)
/* Timeouts after an ACK that the SVM may take to say it runs. */
#define COLO_READY_GRACE 10u
/* Arrival times kept for the primary's unmatched bytes (then merged). */
#define COLO_MAX_CHUNKS 4096u

typedef enum colo_mode { COLO_MODE_CHECKPOINT = 0, COLO_MODE_COLO = 1 } colo_mode;
/* "checkpoint", "colo"; colo_mode_parse: 0 or -EINVAL. */
const char *colo_mode_name(colo_mode m);
int colo_mode_parse(const char *s, colo_mode *out);

/* Why a checkpoint was taken (both modes count them). */
typedef enum colo_cause {
    COLO_CAUSE_PERIODIC,
    COLO_CAUSE_MISMATCH,
    COLO_CAUSE_TIMEOUT,
    COLO_CAUSE_MANUAL,
    COLO_CAUSE_LIMIT,       /* held output passed its limit */
    COLO_CAUSE_N,
} colo_cause;
/* "periodic", "mismatch", "timeout", "manual", "held_output_limit". */
const char *colo_cause_name(colo_cause c);

/* What the comparison asks for. */
typedef enum colo_verdict {
    COLO_OK,                /* nothing to do (maybe bytes released) */
    COLO_CHECKPOINT_MISMATCH,
    COLO_CHECKPOINT_TIMEOUT,
    COLO_CHECKPOINT_LIMIT,  /* the frame comparator's bounds */
} colo_verdict;

typedef struct colo colo;

typedef struct colo_stats {
    uint64_t epoch;             /* the checkpoint compared against, 0 none */
    bool diverged;              /* this epoch differs: waiting for the next */
    uint64_t pending_primary, pending_secondary;    /* unmatched bytes */
    uint64_t matched_bytes;     /* matched, all epochs */
    uint64_t released_bytes;    /* ... and released: the secondary knew */
    uint64_t secondary_bytes;   /* the SVM's, received for the epoch */
    uint64_t ignored_bytes;     /* the SVM's, of an older checkpoint */
    uint64_t mismatches, timeouts;
} colo_stats;

/*
 * Compares into q with the compare timeout (0: the default).  Not
 * comparing until colo_checkpoint.  0 or -ENOMEM.
 */
int colo_new(colo **out, outqueue *q, uint64_t timeout_ns);
void colo_free(colo *c);
/* --compare-timeout (0: the default); before comparing starts. */
void colo_set_timeout(colo *c, uint64_t timeout_ns);
/*
 * The network side (primary/colonet.h): frames compared, input mirrored.
 * colo_checkpoint, colo_stop and colo_tick drive it with the console.
 */
colonet *colo_net(colo *c);

/*
 * The exact release (docs/colo.md, "Failover"): matched console bytes
 * leave only once the secondary knows, so that its SVM, if it takes
 * over, writes exactly what the world has not seen.  notify (from any
 * thread, with colo's lock held: it must only wake the loop) says a
 * record is due; the loop then takes it with colo_release_due (id, the
 * offset to tell the secondary; one on its way at a time) and sends it
 * ("ftvm-colo-rel"); colo_release_failed when it could not be queued;
 * colo_released on the answer (COLO_RELEASED) releases the bytes and
 * says whether another record is due.
 */
void colo_set_release_notify(colo *c, void (*fn)(void *opaque), void *opaque);
bool colo_release_due(colo *c, uint64_t *id, uint64_t *upto);
void colo_release_failed(colo *c, uint64_t id);
bool colo_released(colo *c, uint64_t id, uint64_t upto);

/* The hc_console_fn of a COLO primary: opaque is the colo. */
int colo_console(void *opaque, const void *buf, size_t len);

/*
 * The VM is paused for checkpoint id, after outqueue_checkpoint(id):
 * compare from here on against the SVM's bytes tagged id.  What was
 * unmatched stays held in the queue for the ACK.
 */
void colo_checkpoint(colo *c, uint64_t id);
/* Replication ended or a new secondary starts: no comparing. */
void colo_stop(colo *c);

/*
 * The SVM's console bytes, tagged with checkpoint id, at now (ns).
 * Releases what matches; a mismatch asks for a checkpoint (once per
 * epoch).  Bytes of another checkpoint than the one compared are ignored.
 * None (len 0): the SVM runs from checkpoint id now.
 */
colo_verdict colo_secondary(colo *c, uint64_t id, const void *buf,
                            size_t len, uint64_t now);
/* One of the SVM's frames (COLO_FRAME), tagged with its checkpoint. */
colo_verdict colo_secondary_frame(colo *c, uint64_t id, const void *frame,
                                  size_t len, uint64_t now);
/*
 * Checkpoint id is acknowledged: the secondary has it and resets its SVM
 * to it now, so from here on the timeout runs for the epoch's bytes (the
 * time to send, apply and reset is not the SVM's lag).
 */
void colo_acked(colo *c, uint64_t id, uint64_t now);
/*
 * A primary byte unmatched for the timeout, on the SVM's time line: from
 * when the SVM said it runs from the epoch's checkpoint plus the byte's
 * distance from that checkpoint on the primary (without that word, from
 * the ACK plus COLO_READY_GRACE timeouts): asks once per epoch.
 */
colo_verdict colo_tick(colo *c, uint64_t now);
/* How often colo_tick should run. */
uint64_t colo_tick_period(const colo *c);

void colo_get_stats(colo *c, colo_stats *out);

#endif
