/* connection: see connection.h. */
#include "secondary/connection.h"

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "checkpoint/retpath.h"
#include "daemon/log.h"
#include "vm/mono.h"

/*
 * Return-path bytes the kernel still holds beyond which the primary is
 * taken not to read its return path at all (hours of heartbeats).
 */
#define RP_BACKLOG_MAX (256 * 1024)
/* How soon a heartbeat that could not go out is tried again. */
#define HB_RETRY_NS 5000000u
/* The failure check's shortest wait: libevent's timers are milliseconds. */
#define MIN_CHECK_NS 1000000u

#define LOAD(x) __atomic_load_n(&(x), __ATOMIC_ACQUIRE)
#define STORE(x, v) __atomic_store_n(&(x), (v), __ATOMIC_RELEASE)

struct connection {
    connection_opts o;
    int fd;
    int tcp_fd;             /* the TCP socket: fd, or the one under a pump */
    char peer[96];
    qfile *in, *rp;
    pthread_mutex_t wlock;  /* the return path, and tail */
    /*
     * What a non-blocking send left of a message: written before anything
     * else, so a partial write never breaks the return path's framing.
     */
    uint8_t tail[4 + RETPATH_MSG_MAX];
    size_t tail_len;
    pthread_mutex_t slock;  /* msg */

    /* Shared, atomic. */
    int rp_open;            /* OPEN_RETURN_PATH seen: heartbeats may go */
    int busy;               /* the receiver thread is not reading */
    uint64_t progress_ns;   /* a record read, or busy ended */
    uint64_t useful_ns;     /* a record other than PING, or busy ended */
    int established;        /* checkpoint 1 applied */
    uint64_t last_sent_ns;
    connection_state state;
    uint64_t end_ns;
    uint64_t heartbeats;

    char msg[600];          /* why it ended; under slock */

    /* Loop thread only. */
    struct event *ev_hb, *ev_fail;
    qfile *lq;              /* encodes the loop's messages */
    uint64_t hb_seq;
};

uint64_t connection_now(const connection *c)
{
    return c->o.clock ? c->o.clock() : mono_ns();
}

const char *connection_peer(const connection *c)
{
    return c->peer;
}

/* ---- the receiver thread ---- */

qfile *connection_input(connection *c)
{
    return c->in;
}

void connection_loader_opts(connection *c, savevm_loader_opts *lo)
{
    lo->return_path = c->rp;
    lo->return_path_lock = &c->wlock;
}

void connection_open_return_path(connection *c)
{
    STORE(c->rp_open, 1);
}

void connection_sent(connection *c)
{
    STORE(c->last_sent_ns, connection_now(c));
}

void connection_progress(connection *c)
{
    STORE(c->progress_ns, connection_now(c));
}

void connection_useful(connection *c)
{
    STORE(c->useful_ns, connection_now(c));
}

void connection_established(connection *c)
{
    STORE(c->established, 1);
}

void connection_set_busy(connection *c, bool busy)
{
    /* Progress first: the check never sees idle with the old time. */
    if (!busy) {
        connection_progress(c);
        connection_useful(c);
    }
    STORE(c->busy, busy ? 1 : 0);
}

/*
 * The receiver thread's messages block: the return path may be full while
 * the primary catches up.  Between rp_begin and rp_end, put into c->rp.
 */
/*
 * With wlock held: writes what a partial send left (flags: MSG_DONTWAIT,
 * or 0 to wait).  0 once nothing is left, else -errno (-EAGAIN: not now).
 */
