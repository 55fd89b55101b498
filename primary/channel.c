/* channel: see channel.h.  The loop's side; the thread is in channel_thread.c.
 */
#include "primary/channel.h"

#include <errno.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "checkpoint/savevm.h"
#include "primary/channel_impl.h"
#include "vm/mono.h"


void channel_wake(channel *l)
{
    event_active(l->ev_wake, EV_READ, 0);
}

/* ---- the loop's side ---- */

static void report_down(channel *l, int rc, const char *why)
{
    char msg[700];
    pthread_mutex_lock(&l->lock);
    bool tell = !l->told_failed && !l->closing && !l->finishing;
    l->told_failed = true;
    l->failed = true;
    pthread_mutex_unlock(&l->lock);
    /* What the operator of a plaintext link most likely needs to hear. */
    snprintf(msg, sizeof(msg), "%s%s", why, !l->heard && !l->tls
             ? " (in plaintext, --insecure: a secondary with --tls-creds "
               "closes such connections)" : "");
    if (tell)
        l->ops.on_down(l->opaque, l, rc, msg);
}

static void stop_reading(channel *l)
{
    if (l->read_added)
        event_del(l->ev_read);
    l->read_added = false;
}

/*
 * What one callback reads at most before it lets the loop run: a peer
 * that sends faster than it is read (a flood of HEARTBEATs) would
 * otherwise keep it here, and the timers and the control socket would
 * wait.  The event is level-triggered, so what is left is read on the
 * loop's next round.
 */
#define READ_BUDGET_MSGS 256
#define READ_BUDGET_BYTES (64 * 1024)

static void on_read(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    channel *l = arg;
    char why[600];
    unsigned msgs = 0;
    size_t bytes = 0;
    while (msgs < READ_BUDGET_MSGS && bytes < READ_BUDGET_BYTES) {
        ssize_t n = recv(fd, l->rx + l->rx_len, sizeof(l->rx) - l->rx_len,
                         MSG_DONTWAIT);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (n <= 0) {
            int e = n < 0 ? errno : ECONNRESET;
            snprintf(why, sizeof(why), "secondary %s: %s", l->addr,
                     n < 0 ? strerror(e) : "closed the connection");
            stop_reading(l);
            report_down(l, -e, why);
            return;
        }
        __atomic_store_n(&l->last_recv_ns, mono_ns(), __ATOMIC_RELAXED);
        l->heard = true;
        l->rx_len += (size_t)n;
        bytes += (size_t)n;
        size_t off = 0;
        for (;;) {
            retpath_msg m;
            char err[256];
            int used = retpath_parse(l->rx + off, l->rx_len - off, &m, err,
                                     sizeof(err));
            if (used < 0) {
                snprintf(why, sizeof(why), "secondary %s: %s", l->addr, err);
                stop_reading(l);
                report_down(l, -EPROTO, why);
                return;
            }
            if (used == 0)
                break;
            off += (size_t)used;
            msgs++;
            l->ops.on_msg(l->opaque, l, &m);
            if (!l->read_added)     /* the owner ended the link */
                return;
        }
        memmove(l->rx, l->rx + off, l->rx_len - off);
        l->rx_len -= off;
    }
}

static void on_wake(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    channel *l = arg;
    pthread_mutex_lock(&l->lock);
    bool add_read = l->connected && !l->read_added && !l->closing &&
                    !l->finishing && !l->told_failed;
    item *done = l->done;
    l->done = NULL;
    bool ready = l->ready && !l->told_ready;
    l->told_ready |= ready;
    bool failed = l->failed && !l->told_failed;
    bool exited = l->exited;
    int rc = l->fail_rc;
    char msg[512];
    snprintf(msg, sizeof(msg), "%s", l->fail_msg);
    if (exited) {
        /* What the thread never took is handed back as unsent. */
        for (item *it = l->head, *next; it; it = next) {
            next = it->next;
            if (it->kind == IT_PACKAGE) {
                it->next = done;
                done = it;
            } else {
                if (it->kind == IT_RECORD)
                    l->rec_queued -= it->bytes_len;
                free(it->bytes);
                free(it);
            }
        }
        l->head = NULL;
        l->tail = &l->head;
    }
    pthread_mutex_unlock(&l->lock);

    if (add_read && !l->ev_read)
        l->ev_read = event_new(l->base, l->fd, EV_READ | EV_PERSIST,
                               on_read, l);
    if (add_read && l->ev_read && event_add(l->ev_read, NULL) == 0)
        l->read_added = true;
    /* Oldest first, so the owner sees packages in the order sent. */
    item *rev = NULL;
    while (done) {
        item *next = done->next;
        done->next = rev;
        rev = done;
        done = next;
    }
    while (rev) {
        item *next = rev->next;
        l->ops.on_sent(l->opaque, l, rev->id, rev->pkg, rev->sent_ns);
        free(rev);
        rev = next;
    }
    if (ready && !l->closing && !l->finishing)
        l->ops.on_ready(l->opaque, l);
    if (failed)
        report_down(l, rc, msg);
    if (exited) {
        stop_reading(l);
        l->ops.on_exit(l->opaque, l);   /* may free l */
    }
}

