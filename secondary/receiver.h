/*
 * receiver: the secondary's end of one replication connection
 * (docs/replication.md), made of three parts:
 *
 *   secondary/connection.h  the socket, the return path's writers,
 *                           heartbeats and failure detection (the loop's);
 *   secondary/apply.h       each record's fate: the bring-up, and every
 *                           package validated whole, applied, ACKed or
 *                           NACKed (the loader's target);
 *   secondary/replica.h     the VM, made from the primary's "ftvm-vm".
 *
 * A receiver thread runs the loader over the socket; the VM it creates
 * (created, never started: its RAM is the RAM cache) and the end of the
 * connection are reported to the loop's thread.
 */
#ifndef FTVM_SECONDARY_RECEIVER_H
#define FTVM_SECONDARY_RECEIVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "secondary/apply.h"
#include "secondary/replica.h"
#include "vm/vm.h"
#include "vm/vmshape.h"

struct event_base;

/* How far one connection got. */
typedef enum receiver_phase {
    RECEIVER_PHASE_CONNECTED, /* no VM yet: not known to be a primary */
    RECEIVER_PHASE_SETUP,     /* the VM exists; the bring-up is arriving */
    RECEIVER_PHASE_ACTIVE,    /* at least one checkpoint applied */
    RECEIVER_PHASE_ENDED,
} receiver_phase;

/* Why a connection ended. */
typedef enum receiver_end {
    RECEIVER_END_EOF = 1, /* the primary ended the stream (stop-replication) */
    RECEIVER_END_LOST,    /* closed, reset, or cut off inside a record */
    RECEIVER_END_TIMEOUT, /* nothing arrived for the failure timeout */
    RECEIVER_END_PROTOCOL, /* the stream was refused; SHUT 1 was sent */
    RECEIVER_END_LOCAL,    /* receiver_stop */
    /*
     * The primary said it drops this secondary ("ftvm-drop"): however the
     * connection ended after that, the primary is alive and keeps the VM.
     */
    RECEIVER_END_DROPPED,
} receiver_end;

/* SHUT codes the secondary sends (docs/replication.md). */
enum {
    RECEIVER_SHUT_CLEAN = 0,   /* stop-replication */
    RECEIVER_SHUT_ERROR = 1,   /* the stream was refused */
    RECEIVER_SHUT_LEAVING = 2, /* the secondary is going away (quit, signal) */
};

typedef struct receiver receiver;

typedef struct receiver_opts {
    uint64_t failure_timeout_ns;
    uint64_t heartbeat_ns;
    const char *net;        /* backend spec for the VM, or NULL */
    const char *disk;       /* --disk: the copy of a VM's disk, or NULL */
    /* fd is a TLS pump's plaintext end over tcp_fd (connection_opts). */
    bool pumped;
    int tcp_fd;
    const char *vm_name;    /* the primary's VM must be this one; NULL any */
    /* Until checkpoint 1: progress at least this often (connection.h). */
    uint64_t setup_timeout_ns;
    /* The VM's output hooks once it runs (replica.h). */
    replica_output output;
    /*
     * Optional, on the loop's thread: the primary's "ftvm-vm" came, and
     * nothing is created (or acknowledged) until receiver_admit answers,
     * from the loop's thread, now or later.
     */
    void (*on_shape)(void *opaque, const vmshape *shape);
    /* Both are called on the loop's thread.  The VM becomes the caller's. */
    void (*on_vm)(void *opaque, vm *v);
    /*
     * The receiver thread has ended (joined); receiver_free may follow.
     * msg says why and names the peer, once: the caller adds no address.
     */
    void (*on_end)(void *opaque, receiver_end why, const char *msg);
    /* Optional: one or more checkpoints were applied since the last. */
    void (*on_applied)(void *opaque);
    /* Optional: the primary runs in COLO mode (after on_vm). */
    void (*on_colo)(void *opaque);
    /*
     * Optional, on the receiver thread (not the loop's): a frame the
     * primary's NIC received after checkpoint id ("ftvm-colo-in", COLO
     * streams only), in the order received; frame is valid during the
     * call only.  The stream waits meanwhile: copy and return.  Frames
     * come between packages, after on_colo.
     */
    void (*on_colo_input)(void *opaque, uint64_t id, const void *frame,
                          size_t len);
    /*
     * Optional, on the receiver thread: the primary will release the
     * first console bytes written after checkpoint id once it hears back
     * ("ftvm-colo-rel", docs/colo.md "Failover").
     */
    void (*on_colo_release)(void *opaque, uint64_t id, uint64_t console);
    void *opaque;
} receiver_opts;

typedef struct receiver_stats {
    receiver_phase phase;
    apply_stats apply;          /* checkpoints applied and refused */
    uint64_t heartbeats;        /* HEARTBEATs sent */
    int64_t since_heard_ms;     /* since data last arrived; -1 unknown */
    uint64_t colo_input_frames; /* "ftvm-colo-in" frames received */
} receiver_stats;

/*
 * Takes over a connected socket (its peer's address in peer, for every
 * message) and starts the receiver thread.  Requires libevent's pthreads
 * support on base.  0, or -errno with a message (fd is then closed).
 */
int receiver_start(receiver **out, struct event_base *base, int fd,
                   const char *peer, const receiver_opts *o, char *err,
                   size_t errlen);
/*
 * Ends replication from this side (from the loop's thread): sends SHUT
 * code unless code < 0, then shuts the socket down, which unblocks the
 * receiver; a package being received is dropped, one that validated is
 * not applied.  on_end(why) follows.  Only the first call counts.
 */
void receiver_stop(receiver *rx, receiver_end why, int code);
/*
 * The answer to on_shape: rc 0 goes on; rc < 0 refuses the primary with
 * why (sent to it as REFUSE with decided, the generation that makes it
 * stale), and the stream ends as a protocol error.  Only the first
 * answer to each on_shape counts.
 */
void receiver_admit(receiver *rx, int rc, uint64_t decided, const char *why);
/* Joins the thread (stopping it if need be), closes the socket. */
void receiver_free(receiver *rx);

/*
 * Waits for a package being applied to finish and keeps the next one
 * out until receiver_release: the VM is then exactly the last checkpoint
 * applied (for saving the cache, and for starting it at failover).
 */
void receiver_hold(receiver *rx);
void receiver_release(receiver *rx);

/*
 * One whole return-path message from the loop's thread, without
 * blocking (COLO's, secondary/svm.h): 1 sent, 0 not now, < 0 gone.
 */
int receiver_try_send(receiver *rx, const retpath_msg *m);
const char *receiver_peer(const receiver *rx);
/* The primary's VM shape; valid once on_vm was called. */
const vmshape *receiver_shape(const receiver *rx);
/* When the end was decided (CLOCK_MONOTONIC ns), once on_end was called. */
uint64_t receiver_end_ns(receiver *rx);
void receiver_get_stats(receiver *rx, receiver_stats *out);

#endif
