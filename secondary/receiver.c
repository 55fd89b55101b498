/* receiver: see receiver.h. */
#include "secondary/receiver.h"

#include <errno.h>
#include <event2/event.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "daemon/log.h"
#include "secondary/connection.h"
#include "secondary/replica.h"
#include "vm/mono.h"

#define LOAD(x) __atomic_load_n(&(x), __ATOMIC_ACQUIRE)
#define STORE(x, v) __atomic_store_n(&(x), (v), __ATOMIC_RELEASE)

/* What the receiver thread tells the loop. */
enum { NOTE_VM = 1, NOTE_END = 2, NOTE_SHAPE = 4, NOTE_APPLIED = 8,
       NOTE_COLO = 16 };

struct receiver {
    receiver_opts o;
    connection *conn;
    apply *apply;
    pthread_t thread;
    bool thread_live;       /* started and not yet joined */
    bool vm_given;          /* on_vm was called: the VM is the caller's */

    /* Receiver thread; published before NOTE_VM. */
    vm *v;
    vmshape shape;

    receiver_end local_why; /* receiver_stop's; atomic */
    int notes;              /* atomic */

    /* on_shape's question and receiver_admit's answer, under slock. */
    pthread_cond_t admit_cond;
    bool asking, answered, admit_stop;
    int admit_rc;
    uint64_t admit_decided;
    char admit_why[400];

    pthread_mutex_t slock;  /* the end, the admission */
    bool ended;
    receiver_end end;
    uint64_t end_ns;
    char end_msg[600];

    struct event *ev_note;  /* loop thread */
};

static void note(receiver *rx, int what)
{
    __atomic_fetch_or(&rx->notes, what, __ATOMIC_ACQ_REL);
    event_active(rx->ev_note, EV_READ, 0);
}

/* ---- the receiver thread ---- */

/* apply's create hook: the VM of the primary's shape. */
static int make_vm(void *opaque, qfile *f, const vmshape *shape,
                   registry **reg)
{
    receiver *rx = opaque;
    char pair[96];
    pthread_mutex_lock(&rx->slock);
    rx->shape = *shape;
    pthread_mutex_unlock(&rx->slock);
    int r = replica_create(f, shape, rx->o.net, rx->o.disk, &rx->o.output,
                           &rx->v);
    if (r < 0)
        return r;
    log_msg("%s: VM %s of %" PRIu64 " MiB, %" PRIu32 " vCPU(s)%s created; "
            "receiving the bring-up", connection_peer(rx->conn),
            pairing_str(&shape->pair, pair, sizeof(pair)),
            rx->shape.mem_size >> 20, rx->shape.vcpus,
            rx->shape.has_net ? ", with a NIC," : "");
    *reg = vm_registry(rx->v);
    note(rx, NOTE_VM);
    return 0;
}

/* apply's commit hook: the disk's staged chunks into this copy. */
static int commit_disk(void *opaque, char *err, size_t errlen)
{
    receiver *rx = opaque;
    return rx->v ? vm_disk_commit(rx->v, err, errlen) : 0;
}

static void applied(void *opaque, uint64_t id)
{
    (void)id;
    note(opaque, NOTE_APPLIED);
}

static void colo_mode(void *opaque)
{
    note(opaque, NOTE_COLO);
}

/* apply's colo_release hook: straight to the owner, on this thread. */
static void colo_release(void *opaque, uint64_t id, uint64_t console)
{
    receiver *rx = opaque;
    if (rx->o.on_colo_release)
        rx->o.on_colo_release(rx->o.opaque, id, console);
}

/* apply's colo_input hook: straight to the owner, on this thread. */
static void colo_input(void *opaque, uint64_t id, const void *frame,
                       size_t len)
{
    receiver *rx = opaque;
    if (rx->o.on_colo_input)
        rx->o.on_colo_input(rx->o.opaque, id, frame, len);
}