static void on_finish_timeout(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    channel_shutdown(arg);
}

int channel_new(channel **out, struct event_base *base, const char *addr,
                int fd, int connect_timeout_ms, tls_ctx *tls,
                const channel_ops *ops, void *opaque, char *err,
                size_t errlen)
{
    channel *l = calloc(1, sizeof(*l));
    if (!l) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    l->base = base;
    snprintf(l->addr, sizeof(l->addr), "%s", addr);
    l->connect_timeout_ms = connect_timeout_ms;
    l->tls = tls;
    l->ops = *ops;
    l->opaque = opaque;
    l->fd = fd;
    l->tail = &l->head;
    pthread_mutex_init(&l->lock, NULL);
    pthread_mutex_init(&l->send_lock, NULL);
    pthread_cond_init(&l->cond, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&l->hb_cond, &ca);
    pthread_condattr_destroy(&ca);
    l->framer = qfile_open_mem(addr);
    l->hb_framer = qfile_open_mem(addr);
    l->ev_wake = event_new(base, -1, 0, on_wake, l);
    l->ev_finish = evtimer_new(base, on_finish_timeout, l);
    /* Over TLS the return path is read from the pump's end (on_wake). */
    if (fd >= 0 && !tls)
        l->ev_read = event_new(base, fd, EV_READ | EV_PERSIST, on_read, l);
    if (!l->framer || !l->hb_framer || !l->ev_wake || !l->ev_finish ||
        (fd >= 0 && !tls && !l->ev_read)) {
        snprintf(err, errlen, "out of memory");
        channel_free(l);
        return -ENOMEM;
    }
    if (pthread_create(&l->thread, NULL, channel_thread_main, l) != 0) {
        snprintf(err, errlen, "cannot start the sender thread");
        channel_free(l);
        return -EAGAIN;
    }
    l->thread_started = true;
    if (pthread_create(&l->hb_thread, NULL, channel_heartbeat_main, l) != 0) {
        snprintf(err, errlen, "cannot start the heartbeat thread");
        channel_free(l);
        return -EAGAIN;
    }
    l->hb_started = true;
    *out = l;
    return 0;
}

void channel_shutdown(channel *l)
{
    pthread_mutex_lock(&l->lock);
    l->closing = true;
    if (l->fd >= 0)
        shutdown(l->fd, SHUT_RDWR);
    pthread_cond_broadcast(&l->cond);
    pthread_cond_broadcast(&l->hb_cond);
    pthread_mutex_unlock(&l->lock);
    stop_reading(l);
    evtimer_del(l->ev_finish);
}

static void free_items(item *it)
{
    while (it) {
        item *next = it->next;
        qfile_close(it->pkg);
        free(it->bytes);
        free(it);
        it = next;
    }
}

void channel_free(channel *l)
{
    if (!l)
        return;
    channel_shutdown(l);
    if (l->thread_started)
        pthread_join(l->thread, NULL);
    if (l->hb_started)
        pthread_join(l->hb_thread, NULL);
    if (l->ev_read)
        event_free(l->ev_read);
    if (l->ev_wake)
        event_free(l->ev_wake);
    if (l->ev_finish)
        event_free(l->ev_finish);
    free_items(l->head);
    free_items(l->done);
    if (l->fd >= 0)
        close(l->fd);
    qfile_close(l->framer);
    qfile_close(l->hb_framer);
    pthread_cond_destroy(&l->cond);
    pthread_cond_destroy(&l->hb_cond);
    pthread_mutex_destroy(&l->send_lock);
    pthread_mutex_destroy(&l->lock);
    free(l);
}

const char *channel_addr(const channel *l)
{
    return l->addr;
}

/* The framing of a record, encoded by savevm (on the loop's thread). */
static void frame(channel *l, item *it, void (*put)(qfile *, const item *))
{
    size_t len;
    qfile_mem_reset(l->framer);
    put(l->framer, it);
    const uint8_t *d = qfile_mem_data(l->framer, &len);
    if (!qfile_error(l->framer) && len <= sizeof(it->hdr)) {
        memcpy(it->hdr, d, len);
        it->hdr_len = len;
    }
}

static void put_packaged(qfile *h, const item *it)
{
    size_t len;
    qfile_mem_data(it->pkg, &len);
    uint8_t be[4] = { (uint8_t)(len >> 24), (uint8_t)(len >> 16),
                      (uint8_t)(len >> 8), (uint8_t)len };
    savevm_put_command(h, SAVEVM_CMD_PACKAGED, 4, be);
}

static void put_eof(qfile *h, const item *it)
{
    (void)it;
    savevm_put_eof(h);
}

static void enqueue(channel *l, item *it)
{
    pthread_mutex_lock(&l->lock);
    *l->tail = it;
    l->tail = &it->next;
    pthread_cond_signal(&l->cond);
    pthread_mutex_unlock(&l->lock);
}

