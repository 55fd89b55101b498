/*
 * channel_thread: the link's sender thread (channel.h): connecting, the
 * bring-up, then every queued package, the owner's records (a run of them
 * in one write) and the final EOF, each written whole under send_lock;
 * and its heartbeat thread, which writes a PING between two records
 * whenever the line was quiet for the interval.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "checkpoint/savevm.h"
#include "daemon/log.h"
#include "daemon/parse.h"
#include "daemon/tlspump.h"
#include "primary/dial.h"
#include "primary/channel_impl.h"
#include "vm/mono.h"

/* How soon a PING that found the line busy or full is tried again. */
#define HB_RETRY_NS 5000000ull

static void thread_fail(channel *l, int rc, const char *msg)
{
    pthread_mutex_lock(&l->lock);
    if (!l->failed) {
        l->failed = true;
        l->fail_rc = rc;
        snprintf(l->fail_msg, sizeof(l->fail_msg), "%s", msg);
    }
    pthread_mutex_unlock(&l->lock);
}

int channel_send_iov(channel *l, struct iovec *iov, int n, char *err,
                     size_t errlen)
{
    for (;;) {
        while (n > 0 && iov->iov_len == 0) {
            iov++;
            n--;
        }
        if (n == 0)
            return 0;
        struct msghdr mh = { .msg_iov = iov, .msg_iovlen = (size_t)n };
        ssize_t w = sendmsg(l->fd, &mh, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            int e = w < 0 ? errno : EPIPE;
            snprintf(err, errlen, "secondary %s: sending: %s", l->addr,
                     strerror(e));
            return -e;
        }
        __atomic_store_n(&l->progress_ns, mono_ns(), __ATOMIC_RELAXED);
        __atomic_add_fetch(&l->bytes_sent, (uint64_t)w, __ATOMIC_RELAXED);
        size_t left = (size_t)w;
        while (n > 0 && left >= iov->iov_len) {
            left -= iov->iov_len;
            iov++;
            n--;
        }
        if (n > 0) {
            iov->iov_base = (uint8_t *)iov->iov_base + left;
            iov->iov_len -= left;
        }
    }
}

int channel_write(channel *l, const void *buf, size_t len, char *err,
                  size_t errlen)
{
    pthread_mutex_lock(&l->lock);
    bool stop = l->closing;
    pthread_mutex_unlock(&l->lock);
    if (stop) {
        snprintf(err, errlen, "secondary %s: link closed", l->addr);
        return -ECANCELED;
    }
    pthread_mutex_lock(&l->send_lock);
    /* Stamp first: a stall check between the two must not see 0. */
    __atomic_store_n(&l->progress_ns, mono_ns(), __ATOMIC_RELAXED);
    __atomic_store_n(&l->busy, true, __ATOMIC_RELAXED);
    struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };
    int rc = channel_send_iov(l, &iov, 1, err, errlen);
    __atomic_store_n(&l->last_sent_ns, mono_ns(), __ATOMIC_RELAXED);
    __atomic_store_n(&l->busy, false, __ATOMIC_RELAXED);
    pthread_mutex_unlock(&l->send_lock);
    return rc;
}

/* Records queued back to back go out in one write of this many at most. */
#define RECORD_BATCH 64

static int send_item(channel *l, item *it, char *err, size_t errlen)
{
    struct iovec iov[RECORD_BATCH] = { { it->hdr, it->hdr_len } };
    int n = 1;
    if (it->kind == IT_RECORD) {
        n = 0;
        for (item *r = it; r; r = r->next)
            iov[n++] = (struct iovec){ r->bytes, r->bytes_len };
    } else if (it->kind == IT_EOF && it->bytes) {
        /* The notice and EOF in one write: no PING falls between. */
        iov[0] = (struct iovec){ it->bytes, it->bytes_len };
        iov[1] = (struct iovec){ it->hdr, it->hdr_len };
        n = 2;
    } else if (it->kind == IT_PACKAGE) {
        size_t len;
        const uint8_t *d = qfile_mem_data(it->pkg, &len);
        iov[1] = (struct iovec){ (void *)d, len };
        n = 2;
    }
    return channel_send_iov(l, iov, n, err, errlen);
}

