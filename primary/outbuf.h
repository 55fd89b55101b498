/*
 * outbuf: output commit for the guest's console.
 *
 * The console hypercall hands each write to outbuf_console (a vm_config
 * console_fn) on the vCPU thread that made it.  While holding, the bytes
 * are queued, tagged with the epoch of the last outbuf_mark; the primary marks
 * epoch N while the VM is paused for checkpoint N, so bytes tagged N were
 * produced after checkpoint N and may be written only once checkpoint N+1
 * is safe on the secondary: on its acknowledgement the primary calls
 * outbuf_release(b, N).  Bytes reach the fd in the order the guest wrote them,
 * whatever the mix of held and immediate writes.
 *
 * When not holding (no secondary, degraded, stopped) writes go to the fd
 * at once, on the vCPU's thread, as in a plain run.
 *
 * Bounds: once the bytes tagged with the current epoch reach the epoch
 * limit, the limit function is called (once per epoch, on the vCPU
 * thread, with no lock held) so the owner can checkpoint early; bytes
 * beyond OUTBUF_HOLD_MAX held in all are dropped and counted, as a serial
 * line would lose them.
 * Nothing blocks the vCPU on the secondary: a vCPU waiting here could not
 * be paused for the very checkpoint that would release it.
 *
 * Threads: outbuf_console from any vCPU thread; everything else from the
 * owner's (event loop) thread.
 */
#ifndef FTVM_PRIMARY_OUTBUF_H
#define FTVM_PRIMARY_OUTBUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "daemon/sampler.h"

#define OUTBUF_EPOCH_LIMIT (1u << 20) /* default: 1 MiB since the last mark   \
                                       */
#define OUTBUF_HOLD_MAX (16u << 20)   /* held in all, then bytes are dropped */

typedef struct outbuf outbuf;

typedef struct outbuf_stats {
    uint64_t held_bytes, held_writes;   /* queued now */
    uint64_t written_bytes;             /* reached the fd (or failed to) */
    uint64_t dropped_bytes;             /* over OUTBUF_HOLD_MAX, or fd errors */
    uint64_t epoch;                     /* the last mark */
    bool holding;
    sampler_summary delay_ns; /* console call to release */
} outbuf_stats;

/* Output to fd (stdout); starts not holding, at epoch 0.  0 or -ENOMEM. */
int outbuf_new(outbuf **out, int fd);
/* Frees b; bytes still held are dropped (the caller releases first). */
void outbuf_free(outbuf *b);

/* The hc_console_fn: opaque is the ob.  Always 0 (the guest sees none). */
int outbuf_console(void *opaque, const void *buf, size_t len);

/*
 * Calls fn(opaque) when the bytes of one epoch reach limit (0:
 * OUTBUF_EPOCH_LIMIT).  Set it before the vCPUs run.
 */
void outbuf_set_limit(outbuf *b, size_t limit, void (*fn)(void *opaque),
                      void *opaque);
/* Stopping holding first writes everything held, in order. */
void outbuf_set_hold(outbuf *b, bool hold);
/* Bytes from now on carry epoch (which must not decrease). */
void outbuf_mark(outbuf *b, uint64_t epoch);
/* Writes, in order, the held bytes tagged <= upto.  Returns the bytes. */
size_t outbuf_release(outbuf *b, uint64_t upto);

void outbuf_get_stats(outbuf *b, outbuf_stats *out);

#endif
