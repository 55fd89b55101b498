/* receiver: see receiver.h. */
#include "secondary/receiver.h"

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "checkpoint/qfile.h"
#include "checkpoint/retpath.h"
#include "checkpoint/savevm.h"
#include "checkpoint/trailer.h"
#include "devstate/registry.h"
#include "vm/mono.h"

#define APPLY_SAMPLES 1024
/*
 * Return-path bytes the kernel still holds beyond which the primary is
 * taken not to read its return path at all (hours of heartbeats).
 */
#define RP_BACKLOG_MAX (256 * 1024)
/* How soon a heartbeat that could not go out is tried again. */
#define HB_RETRY_NS 5000000u

#define LOAD(x) __atomic_load_n(&(x), __ATOMIC_ACQUIRE)
#define STORE(x, v) __atomic_store_n(&(x), (v), __ATOMIC_RELEASE)

/* What the receiver thread tells the loop. */
enum { NOTE_VM = 1, NOTE_END = 2 };

/* The package being validated, then applied (receiver thread only). */
typedef struct pkg_check {
    unsigned sections;      /* validated so far */
    bool have_hdr;
    trailer_pkg hdr;
    bool sealed;
    bool applying;          /* validated; its APPLY pass is running */
    bool held;              /* the cache mutex is ours */
    uint64_t t0;            /* when its first section was validated */
} pkg_check;

struct receiver {
    receiver_opts o;
    struct event_base *base;
    int fd;
    char peer[96];
    pthread_t thread;
    bool thread_live;       /* started and not yet joined */
    bool vm_given;          /* on_vm was called: the VM is the caller's */

    qfile *in, *rp;
    savevm_loader *loader;
    pthread_mutex_t wlock;  /* the return path */
    pthread_mutex_t cache;  /* a package being applied; receiver_hold */
    pthread_mutex_t slock;  /* st, samples, end */

    /* Receiver thread only; v and shape are published before NOTE_VM. */
    vm *v;
    vmshape shape;
    bool colo;
    bool packaged;          /* a package arrived: the bring-up is over */
    uint64_t last_applied;
    pkg_check cur;

    /* Shared, atomic. */
    int rp_open;            /* OPEN_RETURN_PATH seen: heartbeats may go */
    int busy;               /* inside a package: not reading */
    uint64_t progress_ns;   /* a record read or a package finished */
    uint64_t last_sent_ns;
    int stopping;           /* a receiver_end, set by stop_with */
    uint64_t stop_ns;
    int notes;

    /* Under slock. */
    receiver_stats st;
    uint32_t samples[APPLY_SAMPLES];    /* apply times, µs, a ring */
    size_t nsamples;                    /* taken in all */
    receiver_end end;
    uint64_t end_ns;
    char end_msg[600];

    /* Loop thread only. */
    struct event *ev_note, *ev_hb, *ev_fail;
    qfile *lq;              /* encodes the loop's messages */
    uint64_t hb_seq;
};

