/* svmnet: see svmnet.h. */
#include "secondary/svmnet.h"

#include <errno.h>
#include <event2/event.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint/retpath.h"
#include "vm/mono.h"
#include "vm/net.h"

/* A return path that had no room is tried again this soon. */
#define RETRY_NS 1000000ull

typedef struct frame {
    struct frame *next;
    uint64_t id;
    size_t len;
    uint8_t data[];
} frame;

typedef struct fifo {
    frame *head, **tail;
    size_t n;
} fifo;

struct svmnet {
    int (*send)(void *opaque, const retpath_msg *m);
    void *opaque;
    hc_transmit_fn live_fn;
    void *live_opaque;
    struct event *ev_flush;

    pthread_mutex_t lock;
    vm *v;                  /* the SVM, once it runs from tag */
    uint64_t tag;           /* the checkpoint of the last reset, 0 none */
    bool resetting;
    bool live;
    fifo in, out;
    svmnet_stats st;
};

static void fifo_init(fifo *q)
{
    q->head = NULL;
    q->tail = &q->head;
    q->n = 0;
}

static void fifo_push(fifo *q, frame *f)
{
    f->next = NULL;
    *q->tail = f;
    q->tail = &f->next;
    q->n++;
}

static frame *fifo_pop(fifo *q)
{
    frame *f = q->head;
    if (!f)
        return NULL;
    q->head = f->next;
    if (!q->head)
        q->tail = &q->head;
    q->n--;
    return f;
}

static frame *frame_new(uint64_t id, const void *data, size_t len)
{
    frame *f = malloc(sizeof(*f) + len);
    if (f) {
        *f = (frame){ .id = id, .len = len };
        memcpy(f->data, data, len);
    }
    return f;
}

static void fifo_free(fifo *q)
{
    frame *f;
    while ((f = fifo_pop(q)))
        free(f);
}

/* ---- the SVM's frames (vCPU threads), to the primary (loop) ---- */

int svmnet_transmit(void *opaque, const void *data, size_t len)
{
    svmnet *n = opaque;
    pthread_mutex_lock(&n->lock);
    n->st.output_frames++;
    if (n->live) {
        /* Under the lock: after what go_live handed over first. */
        if (n->live_fn(n->live_opaque, data, len) == 0)
            n->st.live_frames++;
        pthread_mutex_unlock(&n->lock);
        return 0;
    }
    frame *f = NULL;
    if (n->out.n < SVMNET_MAX_OUTPUT && len && len <= NET_FRAME_MAX)
        f = frame_new(n->tag, data, len);
    if (f)
        fifo_push(&n->out, f);
    else
        n->st.dropped_frames++;     /* the primary times out: a checkpoint */
    pthread_mutex_unlock(&n->lock);
    if (f)
        event_active(n->ev_flush, EV_READ, 0);
    return 0;
}

static void on_flush(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    svmnet *n = arg;
    retpath_msg m;
    bool again = false;
    pthread_mutex_lock(&n->lock);
    while (!n->live && n->out.head) {
        frame *f = n->out.head;
        m = (retpath_msg){ .type = RETPATH_COLO_FRAME, .value64 = f->id,
                           .len = (uint16_t)f->len };
        memcpy(m.text, f->data, f->len);
        int r = n->send(n->opaque, &m);
        if (r <= 0) {
            again = r == 0;     /* gone: kept for a failover */
            break;
        }
        free(fifo_pop(&n->out));
        n->st.sent_frames++;
    }
    pthread_mutex_unlock(&n->lock);
    if (again) {
        struct timeval tv = mono_tv(RETRY_NS);
        event_add(n->ev_flush, &tv);
    }
}

/* ---- the mirror (receiver thread) ---- */

static void deliver(svmnet *n, const void *data, size_t len)
{
    if (vm_net_deliver(n->v, data, len) == 0)
        n->st.input_delivered++;
    else
        n->st.input_dropped++;
}

