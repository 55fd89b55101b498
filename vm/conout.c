/*
 * conout: see conout.h.
 *
 * The buffer is a ring guarded by lock.  Writers only append to its free
 * part and the drain thread only takes from its head, so the thread
 * writes straight from the ring without the lock.  While the ring is
 * empty a writer first gives the fd what it takes at once (write_now).  A write that does not
 * fit whole is dropped whole: the guest writes a line per call, and a
 * reader that catches up sees whole lines with a gap, not torn ones.
 */
#include "vm/conout.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "vm/mono.h"

/* How long the drain thread waits in poll() before it looks around. */
#define POLL_MS 250

struct conout {
    int fd;
    size_t cap;
    uint8_t *buf;
    pthread_t thread;
    conout_warn_fn warn;
    void *warn_opaque;

    pthread_mutex_t lock;
    pthread_cond_t cond;        /* CLOCK_MONOTONIC: bytes came, or stop */
    size_t head, len;
    bool broken;                /* the fd failed: everything is dropped */
    bool told_broken;
    int broken_errno;
    bool stopping;
    uint64_t progress_ns;       /* the last write that took bytes */
    uint64_t written, dropped;
    uint64_t warned;            /* dropped when the last warning went */
    uint64_t warn_ns;           /* when it went; 0: never */
};

/* ---- the drain thread, with lock held unless said ---- */

static void drop_buffered(conout *c)
{
    c->dropped += c->len;
    c->head = c->len = 0;
}

/* Tells the warning function what it should hear now, if anything. */
static void warn_due(conout *c, uint64_t now)
{
    char msg[300];

    if (c->broken && !c->told_broken) {
        c->told_broken = true;
        snprintf(msg, sizeof(msg), "console: writing to fd %d failed (%s): "
                 "the guest's console output is dropped from now on", c->fd,
                 strerror(c->broken_errno));
    } else if (!c->broken && c->dropped > c->warned &&
               (c->warn_ns == 0 || now - c->warn_ns >= CONOUT_WARN_NS)) {
        snprintf(msg, sizeof(msg), "console: %" PRIu64 " bytes of the "
                 "guest's output dropped (%" PRIu64 " in all): the reader "
                 "of fd %d does not keep up and the %zu KiB buffer is full",
                 c->dropped - c->warned, c->dropped, c->fd, c->cap >> 10);
    } else {
        return;
    }
    c->warned = c->dropped;
    c->warn_ns = now;
    conout_warn_fn fn = c->warn;
    void *opaque = c->warn_opaque;
    if (!fn)
        return;
    pthread_mutex_unlock(&c->lock);
    fn(opaque, msg);
    pthread_mutex_lock(&c->lock);
}

/* Nothing to write: waits for bytes, a stop, or a warning falling due. */
static void idle_wait(conout *c)
{
    if (c->broken || c->dropped == c->warned) {
        pthread_cond_wait(&c->cond, &c->lock);
        return;
    }
    uint64_t at = c->warn_ns + CONOUT_WARN_NS;
    struct timespec ts = { .tv_sec = (time_t)(at / 1000000000ull),
                           .tv_nsec = (long)(at % 1000000000ull) };
    pthread_cond_timedwait(&c->cond, &c->lock, &ts);
}

/*
 * Without the lock: waits until fd is writable (POLL_MS at most), then
 * writes.  The bytes written, 0 for none, or -errno when the fd failed.
 */
static ssize_t drain_once(conout *c, const uint8_t *p, size_t n)
{
    struct pollfd pfd = { .fd = c->fd, .events = POLLOUT };
    int r = poll(&pfd, 1, POLL_MS);
    if (r <= 0)
        return 0;
    if (pfd.revents & POLLNVAL)
        return -EBADF;
    ssize_t w = write(c->fd, p, n);
    if (w >= 0)
        return w;
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
        return 0;
    return -errno;
}

static void *drain_main(void *arg)
{
    conout *c = arg;

    pthread_mutex_lock(&c->lock);
    for (;;) {
        uint64_t now = mono_ns();
        warn_due(c, now);
        if (c->stopping && c->len && now - c->progress_ns >= CONOUT_STALL_NS)
            drop_buffered(c);
        if (c->len == 0) {
            if (c->stopping)
                break;
            idle_wait(c);
            continue;
        }
        size_t n = c->len;
        if (n > c->cap - c->head)
            n = c->cap - c->head;
        if (n > PIPE_BUF)
            n = PIPE_BUF;
        const uint8_t *p = c->buf + c->head;
        pthread_mutex_unlock(&c->lock);
        ssize_t w = drain_once(c, p, n);
        pthread_mutex_lock(&c->lock);
        if (w > 0) {
            c->head = (c->head + (size_t)w) % c->cap;
            c->len -= (size_t)w;
            c->written += (uint64_t)w;
            c->progress_ns = mono_ns();
        } else if (w < 0) {
            c->broken = true;
            c->broken_errno = (int)-w;
            drop_buffered(c);
        }
    }
    pthread_mutex_unlock(&c->lock);
    return NULL;
}

