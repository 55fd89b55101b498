/*
 * secondary: see secondary.h.  One libevent loop in the main thread
 * carries the listener, the receiver's reports, failover, the control
 * socket and checkpoints to disk; secondary/standby.h decides, this file
 * acts.
 */
#include "secondary/secondary.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "daemon/exitcode.h"
#include "daemon/log.h"
#include "secondary/enlist.h"
#include "secondary/failover.h"
#include "daemon/tlsaccept.h"
#include "secondary/listener.h"
#include "secondary/receiver.h"
#include "secondary/standby.h"
#include "secondary/survivor.h"
#include "secondary/svm.h"
#include "vm/mono.h"
#include "witness/claim.h"
#include "witness/generations.h"

typedef struct secondary {
    secondary_opts *o;
    daemon_process *d;
    listener *lis;
    tls_ctx *tls;
    tlsaccept *gate;            /* handshakes before a connection counts */
    receiver *rx;
    vm *v;
    failover *fo;
    survivor *sv;               /* the VM's output commit; after failover,
                                   its replicator */
    svm *svm;                   /* COLO mode: the running copy, or NULL */
    vm *cache;                  /* after a COLO failover: the RAM cache */
    claim *witness;             /* --witness, or NULL */
    pool_standby *pool;         /* --register, or NULL */
    generations *gens;          /* with it: checks each primary's */
    uint64_t admit_gen;         /* the generation being checked */
    uint64_t admit_deadline;    /* when no answer refuses it */
    standby_state state;
    standby_request request;    /* why we stopped the receiver, if we did */
    int request_status;
    control_req *fo_req;        /* a failover command waiting for its answer */
    uint64_t fo_t0;             /* detection, or the command */
    double failover_ms;
    uint64_t continued_from;
    uint64_t continued_console; /* the guest's console bytes by then */
    char fo_reason[640];
} secondary;

static void colo_fail_over(secondary *s, const char *reason,
                           const receiver_stats *st);

static bool applied(secondary *s)
{
    receiver_stats st;
    if (!s->rx)
        return false;
    receiver_get_stats(s->rx, &st);
    return st.apply.applied > 0;
}

static const char *state_name(secondary *s)
{
    return standby_state_name(s->state, applied(s));
}

/* The pairing of the primary served (generation 0 before its VM came). */
static pairing served(secondary *s)
{
    receiver_stats st;
    pairing none = { .generation = 0 };
    if (!s->rx)
        return none;
    receiver_get_stats(s->rx, &st);
    return st.apply.have_vm ? st.apply.pair : none;
}

/* ---- failover ---- */

static void answer_failover(secondary *s, int rc, const char *err)
{
    if (!s->fo_req)
        return;
    if (rc < 0)
        control_reply_error(s->fo_req, rc, err);
    else
        control_reply(s->fo_req, json_pack("{s:f, s:I}", "failover_ms",
                                           s->failover_ms, "continued_from",
                                           (json_int_t)s->continued_from));
    s->fo_req = NULL;
}

static void fail_over(secondary *s, const char *reason)
{
    char err[512];
    receiver_stats st;
    receiver_get_stats(s->rx, &st);
    if (s->svm && svm_vm(s->svm)) {
        colo_fail_over(s, reason, &st);
        return;
    }
    s->state = STANDBY_FAILOVER;
    if (reason != s->fo_reason)
        snprintf(s->fo_reason, sizeof(s->fo_reason), "%s", reason);
    /* Keeps a checkpoint of the cache being written out of the start. */
    receiver_hold(s->rx);
    s->continued_console = vm_console_bytes(s->v);
    int rc = failover_start(&s->fo, s->v, daemon_base(s->d),
                            receiver_shape(s->rx)->mac, survivor_on_stop,
                            s->sv, err, sizeof(err));
    receiver_release(s->rx);
    if (rc < 0) {
        log_msg("failover failed: %s", err);
        answer_failover(s, rc, err);
        daemon_exit(s->d, EXITCODE_ERROR);
        return;
    }
    s->failover_ms = (mono_ns() - s->fo_t0) / 1e6;
    s->continued_from = st.apply.last_id;
    s->state = STANDBY_RUNNING;
    log_msg("failover (%s): the VM runs here from checkpoint %" PRIu64 ", "
            "%.1f ms after %s", reason, st.apply.last_id, s->failover_ms,
            s->fo_req ? "the command" : "detection");
    /* Now a primary with no secondary yet: protect brings one up. */
    survivor_start(s->sv, s->o, receiver_shape(s->rx));
    answer_failover(s, 0, NULL);
}

