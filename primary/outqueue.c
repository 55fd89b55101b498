/*
 * outqueue: see outqueue.h.
 *
 * Two locks keep the output in order without making a vCPU wait while
 * the loop releases: lock guards the queue and the counters, wlock is
 * held across every hand-over to the console sink and every send to the
 * frame sink.  A writer takes wlock before it drops lock, so whoever took
 * items off the queue (or decided to send through) first also sends
 * first.  Neither sink waits for a reader (the console's is a conout, the
 * frame sink sends without waiting), so neither lock is held long.
 */
#include "primary/outqueue.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "vm/mono.h"
#include "vm/net.h"

typedef enum item_kind { ITEM_CONSOLE, ITEM_FRAME } item_kind;

typedef struct item {
    struct item *next;
    uint64_t epoch;
    uint64_t t_ns;          /* when the guest produced it; then the delay */
    item_kind kind;
    size_t len;
    uint8_t data[];
} item;

struct outqueue {
    hc_console_fn console;
    void *console_opaque;
    outqueue_send_fn send;
    void *send_opaque;
    size_t limit_frames, limit_bytes;
    void (*on_limit)(void *opaque);
    void *limit_opaque;

    pthread_mutex_t lock;
    pthread_mutex_t wlock;
    bool holding;
    uint64_t base;          /* the epoch of the last outqueue_begin */
    uint64_t epoch;
    size_t epoch_frames, epoch_bytes;   /* held with the current epoch */
    bool limit_fired;       /* on_limit called for the current epoch */
    item *head, **tail;
    uint64_t credit_epoch;  /* outqueue_release_console's */
    size_t credit;
    outqueue_stats st;      /* all but holding, epoch and delay_ns */
    sampler delay;
};

int outqueue_new(outqueue **out)
{
    outqueue *q = calloc(1, sizeof(*q));
    if (!q)
        return -ENOMEM;
    q->limit_frames = OUTQUEUE_EPOCH_FRAMES;
    q->limit_bytes = OUTQUEUE_EPOCH_BYTES;
    pthread_mutex_init(&q->lock, NULL);
    pthread_mutex_init(&q->wlock, NULL);
    q->tail = &q->head;
    sampler_init(&q->delay, &sampler_ns);
    *out = q;
    return 0;
}

static void free_list(item *it)
{
    while (it) {
        item *next = it->next;
        free(it);
        it = next;
    }
}

void outqueue_free(outqueue *q)
{
    if (!q)
        return;
    free_list(q->head);
    pthread_mutex_destroy(&q->lock);
    pthread_mutex_destroy(&q->wlock);
    free(q);
}

void outqueue_set_console_sink(outqueue *q, hc_console_fn fn, void *opaque)
{
    pthread_mutex_lock(&q->lock);
    q->console = fn;
    q->console_opaque = opaque;
    pthread_mutex_unlock(&q->lock);
}

void outqueue_set_frame_sink(outqueue *q, outqueue_send_fn fn, void *opaque)
{
    pthread_mutex_lock(&q->lock);
    q->send = fn;
    q->send_opaque = opaque;
    pthread_mutex_unlock(&q->lock);
}

int outqueue_net_send(void *net, const void *frame, size_t len)
{
    return net_transmit(net, frame, len, false);
}

/* ---- sending, with wlock held ---- */

/* What sending a list (or one item) did, for the counters. */
typedef struct sent {
    uint64_t console_bytes, console_lost, frames;
} sent;

/* Sends one item. */
static int send_item(outqueue *q, const item *it, const void *data, sent *s)
{
    if (it->kind == ITEM_CONSOLE) {
        if (q->console) {
            q->console(q->console_opaque, data, it->len);
            s->console_bytes += it->len;
        } else {
            s->console_lost += it->len;
        }
        return 0;
    }
    int rc = q->send ? q->send(q->send_opaque, data, it->len)
                     : -ENODEV;
    s->frames++;
    return rc;
}

static void count_sent(outqueue *q, const sent *s)
{
    q->st.console_written_bytes += s->console_bytes;
    q->st.console_dropped_bytes += s->console_lost;
    q->st.frames_sent += s->frames;
}

/*
 * Sends a detached list; called with lock held, returns with it held,
 * having dropped it (but not wlock) around the sends.
 */
