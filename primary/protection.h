/*
 * protection: the primary's replication decisions, apart from the links,
 * the VM and the clock that replicator.c and cycle.c drive, so that unit
 * tests can call them (docs/replication.md).
 *
 * One protection follows one VM across its secondaries: whether a
 * secondary protects it (the state), the window of packages sent and not
 * yet acknowledged, which package comes next and whether it must be full,
 * what an ACK, a NACK, a SHUT or silence leads to, what stop-replication
 * and the VM's end do, and the operator's requests waiting for a
 * checkpoint.  Every input is an event, with the time where time matters;
 * every output is a protection_act the caller carries out, in the order
 * its fields are listed.  Nothing here reads a clock or touches a socket.
 *
 * With a witness (docs/witness.md), losing a secondary that may have
 * applied checkpoint 1 (it was written to it) is not yet degraded: the
 * primary claims the pairing's key first (CLAIMING), holding every byte
 * of output from then on while the VM runs.  Won: degraded as without a
 * witness.  Lost: the VM stops and held output is never released
 * (FENCED, exit 123).  No answer: the VM pauses until there is one.
 *
 * Checkpoint ids start at 1 with each secondary, as the protocol says.
 * Held output is released by checkpoint id (release_upto, the argument of
 * outqueue_acked); turning ids into output epochs is primary/outqueue's.
 */
#ifndef FTVM_PRIMARY_PROTECTION_H
#define FTVM_PRIMARY_PROTECTION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "checkpoint/pairing.h"
#include "primary/channel.h"
#include "witness/claim.h"

#define PROTECTION_WINDOW 4        /* packages unacknowledged at most */

typedef enum protection_state {
    PROTECTION_SETUP,    /* connecting, bring-up not yet acknowledged */
    PROTECTION_ACTIVE,   /* checkpoints flowing and acknowledged */
    PROTECTION_DEGRADED, /* the secondary is gone; running unprotected */
    PROTECTION_STOPPED,  /* replication stopped on request */
    PROTECTION_CLAIMING, /* the secondary is gone: asking the witness */
    PROTECTION_FENCED,   /* the witness gave the VM to the secondary */
    /*
     * The first secondary went before protecting the VM, without
     * --reconnect: the VM is being stopped (exit 120, setup failed).
     */
    PROTECTION_SETUP_FAILED,
} protection_state;

/* "setup", "active", "degraded", "stopped", "claiming", "fenced". */
const char *protection_state_name(protection_state s);

typedef struct protection_opts {
    uint64_t interval_ns;       /* 0: 50 ms */
    uint64_t heartbeat_ns;      /* 0: 50 ms */
    uint64_t failure_ns;        /* 0: 300 ms */
    uint64_t reconnect_ns;      /* 0: only an attach brings one up */
    /*
     * A package written but not acknowledged, or a write that made no
     * progress, for this long means a secondary that is alive but stuck
     * (it heartbeats, so the failure timeout cannot tell).  0: 10 s.
     */
    uint64_t stall_ns;
    bool witness;               /* --witness: a loss is claimed first */
    /*
     * The VM already runs unprotected (a secondary that went live): no
     * secondary must protect it first, so losing the first one is a loss
     * like any other, never a failed setup.
     */
    bool running;
} protection_opts;

/*
 * An operator's request waiting for a checkpoint: rc 0 once checkpoint
 * id is acknowledged; < 0 when it is refused or lost with its secondary,
 * err saying why.
 */
typedef void (*protection_done_fn)(void *opaque, int rc, uint64_t id,
                                   const char *err);

typedef struct protection_flight {
    uint64_t id;
    uint64_t sent_ns;       /* 0 until the link wrote it */
} protection_flight;

typedef struct protection_waiter protection_waiter;

/* The state; callers read it, only protection_* functions change it. */
typedef struct protection {
    protection_opts o;
    protection_state state;
    char addr[256];             /* the secondary's, named in messages */
    pairing pair;               /* this secondary's bring-up's */
    bool ready;                 /* the link's bring-up is written */
    bool holding;               /* output is held (from checkpoint 1 on) */
    bool draining;              /* an ended link still writes its EOF */
    bool release_on_drain;      /* write held output once it has */
    bool ending;                /* the VM has stopped for good */
    /*
     * No --reconnect: the first secondary must protect the VM, or the
     * primary ends (setup failed) rather than run unprotected when the
     * user asked for protection and never had it.  Cleared by the first
     * ACK, by stop-replication and by the first secondary's loss.
     */
    bool must_protect;
    bool written;               /* a package's write to it began */
    bool paused;                /* claiming without an answer: VM paused */

    uint64_t next_id, acked_id; /* this secondary's */
    bool need_full;             /* the next package must be full */
    bool due;                   /* one was asked for while the window was full */
    uint64_t last_full_id;
    unsigned full_refusals;     /* full packages refused since the last ACK */
    protection_flight win[PROTECTION_WINDOW];
    size_t nwin;
    uint64_t last_start_ns;     /* when the last checkpoint began */
    uint64_t last_tick_ns;      /* the last liveness check */
    protection_waiter *waiters;

    uint64_t secondaries;       /* brought up (or tried) so far */
    uint64_t taken, acked, full, nacks;     /* all secondaries */
    /* Answers of another pairing (id, name or generation): each ended
     * its link as a protocol error. */
    uint64_t foreign_answers;
    char last_error[512];
} protection;

