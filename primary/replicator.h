/*
 * replicator: the primary's side of replication (docs/replication.md).
 *
 * One pri per process drives one VM from the event loop: it brings a
 * secondary up over a link (primary/channel.h), takes a checkpoint every
 * interval (pause, build the package in memory, mark the output epoch,
 * resume, queue the package for the link's thread), keeps at most
 * PROTECTION_WINDOW packages unacknowledged, releases held output (console
 * bytes and network frames, primary/outqueue.h) as acknowledgements
 * come, answers a NACK with a full package and declares the secondary
 * dead when it goes quiet, resets, stalls or says so (PINGs on an idle
 * stream are the link's heartbeat thread's).  Then the VM runs on unprotected (degraded) until
 * replicator_attach, or the reconnect timer, brings a secondary up again.
 *
 * Checkpoint ids start at 1 with each secondary, as the protocol says;
 * output epochs go on across secondaries (outqueue_begin).
 *
 * What each event leads to is decided by primary/protection.h; this
 * module carries it out.  Everything here runs on the loop's thread,
 * which must have libevent's pthreads support (evthread_use_pthreads)
 * before its base was made.
 */
#ifndef FTVM_PRIMARY_REPLICATOR_H
#define FTVM_PRIMARY_REPLICATOR_H

#include "daemon/tls.h"
#include <stdbool.h>
#include <stdint.h>

#include "primary/colo.h"
#include "primary/outqueue.h"
#include "primary/package.h"
#include "primary/protection.h"
#include "daemon/sampler.h"
#include "vm/vm.h"
#include "vm/vmshape.h"

struct event_base;

#define REPLICATOR_CONNECT_TIMEOUT_MS 3000

typedef struct replicator_opts {
    /*
     * HOST:PORT, or NULL for none yet: the VM starts degraded and waits
     * for replicator_attach (with timing.running, a secondary that went
     * live: its VM ran unprotected before, so no first secondary must
     * protect it).
     */
    const char *secondary;
    vmshape shape;              /* sent first, as "ftvm-vm" */
    protection_opts timing;     /* 0s: the defaults */
    /* --tls-creds, --tls-peer, --insecure: every secondary's (tls.h). */
    tls_opts tls;
    /* --witness (etcd endpoints) or NULL, --witness-timeout (0: 1 s). */
    const char *witness;
    uint64_t witness_timeout_ns;
    const char *witness_tls;    /* --witness-tls DIR, for https:// */
    /*
     * --standby-pool (needs witness): the pool's name, or NULL.  While
     * degraded, a standby is picked from it and attached
     * (primary/recruit.h).
     */
    const char *standby_pool;
    /*
     * Optional: whether a secondary may be brought up now (false, with a
     * message, while a checkpoint to disk uses the dirty log).
     */
    bool (*may_protect)(void *opaque, char *err, size_t errlen);
    void *opaque;
    /*
     * --mode (docs/colo.md): COLO compares the console through colo
     * (protected_vm's, which the VM's console_fn feeds); --compare-timeout
     * (0: 100 ms).
     */
    colo_mode mode;
    uint64_t compare_timeout_ns;
    colo *colo;
    /* --compare-log FILE.pcap: mismatching frames (COLO with a NIC). */
    const char *compare_log;
} replicator_opts;

typedef struct replicator replicator;

/*
 * Sets up replication of v (created, not yet started; or, a secondary
 * that went live, running with output not held) whose console and
 * network output go through output (v's console_fn and transmit_fn);
 * frames released from it go to v's network backend.  Nothing is sent
 * before replicator_start.  0 or -errno + msg.
 */
int replicator_new(replicator **out, vm *v, struct event_base *base,
                   outqueue *output, const replicator_opts *o, char *err,
                   size_t errlen);
/*
 * Connects to the secondary (up to REPLICATOR_CONNECT_TIMEOUT_MS) and starts
 * the bring-up; without one (opts.secondary NULL) it only starts the
 * timers: degraded, no secondary yet.  When it cannot be reached this fails, unless reconnect_ns is
 * set: then the VM starts degraded and the timer keeps trying.  Without
 * reconnect_ns, a first secondary lost before its first ACK (a refused TLS
 * handshake, a reset, a refused bring-up) stops the VM as well:
 * replicator_setup_failed.
 */