/* ---- COLO (secondary/svm.h, docs/colo.md) ---- */

static int svm_send(void *opaque, const retpath_msg *m)
{
    secondary *s = opaque;
    return s->rx ? receiver_try_send(s->rx, m) : -ENOTCONN;
}

static void svm_on_stop(vm *v, void *arg)
{
    secondary *s = arg;
    if (s->state == STANDBY_RUNNING) {
        survivor_on_stop(v, s->sv);
        return;
    }
    vm_stop_info si;
    vm_get_stop_info(v, &si);
    log_msg("the SVM stopped (%s): nothing to compare with until the "
            "primary's next checkpoint", si.msg);
}

static bool make_svm(secondary *s)
{
    if (!s->svm) {
        replica_output live = survivor_output(s->sv);
        svm_opts so = { .base = daemon_base(s->d), .send = svm_send,
                        .send_opaque = s, .live_console = live.console_fn,
                        .live_opaque = live.console_opaque,
                        .live_transmit = live.transmit_fn,
                        .live_transmit_opaque = live.transmit_opaque,
                        .on_stop = svm_on_stop, .stop_arg = s };
        if (svm_new(&s->svm, &so) < 0) {
            log_msg("COLO: out of memory for the SVM");
            return false;
        }
    }
    return true;
}

/* COLO mode: the SVM is made ahead of checkpoint 1. */
static void on_colo(void *opaque)
{
    secondary *s = opaque;
    char err[512];
    if (!s->rx || !s->v || !make_svm(s))
        return;
    if (svm_prepare(s->svm, receiver_shape(s->rx), err, sizeof(err)) < 0)
        log_msg("COLO: the SVM: %s", err);
    else
        log_msg("COLO mode: the SVM (%" PRIu64 " MiB more) runs from "
                "checkpoint 1", receiver_shape(s->rx)->mem_size >> 20);
}

/* A frame the primary's NIC received (the receiver's thread). */
static void on_colo_input(void *opaque, uint64_t id, const void *frame,
                          size_t len)
{
    secondary *s = opaque;
    if (s->svm)
        svm_input(s->svm, id, frame, len);
}

/* The primary releases console bytes once told (the receiver's thread). */
static void on_colo_release(void *opaque, uint64_t id, uint64_t console)
{
    secondary *s = opaque;
    if (s->svm)
        svm_release(s->svm, id, console);
}

/* Checkpoints were applied: the SVM is made, or reset, from the cache. */
static void on_applied(void *opaque)
{
    secondary *s = opaque;
    receiver_stats st;
    char err[512];
    receiver_get_stats(s->rx, &st);
    if (!st.apply.colo || s->state != STANDBY_REPLICATING || !s->v ||
        !make_svm(s))
        return;
    bool first = !svm_vm(s->svm);
    receiver_hold(s->rx);
    receiver_get_stats(s->rx, &st);
    int r = svm_reset(s->svm, s->v, receiver_shape(s->rx), st.apply.last_id,
                      err, sizeof(err));
    receiver_release(s->rx);
    if (r < 0)
        log_msg("COLO: the SVM at checkpoint %" PRIu64 ": %s",
                st.apply.last_id, err);
    else if (first)
        log_msg("COLO: the SVM runs from checkpoint %" PRIu64,
                st.apply.last_id);
}

/*
 * Failover in COLO mode: no state load, the SVM runs on (reset first to
 * a later checkpoint applied since its last reset), its output now the
 * world's.
 */
