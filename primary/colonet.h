/*
 * colonet: the primary's network side of COLO mode (docs/colo.md,
 * "Network"): the primary VM's frames held until the secondary's running
 * VM (the SVM) sent the same (net-compare/), every frame the primary's
 * NIC receives mirrored to the SVM, divergence turned into a request for
 * a checkpoint.
 *
 * Since checkpoint k both VMs run from the same state on the same input,
 * so a guest that behaves deterministically sends the same frames on
 * both.  A frame the SVM also sent leaves at once (outqueue_send_frame);
 * one that differs (mismatch), that the SVM does not send within the
 * compare timeout (timeout, on the SVM's time line: the caller passes
 * it), or that finds the comparator's bounds full (limit) asks for a
 * checkpoint.  At the checkpoint the frames comparison still holds go to
 * the output-commit queue as frames of epoch k, released by the ACK of
 * checkpoint k+1 as in checkpoint mode; comparison starts over.
 *
 * The mirror: each frame the NIC queues for the guest after checkpoint
 * k goes to the secondary tagged k (the caller's mirror function writes
 * it into the stream after package k); the SVM, reset to k, gets it in
 * the same order.  Frames queued before checkpoint k are in k's device
 * state (the NIC's receive queue) or already in the guest's memory.
 *
 * Threads: colonet_transmit on vCPU threads; the rest on the loop's
 * (colonet_input is the NIC's receive tap, which the loop's pump calls,
 * the same thread that takes checkpoints, so no frame falls between a
 * checkpoint's state and its mirror tag).  One lock; the outqueue's and
 * the mirror's locks are taken inside it.
 */
#ifndef FTVM_PRIMARY_COLONET_H
#define FTVM_PRIMARY_COLONET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "daemon/metrics.h"
#include "daemon/sampler.h"
#include "primary/outqueue.h"

/* Longest flows listed in status (colo.net.flow_queues). */
#define COLONET_STATUS_FLOWS 16

/* What comparison asks for (on the loop thread, or kept for colonet_tick). */
typedef enum colonet_ask {
    COLONET_OK,
    COLONET_MISMATCH,
    COLONET_TIMEOUT,
    COLONET_LIMIT,
} colonet_ask;

/*
 * Writes one mirrored frame, tagged with checkpoint id, to the secondary
 * without waiting: 0, or -errno (the frame is not mirrored: counted; the
 * SVM misses an input and the comparison will say so).
 */
typedef int (*colonet_mirror_fn)(void *opaque, uint64_t id,
                                 const void *frame, size_t len);

typedef struct colonet colonet;

typedef struct colonet_stats {
    uint64_t epoch;             /* compared against, 0 none */
    uint64_t frames[2];         /* put, primary and secondary */
    uint64_t compared, matched, mismatched, timeouts, limits;
    uint64_t released_uncompared, released_at_checkpoint;
    uint64_t held_frames[2];    /* now */
    uint64_t flows;             /* now */
    uint64_t ignored_frames;    /* the SVM's, of an older checkpoint */
    uint64_t mirrored_frames, mirror_dropped;
    uint64_t sent_failed;       /* released, refused by the backend */
    sampler_summary latency_ns; /* matched frames: the comparison's delay */
} colonet_stats;

/*
 * Frames into q, compared with timeout_ns (0: the default); not comparing
 * until colonet_checkpoint.  0 or -ENOMEM.
 */
int colonet_new(colonet **out, outqueue *q, uint64_t timeout_ns);
void colonet_free(colonet *n);
/* --compare-timeout (0: the default), before comparing starts. */
void colonet_set_timeout(colonet *n, uint64_t timeout_ns);
/*
 * --compare-log: mismatching pairs written to path (pcap).  0, or -errno
 * with a message (-ENOTSUP: built without libpcap).
 */
int colonet_set_log(colonet *n, const char *path, char *err, size_t errlen);
/* Where mirrored frames go (NULL: nowhere); on the loop thread. */
void colonet_set_mirror(colonet *n, colonet_mirror_fn fn, void *opaque);

/* The hc_transmit_fn of a COLO primary with a NIC: opaque is the colonet. */
int colonet_transmit(void *opaque, const void *frame, size_t len);
/* The NIC's receive tap (net_set_rx_tap): opaque is the colonet. */
void colonet_input(void *opaque, const void *frame, size_t len);

/*
 * The VM is paused for checkpoint id, after outqueue_checkpoint(id):
 * what comparison holds goes to the queue as frames of the epoch before,
 * and comparing starts over against the SVM's frames tagged id.  id 0:
 * replication ended or a new secondary starts: what comparison holds
 * goes to the queue (still holding: the caller releases it next, in
 * order), and frames go straight to the queue again.
 */
void colonet_checkpoint(colonet *n, uint64_t id);

/* One of the SVM's frames, tagged with its checkpoint, at now. */
colonet_ask colonet_secondary(colonet *n, uint64_t id, const void *frame,
                              size_t len, uint64_t now);
/*
 * Time passes: now, and the SVM's lag behind the primary for this epoch
 * (how much later it started from the checkpoint), so that a frame is
 * late when the SVM, not the primary, is a compare timeout past it.
 * svm_known false: the SVM has not started yet (nothing times out).
 * Also returns what a vCPU thread found (a mismatch, a limit), and
 * flushes --compare-log's file (never during a checkpoint's pause).
 */
colonet_ask colonet_tick(colonet *n, uint64_t now, uint64_t lag,
                         bool svm_known);

void colonet_get_stats(colonet *n, colonet_stats *out);
/* The primary's status object "colo.net" (docs/colo.md lists it). */
json_t *colonet_status(colonet *n);
void colonet_metrics(colonet *n, metrics_writer *w);

#endif