void svmnet_input(svmnet *n, uint64_t id, const void *data, size_t len)
{
    pthread_mutex_lock(&n->lock);
    n->st.input_frames++;
    if (n->live || (id < n->tag && !n->resetting)) {
        n->st.input_dropped++;          /* the SVM is past it */
    } else if (id == n->tag && !n->resetting && n->v) {
        deliver(n, data, len);
    } else {
        frame *f = n->in.n < SVMNET_MAX_INPUT ? frame_new(id, data, len)
                                              : NULL;
        if (f)
            fifo_push(&n->in, f);
        else
            n->st.input_dropped++;      /* the SVM diverges: a checkpoint */
    }
    pthread_mutex_unlock(&n->lock);
}

/* ---- resets (loop) ---- */

void svmnet_begin_reset(svmnet *n)
{
    pthread_mutex_lock(&n->lock);
    n->resetting = true;
    pthread_mutex_unlock(&n->lock);
}

/*
 * At a reset to id: frames of older checkpoints are dropped; input
 * tagged id goes into the SVM's NIC now, output tagged id (sent since
 * the reset) stays, and everything newer stays.
 */
static void sift(svmnet *n, fifo *q, uint64_t id, bool input)
{
    fifo keep;
    fifo_init(&keep);
    frame *f;
    while ((f = fifo_pop(q))) {
        if (input && f->id == id) {
            deliver(n, f->data, f->len);
        } else if (f->id > id || (!input && f->id == id)) {
            fifo_push(&keep, f);
            continue;
        } else if (input) {
            n->st.input_dropped++;
        } else {
            n->st.dropped_frames++;
        }
        free(f);
    }
    *q = keep;
    if (!q->head)
        q->tail = &q->head;
}

void svmnet_end_reset(svmnet *n, vm *v, uint64_t id)
{
    pthread_mutex_lock(&n->lock);
    n->v = v;
    n->tag = id;
    n->resetting = false;
    sift(n, &n->in, id, true);
    /* Frames of the older checkpoint: the primary is past them. */
    sift(n, &n->out, id, false);
    pthread_mutex_unlock(&n->lock);
}

/* ---- failover (loop) ---- */

int svmnet_go_live(svmnet *n, vm *v, vm *cache, char *err, size_t errlen)
{
    int r = vm_net_take_backend(v, cache, err, errlen);
    pthread_mutex_lock(&n->lock);
    n->live = true;
    n->v = v;
    fifo_free(&n->in);
    if (r == 0) {
        int d = net_rx_discard(vm_net(v));
        if (d > 0)
            n->st.stale_discarded += (uint64_t)d;
        frame *f;
        while ((f = fifo_pop(&n->out))) {
            if (n->live_fn(n->live_opaque, f->data, f->len) == 0)
                n->st.live_frames++;
            free(f);
        }
    }
    pthread_mutex_unlock(&n->lock);
    return r;
}

void svmnet_get_stats(svmnet *n, svmnet_stats *out)
{
    pthread_mutex_lock(&n->lock);
    *out = n->st;
    pthread_mutex_unlock(&n->lock);
}

int svmnet_new(svmnet **out, struct event_base *base,
               int (*send)(void *opaque, const retpath_msg *m),
               void *opaque, hc_transmit_fn live, void *live_opaque)
{
    svmnet *n = calloc(1, sizeof(*n));
    if (!n)
        return -ENOMEM;
    n->send = send;
    n->opaque = opaque;
    n->live_fn = live;
    n->live_opaque = live_opaque;
    fifo_init(&n->in);
    fifo_init(&n->out);
    pthread_mutex_init(&n->lock, NULL);
    n->ev_flush = event_new(base, -1, 0, on_flush, n);
    if (!n->ev_flush) {
        svmnet_free(n);
        return -ENOMEM;
    }
    *out = n;
    return 0;
}

void svmnet_free(svmnet *n)
{
    if (!n)
        return;
    if (n->ev_flush)
        event_free(n->ev_flush);
    fifo_free(&n->in);
    fifo_free(&n->out);
    pthread_mutex_destroy(&n->lock);
    free(n);
}