/*
 * apply's admit hook: asks the loop (on_shape) and waits for
 * receiver_admit, or for receiver_stop.  The connection is busy
 * meanwhile, so the setup timeout does not count the wait.
 */
static int admit(void *opaque, const vmshape *shape, uint64_t *decided,
                 char *err, size_t errlen)
{
    receiver *rx = opaque;
    pthread_mutex_lock(&rx->slock);
    rx->shape = *shape;
    rx->asking = true;
    rx->answered = false;
    pthread_mutex_unlock(&rx->slock);
    note(rx, NOTE_SHAPE);
    pthread_mutex_lock(&rx->slock);
    while (!rx->answered && !rx->admit_stop) {
        /* The loop may end the connection (its own checks) meanwhile. */
        struct timespec t;
        clock_gettime(CLOCK_REALTIME, &t);
        t.tv_nsec += 100000000;
        if (t.tv_nsec >= 1000000000) {
            t.tv_sec++;
            t.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait(&rx->admit_cond, &rx->slock, &t);
        if (connection_get_state(rx->conn, NULL, NULL, 0) != CONNECTION_OPEN)
            break;
    }
    rx->asking = false;
    int rc = rx->answered ? rx->admit_rc : -ECANCELED;
    *decided = rx->admit_decided;
    snprintf(err, errlen, "%s", rx->answered ? rx->admit_why
                                             : "replication is stopping");
    pthread_mutex_unlock(&rx->slock);
    return rc;
}

void receiver_admit(receiver *rx, int rc, uint64_t decided, const char *why)
{
    pthread_mutex_lock(&rx->slock);
    if (rx->asking && !rx->answered) {
        rx->answered = true;
        rx->admit_rc = rc;
        rx->admit_decided = decided;
        snprintf(rx->admit_why, sizeof(rx->admit_why), "%s", why ? why : "");
        pthread_cond_broadcast(&rx->admit_cond);
    }
    pthread_mutex_unlock(&rx->slock);
}

/* Errors that mean the connection, not the stream, failed. */
static bool transport_error(int r)
{
    switch (-r) {
    case ENODATA: case ECONNRESET: case ECONNABORTED: case EPIPE:
    case ETIMEDOUT: case ENOTCONN: case EHOSTUNREACH: case ENETUNREACH:
    case ENETDOWN: case ENETRESET: case EIO:
        return true;
    }
    return false;
}

static receiver_end end_of_stop(receiver *rx, connection_state s)
{
    switch (s) {
    case CONNECTION_SILENT:
        return RECEIVER_END_TIMEOUT;
    case CONNECTION_UNREAD:
    case CONNECTION_IDLE:
        return RECEIVER_END_PROTOCOL;
    case CONNECTION_OPEN:
    case CONNECTION_CLOSED:
        break;
    }
    return LOAD(rx->local_why);
}

static void finish(receiver *rx, int r, savevm_stop why)
{
    receiver_end end;
    char msg[sizeof(rx->end_msg)];
    const char *peer = connection_peer(rx->conn);
    qfile *in = connection_input(rx->conn);
    uint64_t when;
    connection_state stop = connection_get_state(rx->conn, &when, msg,
                                                 sizeof(msg));
    if (stop != CONNECTION_OPEN) {
        end = end_of_stop(rx, stop);
        if (!msg[0])
            snprintf(msg, sizeof(msg), "replication from %s stopped here",
                     peer);
    } else if (r == 0 && why == SAVEVM_STOP_EOF) {
        end = RECEIVER_END_EOF;
        snprintf(msg, sizeof(msg), "%s ended the stream (stop-replication)",
                 peer);
    } else if (r == 0) {
        end = RECEIVER_END_LOST;
        snprintf(msg, sizeof(msg), "%s closed the connection", peer);
    } else if (transport_error(r)) {
        end = RECEIVER_END_LOST;
        snprintf(msg, sizeof(msg), "%s", qfile_errmsg(in));
    } else {
        end = RECEIVER_END_PROTOCOL;
        snprintf(msg, sizeof(msg), "%s", qfile_errmsg(in));
        connection_send_shut(rx->conn, RECEIVER_SHUT_ERROR);
    }
    apply_stats st;
    apply_get_stats(rx->apply, &st);
    if (st.dropped) {
        /* Told so: whatever came after, the primary keeps the VM. */
        char rb[32];
        end = RECEIVER_END_DROPPED;
        snprintf(msg, sizeof(msg), "%s dropped this secondary (%s%s%s)",
                 peer, dropnotice_reason_name(st.drop.reason, rb,
                                              sizeof(rb)),
                 st.drop.text[0] ? ": " : "", st.drop.text);
    }
    pthread_mutex_lock(&rx->slock);
    rx->ended = true;
    rx->end = end;
    rx->end_ns = stop != CONNECTION_OPEN && when ? when : mono_ns();
    snprintf(rx->end_msg, sizeof(rx->end_msg), "%s", msg);
    pthread_mutex_unlock(&rx->slock);
    /* The peer learns now; the fd stays ours until receiver_free. */
    connection_hang_up(rx->conn);
    note(rx, NOTE_END);
}

static void *rx_main(void *arg)
{
    receiver *rx = arg;
    savevm_stop why = SAVEVM_STOP_END;
    int r = apply_load_header(rx->apply, connection_input(rx->conn));
    if (r == 0)
        r = apply_load(rx->apply, connection_input(rx->conn), &why);
    finish(rx, r, why);
    return NULL;
}

/* ---- the loop's side ---- */

static void on_note(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    receiver *rx = arg;
    int n = __atomic_exchange_n(&rx->notes, 0, __ATOMIC_ACQ_REL);
    if (n & NOTE_SHAPE) {
        pthread_mutex_lock(&rx->slock);
        vmshape shape = rx->shape;
        bool asking = rx->asking && !rx->answered;
        pthread_mutex_unlock(&rx->slock);
        if (asking)
            rx->o.on_shape(rx->o.opaque, &shape);
    }
    if ((n & NOTE_VM) && !rx->vm_given) {
        rx->vm_given = true;
        rx->o.on_vm(rx->o.opaque, rx->v);
    }
    if ((n & NOTE_COLO) && rx->o.on_colo)
        rx->o.on_colo(rx->o.opaque);
    if ((n & NOTE_APPLIED) && rx->o.on_applied)
        rx->o.on_applied(rx->o.opaque);
    if (n & NOTE_END) {
        pthread_join(rx->thread, NULL);
        rx->thread_live = false;
        connection_stop_timers(rx->conn);
        pthread_mutex_lock(&rx->slock);
        receiver_end end = rx->end;
        char msg[sizeof(rx->end_msg)];
        snprintf(msg, sizeof(msg), "%s", rx->end_msg);
        pthread_mutex_unlock(&rx->slock);
        /* Last: the caller may free rx from here. */
        rx->o.on_end(rx->o.opaque, end, msg);
    }
}

void receiver_stop(receiver *rx, receiver_end why, int code)
{
    /* Only the first end counts; every caller is on this thread. */
    if (connection_get_state(rx->conn, NULL, NULL, 0) != CONNECTION_OPEN)
        return;
    STORE(rx->local_why, why);
    connection_close(rx->conn, code);
    pthread_mutex_lock(&rx->slock);
    rx->admit_stop = true;
    pthread_cond_broadcast(&rx->admit_cond);
    pthread_mutex_unlock(&rx->slock);
}

/* ---- life cycle ---- */

int receiver_start(receiver **out, struct event_base *base, int fd,
                   const char *peer, const receiver_opts *o, char *err,
                   size_t errlen)
{
    connection *conn;
    connection_opts co = {
        .failure_timeout_ns = o->failure_timeout_ns,
        .heartbeat_ns = o->heartbeat_ns,
        .pumped = o->pumped,
        .tcp_fd = o->tcp_fd,
        .setup_timeout_ns = o->setup_timeout_ns,
    };
    int r = connection_new(&conn, base, fd, peer, &co, err, errlen);
    if (r < 0)
        return r;
    receiver *rx = calloc(1, sizeof(*rx));
    if (!rx) {
        connection_free(conn);
        snprintf(err, errlen, "%s: out of memory", peer);
        return -ENOMEM;
    }
    rx->o = *o;
    rx->conn = conn;
    pthread_mutex_init(&rx->slock, NULL);
    pthread_cond_init(&rx->admit_cond, NULL);
    r = apply_new(&rx->apply, &(apply_opts){ .conn = rx->conn,
                                             .create = make_vm,
                                             .admit = o->on_shape ? admit
                                                                  : NULL,
                                             .opaque = rx,
                                             .vm_name = o->vm_name,
                                             .applied = applied,
                                             .commit = commit_disk,
                                             .colo = colo_mode,
                                             .colo_input = colo_input,
                                             .colo_release = colo_release });
    rx->ev_note = event_new(base, -1, 0, on_note, rx);
    if (r == 0 && !rx->ev_note)
        r = -ENOMEM;
    if (r < 0) {
        snprintf(err, errlen, "%s: out of memory", peer);
        goto fail;
    }
    r = -pthread_create(&rx->thread, NULL, rx_main, rx);
    if (r < 0) {
        snprintf(err, errlen, "%s: cannot start the receiver thread: %s",
                 peer, strerror(-r));
        goto fail;
    }
    rx->thread_live = true;
    *out = rx;
    return 0;
fail:
    receiver_free(rx);
    return r;
}

void receiver_free(receiver *rx)
{
    if (!rx)
        return;
    if (rx->thread_live) {
        receiver_stop(rx, RECEIVER_END_LOCAL, -1);
        pthread_join(rx->thread, NULL);
    }
    if (rx->v && !rx->vm_given)
        vm_destroy(rx->v);
    if (rx->ev_note)
        event_free(rx->ev_note);
    apply_free(rx->apply);
    connection_free(rx->conn);
    pthread_mutex_destroy(&rx->slock);
    pthread_cond_destroy(&rx->admit_cond);
    free(rx);
}

void receiver_hold(receiver *rx)
{
    apply_hold(rx->apply);
}

void receiver_release(receiver *rx)
{
    apply_release(rx->apply);
}

int receiver_try_send(receiver *rx, const retpath_msg *m)
{
    return connection_try_send(rx->conn, m);
}

const char *receiver_peer(const receiver *rx)
{
    return connection_peer(rx->conn);
}

const vmshape *receiver_shape(const receiver *rx)
{
    return &rx->shape;
}

uint64_t receiver_end_ns(receiver *rx)
{
    pthread_mutex_lock(&rx->slock);
    uint64_t t = rx->end_ns;
    pthread_mutex_unlock(&rx->slock);
    return t;
}

void receiver_get_stats(receiver *rx, receiver_stats *out)
{
    apply_get_stats(rx->apply, &out->apply);
    pthread_mutex_lock(&rx->slock);
    bool ended = rx->ended;
    pthread_mutex_unlock(&rx->slock);
    out->phase = ended                ? RECEIVER_PHASE_ENDED
                 : out->apply.applied ? RECEIVER_PHASE_ACTIVE
                 : out->apply.have_vm ? RECEIVER_PHASE_SETUP
                                      : RECEIVER_PHASE_CONNECTED;
    out->colo_input_frames = out->apply.colo_input_frames;
    out->heartbeats = connection_heartbeats(rx->conn);
    out->since_heard_ms = rx->thread_live ? connection_heard_ms(rx->conn)
                                          : -1;
}