static size_t send_list(outqueue *q, item *list)
{
    if (!list)
        return 0;
    pthread_mutex_lock(&q->wlock);
    pthread_mutex_unlock(&q->lock);
    sent s = { 0 };
    size_t n = 0;
    for (item *it = list; it; it = it->next, n++) {
        send_item(q, it, it->data, &s);
        it->t_ns = mono_ns() - it->t_ns;   /* now the delay */
    }
    pthread_mutex_unlock(&q->wlock);
    pthread_mutex_lock(&q->lock);
    count_sent(q, &s);
    for (item *it = list; it; it = it->next)
        sampler_add(&q->delay, it->t_ns);
    free_list(list);
    return n;
}

/* Takes the head off the queue, with its counters. */
static item *pop_head(outqueue *q)
{
    item *it = q->head;
    q->head = it->next;
    it->next = NULL;
    if (!q->head)
        q->tail = &q->head;
    q->st.held_items--;
    if (it->kind == ITEM_CONSOLE) {
        q->st.held_console_bytes -= it->len;
    } else {
        q->st.held_frames--;
        q->st.held_frame_bytes -= it->len;
    }
    if (it->epoch == q->epoch) {
        q->epoch_bytes -= it->len;
        q->epoch_frames -= it->kind == ITEM_FRAME;
    }
    return it;
}

/* Takes the head of the queue while its epoch is <= upto (all: every). */
static item *detach(outqueue *q, uint64_t upto, bool every)
{
    item *list = NULL, **lt = &list;
    while (q->head && (every || q->head->epoch <= upto)) {
        item *it = pop_head(q);
        *lt = it;
        lt = &it->next;
    }
    return list;
}

/* ---- from the vCPUs ---- */

/* Sends one item now; called with lock held, returns with it dropped. */
static int send_now(outqueue *q, item_kind kind, const void *buf, size_t len,
                    uint64_t t_ns)
{
    item it = { .kind = kind, .len = len };
    sent s = { 0 };
    pthread_mutex_lock(&q->wlock);
    pthread_mutex_unlock(&q->lock);
    int rc = send_item(q, &it, buf, &s);
    pthread_mutex_unlock(&q->wlock);
    pthread_mutex_lock(&q->lock);
    count_sent(q, &s);
    if (t_ns)
        sampler_add(&q->delay, mono_ns() - t_ns);
    pthread_mutex_unlock(&q->lock);
    return rc;
}

/*
 * Sends or queues one item produced at t, tagged with the epoch of
 * checkpoint *id (of the last outqueue_begin), or with the current epoch
 * when id is NULL.  Returns 0, -ENOSPC when it is over the bounds
 * (counted here), or the frame sink's error.
 */
static int put_tagged(outqueue *q, item_kind kind, const void *buf,
                      size_t len, uint64_t t, const uint64_t *id)
{
    pthread_mutex_lock(&q->lock);
    if (!q->holding)
        return send_now(q, kind, buf, len, 0);
    item *it = NULL;
    if (q->st.held_items < OUTQUEUE_MAX_ITEMS &&
        q->st.held_console_bytes + q->st.held_frame_bytes + len <=
            OUTQUEUE_MAX_BYTES)
        it = malloc(sizeof(*it) + len);
    if (!it) {
        if (kind == ITEM_CONSOLE)
            q->st.console_dropped_bytes += len;
        else
            q->st.frames_refused++;
        pthread_mutex_unlock(&q->lock);
        return -ENOSPC;
    }
    uint64_t epoch = id ? q->base + *id : q->epoch;
    *it = (item){ .epoch = epoch, .t_ns = t, .kind = kind, .len = len };
    memcpy(it->data, buf, len);
    *q->tail = it;
    q->tail = &it->next;
    q->st.held_items++;
    if (kind == ITEM_CONSOLE) {
        q->st.held_console_bytes += len;
    } else {
        q->st.held_frames++;
        q->st.held_frame_bytes += len;
        q->epoch_frames += epoch == q->epoch;
    }
    if (epoch == q->epoch)
        q->epoch_bytes += len;
    bool fire = !q->limit_fired && (q->epoch_frames >= q->limit_frames ||
                                    q->epoch_bytes >= q->limit_bytes);
    if (fire)
        q->limit_fired = true;
    void (*fn)(void *) = q->on_limit;
    void *arg = q->limit_opaque;
    pthread_mutex_unlock(&q->lock);
    if (fire && fn)
        fn(arg);
    return 0;
}

static int put(outqueue *q, item_kind kind, const void *buf, size_t len)
{
    return put_tagged(q, kind, buf, len, mono_ns(), NULL);
}

int outqueue_console(void *opaque, const void *buf, size_t len)
{
    if (len)
        put(opaque, ITEM_CONSOLE, buf, len);
    return 0;
}