int replicator_start(replicator *p, char *err, size_t errlen);
void replicator_free(replicator *p);
/*
 * With a witness, before replicator_start: reads the highest generation
 * the witness has decided for the VM's name (witness/generations.h), so
 * that the first pairing is the one after it and a restarted pair never
 * reuses a decided generation.  Without an answer it says so (last_error,
 * the log) and asks again every witness timeout, never guessing.  done
 * runs from the loop once it is known (never if the VM stops first).
 * 0, or -errno with a message.
 */
int replicator_read_generations(replicator *p, void (*done)(void *opaque),
                                void *opaque, char *err, size_t errlen);

/*
 * Takes a checkpoint now (or as soon as the window allows); done is
 * called once it is acknowledged, refused or lost.
 */
int replicator_checkpoint(replicator *p, protection_done_fn done,
                          void *opaque, char *err, size_t errlen);
/*
 * Changes a timing live: "checkpoint-interval", "heartbeat",
 * "failure-timeout", "reconnect" (0 turns reconnecting off).
 */
int replicator_set(replicator *p, const char *key, uint64_t ns, char *err,
                   size_t errlen);
/* Ends replication cleanly: EOF, close; the VM runs on (stopped). */
int replicator_stop(replicator *p, char *err, size_t errlen);
/* Brings a new secondary up at addr (degraded or stopped only). */
int replicator_attach(replicator *p, const char *addr, char *err,
                      size_t errlen);
/*
 * The VM has stopped for good.  takeover: the monitor failed (not the
 * guest), so the connection is dropped without EOF and held output is
 * discarded, leaving the secondary to carry on; otherwise replication
 * ends with EOF and held output is written.  done(opaque) is called on
 * the loop thread once that is over.
 */
void replicator_vm_stopped(replicator *p, bool takeover,
                           void (*done)(void *opaque), void *opaque);

typedef struct replicator_status {
    protection_state state;
    char secondary[256];
    pairing pair;                   /* the VM's name, this secondary's id */
    uint64_t secondaries;           /* brought up (or tried) so far */
    uint64_t interval_ns, heartbeat_ns, failure_ns, reconnect_ns;
    uint64_t taken, acked;          /* checkpoints, all secondaries */
    uint64_t last_id, last_acked;   /* this secondary's ids */
    uint64_t full, nacks;
    uint64_t foreign_answers;       /* of another pairing or generation */
    uint64_t in_flight;
    double rate;                    /* checkpoints per second, recent */
    sampler_summary pause_ns, ack_ns, pages, bytes;
    uint64_t bytes_total;           /* packages, all secondaries */
    uint64_t last_heard_ns;         /* since the secondary last spoke */
    uint64_t pings;                 /* written to this secondary */
    uint64_t pongs, heartbeats;     /* received, all secondaries */
    package_bringup_stats bringup;      /* the last one */
    outqueue_stats output;
    colo_mode mode;
    uint64_t compare_timeout_ns;
    uint64_t causes[COLO_CAUSE_N];  /* checkpoints taken, by cause */
    colo_stats colo;
    char last_error[512];
} replicator_status;

void replicator_get_status(replicator *p, replicator_status *st);
/* COLO of a VM with a NIC: its frames' comparison; else NULL. */
colonet *replicator_colonet(const replicator *p);
/*
 * Whether the first secondary went before protecting the VM without
 * reconnect_ns: the replicator stopped the VM, held output stays held,
 * and the process exits 120 (setup failed) once replicator_vm_stopped's
 * done is called.
 */
bool replicator_setup_failed(const replicator *p);
/*
 * Whether the witness gave the VM to the secondary: the replicator
 * stopped the VM, held output is never released, and the process exits
 * 123 (EXITCODE_FENCED) once replicator_vm_stopped's done is called.
 */
bool replicator_fenced(const replicator *p);
/* The status object "witness" (witness/claim.h's claim_status). */
struct json_t *replicator_witness_status(const replicator *p);
/* The status object "standby_pool" (recruit_status), or NULL without. */
struct json_t *replicator_pool_status(const replicator *p);
/* The value this primary claims with, or NULL without a witness. */
const char *replicator_witness_value(const replicator *p);
/* save's check: refused while a secondary is set up or active. */
int replicator_may_save(const replicator *p, char *err, size_t errlen);
/* The VM it replicates. */
vm *replicator_vm(const replicator *p);

#endif