/*
 * The TLS handshake on the connected TCP socket l->fd, then the link's fd
 * becomes the pump's plaintext end.  The secondary's certificate must
 * name the host of the address, as QEMU's TLS client wants it, unless
 * --tls-peer names another.
 */
static int thread_tls(channel *l, char *err, size_t errlen)
{
    char host[256];
    uint16_t port;
    if (parse_hostport(l->addr, host, sizeof(host), &port) < 0)
        snprintf(host, sizeof(host), "%s", l->addr);
    pthread_mutex_lock(&l->lock);
    int tcp = l->fd;
    pthread_mutex_unlock(&l->lock);
    char who[300];
    snprintf(who, sizeof(who), "secondary %s", l->addr);
    tls_session *s;
    int rc = tls_handshake(l->tls, tcp, who, host,
                           mono_ns() + TLS_HANDSHAKE_TIMEOUT_NS, &l->closing,
                           &l->lock, &s, err, errlen);
    if (rc < 0)
        return rc;
    char what[160];
    tls_session_describe(s, what, sizeof(what));
    /* The pump takes the TCP socket; fd -1 until its end replaces it. */
    pthread_mutex_lock(&l->lock);
    l->fd = -1;
    pthread_mutex_unlock(&l->lock);
    log_msg("%s: TLS handshake done (%s)", who, what);
    int plain;
    rc = tlspump_start(s, tcp, who, &plain, err, errlen);
    if (rc < 0)
        return rc;
    pthread_mutex_lock(&l->lock);
    l->fd = plain;
    if (l->closing)
        shutdown(plain, SHUT_RDWR);
    pthread_mutex_unlock(&l->lock);
    return 0;
}

/* Connects (unless given an fd) and writes the bring-up. */
static int thread_setup(channel *l, char *err, size_t errlen)
{
    pthread_mutex_lock(&l->lock);
    bool have_fd = l->fd >= 0;
    pthread_mutex_unlock(&l->lock);
    if (!have_fd) {
        int fd;
        int rc = dial_connect(l->addr, l->connect_timeout_ms, &l->closing,
                              &l->lock, &fd, err, errlen);
        if (rc < 0)
            return rc;
        pthread_mutex_lock(&l->lock);
        if (l->closing) {
            pthread_mutex_unlock(&l->lock);
            close(fd);
            return -ECANCELED;
        }
        l->fd = fd;
        pthread_mutex_unlock(&l->lock);
    }
    if (l->tls) {
        int rc = thread_tls(l, err, errlen);
        if (rc < 0)
            return rc;
    }
    uint64_t t = mono_ns();
    __atomic_store_n(&l->last_recv_ns, t, __ATOMIC_RELAXED);
    __atomic_store_n(&l->last_sent_ns, t, __ATOMIC_RELAXED);
    pthread_mutex_lock(&l->lock);
    l->connected = true;
    pthread_mutex_unlock(&l->lock);
    channel_wake(l);
    int rc = l->ops.bringup(l->opaque, l, err, errlen);
    if (rc < 0)
        return rc;
    pthread_mutex_lock(&l->lock);
    l->ready = true;
    pthread_mutex_unlock(&l->lock);
    channel_wake(l);
    return 0;
}

/*
 * After our EOF, wait for the secondary to close its side.  Closing ours
 * with its replies unread would make the kernel send a reset, which
 * destroys whatever of the stream (the EOF included) is still in flight:
 * the secondary would then see a lost primary and fail over.  The finish
 * timer bounds the wait: it shuts the socket down, which ends the reads.
 */