__attribute__((format(printf, 1, 2)))
static void say(const char *fmt, ...)
{
    char line[1200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    fprintf(stderr, "ftvm secondary: %s\n", line);
}

static void note(receiver *rx, int what)
{
    __atomic_fetch_or(&rx->notes, what, __ATOMIC_ACQ_REL);
    event_active(rx->ev_note, EV_READ, 0);
}

/* ---- the return path ---- */

/* From the receiver thread, which may block: the loop never waits on it. */
static void rp_send_ack(receiver *rx, bool ack, uint64_t id, const char *why)
{
    pthread_mutex_lock(&rx->wlock);
    if (ack)
        retpath_put_ack(rx->rp, id);
    else
        retpath_put_nack(rx->rp, id, why);
    qfile_flush(rx->rp);
    pthread_mutex_unlock(&rx->wlock);
    STORE(rx->last_sent_ns, mono_ns());
}

/*
 * From the loop: all of the message or nothing, without blocking.  1 sent,
 * 0 not now (a writer holds the lock, or the socket is full), -ENOBUFS
 * when the primary does not read (the framing could break), or the
 * socket's error, which the receiver thread will meet as well.
 */
static int rp_try_send(receiver *rx, const uint8_t *msg, size_t len)
{
    if (pthread_mutex_trylock(&rx->wlock) != 0)
        return 0;
    int outq = 0;
    ssize_t n = -1;
    if (ioctl(rx->fd, SIOCOUTQ, &outq) == 0 && outq > RP_BACKLOG_MAX)
        errno = ENOBUFS;
    else
        n = send(rx->fd, msg, len, MSG_DONTWAIT | MSG_NOSIGNAL);
    int e = errno;
    pthread_mutex_unlock(&rx->wlock);
    if (n == (ssize_t)len) {
        STORE(rx->last_sent_ns, mono_ns());
        return 1;
    }
    if (n < 0 && (e == EAGAIN || e == EWOULDBLOCK || e == EINTR))
        return 0;
    return n < 0 ? -e : -ENOBUFS;
}

static void stop_with(receiver *rx, receiver_end why, int code, const char *msg)
{
    int none = 0;
    if (!__atomic_compare_exchange_n(&rx->stopping, &none, (int)why, false,
                                     __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
        return;
    STORE(rx->stop_ns, mono_ns());
    if (msg) {
        pthread_mutex_lock(&rx->slock);
        snprintf(rx->end_msg, sizeof(rx->end_msg), "%s", msg);
        pthread_mutex_unlock(&rx->slock);
    }
    if (code >= 0 && LOAD(rx->rp_open)) {
        size_t len;
        qfile_mem_reset(rx->lq);
        retpath_put_shut(rx->lq, (uint32_t)code);
        const uint8_t *m = qfile_mem_data(rx->lq, &len);
        if (rp_try_send(rx, m, len) <= 0)
            say("%s: could not send SHUT %d: the return path is busy or "
                "gone", rx->peer, code);
    }
    /* Unblocks the receiver thread's read (and any write). */
    shutdown(rx->fd, SHUT_RDWR);
}

void receiver_stop(receiver *rx, receiver_end why, int code)
{
    stop_with(rx, why, code, NULL);
}

/* ---- the target: what each section is, and the base rule ---- */

static void reset_pkg(receiver *rx)
{
    if (rx->cur.held)
        pthread_mutex_unlock(&rx->cache);
    rx->cur = (pkg_check){ 0 };
    STORE(rx->progress_ns, mono_ns());
    STORE(rx->busy, 0);
}

static int create_vm(receiver *rx, qfile *f, const savevm_section *sec)
{
    if (rx->v)
        return qfile_fail(f, -EPROTO,
                          "a second '%s' section: the VM's shape "
                          "cannot change",
                          VMSHAPE_IDSTR);
    if (!LOAD(rx->rp_open) || !rx->colo)
        return qfile_fail(f, -EPROTO,
                          "not a replication stream: '%s' before "
                          "OPEN_RETURN_PATH and ENABLE_COLO",
                          VMSHAPE_IDSTR);
    if (vmshape_load(f, sec, &rx->shape) < 0)
        return qfile_error(f);
    if (rx->shape.has_net && !rx->o.net)
        return qfile_fail(f, -EINVAL,
                          "the primary's VM has a network device: "
                          "start the secondary with --net");
    vm_config cfg;
    vm_config_init(&cfg);
    cfg.mem_size = rx->shape.mem_size;
    cfg.vcpus = rx->shape.vcpus;
    memcpy(cfg.mac, rx->shape.mac, 6);
    cfg.net = rx->shape.has_net ? rx->o.net : NULL;
    char err[512];
    /* The primary is not silent while we are busy and not reading. */
    STORE(rx->busy, 1);
    int r = vm_create(&rx->v, &cfg, err, sizeof(err));
    STORE(rx->progress_ns, mono_ns());
    STORE(rx->busy, 0);
    if (r < 0)
        return qfile_fail(f, r, "creating the VM: %s", err);
    pthread_mutex_lock(&rx->slock);
    rx->st.phase = RECEIVER_PHASE_SETUP;
    pthread_mutex_unlock(&rx->slock);
    say("%s: VM of %" PRIu64 " MiB, %" PRIu32 " vCPU(s)%s created; "
        "receiving the bring-up", rx->peer, rx->shape.mem_size >> 20,
        rx->shape.vcpus, rx->shape.has_net ? ", with a NIC," : "");
    note(rx, NOTE_VM);
    return 0;
}

/* A section at the top level: the bring-up, applied as it comes. */
static int top_section(receiver *rx, qfile *f, const savevm_section *sec)
{
    if (strcmp(sec->idstr, VMSHAPE_IDSTR) == 0)
        return create_vm(rx, f, sec);
    if (!rx->v)
        return qfile_fail(f, -EPROTO,
                          "section '%s' before the VM's shape "
                          "('%s')",
                          sec->idstr, VMSHAPE_IDSTR);
    if (strcmp(sec->idstr, TRAILER_PKG_IDSTR) == 0 ||
        strcmp(sec->idstr, TRAILER_IDSTR) == 0)
        return qfile_fail(f, -EPROTO, "section '%s' outside a package",
                          sec->idstr);
    if (rx->packaged)
        return qfile_fail(f, -EPROTO,
                          "section '%s' outside a package after "
                          "the bring-up: it could not be applied atomically",
                          sec->idstr);
    return registry_target_ops.section(vm_registry(rx->v), f, sec,
                                       SAVEVM_PASS_APPLY);
}

static int validate_section(receiver *rx, qfile *f, const savevm_section *sec)
{
    pkg_check *c = &rx->cur;
    if (c->sections++ == 0) {
        STORE(rx->busy, 1);
        c->t0 = mono_ns();
        rx->packaged = true;
    }
    if (!rx->v)
        return qfile_fail(f, -EPROTO, "a package before the VM's shape ('%s')",
                          VMSHAPE_IDSTR);
    if (LOAD(rx->stopping))
        return qfile_fail(f, -ECANCELED, "replication is stopping");
    if (c->sealed)
        return qfile_fail(f, -EINVAL,
                          "section '%s' after the package's "
                          "trailer",
                          sec->idstr);
    bool hdr = strcmp(sec->idstr, TRAILER_PKG_IDSTR) == 0;
    if (hdr != (c->sections == 1))
        return qfile_fail(f, -EINVAL,
                          hdr ? "a second '%s' in one package"
                              : "a package must open with '%s'",
                          TRAILER_PKG_IDSTR);
    if (hdr) {
        int r = trailer_load_pkg(f, sec, &c->hdr);
        /* A header that reads but makes no sense still names its id. */
        c->have_hdr = c->hdr.id != 0;
        if (r < 0)
            return r;
        if (c->hdr.base != 0 && c->hdr.base != rx->last_applied)
            return qfile_fail(f, -ESTALE,
                              "checkpoint %" PRIu64 " builds on %" PRIu64
                              ", but the last checkpoint applied here "
                              "is %" PRIu64,
                              c->hdr.id, c->hdr.base, rx->last_applied);
        if (c->hdr.id <= rx->last_applied)
            return qfile_fail(f, -ESTALE,
                              "checkpoint %" PRIu64 " is not newer "
                              "than %" PRIu64 ", the last applied",
                              c->hdr.id, rx->last_applied);
        return 0;
    }
    if (strcmp(sec->idstr, TRAILER_IDSTR) == 0) {
        trailer_info info;
        if (trailer_load(f, sec, &info) < 0)
            return qfile_error(f);
        if (info.id != c->hdr.id)
            return qfile_fail(f, -EINVAL,
                              "the trailer of checkpoint %" PRIu64
                              " in the package of checkpoint %" PRIu64,
                              info.id, c->hdr.id);
        c->sealed = true;
        return 0;
    }
    return registry_target_ops.section(vm_registry(rx->v), f, sec,
                                       SAVEVM_PASS_VALIDATE);
}

static int apply_section(receiver *rx, qfile *f, const savevm_section *sec)
{
    if (strcmp(sec->idstr, TRAILER_PKG_IDSTR) == 0) {
        /* The first section: from here to the ACK the cache is in flux. */
        pthread_mutex_lock(&rx->cache);
        rx->cur.held = true;
        trailer_pkg p;
        return trailer_load_pkg(f, sec, &p);
    }
    if (strcmp(sec->idstr, TRAILER_IDSTR) == 0)
        return trailer_skip(f, sec);
    return registry_target_ops.section(vm_registry(rx->v), f, sec,
                                       SAVEVM_PASS_APPLY);
}

static int rx_section(void *opaque, qfile *f, const savevm_section *sec,
                      savevm_pass pass)
{
    receiver *rx = opaque;
    if (pass == SAVEVM_PASS_VALIDATE)
        return validate_section(rx, f, sec);
    if (rx->cur.applying)
        return apply_section(rx, f, sec);
    return top_section(rx, f, sec);
}

static int rx_command(void *opaque, savevm_cmd cmd)
{
    receiver *rx = opaque;
    if (cmd == SAVEVM_CMD_OPEN_RETURN_PATH)
        STORE(rx->rp_open, 1);
    if (cmd == SAVEVM_CMD_ENABLE_COLO)
        rx->colo = true;
    return 0;
}

static int rx_validated(void *opaque, qfile *pf)
{
    receiver *rx = opaque;
    pkg_check *c = &rx->cur;
    if (!c->have_hdr)
        return qfile_fail(pf, -EINVAL, "a package without '%s'",
                          TRAILER_PKG_IDSTR);
    if (!c->sealed)
        return qfile_fail(pf, -EBADMSG,
                          "checkpoint %" PRIu64 ": no trailer "
                          "('%s') seals the package",
                          c->hdr.id, TRAILER_IDSTR);
    if (LOAD(rx->stopping))
        return qfile_fail(pf, -ECANCELED,
                          "replication is stopping: checkpoint "
                          "%" PRIu64 " is not applied",
                          c->hdr.id);
    c->applying = true;
    return 0;
}

static void sample(receiver *rx, uint64_t ns)
{
    uint64_t us = ns / 1000;
    rx->samples[rx->nsamples++ % APPLY_SAMPLES] =
        us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
    rx->st.apply_last_ms = ns / 1e6;
}

static void package_applied(receiver *rx, uint32_t bytes)
{
    uint64_t id = rx->cur.hdr.id;
    uint64_t took = mono_ns() - rx->cur.t0;
    rx->last_applied = id;
    reset_pkg(rx);
    rp_send_ack(rx, true, id, NULL);
    pthread_mutex_lock(&rx->slock);
    bool first = rx->st.applied++ == 0;
    rx->st.last_id = id;
    rx->st.phase = RECEIVER_PHASE_ACTIVE;
    rx->st.package_bytes_last = bytes;
    rx->st.package_bytes_total += bytes;
    sample(rx, took);
    pthread_mutex_unlock(&rx->slock);
    if (first)
        say("%s: checkpoint %" PRIu64 " applied: replication is active",
            rx->peer, id);
}

static void rx_observe(void *opaque, const savevm_record *rec)
{
    receiver *rx = opaque;
    if (rec->depth != 0)
        return;
    STORE(rx->progress_ns, mono_ns());
    if (rec->type != SAVEVM_COMMAND)
        return;
    if (rec->cmd == SAVEVM_CMD_PACKAGED && rx->cur.applying) {
        package_applied(rx, rec->package_len);
    } else if (rec->cmd == SAVEVM_CMD_PING) {
        /* The loader writes the PONG right after this. */
        STORE(rx->last_sent_ns, mono_ns());
        pthread_mutex_lock(&rx->slock);
        rx->st.pings++;
        pthread_mutex_unlock(&rx->slock);
    }
}

static int rx_package_failed(void *opaque, qfile *pf)
{
    receiver *rx = opaque;
    if (!rx->v)
        return -EPROTO;
    uint64_t id = rx->cur.have_hdr ? rx->cur.hdr.id : 0;
    const char *why = qfile_errmsg(pf);
    reset_pkg(rx);
    rp_send_ack(rx, false, id, why);
    pthread_mutex_lock(&rx->slock);
    rx->st.refused++;
    snprintf(rx->st.last_refusal, sizeof(rx->st.last_refusal), "%s", why);
    pthread_mutex_unlock(&rx->slock);
    say("refused checkpoint %" PRIu64 ", staying at %" PRIu64 ": %s", id,
        rx->last_applied, why);
    return 0;
}

static const savevm_target_ops rx_ops = {
    .section = rx_section,
    .command = rx_command,
    .observe = rx_observe,
    .validated = rx_validated,
    .package_failed = rx_package_failed,
};

/* ---- the receiver thread ---- */

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

static void finish(receiver *rx, int r, savevm_stop why)
{
    receiver_end end;
    char msg[sizeof(rx->end_msg)];
    int stop = LOAD(rx->stopping);
    if (stop) {
        end = (receiver_end)stop;
        snprintf(msg, sizeof(msg), "replication stopped here");
    } else if (r == 0 && why == SAVEVM_STOP_EOF) {
        end = RECEIVER_END_EOF;
        snprintf(msg, sizeof(msg), "%s ended the stream (stop-replication)",
                 rx->peer);
    } else if (r == 0) {
        end = RECEIVER_END_LOST;
        snprintf(msg, sizeof(msg), "%s closed the connection", rx->peer);
    } else if (transport_error(r)) {
        end = RECEIVER_END_LOST;
        snprintf(msg, sizeof(msg), "%s", qfile_errmsg(rx->in));
    } else {
        end = RECEIVER_END_PROTOCOL;
        snprintf(msg, sizeof(msg), "%s", qfile_errmsg(rx->in));
        if (LOAD(rx->rp_open)) {
            pthread_mutex_lock(&rx->wlock);
            retpath_put_shut(rx->rp, RECEIVER_SHUT_ERROR);
            qfile_flush(rx->rp);
            pthread_mutex_unlock(&rx->wlock);
        }
    }
    pthread_mutex_lock(&rx->slock);
    rx->end = end;
    rx->end_ns = stop && LOAD(rx->stop_ns) ? LOAD(rx->stop_ns) : mono_ns();
    if (!stop || !rx->end_msg[0])
        snprintf(rx->end_msg, sizeof(rx->end_msg), "%s", msg);
    rx->st.phase = RECEIVER_PHASE_ENDED;
    pthread_mutex_unlock(&rx->slock);
    /* The peer learns now; the fd stays ours until receiver_free. */
    shutdown(rx->fd, SHUT_RDWR);
    note(rx, NOTE_END);
}

static void *rx_main(void *arg)
{
    receiver *rx = arg;
    savevm_stop why = SAVEVM_STOP_END;
    int r = savevm_load_header(rx->loader, rx->in);
    if (r == 0)
        r = savevm_load_main(rx->loader, rx->in, SAVEVM_PASS_APPLY, true,
                             &why);
    reset_pkg(rx);
    finish(rx, r, why);
    return NULL;
}

/* ---- the loop's side ---- */

/* Milliseconds since data last arrived, by the kernel's count; -1. */
static int64_t heard_ms(receiver *rx)
{
    struct tcp_info ti;
    socklen_t len = sizeof(ti);
    if (getsockopt(rx->fd, IPPROTO_TCP, TCP_INFO, &ti, &len) < 0)
        return -1;
    return ti.tcpi_last_data_recv;
}

static void on_fail_check(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    receiver *rx = arg;
    if (LOAD(rx->stopping) || LOAD(rx->busy))
        return;
    uint64_t silent = mono_ns() - LOAD(rx->progress_ns);
    int64_t ms = heard_ms(rx);
    if (ms >= 0 && (uint64_t)ms * 1000000u < silent)
        silent = (uint64_t)ms * 1000000u;
    if (silent < rx->o.failure_timeout_ns)
        return;
    char msg[256];
    snprintf(msg, sizeof(msg), "nothing from %s for %" PRIu64 " ms (the "
             "failure timeout is %" PRIu64 " ms)", rx->peer,
             silent / 1000000u, rx->o.failure_timeout_ns / 1000000u);
    stop_with(rx, RECEIVER_END_TIMEOUT, -1, msg);
}

static void on_heartbeat(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    receiver *rx = arg;
    uint64_t now = mono_ns();
    uint64_t next = rx->o.heartbeat_ns;
    uint64_t due = LOAD(rx->last_sent_ns) + rx->o.heartbeat_ns;
    if (LOAD(rx->stopping))
        return;
    if (LOAD(rx->rp_open) && now >= due) {
        size_t len;
        qfile_mem_reset(rx->lq);
        retpath_put_heartbeat(rx->lq, rx->hb_seq + 1);
        const uint8_t *m = qfile_mem_data(rx->lq, &len);
        int r = rp_try_send(rx, m, len);
        if (r > 0) {
            rx->hb_seq++;
            pthread_mutex_lock(&rx->slock);
            rx->st.heartbeats++;
            pthread_mutex_unlock(&rx->slock);
        } else if (r == 0) {
            next = HB_RETRY_NS;
        } else if (r == -ENOBUFS) {
            char msg[256];
            snprintf(msg, sizeof(msg), "%s does not read its return path",
                     rx->peer);
            stop_with(rx, RECEIVER_END_PROTOCOL, -1, msg);
            return;
        }
    } else if (LOAD(rx->rp_open)) {
        next = due - now;
    }
    struct timeval tv = mono_tv(next);
    event_add(rx->ev_hb, &tv);
}

static void on_note(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    receiver *rx = arg;
    int n = __atomic_exchange_n(&rx->notes, 0, __ATOMIC_ACQ_REL);
    if ((n & NOTE_VM) && !rx->vm_given) {
        rx->vm_given = true;
        rx->o.on_vm(rx->o.opaque, rx->v);
    }
    if (n & NOTE_END) {
        pthread_join(rx->thread, NULL);
        rx->thread_live = false;
        event_del(rx->ev_hb);
        event_del(rx->ev_fail);
        pthread_mutex_lock(&rx->slock);
        receiver_end end = rx->end;
        char msg[sizeof(rx->end_msg)];
        snprintf(msg, sizeof(msg), "%s", rx->end_msg);
        pthread_mutex_unlock(&rx->slock);
        /* Last: the caller may free rx from here. */
        rx->o.on_end(rx->o.opaque, end, msg);
    }
}

/* ---- life cycle ---- */

static int setup_socket(int fd)
{
    int one = 1;
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) < 0)
        return -errno;
    /* Acknowledgements are small and latency-bound. */
    if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0)
        return -errno;
    return 0;
}