static void colo_fail_over(secondary *s, const char *reason,
                           const receiver_stats *st)
{
    char err[512];
    svm_stats ss;
    s->state = STANDBY_FAILOVER;
    if (reason != s->fo_reason)
        snprintf(s->fo_reason, sizeof(s->fo_reason), "%s", reason);
    receiver_hold(s->rx);
    svm_get_stats(s->svm, &ss);
    int r = 0;
    if (ss.reset_to != st->apply.last_id)
        r = svm_reset(s->svm, s->v, receiver_shape(s->rx), st->apply.last_id,
                      err, sizeof(err));
    receiver_release(s->rx);
    if (r < 0) {
        log_msg("failover failed: %s", err);
        answer_failover(s, r, err);
        daemon_exit(s->d, EXITCODE_ERROR);
        return;
    }
    vm *v = svm_vm(s->svm), *cache = s->v;
    s->continued_console = vm_console_bytes(cache);
    s->cache = cache;           /* kept: packages may still point at it */
    s->v = v;
    survivor_vm(s->sv, v);
    daemon_set_vm(s->d, v);
    /* Its NIC joins the network the cache's --net opened. */
    if (svm_go_live(s->svm, cache, err, sizeof(err)) < 0)
        log_msg("failover, COLO: the SVM runs without a network: %s", err);
    else if (vm_net(v) &&
             failover_announce(&s->fo, v, daemon_base(s->d),
                               receiver_shape(s->rx)->mac, err,
                               sizeof(err)) < 0)
        log_msg("failover, COLO: %s", err);
    s->failover_ms = (mono_ns() - s->fo_t0) / 1e6;
    s->continued_from = st->apply.last_id;
    s->state = STANDBY_RUNNING;
    log_msg("failover (%s), COLO: the SVM runs on from checkpoint %" PRIu64
            ", %.1f ms after %s", s->fo_reason, st->apply.last_id,
            s->failover_ms, s->fo_req ? "the command" : "detection");
    survivor_start(s->sv, s->o, receiver_shape(s->rx));
    answer_failover(s, 0, NULL);
}

/* ---- the witness ---- */

static void stop_replication(secondary *s, standby_request request,
                             int status, int code);

static void on_claim(void *opaque, claim_state outcome)
{
    secondary *s = opaque;
    bool requested = s->state == STANDBY_REPLICATING;
    const char *err = claim_error(s->witness);
    char msg[512];

    switch (standby_on_claim(requested, outcome)) {
    case STANDBY_CLAIM_FAIL_OVER:
        log_msg("the witness gave the VM to this secondary (%s)",
                claim_key(s->witness));
        if (requested)      /* on_end fails over once the receiver stops */
            stop_replication(s, STANDBY_REQUEST_FAILOVER, 0, -1);
        else
            fail_over(s, s->fo_reason);
        break;
    case STANDBY_CLAIM_FENCED:
        log_msg("the primary kept the VM (owner: %s): this secondary never "
                "runs it", claim_owner(s->witness));
        s->state = STANDBY_STOPPED;
        answer_failover(s, -EPERM, "the witness gave the VM to the primary");
        daemon_exit(s->d, STANDBY_EXIT_FENCED);
        break;
    case STANDBY_CLAIM_REFUSE:
        s->request = STANDBY_REQUEST_NONE;
        if (outcome == CLAIM_LOST)
            snprintf(msg, sizeof(msg), "failover refused: the witness gave "
                     "the VM to the primary (owner: %s)",
                     claim_owner(s->witness) ? claim_owner(s->witness)
                                             : "?");
        else
            snprintf(msg, sizeof(msg), "failover refused: cannot reach the "
                     "witness (%s); --force goes live without it",
                     err ? err : "no answer");
        claim_cancel(s->witness);       /* an operator asks again */
        log_msg("%s", msg);
        answer_failover(s, outcome == CLAIM_LOST ? -EPERM : -EAGAIN, msg);
        break;
    case STANDBY_CLAIM_WAIT:
        log_msg("cannot reach the witness (%s): not running the VM; asking "
                "again every %.3g s", err ? err : "no answer",
                (s->o->witness_timeout_ns ? s->o->witness_timeout_ns
                                          : CLAIM_DEFAULT_TIMEOUT_NS) / 1e9);
        break;
    case STANDBY_CLAIM_NOTHING:
        break;
    }
}

/* The primary is lost: asks the witness before going live. */
static void claim_the_vm(secondary *s, const char *reason)
{
    char err[512];
    pairing p = served(s);
    snprintf(s->fo_reason, sizeof(s->fo_reason), "%s", reason);
    if (claim_start(s->witness, p.name, p.generation, on_claim, s, err,
                    sizeof(err)) < 0) {
        /* No memory: nothing safe to do but not run the VM. */
        log_msg("%s", err);
        answer_failover(s, -ENOMEM, err);
        daemon_exit(s->d, EXITCODE_ERROR);
        return;
    }
    log_msg("claiming the VM from the witness (%s)", claim_key(s->witness));
}

/* In the standby pool while waiting, out of it once a primary came. */
static void enlist_update(secondary *s)
{
    if (s->pool)
        pool_standby_offer(s->pool, enlist_offered(s->state));
}

/* ---- the receiver's reports ---- */

/*
 * The witness's answer about the primary's generation: it is served only
 * if newer than every decided one (standby_admit).  No answer until the
 * setup timeout refuses it too: its generation cannot be known to be new.
 */