static void drain_until_closed(channel *l)
{
    char buf[4096];
    for (int rounds = 0; rounds < 600; rounds++) {     /* 60 s at most */
        pthread_mutex_lock(&l->lock);
        bool closing = l->closing;
        pthread_mutex_unlock(&l->lock);
        if (closing)
            return;
        struct pollfd pfd = { .fd = l->fd, .events = POLLIN };
        int n = poll(&pfd, 1, 100);
        if (n < 0 && errno != EINTR)
            return;
        if (n <= 0)
            continue;
        ssize_t r = recv(l->fd, buf, sizeof(buf), MSG_DONTWAIT);
        if (r == 0 || (r < 0 && errno != EINTR && errno != EAGAIN &&
                       errno != EWOULDBLOCK))
            return;
    }
}

/* A batch of records written (or not), and freed: room for more. */
static void records_done(channel *l, item *chain, bool sent)
{
    size_t bytes = 0;
    uint64_t n = 0;
    while (chain) {
        item *next = chain->next;
        bytes += chain->bytes_len;
        n++;
        free(chain->bytes);
        free(chain);
        chain = next;
    }
    pthread_mutex_lock(&l->lock);
    l->rec_queued -= bytes;
    pthread_mutex_unlock(&l->lock);
    if (sent) {
        __atomic_add_fetch(&l->rec_sent, n, __ATOMIC_RELAXED);
        __atomic_add_fetch(&l->rec_bytes_sent, bytes, __ATOMIC_RELAXED);
    }
}

void *channel_thread_main(void *arg)
{
    channel *l = arg;
    char err[512];
    int rc = thread_setup(l, err, sizeof(err));
    while (rc == 0) {
        pthread_mutex_lock(&l->lock);
        while (!l->head && !l->closing)
            pthread_cond_wait(&l->cond, &l->lock);
        item *it = l->closing ? NULL : l->head;
        if (it) {
            /* Records back to back: a batch of them, still in a chain. */
            item *last = it;
            for (int k = 1; it->kind == IT_RECORD && k < RECORD_BATCH &&
                            last->next && last->next->kind == IT_RECORD;
                 k++)
                last = last->next;
            l->head = last->next;
            if (!l->head)
                l->tail = &l->head;
            last->next = NULL;
            __atomic_store_n(&l->progress_ns, mono_ns(),
                             __ATOMIC_RELAXED);
            __atomic_store_n(&l->busy, true, __ATOMIC_RELAXED);
            /* Before any byte: no honest ACK of it can come earlier. */
            if (it->kind == IT_PACKAGE)
                __atomic_store_n(&l->sending, it->id, __ATOMIC_RELEASE);
        }
        pthread_mutex_unlock(&l->lock);
        if (!it)
            break;
        pthread_mutex_lock(&l->send_lock);
        rc = send_item(l, it, err, sizeof(err));
        uint64_t t = mono_ns();
        __atomic_store_n(&l->last_sent_ns, t, __ATOMIC_RELAXED);
        __atomic_store_n(&l->busy, false, __ATOMIC_RELAXED);
        pthread_mutex_unlock(&l->send_lock);
        item_kind kind = it->kind;
        if (kind == IT_PACKAGE) {
            it->sent_ns = rc == 0 ? t : 0;
            pthread_mutex_lock(&l->lock);
            it->next = l->done;
            l->done = it;
            pthread_mutex_unlock(&l->lock);
            channel_wake(l);
        } else if (kind == IT_RECORD) {
            records_done(l, it, rc == 0);
        } else {
            free(it->bytes);
            free(it);
        }
        if (rc == 0 && kind == IT_EOF) {
            shutdown(l->fd, SHUT_WR);
            drain_until_closed(l);
            break;
        }
    }
    if (rc < 0 && rc != -ECANCELED)
        thread_fail(l, rc, err);
    pthread_mutex_lock(&l->lock);
    l->exited = true;
    pthread_cond_broadcast(&l->hb_cond);
    pthread_mutex_unlock(&l->lock);
    channel_wake(l);
    return NULL;
}