int outqueue_transmit(void *opaque, const void *frame, size_t len)
{
    if (!frame || len == 0 || len > NET_FRAME_MAX)
        return -EINVAL;
    return put(opaque, ITEM_FRAME, frame, len);
}

/* ---- from the owner ---- */

void outqueue_set_limit(outqueue *q, size_t frames, size_t bytes,
                        void (*fn)(void *opaque), void *opaque)
{
    pthread_mutex_lock(&q->lock);
    q->limit_frames = frames ? frames : OUTQUEUE_EPOCH_FRAMES;
    q->limit_bytes = bytes ? bytes : OUTQUEUE_EPOCH_BYTES;
    q->on_limit = fn;
    q->limit_opaque = opaque;
    pthread_mutex_unlock(&q->lock);
}

void outqueue_begin(outqueue *q)
{
    pthread_mutex_lock(&q->lock);
    q->base = q->epoch;
    pthread_mutex_unlock(&q->lock);
}

void outqueue_checkpoint(outqueue *q, uint64_t id)
{
    pthread_mutex_lock(&q->lock);
    q->holding = true;
    /* Epochs never go back: a later secondary's begin starts above. */
    if (q->base + id > q->epoch) {
        q->epoch = q->base + id;
        q->epoch_frames = q->epoch_bytes = 0;
        q->limit_fired = false;
    }
    pthread_mutex_unlock(&q->lock);
}

/*
 * Takes console bytes of the credit's epoch off the head while credit
 * lasts, splitting an item that is released in part.
 */
static item *detach_credit(outqueue *q)
{
    item *list = NULL, **lt = &list;
    while (q->credit && q->head && q->head->epoch == q->credit_epoch &&
           q->head->kind == ITEM_CONSOLE) {
        item *it = q->head;
        if (it->len > q->credit) {
            size_t n = q->credit;
            item *part = malloc(sizeof(*part) + n);
            if (!part)
                break;      /* it goes with its ACK */
            *part = (item){ .epoch = it->epoch, .t_ns = it->t_ns,
                            .kind = ITEM_CONSOLE, .len = n };
            memcpy(part->data, it->data, n);
            memmove(it->data, it->data + n, it->len - n);
            it->len -= n;
            q->st.held_console_bytes -= n;
            if (it->epoch == q->epoch)
                q->epoch_bytes -= n;
            q->credit = 0;
            *lt = part;
            break;
        }
        q->credit -= it->len;
        item *one = pop_head(q);
        *lt = one;
        lt = &one->next;
    }
    return list;
}

size_t outqueue_acked(outqueue *q, uint64_t id)
{
    if (id == 0)
        return 0;
    pthread_mutex_lock(&q->lock);
    size_t n = send_list(q, detach(q, q->base + id - 1, false));
    n += send_list(q, detach_credit(q));
    pthread_mutex_unlock(&q->lock);
    return n;
}

void outqueue_release_console(outqueue *q, uint64_t id, size_t n)
{
    pthread_mutex_lock(&q->lock);
    uint64_t e = q->base + id;
    if (e != q->credit_epoch) {
        q->credit_epoch = e;
        q->credit = 0;
    }
    q->credit += n;
    send_list(q, detach_credit(q));
    pthread_mutex_unlock(&q->lock);
}

int outqueue_send_frame(outqueue *q, const void *frame, size_t len,
                        uint64_t t_ns)
{
    if (!frame || len == 0 || len > NET_FRAME_MAX)
        return -EINVAL;
    pthread_mutex_lock(&q->lock);
    return send_now(q, ITEM_FRAME, frame, len, t_ns);
}

int outqueue_hold_frame(outqueue *q, uint64_t id, const void *frame,
                        size_t len, uint64_t t_ns)
{
    if (!frame || len == 0 || len > NET_FRAME_MAX)
        return -EINVAL;
    return put_tagged(q, ITEM_FRAME, frame, len, t_ns, &id);
}

size_t outqueue_release_all(outqueue *q)
{
    pthread_mutex_lock(&q->lock);
    q->holding = false;
    size_t n = send_list(q, detach(q, 0, true));
    pthread_mutex_unlock(&q->lock);
    return n;
}

void outqueue_get_stats(outqueue *q, outqueue_stats *out)
{
    pthread_mutex_lock(&q->lock);
    *out = q->st;
    out->holding = q->holding;
    out->epoch = q->epoch;
    sampler_summarize(&q->delay, &out->delay_ns);
    pthread_mutex_unlock(&q->lock);
}