static void on_generations(void *opaque, int rc, uint64_t highest,
                           const char *err)
{
    secondary *s = opaque;
    char why[1400];
    if (rc < 0) {
        if (mono_ns() < s->admit_deadline) {
            log_msg("cannot check the primary's generation with the "
                    "witness (%s): asking again", err);
            return;
        }
        generations_cancel(s->gens);
        snprintf(why, sizeof(why), "cannot check the primary's generation "
                 "with the witness within the setup timeout: %s", err);
        receiver_admit(s->rx, -EAGAIN, 0, why);
        return;
    }
    rc = standby_admit(s->admit_gen, highest, why, sizeof(why));
    if (rc == 0)
        log_msg("the witness decided generations up to %" PRIu64 ": the "
                "primary's %" PRIu64 " is newer", highest, s->admit_gen);
    receiver_admit(s->rx, rc, highest, why);
}

/* The primary's "ftvm-vm": nothing is made before its generation passes. */
static void on_shape(void *opaque, const vmshape *shape)
{
    secondary *s = opaque;
    char err[256];
    s->admit_gen = shape->pair.generation;
    s->admit_deadline = mono_ns() + (s->o->setup_ns ? s->o->setup_ns
                                     : SECONDARY_SETUP_TIMEOUT_NS);
    if (generations_scan(s->gens, shape->pair.name, on_generations, s, err,
                         sizeof(err)) < 0)
        receiver_admit(s->rx, -ENOMEM, 0, err);
}

static void on_vm(void *opaque, vm *v)
{
    secondary *s = opaque;
    s->v = v;
    survivor_vm(s->sv, v);
    daemon_set_vm(s->d, v);
}

static void on_end(void *opaque, receiver_end why, const char *msg)
{
    secondary *s = opaque;
    generations_cancel(s->gens);
    /* msg names the peer already (receiver_opts.on_end). */
    standby_decision dec = standby_on_end(&(standby_end){
        .why = why, .have_vm = s->v != NULL, .applied = applied(s),
        .witness = s->witness != NULL, .request = s->request,
        .request_status = s->request_status });

    switch (dec.verdict) {
    case STANDBY_AS_REQUESTED:
        break;
    case STANDBY_NOT_A_PRIMARY:
        log_msg("%s; not a primary, waiting for one", msg);
        break;
    case STANDBY_PRIMARY_STOPPED:
        log_msg("%s: no failover", msg);
        break;
    case STANDBY_PRIMARY_LOST:
        s->fo_t0 = receiver_end_ns(s->rx);
        log_msg("the primary is lost: %s", msg);
        break;
    case STANDBY_NOTHING_APPLIED:
        log_msg("the primary is lost before its first checkpoint (%s): "
                "nothing to fail over to", msg);
        break;
    case STANDBY_REFUSED:
        log_msg("replication refused: %s", msg);
        break;
    case STANDBY_DROPPED_BY_PRIMARY:
        log_msg("%s: the primary keeps the VM; no failover", msg);
        /* An operator's claim in flight must not make this one go live. */
        if (s->witness)
            claim_cancel(s->witness);
        answer_failover(s, -ECANCELED, "the primary dropped this secondary");
        break;
    }
    s->state = dec.next;
    if (dec.next == STANDBY_FAILOVER)
        fail_over(s, dec.failover_reason);
    else if (dec.next == STANDBY_CLAIMING)
        claim_the_vm(s, dec.failover_reason);
    else if (dec.exit)
        daemon_exit(s->d, dec.status);
    enlist_update(s);
}

/* Whether a connection may be taken now; if not it is closed. */
static bool may_take(secondary *s, int fd, int tcp_fd, const char *peer)
{
    if (s->state == STANDBY_WAITING)
        return true;
    log_msg("refusing a connection from %s: %s", peer,
            s->state == STANDBY_REPLICATING ? "already replicating"
                                            : "replication is over here");
    close(fd);
    if (tcp_fd >= 0)
        close(tcp_fd);
    return false;
}

/* Accepted: authenticated first (daemon/tlsaccept.h), then on_connection. */
static void on_accept(void *opaque, int fd, const char *peer)
{
    secondary *s = opaque;
    if (may_take(s, fd, -1, peer))
        tlsaccept_add(s->gate, fd, peer);
}