static int write_tail(connection *c, int flags)
{
    while (c->tail_len) {
        ssize_t n = send(c->fd, c->tail, c->tail_len, flags | MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return n < 0 ? -errno : -EPIPE;
        memmove(c->tail, c->tail + n, c->tail_len - (size_t)n);
        c->tail_len -= (size_t)n;
    }
    return 0;
}

static void rp_begin(connection *c)
{
    pthread_mutex_lock(&c->wlock);
    /* A socket that failed drops it: the next write says so. */
    if (write_tail(c, 0) < 0)
        c->tail_len = 0;
}

static void rp_end(connection *c)
{
    qfile_flush(c->rp);
    pthread_mutex_unlock(&c->wlock);
    connection_sent(c);
}

void connection_send_ack(connection *c, uint64_t id, const pairing *pair)
{
    rp_begin(c);
    retpath_put_ack(c->rp, id, pair);
    rp_end(c);
}

void connection_send_nack(connection *c, uint64_t id, const pairing *pair,
                          const char *why)
{
    rp_begin(c);
    retpath_put_nack(c->rp, id, pair, why);
    rp_end(c);
}

void connection_send_refuse(connection *c, uint64_t decided,
                            const pairing *pair, const char *why)
{
    rp_begin(c);
    retpath_put_refuse(c->rp, decided, pair, why);
    rp_end(c);
}

void connection_send_shut(connection *c, uint32_t code)
{
    if (!LOAD(c->rp_open))
        return;
    rp_begin(c);
    retpath_put_shut(c->rp, code);
    rp_end(c);
}

void connection_hang_up(connection *c)
{
    shutdown(c->fd, SHUT_RDWR);
}

/* ---- the loop's thread ---- */

/*
 * A message without blocking: 1 taken (sent, or its end kept in tail for
 * the next writer: the socket took part of it), 0 not now (a writer
 * holds the lock, the socket is full, or an earlier tail is still
 * waiting), -ENOBUFS when the primary does not read, or the socket's
 * error, which the receiver thread will meet as well.
 */
static int try_send(connection *c, const uint8_t *msg, size_t len)
{
    if (len > sizeof(c->tail))
        return -EINVAL;
    if (pthread_mutex_trylock(&c->wlock) != 0)
        return 0;
    int r = write_tail(c, MSG_DONTWAIT);
    if (r < 0) {
        pthread_mutex_unlock(&c->wlock);
        return r == -EAGAIN || r == -EWOULDBLOCK ? 0 : r;
    }
    int outq = 0, e = 0;
    ssize_t n = -1;
    if (ioctl(c->tcp_fd, SIOCOUTQ, &outq) == 0 && outq > RP_BACKLOG_MAX)
        errno = ENOBUFS;
    else
        n = send(c->fd, msg, len, MSG_DONTWAIT | MSG_NOSIGNAL);
    e = errno;
    if (n > 0 && (size_t)n < len) {
        memcpy(c->tail, msg + n, len - (size_t)n);
        c->tail_len = len - (size_t)n;
        n = (ssize_t)len;
    }
    pthread_mutex_unlock(&c->wlock);
    if (n == (ssize_t)len) {
        connection_sent(c);
        return 1;
    }
    if (n < 0 && (e == EAGAIN || e == EWOULDBLOCK || e == EINTR))
        return 0;
    return n < 0 ? -e : -ENOBUFS;
}

/* The loop's own message, put into lq: 1, 0 or -errno as try_send. */
static int try_send_lq(connection *c)
{
    size_t len;
    const uint8_t *d = qfile_mem_data(c->lq, &len);
    return try_send(c, d, len);
}

int connection_try_send(connection *c, const retpath_msg *m)
{
    if (!LOAD(c->rp_open) ||
        connection_get_state(c, NULL, NULL, 0) != CONNECTION_OPEN)
        return -ENOTCONN;
    /*
     * A primary that is gone (its FIN arrived: killed, or closing) reads
     * nothing more: what COLO would write now is kept for a failover
     * instead of being lost in the socket.
     */
    struct tcp_info ti;
    socklen_t tl = sizeof(ti);
    if (getsockopt(c->tcp_fd, IPPROTO_TCP, TCP_INFO, &ti, &tl) == 0 &&
        ti.tcpi_state != TCP_ESTABLISHED)
        return -ENOTCONN;
    qfile_mem_reset(c->lq);
    retpath_put(c->lq, m);
    if (qfile_error(c->lq))
        return qfile_error(c->lq);
    return try_send_lq(c);
}

static bool end(connection *c, connection_state why, int code,
                const char *msg)
{
    connection_state open = CONNECTION_OPEN;
    if (!__atomic_compare_exchange_n(&c->state, &open, why, false,
                                     __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
        return false;
    STORE(c->end_ns, connection_now(c));
    if (msg) {
        pthread_mutex_lock(&c->slock);
        snprintf(c->msg, sizeof(c->msg), "%s", msg);
        pthread_mutex_unlock(&c->slock);
    }
    if (code >= 0 && LOAD(c->rp_open)) {
        qfile_mem_reset(c->lq);
        retpath_put_shut(c->lq, (uint32_t)code);
        if (try_send_lq(c) <= 0)
            log_msg("%s: could not send SHUT %d: the return path is busy "
                    "or gone", c->peer, code);
    }
    /* Unblocks the receiver thread's read (and any write). */
    shutdown(c->fd, SHUT_RDWR);
    return true;
}

bool connection_close(connection *c, int code)
{
    return end(c, CONNECTION_CLOSED, code, NULL);
}

int64_t connection_heard_ms(connection *c)
{
    struct tcp_info ti;
    socklen_t len = sizeof(ti);
    if (getsockopt(c->tcp_fd, IPPROTO_TCP, TCP_INFO, &ti, &len) < 0)
        return -1;
    return ti.tcpi_last_data_recv;
}

/* Before checkpoint 1: more than PINGs, at least every setup timeout. */
static bool check_idle(connection *c)
{
    if (!c->o.setup_timeout_ns || LOAD(c->established))
        return false;
    uint64_t useful = LOAD(c->useful_ns);
    uint64_t now = connection_now(c);
    uint64_t idle = now > useful ? now - useful : 0;
    if (idle < c->o.setup_timeout_ns)
        return false;
    char msg[256];
    snprintf(msg, sizeof(msg), "%s sent nothing but PINGs for %" PRIu64
             " ms before its first checkpoint (the setup timeout is %" PRIu64
             " ms)", c->peer, idle / 1000000u,
             c->o.setup_timeout_ns / 1000000u);
    return end(c, CONNECTION_IDLE, 1, msg);
}

/* How long nothing has arrived: the later of the last record read and the
 * kernel's last data received. */
static uint64_t silence_ns(connection *c)
{
    /*
     * The time of the last progress before the clock: read the other way
     * round, a progress stored in between would be later than now.
     */
    uint64_t progress = LOAD(c->progress_ns);
    uint64_t now = connection_now(c);
    uint64_t silent = now > progress ? now - progress : 0;
    int64_t ms = connection_heard_ms(c);
    if (ms >= 0 && (uint64_t)ms * 1000000u < silent)
        silent = (uint64_t)ms * 1000000u;
    return silent;
}

bool connection_check_silence(connection *c)
{
    if (LOAD(c->state) != CONNECTION_OPEN || LOAD(c->busy))
        return false;
    if (check_idle(c))
        return true;
    uint64_t silent = silence_ns(c);
    if (silent < c->o.failure_timeout_ns)
        return false;
    char msg[256];
    snprintf(msg, sizeof(msg), "nothing from %s for %" PRIu64 " ms (the "
             "failure timeout is %" PRIu64 " ms)", c->peer,
             silent / 1000000u, c->o.failure_timeout_ns / 1000000u);
    return end(c, CONNECTION_SILENT, -1, msg);
}

uint64_t connection_heartbeat(connection *c)
{
    if (LOAD(c->state) != CONNECTION_OPEN)
        return 0;
    if (!LOAD(c->rp_open))
        return c->o.heartbeat_ns;
    uint64_t due = LOAD(c->last_sent_ns) + c->o.heartbeat_ns;
    uint64_t now = connection_now(c);
    if (now < due)
        return due - now;
    qfile_mem_reset(c->lq);
    retpath_put_heartbeat(c->lq, c->hb_seq + 1);
    int r = try_send_lq(c);
    if (r > 0) {
        c->hb_seq++;
        __atomic_fetch_add(&c->heartbeats, 1, __ATOMIC_RELAXED);
    } else if (r == 0) {
        return HB_RETRY_NS;
    } else if (r == -ENOBUFS) {
        char msg[256];
        snprintf(msg, sizeof(msg), "%s does not read its return path",
                 c->peer);
        end(c, CONNECTION_UNREAD, -1, msg);
        return 0;
    }
    return c->o.heartbeat_ns;
}

connection_state connection_get_state(connection *c, uint64_t *when_ns,
                                      char *msg, size_t msglen)
{
    connection_state s = LOAD(c->state);
    if (when_ns)
        *when_ns = s == CONNECTION_OPEN ? 0 : LOAD(c->end_ns);
    if (msg) {
        pthread_mutex_lock(&c->slock);
        snprintf(msg, msglen, "%s", s == CONNECTION_OPEN ? "" : c->msg);
        pthread_mutex_unlock(&c->slock);
    }
    return s;
}

uint64_t connection_heartbeats(connection *c)
{
    return __atomic_load_n(&c->heartbeats, __ATOMIC_RELAXED);
}

void connection_stop_timers(connection *c)
{
    event_del(c->ev_hb);
    event_del(c->ev_fail);
}

/* A check every tenth of the timeout, 5 to 50 ms apart. */
static uint64_t check_period(const connection *c)
{
    uint64_t every = c->o.failure_timeout_ns / 10;
    return every < 5000000u ? 5000000u : every > 50000000u ? 50000000u
                                                           : every;
}

uint64_t connection_next_check(connection *c)
{
    uint64_t every = check_period(c);
    if (LOAD(c->state) != CONNECTION_OPEN)
        return 0;
    if (LOAD(c->busy))
        return every;
    /*
     * Progress only moves the deadline later, so the silence now gives
     * its earliest time: checking then, not at the next period, keeps
     * detection within a millisecond of the timeout instead of a tenth
     * of it.  The kernel's last-received time is in whole milliseconds
     * (and its clock ticks), so a check can come a little early and run
     * again: at most one more wake-up.
     */
    uint64_t silent = silence_ns(c);
    uint64_t left = silent < c->o.failure_timeout_ns
                        ? c->o.failure_timeout_ns - silent : 0;
    if (left < MIN_CHECK_NS)
        left = MIN_CHECK_NS;
    return left < every ? left : every;
}

static void on_fail_check(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    connection *c = arg;
    if (connection_check_silence(c))
        return;
    uint64_t next = connection_next_check(c);
    if (next) {
        struct timeval tv = mono_tv(next);
        event_add(c->ev_fail, &tv);
    }
}

static void on_heartbeat(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    connection *c = arg;
    uint64_t next = connection_heartbeat(c);
    if (next) {
        struct timeval tv = mono_tv(next);
        event_add(c->ev_hb, &tv);
    }
}

/* ---- life cycle ---- */

static int setup_socket(int fd)
{
    int one = 1;
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) < 0)
        return -errno;
    /*
     * Acknowledgements are small and latency-bound.  A unix socket (a
     * unit test's) has no Nagle to turn off.
     */
    if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0 &&
        errno != EOPNOTSUPP)
        return -errno;
    return 0;
}