/* ---- the API ---- */

int conout_new(conout **out, int fd, size_t cap)
{
    conout *c = calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    c->fd = fd;
    c->cap = cap ? cap : CONOUT_BUFFER_BYTES;
    c->buf = malloc(c->cap);
    if (!c->buf) {
        free(c);
        return -ENOMEM;
    }
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&c->cond, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&c->lock, NULL);

    /* Signals are for the loop; a reader gone shows as EPIPE here. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(&c->thread, NULL, drain_main, c);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        pthread_cond_destroy(&c->cond);
        pthread_mutex_destroy(&c->lock);
        free(c->buf);
        free(c);
        return -rc;
    }
    *out = c;
    return 0;
}

void conout_set_warn(conout *c, conout_warn_fn fn, void *opaque)
{
    pthread_mutex_lock(&c->lock);
    c->warn = fn;
    c->warn_opaque = opaque;
    pthread_mutex_unlock(&c->lock);
}

/*
 * With the lock held and nothing buffered (so the drain thread is not
 * writing): what the fd takes now without waiting, PIPE_BUF bytes at a
 * time while poll says it has room.  The bytes taken, or -errno when the
 * fd failed.  Output released on an ACK is then on the fd before the
 * loop answers anything else: a primary killed right after it has lost
 * nothing a client was owed, as long as its reader keeps up.
 */
static ssize_t write_now(conout *c, const uint8_t *p, size_t len)
{
    /*
     * The caller's thread may take SIGPIPE (the drain thread blocks
     * every signal): a reader gone must show as EPIPE here too, and its
     * SIGPIPE must not stay pending for the thread.
     */
    sigset_t pipe_sig, old;
    sigemptyset(&pipe_sig);
    sigaddset(&pipe_sig, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_sig, &old);
    ssize_t rc = 0;
    size_t done = 0;
    while (done < len) {
        struct pollfd pfd = { .fd = c->fd, .events = POLLOUT };
        if (poll(&pfd, 1, 0) != 1 || !(pfd.revents & POLLOUT))
            break;
        size_t n = len - done < PIPE_BUF ? len - done : PIPE_BUF;
        ssize_t w = write(c->fd, p + done, n);
        if (w < 0 && errno != EAGAIN && errno != EINTR) {
            rc = -errno;
            break;
        }
        if (w <= 0)
            break;
        done += (size_t)w;
    }
    if (rc == -EPIPE && !sigismember(&old, SIGPIPE)) {
        const struct timespec zero = { 0, 0 };
        sigtimedwait(&pipe_sig, NULL, &zero);
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return rc < 0 ? rc : (ssize_t)done;
}

void conout_write(conout *c, const void *buf, size_t len)
{
    if (!len)
        return;
    pthread_mutex_lock(&c->lock);
    /* Whole or not at all: what the fd leaves must fit the empty ring. */
    if (c->len == 0 && len <= c->cap && !c->broken && !c->stopping) {
        ssize_t w = write_now(c, buf, len);
        if (w < 0) {
            c->broken = true;
            c->broken_errno = (int)-w;
            pthread_cond_signal(&c->cond);      /* for its warning */
        } else if (w > 0) {
            c->written += (uint64_t)w;
            c->progress_ns = mono_ns();
            buf = (const uint8_t *)buf + w;
            len -= (size_t)w;
        }
        if (!len || w < 0) {
            if (w < 0)
                c->dropped += len;
            pthread_mutex_unlock(&c->lock);
            return;
        }
    }
    bool was_empty = c->len == 0;
    if (c->broken || len > c->cap - c->len) {
        c->dropped += len;
    } else {
        size_t tail = (c->head + c->len) % c->cap;
        size_t first = len < c->cap - tail ? len : c->cap - tail;
        memcpy(c->buf + tail, buf, first);
        memcpy(c->buf, (const uint8_t *)buf + first, len - first);
        c->len += len;
    }
    /* Otherwise the thread is writing, and looks at drops as it goes. */
    if (was_empty)
        pthread_cond_signal(&c->cond);
    pthread_mutex_unlock(&c->lock);
}

int conout_console(void *opaque, const void *buf, size_t len)
{
    conout_write(opaque, buf, len);
    return 0;
}

void conout_get_stats(conout *c, conout_stats *out)
{
    pthread_mutex_lock(&c->lock);
    out->written_bytes = c->written;
    out->dropped_bytes = c->dropped;
    out->buffered_bytes = c->len;
    pthread_mutex_unlock(&c->lock);
}

void conout_free(conout *c)
{
    if (!c)
        return;
    pthread_mutex_lock(&c->lock);
    c->stopping = true;
    c->progress_ns = mono_ns();
    pthread_cond_broadcast(&c->cond);
    pthread_mutex_unlock(&c->lock);
    pthread_join(c->thread, NULL);
    pthread_cond_destroy(&c->cond);
    pthread_mutex_destroy(&c->lock);
    free(c->buf);
    free(c);
}
