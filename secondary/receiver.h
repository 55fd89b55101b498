/*
 * receiver: the secondary's end of one replication connection
 * (docs/replication.md).
 *
 * A receiver thread runs the stream loader (checkpoint/savevm.h) over the
 * socket.  It creates the VM from the primary's "ftvm-vm" section (created,
 * never started: its RAM is the RAM cache), applies the bring-up's "ram"
 * sections directly, then takes each checkpoint package whole, validates
 * it in full (the "ftvm-pkg" base rule, every section, the "ftvm-ckpt" sum
 * over the package), applies it to the VM's RAM and device state and
 * answers ACK; a package that fails is answered NACK with the reason,
 * changes nothing, and the stream goes on.  PINGs are answered by the
 * loader.
 *
 * The event loop's thread sends a HEARTBEAT whenever nothing else went
 * out for the heartbeat interval, and declares the primary dead when
 * nothing has arrived from it for the failure timeout.  Arrival is the
 * kernel's (TCP_INFO's last data received), so that a large package
 * arriving slowly counts as life even though the loader reads it in one
 * call; time spent validating and applying a package, while the thread
 * does not read, never counts as silence.
 *
 * Locks: the return path's writers (the loader's PONG, ACK, NACK and SHUT
 * on the receiver thread, HEARTBEAT on the loop's) take one mutex; the
 * loop only ever tries it and writes without blocking, so a primary that
 * stops reading can never stall the loop and its failure timer.  A second
 * mutex is held while a package is applied; sec_rx_hold takes it to see
 * (or save) the cache at a checkpoint boundary.
 */
#ifndef FTVM_SECONDARY_RECEIVER_H
#define FTVM_SECONDARY_RECEIVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vm/vm.h"
#include "vm/vmshape.h"

struct event_base;

/* How far one connection got. */
typedef enum sec_phase {
    SEC_PHASE_CONNECTED,    /* no VM yet: not known to be a primary */
    SEC_PHASE_SETUP,        /* the VM exists; the bring-up is arriving */
    SEC_PHASE_ACTIVE,       /* at least one checkpoint applied */
    SEC_PHASE_ENDED,
} sec_phase;

/* Why a connection ended. */
typedef enum sec_end {
    SEC_END_EOF = 1,    /* the primary ended the stream (stop-replication) */
    SEC_END_LOST,       /* closed, reset, or cut off inside a record */
    SEC_END_TIMEOUT,    /* nothing arrived for the failure timeout */
    SEC_END_PROTOCOL,   /* the stream was refused; SHUT 1 was sent */
    SEC_END_LOCAL,      /* sec_rx_stop */
} sec_end;

/* SHUT codes the secondary sends (docs/replication.md). */
enum {
    SEC_SHUT_CLEAN = 0,     /* stop-replication */
    SEC_SHUT_ERROR = 1,     /* the stream was refused */
    SEC_SHUT_LEAVING = 2,   /* the secondary is going away (quit, signal) */
};

typedef struct sec_rx sec_rx;

typedef struct sec_rx_opts {
    uint64_t failure_timeout_ns;
    uint64_t heartbeat_ns;
    const char *net;        /* backend spec for the VM, or NULL */
    /* Both are called on the loop's thread.  The VM becomes the caller's. */
    void (*on_vm)(void *opaque, vm *v);
    /* The receiver thread has ended (joined); sec_rx_free may follow. */
    void (*on_end)(void *opaque, sec_end why, const char *msg);
    void *opaque;
} sec_rx_opts;

typedef struct sec_rx_stats {
    sec_phase phase;
    uint64_t applied;           /* checkpoints applied */
    uint64_t last_id;           /* the last one applied, 0 for none */
    uint64_t refused;           /* packages answered NACK */
    char last_refusal[512];
    /* From a package's first section validated to its ACK, in ms. */
    double apply_last_ms, apply_p50_ms, apply_p99_ms;
    uint64_t package_bytes_last, package_bytes_total;
    uint64_t pings;             /* PINGs answered */
    uint64_t heartbeats;        /* HEARTBEATs sent */
    int64_t since_heard_ms;     /* since data last arrived; -1 unknown */
} sec_rx_stats;

/*
 * Takes over a connected socket (its peer's address in peer, for every
 * message) and starts the receiver thread.  Requires libevent's pthreads
 * support on base.  0, or -errno with a message (fd is then closed).
 */
int sec_rx_start(sec_rx **out, struct event_base *base, int fd,
                 const char *peer, const sec_rx_opts *o, char *err,
                 size_t errlen);
/*
 * Ends replication from this side (from the loop's thread): sends SHUT
 * code unless code < 0, then shuts the socket down, which unblocks the
 * receiver; a package being received is dropped, one that validated is
 * not applied.  on_end(why) follows.  Only the first call counts.
 */
void sec_rx_stop(sec_rx *rx, sec_end why, int code);
/* Joins the thread (stopping it if need be), closes the socket. */
void sec_rx_free(sec_rx *rx);

/*
 * Waits for a package being applied to finish and keeps the next one
 * out until sec_rx_release: the VM is then exactly the last checkpoint
 * applied (for saving the cache, and for starting it at failover).
 */
void sec_rx_hold(sec_rx *rx);
void sec_rx_release(sec_rx *rx);

const char *sec_rx_peer(const sec_rx *rx);
/* The primary's VM shape; valid once on_vm was called. */
const vmshape *sec_rx_shape(const sec_rx *rx);
/* When the end was decided (CLOCK_MONOTONIC ns), once on_end was called. */
uint64_t sec_rx_end_ns(sec_rx *rx);
void sec_rx_get_stats(sec_rx *rx, sec_rx_stats *out);

#endif
