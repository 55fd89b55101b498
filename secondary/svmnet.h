/*
 * svmnet: the NIC of the secondary's running VM in COLO mode (docs/colo.md,
 * "Network").
 *
 * While the primary lives the SVM's NIC has no host side (backend
 * "none"): its input is what the primary's NIC received, mirrored in the
 * stream and tagged with the checkpoint after which it arrived; its
 * output goes back to the primary on the return path (COLO_FRAME, tagged
 * with the checkpoint the SVM last reset to) to be compared, never to the
 * wire.  A mirrored frame tagged k reaches the SVM once it runs from k:
 * at once when it does, after the reset to k when that is still to come
 * (the package arrives first, the reset follows its ACK), never when it
 * was reset past k (the primary's checkpoint holds that frame's effect).
 *
 * At failover (svmnet_go_live) the SVM takes the host side the cache VM
 * opened (--net), drops what queued there while nobody read it (copies of
 * what the mirror brought, or frames sent to the dead primary), and its
 * frames go out through the survivor's output commit (which holds them
 * once `protect` brought a new secondary up): first those it sent that
 * never reached the return path.
 *
 * Threads: svmnet_transmit on the SVM's vCPU threads; svmnet_input on the
 * receiver's thread; the rest on the loop's.  One lock.
 */
#ifndef FTVM_SECONDARY_SVMNET_H
#define FTVM_SECONDARY_SVMNET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "checkpoint/retpath.h"
#include "vm/hc.h"
#include "vm/vm.h"

struct event_base;

/* Mirrored frames waiting for the SVM's reset; more are dropped. */
#define SVMNET_MAX_INPUT 1024u
/* The SVM's frames waiting for the return path; more are dropped. */
#define SVMNET_MAX_OUTPUT 1024u

typedef struct svmnet svmnet;

typedef struct svmnet_stats {
    uint64_t input_frames;      /* mirrored frames received */
    uint64_t input_delivered;   /* into the SVM's NIC */
    uint64_t input_dropped;     /* stale, over the bound, or a full NIC */
    uint64_t output_frames;     /* the SVM sent */
    uint64_t sent_frames;       /* on the return path */
    uint64_t dropped_frames;    /* over the bound, or of an older reset */
    uint64_t live_frames;       /* to the wire, after failover */
    uint64_t stale_discarded;   /* found in the backend at failover */
} svmnet_stats;

/*
 * send writes one return-path message without blocking: 1 sent,
 * 0 not now (tried again), < 0 the connection is gone (kept for a
 * failover).  live takes the SVM's frames once it is the VM (the
 * survivor's output commit, which sends them to the SVM's NIC).  0 or
 * -ENOMEM.
 */
int svmnet_new(svmnet **out, struct event_base *base,
               int (*send)(void *opaque, const retpath_msg *m),
               void *opaque, hc_transmit_fn live, void *live_opaque);
void svmnet_free(svmnet *n);

/* The hc_transmit_fn of the SVM: opaque is the svmnet.  Always 0. */
int svmnet_transmit(void *opaque, const void *frame, size_t len);
/* A mirrored frame, tagged with checkpoint id (the receiver's thread). */
void svmnet_input(svmnet *n, uint64_t id, const void *frame, size_t len);

/*
 * Around a reset of the SVM v to checkpoint id (v paused, or not yet
 * started): from begin, input is kept; at end, input and output of older
 * checkpoints are dropped, what came for id goes into v's NIC (after the
 * device state, which holds the primary's receive queue at id), and the
 * SVM's frames are tagged id.
 */
void svmnet_begin_reset(svmnet *n);
void svmnet_end_reset(svmnet *n, vm *v, uint64_t id);

/*
 * Failover: the SVM v takes cache's host side, drops what waited in it,
 * and its frames (first those never sent to the primary) go to the
 * wire.  0, or -errno with a message (the SVM keeps running, without a
 * network).
 */
int svmnet_go_live(svmnet *n, vm *v, vm *cache, char *err, size_t errlen);

void svmnet_get_stats(svmnet *n, svmnet_stats *out);

#endif