static item *new_item(channel *l, item_kind kind, uint64_t id, qfile *pkg,
                      void (*put)(qfile *, const item *))
{
    item *it = calloc(1, sizeof(*it));
    if (!it)
        return NULL;
    it->kind = kind;
    it->id = id;
    it->pkg = pkg;
    frame(l, it, put);
    if (!it->hdr_len) {
        free(it);
        return NULL;
    }
    return it;
}

void channel_send_package(channel *l, uint64_t id, qfile *pkg)
{
    item *it = new_item(l, IT_PACKAGE, id, pkg, put_packaged);
    if (!it) {
        /* Handed back unsent, as if the link had gone down first. */
        l->ops.on_sent(l->opaque, l, id, pkg, 0);
        char why[600];
        snprintf(why, sizeof(why), "secondary %s: out of memory queueing "
                 "checkpoint %llu", l->addr, (unsigned long long)id);
        report_down(l, -ENOMEM, why);
        return;
    }
    enqueue(l, it);
}

int channel_send_record(channel *l, const void *buf, size_t len)
{
    if (!len)
        return -EINVAL;
    /* Copied first: the lock is not held across an allocation. */
    item *it = calloc(1, sizeof(*it));
    uint8_t *copy = it ? malloc(len) : NULL;
    if (!copy) {
        free(it);
        return -ENOMEM;
    }
    memcpy(copy, buf, len);
    it->kind = IT_RECORD;
    it->bytes = copy;
    it->bytes_len = len;
    pthread_mutex_lock(&l->lock);
    int rc = 0;
    if (l->closing || l->finishing || l->failed || l->exited)
        rc = -ECANCELED;
    else if (len > CHANNEL_RECORDS_MAX - l->rec_queued)
        rc = -ENOBUFS;
    if (rc == 0) {
        l->rec_queued += len;
        *l->tail = it;
        l->tail = &it->next;
        pthread_cond_signal(&l->cond);
    }
    pthread_mutex_unlock(&l->lock);
    if (rc < 0) {
        free(copy);
        free(it);
    }
    return rc;
}

void channel_set_heartbeat(channel *l, uint64_t interval_ns)
{
    pthread_mutex_lock(&l->lock);
    l->heartbeat_ns = interval_ns;
    pthread_cond_broadcast(&l->hb_cond);
    pthread_mutex_unlock(&l->lock);
}

void channel_finish(channel *l, uint64_t timeout_ns, const void *notice,
                    size_t len)
{
    pthread_mutex_lock(&l->lock);
    l->finishing = true;
    pthread_cond_broadcast(&l->hb_cond);
    pthread_mutex_unlock(&l->lock);
    stop_reading(l);
    item *it = new_item(l, IT_EOF, 0, NULL, put_eof);
    if (it && notice && len) {
        it->bytes = malloc(len);
        if (it->bytes) {
            memcpy(it->bytes, notice, len);
            it->bytes_len = len;
        }
    }
    if (!it || (notice && len && !it->bytes)) {
        /* Never EOF without the notice: a bare EOF reads as a clean end. */
        if (it)
            free(it);
        channel_shutdown(l);
        return;
    }
    enqueue(l, it);
    struct timeval tv = mono_tv(timeout_ns);
    evtimer_add(l->ev_finish, &tv);
}

uint64_t channel_take_stall(channel *l, uint64_t now_ns)
{
    pthread_mutex_lock(&l->lock);
    uint64_t every = l->heartbeat_ns;
    pthread_mutex_unlock(&l->lock);
    if (!every)
        return 0;
    uint64_t late = __atomic_exchange_n(&l->hb_late_ns, 0, __ATOMIC_ACQ_REL);
    uint64_t woke = __atomic_load_n(&l->hb_wake_ns, __ATOMIC_ACQUIRE);
    /* Not woken since the stall ended (SIGCONT wakes every thread). */
    uint64_t quiet = woke && now_ns > woke + every ? now_ns - woke - every : 0;
    return late > quiet ? late : quiet;
}

void channel_get_times(channel *l, channel_times *out)
{
    out->last_recv_ns = __atomic_load_n(&l->last_recv_ns, __ATOMIC_RELAXED);
    out->busy = __atomic_load_n(&l->busy, __ATOMIC_RELAXED);
    out->progress_ns = __atomic_load_n(&l->progress_ns, __ATOMIC_RELAXED);
    out->pings = __atomic_load_n(&l->pings, __ATOMIC_RELAXED);
    out->sending = __atomic_load_n(&l->sending, __ATOMIC_ACQUIRE);
    out->records = __atomic_load_n(&l->rec_sent, __ATOMIC_RELAXED);
    out->record_bytes = __atomic_load_n(&l->rec_bytes_sent, __ATOMIC_RELAXED);
    pthread_mutex_lock(&l->lock);
    out->records_queued_bytes = l->rec_queued;
    pthread_mutex_unlock(&l->lock);
}