/* How to end the current link, if at all. */
typedef enum protection_end {
    PROTECTION_KEEP,
    PROTECTION_DROP,        /* shut it down at once */
    PROTECTION_FINISH,      /* what is queued and EOF, then close */
    PROTECTION_DISCARD,     /* free it and the draining one now, no EOF */
} protection_end;

/* What the caller does next, in this order. */
typedef struct protection_act {
    bool say;               /* log msg (what went wrong is in last_error) */
    char msg[1500];
    protection_end end;     /* the link becomes the draining one */
    /*
     * FINISH: the secondary may be alive, so the EOF goes after a drop
     * notice ("ftvm-drop", devstate/dropnotice.h) with this reason and
     * why as its text: it stops rather than fail over.
     */
    uint32_t drop_reason;
    uint64_t release_upto;  /* non-0: outqueue_acked(release_upto) */
    bool release_all;       /* outqueue_release_all: output flows unheld */
    bool protected_now;     /* the first ACK: log "protected by" */
    bool have_ack_ns;       /* ack_ns: an ACK's time since its package */
    uint64_t ack_ns;        /* left the link, for the latency figures */
    size_t nanswers;        /* protection_answer(upto, rc, why) for */
    struct {                /* each: the waiters this decides */
        uint64_t upto;
        int rc;
    } answers[2];
    char why[1400];
    bool reconnect;         /* arm the reconnect timer */
    bool rearm;             /* arm the checkpoint timer (protection_delay) */
    bool take;              /* take a checkpoint now (protection_next) */
    bool finished;          /* the VM's end is complete: tell the owner */
    /*
     * The first secondary went before protecting the VM, without
     * --reconnect: stop the VM and exit 120 (setup failed).  Held output
     * stays held and is dropped: nothing it came from was ever safe.
     */
    bool setup_failed;
    bool claim;             /* claim pair's key from the witness */
    bool pause, resume;     /* the VM's vCPUs (claiming, no answer) */
    /*
     * The witness gave the VM to the secondary: stop the VM and exit 123.
     * Held output stays held and is dropped: the secondary runs on from
     * a state that never produced it.
     */
    bool fenced;
} protection_act;

/*
 * Options with the defaults filled in; degraded until protection_begin.
 * Without o->reconnect_ns (and o->running) the first secondary must
 * protect the VM (must_protect).
 */
void protection_init(protection *p, const protection_opts *o,
                     const char *addr);
/* Answers every waiter with -ECONNABORTED and msg, and frees them. */
void protection_fini(protection *p, const char *msg);

/* ---- a secondary's life ---- */

/*
 * A secondary at addr is being brought up (the caller has checked that
 * one may be, protection_may_attach, and frees the draining link) with a
 * pairing drawn for it: ids start again at 1, and every ACK and NACK must
 * carry that pairing.
 */
protection_act protection_begin(protection *p, const char *addr,
                                const pairing *pair);
/* Its link could not even be made. */
protection_act protection_begin_failed(protection *p);
/* The bring-up is written: checkpoints may flow. */
protection_act protection_ready(protection *p);
/*
 * The secondary is gone (the link failed, reset or ended): degraded; or,
 * the first one, before its first ACK and without --reconnect, setup
 * failed (as for every other end of that secondary's link).
 */
protection_act protection_lose(protection *p, const char *why);
/*
 * The witness's answer to the claim a lost secondary began (witness/
 * claim.h's states: WON, LOST, UNKNOWN; owner: LOST's value).
 */
protection_act protection_claimed(protection *p, claim_state outcome,
                                  const char *owner, const char *err);
/*
 * This process did not run for stall_ns (channel_take_stall) before an
 * ACK or NACK was read.  If the secondary could have heard nothing for
 * its failure timeout meanwhile (a stall of half of it or more: the
 * heartbeat interval and the network take the rest), it may have claimed
 * the VM and gone live while the answer waited in the socket; releasing
 * output on it now would put this copy's output after the other's.  With
 * a witness that is a loss, claimed like any other (the answer is not
 * acted on): an empty act when the stall is shorter, without a witness
 * (nothing could decide it), or with no secondary.
 */
