/*
 * outqueue: the primary's output-commit queue.  Everything the guest says
 * to the outside world, console bytes and network frames, passes through
 * it, so that nothing leaves the host before the checkpoint that produced
 * it is safe on the secondary (docs/replication.md, "Output commit").
 *
 * The VM hands each console write (outqueue_console, a vm_config
 * console_fn) and each frame the guest sends (outqueue_transmit, a
 * vm_config transmit_fn) to the queue on the vCPU thread that made it.
 * Not holding (no secondary yet, degraded, stopped), an item goes out at
 * once: console bytes to the console sink (the VM's conout, vm/conout.h),
 * frames to the frame sink (a backend send, outqueue_net_send).  Holding, it is queued, tagged with the
 * epoch of the last mark, and goes out in order when released.
 *
 * The rule, in checkpoint ids: outqueue_begin when a secondary is brought
 * up (its ids start at 1, epochs go on: the secondary brought up at epoch
 * g marks g + k for its checkpoint k); outqueue_checkpoint(k) while the
 * VM is paused for checkpoint k, so items tagged g + k are those the guest
 * produced after checkpoint k; outqueue_acked(k) on its acknowledgement
 * releases what was produced before checkpoint k, epoch g + k - 1 and
 * older: checkpoint k holds the state that produced them, so no failover
 * can take them back.  outqueue_release_all when protection ends.
 *
 * Bounds: once the items tagged with the current epoch reach the epoch
 * limit (bytes or frames), the limit function is called (once per epoch,
 * on the vCPU thread, with no lock held) so the owner can checkpoint
 * early.  At most OUTQUEUE_MAX_ITEMS items and OUTQUEUE_MAX_BYTES bytes
 * are held: beyond that console bytes are dropped and counted, as a
 * serial line would lose them, and frames are refused with -ENOSPC (the
 * guest sees FTVM_ENOSPC and tries again) and counted.  Nothing blocks a
 * vCPU on the secondary: a vCPU waiting here could not be paused for the
 * very checkpoint that would release it.  Nor does anything here wait for
 * the world: the console sink buffers (and drops, counted, when its
 * reader does not keep up), the frame sink sends without waiting (a peer
 * with no room loses the frame, as on a wire), so a release on the
 * event loop's thread takes no longer than copying.
 *
 * Items reach the world in the order the guest produced them, whatever
 * the mix of held and immediate ones.  Threads: outqueue_console and
 * outqueue_transmit from any vCPU thread; everything else from the
 * owner's (event loop) thread.
 */
#ifndef FTVM_PRIMARY_OUTQUEUE_H
#define FTVM_PRIMARY_OUTQUEUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "daemon/sampler.h"
#include "vm/hc.h"

#define OUTQUEUE_EPOCH_BYTES (1u << 20)  /* one epoch's, then early ... */
#define OUTQUEUE_EPOCH_FRAMES 256u       /* ... checkpoint (defaults) */
#define OUTQUEUE_MAX_BYTES (16u << 20)   /* held in all, console and frames */
#define OUTQUEUE_MAX_ITEMS 65536u        /* console writes and frames */

typedef struct outqueue outqueue;

/*
 * Sends one frame to the network without waiting: 0, or -errno (the frame
 * is lost, as on a wire; -EAGAIN: no room).
 */
typedef int (*outqueue_send_fn)(void *opaque, const void *frame, size_t len);

typedef struct outqueue_stats {
    bool holding;
    uint64_t epoch;                 /* the last mark */
    uint64_t held_items;            /* console writes and frames, now */
    uint64_t held_console_bytes;
    uint64_t held_frames, held_frame_bytes;
    uint64_t console_written_bytes; /* handed to the console sink */
    uint64_t console_dropped_bytes; /* over the bounds, or no sink */
    uint64_t frames_sent;           /* handed to the frame sink */
    uint64_t frames_refused;        /* over the bounds (-ENOSPC) */
    sampler_summary delay_ns;       /* an item's call to its release */
} outqueue_stats;

/* Not holding, at epoch 0.  0 or -ENOMEM. */
int outqueue_new(outqueue **out);
/* Frees q; items still held are dropped (the caller releases first). */
void outqueue_free(outqueue *q);

/*
 * Where console bytes go (before the vCPUs run), e.g. conout_console and
 * the VM's conout; it must not wait.  Without one they are dropped.
 */
void outqueue_set_console_sink(outqueue *q, hc_console_fn fn, void *opaque);
/* Where frames go (before the vCPUs run).  Without one, -ENODEV. */
void outqueue_set_frame_sink(outqueue *q, outqueue_send_fn fn, void *opaque);
/* The frame sink for a NIC's backend (vm/net.h): opaque is the net_dev. */
int outqueue_net_send(void *net, const void *frame, size_t len);

/* The hc_console_fn: opaque is the queue.  Always 0 (the guest sees none). */
int outqueue_console(void *opaque, const void *buf, size_t len);
/*
 * The hc_transmit_fn: opaque is the queue.  0 once queued or sent,
 * -EINVAL for an empty or oversize frame, -ENOSPC over the bounds,
 * or the sink's error for a frame sent at once.
 */
int outqueue_transmit(void *opaque, const void *frame, size_t len);

/*
 * Calls fn(opaque) when the items of one epoch reach frames frames or
 * bytes bytes (0: the defaults).  Set it before the vCPUs run.
 */
void outqueue_set_limit(outqueue *q, size_t frames, size_t bytes,
                        void (*fn)(void *opaque), void *opaque);

/* A secondary is being brought up: its checkpoint ids start at 1. */
void outqueue_begin(outqueue *q);
/*
 * The VM is paused for checkpoint id (of the secondary of the last
 * outqueue_begin): hold from now on, items tagged with its epoch.
 */
void outqueue_checkpoint(outqueue *q, uint64_t id);
/*
 * Checkpoint id is acknowledged: sends, in order, what the guest produced
 * before it.  Returns the items released.
 */
size_t outqueue_acked(outqueue *q, uint64_t id);
/*
 * COLO (primary/colo.h): the next n console bytes the guest wrote after
 * checkpoint id (of the last outqueue_begin) are released now, being the
 * same as the secondary's: at once when nothing older is held before
 * them, else right after what is (outqueue_acked).  Credit for an older
 * epoch is dropped: its bytes wait for their ACK.
 */
void outqueue_release_console(outqueue *q, uint64_t id, size_t n);
/*
 * COLO's frames (primary/colonet.h), which comparison holds itself and
 * hands over here.  outqueue_send_frame: a frame the secondary matched
 * (or one not compared), sent now, t_ns being when the guest sent it (for
 * the delay); 0 or the sink's error.  outqueue_hold_frame: a frame the
 * guest sent after checkpoint id (of the last outqueue_begin) that
 * comparison did not release, appended for the ACK that releases that
 * epoch (sent at once when not holding); the VM is paused, or its frames
 * are routed past the queue, so nothing newer is in the queue before it.
 * 0, or -ENOSPC over the bounds (the frame is lost, counted).
 */
int outqueue_send_frame(outqueue *q, const void *frame, size_t len,
                        uint64_t t_ns);
int outqueue_hold_frame(outqueue *q, uint64_t id, const void *frame,
                        size_t len, uint64_t t_ns);
/* Sends everything held, in order, and stops holding.  The items. */
size_t outqueue_release_all(outqueue *q);

void outqueue_get_stats(outqueue *q, outqueue_stats *out);

#endif