int connection_new(connection **out, struct event_base *base, int fd,
                   const char *peer, const connection_opts *o, char *err,
                   size_t errlen)
{
    connection *c = calloc(1, sizeof(*c));
    if (!c) {
        close(fd);
        if (o->pumped)
            close(o->tcp_fd);
        snprintf(err, errlen, "%s: out of memory", peer);
        return -ENOMEM;
    }
    c->o = *o;
    c->fd = fd;
    c->tcp_fd = o->pumped ? o->tcp_fd : fd;
    snprintf(c->peer, sizeof(c->peer), "%s", peer);
    pthread_mutex_init(&c->wlock, NULL);
    pthread_mutex_init(&c->slock, NULL);
    c->progress_ns = c->useful_ns = c->last_sent_ns = connection_now(c);
    int r = setup_socket(fd);
    if (r < 0) {
        snprintf(err, errlen, "%s: setting the socket up: %s", peer,
                 strerror(-r));
        goto fail;
    }
    c->in = qfile_open_fd(fd, QFILE_READ, c->peer);
    c->rp = qfile_open_fd(fd, QFILE_WRITE, c->peer);
    c->lq = qfile_open_mem("return path");
    c->ev_hb = evtimer_new(base, on_heartbeat, c);
    c->ev_fail = evtimer_new(base, on_fail_check, c);
    r = -ENOMEM;
    if (!c->in || !c->rp || !c->lq || !c->ev_hb || !c->ev_fail) {
        snprintf(err, errlen, "%s: out of memory", peer);
        goto fail;
    }
    struct timeval hb = mono_tv(c->o.heartbeat_ns),
                   fc = mono_tv(check_period(c));
    if (event_add(c->ev_hb, &hb) < 0 || event_add(c->ev_fail, &fc) < 0) {
        snprintf(err, errlen, "%s: cannot start the timers", peer);
        goto fail;
    }
    *out = c;
    return 0;
fail:
    connection_free(c);
    return r;
}

void connection_free(connection *c)
{
    if (!c)
        return;
    if (c->ev_hb)
        event_free(c->ev_hb);
    if (c->ev_fail)
        event_free(c->ev_fail);
    qfile_close(c->in);
    qfile_close(c->rp);
    qfile_close(c->lq);
    close(c->fd);
    if (c->tcp_fd != c->fd)
        close(c->tcp_fd);
    pthread_mutex_destroy(&c->wlock);
    pthread_mutex_destroy(&c->slock);
    free(c);
}