protection_act protection_stalled(protection *p, uint64_t stall_ns);
/* The draining link has ended. */
protection_act protection_drained(protection *p);
/* Whether the reconnect timer runs (set, and the VM has not ended). */
bool protection_retries(const protection *p);
/*
 * Whether the reconnect timer, when it fires, brings one up: degraded,
 * and the last link has ended (protection_drained arms it again).
 */
bool protection_may_reconnect(const protection *p);
/* Keeps msg as the last error, for status. */
void protection_note(protection *p, const char *msg);

/* ---- checkpoints ---- */

typedef struct protection_plan {
    bool take;              /* false: not now (none, or the window is full) */
    uint64_t id;
    bool full;
    uint64_t base;          /* the package builds on this id (0: full) */
} protection_plan;

/* Whether and which checkpoint to take now; a full window makes one due. */
protection_plan protection_next(protection *p);
/* A planned checkpoint is starting (its interval counts from now). */
void protection_started(protection *p, uint64_t now);
/* It was captured and its epoch marked: output is held from now on. */
void protection_hold(protection *p);
/* Its package could not be made: why is for the log. */
protection_act protection_build_failed(protection *p,
                                       const protection_plan *pl,
                                       const char *why);
/* Its package goes to the link: it is in flight. */
protection_act protection_taken(protection *p, const protection_plan *pl);
/* The link wrote package id at sent_ns (0: dropped unsent). */
void protection_sent(protection *p, uint64_t id, uint64_t sent_ns);
/*
 * The link has begun writing package sending (channel_times.sending, 0:
 * none yet).  From then on the secondary may hold it whole and fail over
 * to it, even before protection_sent says so (that report comes through
 * the loop, maybe after the link's end): with a witness, its loss is
 * claimed.  The caller says so before reporting the link's end.
 */
void protection_writing(protection *p, uint64_t sending);
/* Ns from now until the next checkpoint is due (an interval after the
 * last began). */
uint64_t protection_delay(const protection *p, uint64_t now);

/* ---- the return path ---- */

/*
 * An ACK or NACK of checkpoint id, carrying pair; sending is the last
 * package whose write to the link began (channel_times).  One of another
 * pairing, or for a checkpoint that was not sent, is a protocol error
 * that ends the link (degraded): it is no secondary's honest answer, and
 * acting on it could release output before its checkpoint is safe.
 */
protection_act protection_ack(protection *p, uint64_t id, const pairing *pair,
                              uint64_t sending, uint64_t now);
protection_act protection_nack(protection *p, uint64_t id,
                               const pairing *pair, uint64_t sending,
                               const char *text);
protection_act protection_shut(protection *p, uint32_t code);
/*
 * The secondary refuses this pairing (REFUSE, before applying anything):
 * its reason is logged, and the link ends as after a loss (claimed with a
 * witness once a package's write began: the word of a peer is no proof).
 * One of another pairing is a protocol error, as for an ACK.
 */
protection_act protection_refused(protection *p, uint64_t decided,
                                  const pairing *pair, const char *text);

/* ---- liveness ---- */

/* How often protection_tick runs. */
uint64_t protection_tick_period(const protection *p);
/*
 * The periodic check: silence or a stalled link.  PINGs are not decided
 * here: each link's heartbeat thread sends them (primary/channel_thread.c).
 */
protection_act protection_tick(protection *p, uint64_t now,
                               const channel_times *t);

/* ---- requests ---- */

/*
 * Waits for the next checkpoint (taken now, or once the window allows):
 * 0, or -ENOTCONN / -ENOMEM with a message.
 */
int protection_wait(protection *p, protection_done_fn fn, void *opaque,
                    protection_act *a, char *err, size_t errlen);
/* Answers waiters: rc 0, those on a checkpoint <= upto; else those on
 * upto exactly, or all for UINT64_MAX. */
void protection_answer(protection *p, uint64_t upto, int rc,
                       const char *msg);
/* stop-replication: 0 with the act, or -ENOTCONN with a message. */
int protection_stop(protection *p, protection_act *a, char *err,
                    size_t errlen);
/*
 * attach-secondary: 0, or -ESHUTDOWN / -EISCONN / -EBUSY (claiming, or
 * the last link still writing its drop notice) with a message.
 */
int protection_may_attach(const protection *p, char *err, size_t errlen);
/* A checkpoint to disk: refused (-EBUSY) while a secondary is set up or
 * active. */
int protection_may_save(const protection *p, char *err, size_t errlen);
/*
 * The VM has stopped for good.  takeover: the monitor failed, so the
 * links are freed without EOF and held output stays held (it belongs to
 * state the secondary will redo); otherwise replication ends with EOF.
 */
protection_act protection_vm_stopped(protection *p, bool takeover);

#endif