static void on_connection(void *opaque, int fd, int tcp_fd, const char *peer)
{
    secondary *s = opaque;
    char err[512];

    if (!may_take(s, fd, tcp_fd, peer))
        return;
    /* One that ended before the bring-up; its thread is joined. */
    receiver_free(s->rx);
    s->rx = NULL;
    receiver_opts o = {
        .failure_timeout_ns = s->o->failure_ns,
        .heartbeat_ns = s->o->heartbeat_ns,
        .net = s->o->net,
        .disk = s->o->disk,
        .pumped = tcp_fd >= 0,
        .tcp_fd = tcp_fd,
        .vm_name = s->o->vm_name,
        .setup_timeout_ns = s->o->setup_ns,
        .output = survivor_output(s->sv),
        .on_shape = s->gens ? on_shape : NULL,
        .on_vm = on_vm,
        .on_end = on_end,
        .on_applied = on_applied,
        .on_colo = on_colo,
        .on_colo_input = on_colo_input,
        .on_colo_release = on_colo_release,
        .opaque = s,
    };
    if (receiver_start(&s->rx, daemon_base(s->d), fd, peer, &o, err,
                       sizeof(err)) < 0) {
        log_msg("%s", err);
        return;
    }
    s->state = STANDBY_REPLICATING;
    log_msg("connection from %s", peer);
    enlist_update(s);
}

/* ---- ending it from here ---- */

/* Stops replication; then what was asked for happens (see on_end). */
static void stop_replication(secondary *s, standby_request request,
                             int status, int code)
{
    s->request = request;
    s->request_status = status;
    receiver_stop(s->rx, RECEIVER_END_LOCAL, code);
}

/* A signal (status 128 + it) or quit (status 0). */
static void stop(secondary *s, int status)
{
    switch (standby_on_stop(s->state)) {
    case STANDBY_STOP_VM:
        vm_stop(s->v);
        break;
    case STANDBY_STOP_REPLICATION:
        stop_replication(s, STANDBY_REQUEST_EXIT, status,
                         RECEIVER_SHUT_LEAVING);
        break;
    case STANDBY_STOP_EXIT:
        daemon_exit(s->d, status);
        break;
    case STANDBY_STOP_IGNORED:
        break;
    }
}

static void on_signal(void *opaque, int signo)
{
    secondary *s = opaque;
    standby_stop what = standby_on_stop(s->state);
    if (what == STANDBY_STOP_REPLICATION || what == STANDBY_STOP_EXIT)
        log_msg("stopped by %s", strsignal(signo));
    stop(s, EXITCODE_SIGNAL + signo);
}

/* ---- control: what vmctl offers, plus the secondary's own ---- */

static control_outcome cmd_failover(void *opaque, control_req *req,
                                    json_t *args, json_t **result, int *rc,
                                    char *err, size_t errlen)
{
    secondary *s = opaque;
    json_t *jf = json_object_get(args, "force");

    (void)result;
    if (jf && !json_is_boolean(jf)) {
        snprintf(err, errlen, "failover: 'force' must be true or false");
        *rc = -EINVAL;
        return CONTROL_DONE;
    }
    bool force = json_is_true(jf);
    *rc = force ? standby_may_force(s->state, applied(s), s->request, err,
                                    errlen)
                : standby_may_fail_over(s->state, applied(s), s->request,
                                        err, errlen);
    if (*rc < 0)
        return CONTROL_DONE;
    if (s->fo_req)      /* an operator's claim in flight: --force wins */
        answer_failover(s, -ECANCELED, "failover --force came instead");
    s->fo_t0 = mono_ns();
    s->fo_req = req;
    if (force && s->witness) {
        claim_cancel(s->witness);
        log_msg("WARNING: failover --force: going live WITHOUT the "
                "witness's agreement (%s); if the primary is alive, both "
                "copies now run", claim_key(s->witness)[0]
                ? claim_key(s->witness) : "nothing claimed yet");
    } else {
        log_msg(force ? "failover --force requested (no witness)"
                      : "failover requested");
    }
    if (s->state == STANDBY_CLAIMING) {         /* force only */
        fail_over(s, "forced");
    } else if (s->witness && !force) {
        /* Replication goes on until the witness says this side may. */
        pairing p = served(s);
        s->request = STANDBY_REQUEST_CLAIM;
        if (claim_start(s->witness, p.name, p.generation, on_claim, s, err,
                        errlen) < 0) {
            s->request = STANDBY_REQUEST_NONE;
            s->fo_req = NULL;
            *rc = -ENOMEM;
            return CONTROL_DONE;
        }
        log_msg("claiming the VM from the witness (%s)",
                claim_key(s->witness));
    } else {
        stop_replication(s, STANDBY_REQUEST_FAILOVER, 0, -1);
    }
    return CONTROL_DEFERRED;
}