int receiver_start(receiver **out, struct event_base *base, int fd,
                   const char *peer, const receiver_opts *o, char *err,
                   size_t errlen)
{
    receiver *rx = calloc(1, sizeof(*rx));
    if (!rx) {
        close(fd);
        snprintf(err, errlen, "%s: out of memory", peer);
        return -ENOMEM;
    }
    rx->o = *o;
    rx->base = base;
    rx->fd = fd;
    snprintf(rx->peer, sizeof(rx->peer), "%s", peer);
    pthread_mutex_init(&rx->wlock, NULL);
    pthread_mutex_init(&rx->cache, NULL);
    pthread_mutex_init(&rx->slock, NULL);
    rx->progress_ns = rx->last_sent_ns = mono_ns();
    int r = setup_socket(fd);
    if (r < 0) {
        snprintf(err, errlen, "%s: setting the socket up: %s", peer,
                 strerror(-r));
        goto fail;
    }
    rx->in = qfile_open_fd(fd, QFILE_READ, rx->peer);
    rx->rp = qfile_open_fd(fd, QFILE_WRITE, rx->peer);
    rx->lq = qfile_open_mem("return path");
    savevm_loader_opts lo = {
        .footers = true,
        .max_depth = 1,            /* packages do not nest */
        .max_package = UINT32_MAX, /* a full resend holds all of RAM */
        .return_path = rx->rp,
        .return_path_lock = &rx->wlock,
    };
    rx->loader = rx->in && rx->rp && rx->lq
                     ? savevm_loader_new(&rx_ops, rx, &lo)
                     : NULL;
    rx->ev_note = event_new(base, -1, 0, on_note, rx);
    rx->ev_hb = evtimer_new(base, on_heartbeat, rx);
    rx->ev_fail = event_new(base, -1, EV_PERSIST, on_fail_check, rx);
    r = -ENOMEM;
    if (!rx->loader || !rx->ev_note || !rx->ev_hb || !rx->ev_fail) {
        snprintf(err, errlen, "%s: out of memory", peer);
        goto fail;
    }
    /* A check every tenth of the timeout, 5 to 50 ms apart. */
    uint64_t every = rx->o.failure_timeout_ns / 10;
    every = every < 5000000u ? 5000000u : every > 50000000u ? 50000000u
                                                              : every;
    struct timeval hb = mono_tv(rx->o.heartbeat_ns), fc = mono_tv(every);
    if (event_add(rx->ev_hb, &hb) < 0 || event_add(rx->ev_fail, &fc) < 0) {
        snprintf(err, errlen, "%s: cannot start the timers", peer);
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
        stop_with(rx, RECEIVER_END_LOCAL, -1, NULL);
        pthread_join(rx->thread, NULL);
    }
    if (rx->v && !rx->vm_given)
        vm_destroy(rx->v);
    if (rx->ev_note)
        event_free(rx->ev_note);
    if (rx->ev_hb)
        event_free(rx->ev_hb);
    if (rx->ev_fail)
        event_free(rx->ev_fail);
    savevm_loader_free(rx->loader);
    qfile_close(rx->in);
    qfile_close(rx->rp);
    qfile_close(rx->lq);
    close(rx->fd);
    pthread_mutex_destroy(&rx->wlock);
    pthread_mutex_destroy(&rx->cache);
    pthread_mutex_destroy(&rx->slock);
    free(rx);
}

void receiver_hold(receiver *rx)
{
    pthread_mutex_lock(&rx->cache);
}

void receiver_release(receiver *rx)
{
    pthread_mutex_unlock(&rx->cache);
}

const char *receiver_peer(const receiver *rx)
{
    return rx->peer;
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

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

void receiver_get_stats(receiver *rx, receiver_stats *out)
{
    uint32_t s[APPLY_SAMPLES];
    pthread_mutex_lock(&rx->slock);
    *out = rx->st;
    size_t n = rx->nsamples < APPLY_SAMPLES ? rx->nsamples : APPLY_SAMPLES;
    memcpy(s, rx->samples, n * sizeof(s[0]));
    pthread_mutex_unlock(&rx->slock);
    if (n) {
        qsort(s, n, sizeof(s[0]), cmp_u32);
        out->apply_p50_ms = s[(n - 1) * 50 / 100] / 1e3;
        out->apply_p99_ms = s[(n - 1) * 99 / 100] / 1e3;
    }
    out->since_heard_ms = rx->thread_live ? heard_ms(rx) : -1;
}