/* ---- the heartbeat thread ---- */

/*
 * One PING, unless a record is being written (send_lock taken: bytes are
 * flowing, or the stall checks will judge), the stream's header has not
 * gone out yet, or the socket has no room for it now.  Whether it went.
 */
static bool ping(channel *l, uint32_t value)
{
    if (__atomic_load_n(&l->bytes_sent, __ATOMIC_RELAXED) == 0 ||
        pthread_mutex_trylock(&l->send_lock) != 0)
        return false;
    pthread_mutex_lock(&l->lock);
    int fd = l->closing || l->finishing || l->failed ? -1 : l->fd;
    pthread_mutex_unlock(&l->lock);
    qfile_mem_reset(l->hb_framer);
    savevm_put_ping(l->hb_framer, value);
    size_t len;
    const uint8_t *d = qfile_mem_data(l->hb_framer, &len);
    ssize_t w = -1;
    if (fd >= 0 && !qfile_error(l->hb_framer))
        w = send(fd, d, len, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (w > 0 && (size_t)w < len) {
        /* Room for part of it: the record must be finished. */
        char err[256];
        struct iovec iov = { (void *)(d + w), len - (size_t)w };
        w = channel_send_iov(l, &iov, 1, err, sizeof(err)) < 0
                ? -1 : (ssize_t)len;
    }
    if (w > 0) {
        __atomic_store_n(&l->last_sent_ns, mono_ns(), __ATOMIC_RELAXED);
        __atomic_add_fetch(&l->pings, 1, __ATOMIC_RELAXED);
    }
    pthread_mutex_unlock(&l->send_lock);
    return w > 0;
}

/*
 * A wake-up of the heartbeat thread at now, for a wait that was due at
 * due (0: not a timed wait's end).
 */
static void note_wake(channel *l, uint64_t now, uint64_t due)
{
    __atomic_store_n(&l->hb_wake_ns, now, __ATOMIC_RELEASE);
    if (due && now > due) {
        uint64_t late = now - due;
        uint64_t seen = __atomic_load_n(&l->hb_late_ns, __ATOMIC_RELAXED);
        while (late > seen &&
               !__atomic_compare_exchange_n(&l->hb_late_ns, &seen, late,
                                            false, __ATOMIC_RELEASE,
                                            __ATOMIC_RELAXED))
            ;
    }
}

static void wait_until(channel *l, uint64_t deadline_ns)
{
    struct timespec ts = {
        .tv_sec = (time_t)(deadline_ns / 1000000000ull),
        .tv_nsec = (long)(deadline_ns % 1000000000ull),
    };
    pthread_cond_timedwait(&l->hb_cond, &l->lock, &ts);
}

void *channel_heartbeat_main(void *arg)
{
    channel *l = arg;
    uint32_t seq = 0;
    pthread_mutex_lock(&l->lock);
    while (!l->closing && !l->finishing && !l->exited) {
        uint64_t every = l->heartbeat_ns;
        if (!every) {
            pthread_cond_wait(&l->hb_cond, &l->lock);
            continue;
        }
        uint64_t due = __atomic_load_n(&l->last_sent_ns, __ATOMIC_RELAXED) +
                       every;
        uint64_t now = mono_ns();
        note_wake(l, now, 0);
        if (now < due) {
            wait_until(l, due);
            note_wake(l, mono_ns(), due);
            continue;
        }
        pthread_mutex_unlock(&l->lock);
        bool sent = ping(l, seq + 1);
        pthread_mutex_lock(&l->lock);
        if (sent)
            seq++;
        else if (!l->closing && !l->finishing && !l->exited) {
            uint64_t retry = now + (every < HB_RETRY_NS ? every : HB_RETRY_NS);
            wait_until(l, retry);
            note_wake(l, mono_ns(), retry);
        }
    }
    pthread_mutex_unlock(&l->lock);
    return NULL;
}