static control_outcome cmd_stop(void *opaque, control_req *req, json_t *args,
                                json_t **result, int *rc, char *err,
                                size_t errlen)
{
    secondary *s = opaque;

    (void)req; (void)args; (void)result;
    /* After a failover: the replication of the VM that runs here. */
    *rc = survivor_stop(s->sv, err, errlen);
    if (*rc != -ENOENT)
        return CONTROL_DONE;
    *rc = standby_may_stop(s->state, applied(s), s->request, err, errlen);
    if (*rc < 0)
        return CONTROL_DONE;
    log_msg("stop-replication requested: no failover");
    stop_replication(s, STANDBY_REQUEST_EXIT, EXITCODE_OK,
                     RECEIVER_SHUT_CLEAN);
    return CONTROL_DONE;
}

static control_outcome cmd_protect(void *opaque, control_req *req,
                                   json_t *args, json_t **result, int *rc,
                                   char *err, size_t errlen)
{
    secondary *s = opaque;

    (void)req; (void)result;
    *rc = survivor_protect(s->sv, state_name(s), args, err, errlen);
    return CONTROL_DONE;
}

static control_outcome cmd_set(void *opaque, control_req *req, json_t *args,
                               json_t **result, int *rc, char *err,
                               size_t errlen)
{
    secondary *s = opaque;

    (void)req; (void)result;
    *rc = survivor_set(s->sv, state_name(s), args, err, errlen);
    return CONTROL_DONE;
}

static void hook_quit(void *opaque)
{
    stop(opaque, EXITCODE_OK);
}

static json_t *replication_json(secondary *s)
{
    receiver_stats st;
    receiver_get_stats(s->rx, &st);
    const apply_stats *a = &st.apply;
    json_t *r = json_pack(
        "{s:I, s:I, s:I, s:{s:f, s:f, s:f}, s:{s:I, s:I}, s:I, s:I}",
        "applied", (json_int_t)a->applied,
        "last_id", (json_int_t)a->last_id,
        "refused", (json_int_t)a->refused,
        "apply_ms", "last", a->apply_ns.last / 1e6,
        "p50", a->apply_ns.p50 / 1e6, "p99", a->apply_ns.p99 / 1e6,
        "package_bytes", "last", (json_int_t)a->package_bytes_last,
        "total", (json_int_t)a->package_bytes_total,
        "pings", (json_int_t)a->pings,
        "heartbeats_sent", (json_int_t)st.heartbeats);
    if (a->last_refusal[0])
        json_object_set_new(r, "last_refusal",
                            json_string(a->last_refusal));
    if (st.since_heard_ms >= 0)
        json_object_set_new(r, "last_heard_ms",
                            json_integer(st.since_heard_ms));
    if (a->dropped) {
        char rb[32];
        json_object_set_new(r, "dropped", json_pack(
            "{s:i, s:s, s:s}", "reason", (int)a->drop.reason, "why",
            dropnotice_reason_name(a->drop.reason, rb, sizeof(rb)), "text",
            a->drop.text));
    }
    if (a->have_vm) {
        char pair[96];
        json_object_set_new(r, "pairing", json_string(pairing_str(
                                              &a->pair, pair, sizeof(pair))));
    }
    return r;
}

static void hook_status(void *opaque, json_t *r)
{
    secondary *s = opaque;
    json_t *vs = json_object_get(r, "state");
    if (vs)
        json_object_set(r, "vm_state", vs);
    json_object_set_new(r, "state", json_string(state_name(s)));
    /* The cache's clock is the checkpoint's until the VM runs here. */
    if (s->state != STANDBY_RUNNING)
        json_object_del(r, "guest_clock_s");
    json_object_set_new(r, "listen",
                        json_string(s->lis ? listener_address(s->lis) : ""));
    if (s->o->vm_name)
        json_object_set_new(r, "vm_name", json_string(s->o->vm_name));
    if (s->rx) {
        json_object_set_new(r, "primary", json_string(receiver_peer(s->rx)));
        json_object_set_new(r, "replication", replication_json(s));
    }
    if (s->svm)
        json_object_set_new(r, "colo", svm_status(s->svm));
    pairing p = served(s);
    json_object_set_new(r, "witness",
                        claim_status(s->witness, p.generation ? p.name
                                     : s->o->vm_name, p.generation));
    if (s->pool)
        json_object_set_new(r, "pool", pool_standby_status(s->pool));
    if (s->state == STANDBY_RUNNING)
        json_object_set_new(r, "failover",
                            json_pack("{s:f, s:I, s:I, s:s, s:i}", "ms",
                                      s->failover_ms, "continued_from",
                                      (json_int_t)s->continued_from,
                                      "console_bytes",
                                      (json_int_t)s->continued_console,
                                      "reason", s->fo_reason, "announced",
                                      s->fo ? (int)failover_announced(s->fo)
                                            : 0));
    survivor_status(s->sv, r);
}

static int hook_can_save(void *opaque, char *err, size_t errlen)
{
    secondary *s = opaque;
    if (s->svm && s->state != STANDBY_RUNNING) {
        /* Each reset clears the cache's dirty bits a save relies on. */
        snprintf(err, errlen, "save: refused on a COLO secondary while it "
                 "replicates (the SVM's resets use the cache's dirty log)");
        return -EBUSY;
    }
    int rc = standby_may_save(s->state, applied(s), err, errlen);
    return rc < 0 ? rc : survivor_may_save(s->sv, err, errlen);
}

/* The final phase of a checkpoint sees the cache between two packages. */
static int gate_close(void *opaque, char *err, size_t errlen)
{
    (void)err;
    (void)errlen;
    receiver_hold(((secondary *)opaque)->rx);
    return 0;
}

static void gate_open(void *opaque)
{
    receiver_release(((secondary *)opaque)->rx);
}

/* docs/metrics.md lists these. */
static void collect(void *opaque, metrics_writer *w)
{
    secondary *s = opaque;
    const char *states[] = {
        standby_state_name(STANDBY_WAITING, false),
        standby_state_name(STANDBY_REPLICATING, false),
        standby_state_name(STANDBY_REPLICATING, true),
        standby_state_name(STANDBY_CLAIMING, false),
        standby_state_name(STANDBY_FAILOVER, false),
        standby_state_name(STANDBY_RUNNING, false),
        standby_state_name(STANDBY_STOPPED, false),
        standby_state_name(STANDBY_DROPPED, false),
    };
    metrics_state(w, "ftvm_secondary_state",
                  "waiting for a primary, setup, active, claiming (asking "
                  "the witness), failover, running (failed over), "
                  "stopped or dropped (by the primary)", states,
                  sizeof(states) / sizeof(states[0]), state_name(s));
    /* Before a primary, the same families at zero. */
    receiver_stats st = { .since_heard_ms = -1,
                          .apply.apply_ns.bounds = &sampler_ns };
    if (s->rx)
        receiver_get_stats(s->rx, &st);
    const apply_stats *a = &st.apply;
    metrics_counter(w, "ftvm_secondary_checkpoints_applied_total",
                    "checkpoints applied to the RAM cache and acknowledged",
                    a->applied);
    metrics_counter(w, "ftvm_secondary_checkpoints_refused_total",
                    "packages refused (NACK): nothing of them applied",
                    a->refused);
    metrics_gauge(w, "ftvm_secondary_last_checkpoint_id",
                  "the last checkpoint applied (0: none)", a->last_id);
    metrics_histogram(w, "ftvm_secondary_apply_seconds",
                      "from a package's first section validated to its ACK",
                      &a->apply_ns);
    metrics_counter(w, "ftvm_secondary_package_bytes_total",
                    "bytes of checkpoint packages applied",
                    a->package_bytes_total);
    metrics_counter(w, "ftvm_secondary_pings_total", "PINGs answered",
                    a->pings);
    metrics_counter(w, "ftvm_secondary_heartbeats_sent_total",
                    "HEARTBEATs sent to the primary", st.heartbeats);
    if (st.since_heard_ms >= 0)
        metrics_gauge(w, "ftvm_secondary_last_heard_seconds",
                      "time since data last arrived from the primary",
                      st.since_heard_ms / 1e3);
    if (s->state == STANDBY_RUNNING) {
        metrics_gauge(w, "ftvm_secondary_failover_seconds",
                      "from the primary's loss (or the failover command) "
                      "to the vCPUs running here", s->failover_ms / 1e3);
        metrics_gauge(w, "ftvm_secondary_failover_checkpoint_id",
                      "the checkpoint the VM continued from",
                      s->continued_from);
    }
    if (s->svm)
        svm_metrics(s->svm, w);
    survivor_metrics(s->sv, w);
}

/* ---- the process ---- */

/* The control commands and the listener: 0 or -errno (logged). */
static int start(secondary *s)
{
    char err[512];
    control_server *ctl = daemon_control(s->d);
    int r = 0;

    if (ctl) {
        r = control_register(ctl, "failover",
                             "run the VM here now, from the last "
                             "checkpoint applied", cmd_failover, s);
        if (r == 0)
            r = control_register(ctl, "stop-replication",
                                 "end replication without failing over "
                                 "(SHUT 0) and exit; after a failover, "
                                 "EOF to the new secondary", cmd_stop, s);
        if (r == 0)
            r = control_register(ctl, "set",
                                 "set KEY VALUE, once the VM runs here: "
                                 "checkpoint-interval, heartbeat, "
                                 "failure-timeout", cmd_set, s);
        if (r == 0)
            r = control_register(ctl, "protect",
                                 "protect HOST:PORT: once the VM runs "
                                 "here, bring a new secondary up",
                                 cmd_protect, s);
        if (r < 0) {
            log_msg("cannot register the control commands: %s",
                    strerror(-r));
            return r;
        }
    }
    if (s->o->witness) {
        r = claim_new(&s->witness, daemon_base(s->d), s->o->witness,
                      s->o->witness_tls, "secondary",
                      s->o->witness_timeout_ns, err, sizeof(err));
        if (r < 0) {
            log_msg("%s", err);
            return r;
        }
        r = generations_new(&s->gens, claim_client(s->witness),
                            s->o->witness_timeout_ns
                            ? s->o->witness_timeout_ns
                            : CLAIM_DEFAULT_TIMEOUT_NS);
        if (r < 0) {
            log_msg("out of memory");
            return r;
        }
        log_msg("witness: %s (claims as '%s')", s->o->witness,
                claim_value(s->witness));
    } else {
        log_msg("%s", CLAIM_NO_WITNESS);
    }
    if (s->o->tls.insecure && !tls_loopback_addr(s->o->listen)) {
        log_msg("--insecure: --listen %s is not a loopback address; "
                "plaintext replication is allowed on loopback only (give "
                "--tls-creds DIR)", s->o->listen);
        return -EINVAL;
    }
    if (s->o->tls.creds) {
        r = tls_ctx_new(&s->tls, TLS_SERVER, &s->o->tls, err, sizeof(err));
        if (r < 0) {
            log_msg("%s", err);
            return r;
        }
    }
    r = tlsaccept_new(&s->gate, daemon_base(s->d), s->tls,
                      s->o->handshake_ns ? s->o->handshake_ns
                                         : TLS_HANDSHAKE_TIMEOUT_NS,
                      on_connection, s, err, sizeof(err));
    if (r == 0)
        r = listener_new(&s->lis, daemon_base(s->d), s->o->listen,
                         on_accept, s, err, sizeof(err));
    if (r < 0) {
        log_msg("%s", err);
        return r;
    }
    log_msg("listening on %s (%s)", listener_address(s->lis),
            s->tls ? "mutual TLS" : "plaintext, --insecure");
    if (s->o->register_pool) {
        r = enlist_new(&s->pool, daemon_base(s->d), s->o,
                       listener_address(s->lis), err, sizeof(err));
        if (r < 0) {
            log_msg("%s", err);
            return r;
        }
        enlist_update(s);
    }
    return 0;
}

int secondary_run(secondary_opts *o)
{
    secondary s = { .o = o, .state = STANDBY_WAITING };
    char err[512];
    vmctl_hooks hooks = {
        .opaque = &s,
        .status = hook_status,
        .can_save = hook_can_save,
        .quit = hook_quit,
        .gate = { .close = gate_close, .open = gate_open, .opaque = &s },
    };

    o->process.role = "secondary";
    o->process.collect = collect;
    o->process.vmctl.hooks = &hooks;
    o->process.on_signal = on_signal;
    o->process.opaque = &s;
    if (daemon_new(&s.d, &o->process, err, sizeof(err)) < 0) {
        log_msg("%s", err);
        return EXITCODE_SETUP;
    }
    if (survivor_new(&s.sv, s.d) < 0) {
        log_msg("out of memory");
        daemon_free(s.d);
        return EXITCODE_SETUP;
    }
    int status = EXITCODE_SETUP;
    if (start(&s) == 0)
        status = daemon_run(s.d);
    answer_failover(&s, -ECANCELED, "the secondary is exiting");
    listener_free(s.lis);
    tlsaccept_free(s.gate);
    receiver_free(s.rx);
    svm_free(s.svm);
    failover_free(s.fo);
    generations_free(s.gens);
    claim_free(s.witness);
    survivor_end(s.sv);
    pool_standby_free(s.pool);
    daemon_free(s.d);
    if (s.cache)
        vm_destroy(s.cache);
    survivor_free(s.sv);
    tls_ctx_free(s.tls);
    return status;
}
