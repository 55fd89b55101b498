/* colo: see colo.h. */
#include "primary/colo.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/bytebuf.h"
#include "vm/mono.h"

typedef struct chunk {
    uint64_t end;           /* stream offset after its last byte */
    uint64_t t;             /* when the guest wrote it */
} chunk;

struct colo {
    outqueue *q;
    colonet *net;
    uint64_t timeout_ns;
    pthread_mutex_t lock;
    uint64_t epoch;         /* 0: not comparing */
    bool diverged;
    bool asked;             /* a checkpoint was asked for this epoch */
    uint64_t acked_t;       /* ACK of the epoch's checkpoint, 0 not yet */
    uint64_t ready_t;       /* the SVM said it runs from it, 0 not yet */
    uint64_t ckpt_t;        /* when the primary took it */
    colo_verdict want;      /* found on a vCPU thread, for colo_tick */
    bytebuf pri, sec;       /* unmatched bytes of each side */
    uint64_t pbase;         /* the primary's stream offset of pri.data[0] */
    /*
     * The exact release: matched bytes (up to pbase) leave once the
     * secondary knows (colo_release_due, colo_released): released is
     * what left, rel_asked the offset of the record on its way.
     */
    uint64_t released, rel_asked;
    void (*notify)(void *opaque);
    void *notify_opaque;
    chunk chunks[COLO_MAX_CHUNKS];
    size_t nchunks;         /* chunks[0] is the oldest still unmatched */
    colo_stats st;
};

const char *colo_mode_name(colo_mode m)
{
    return m == COLO_MODE_COLO ? "colo" : "checkpoint";
}

int colo_mode_parse(const char *s, colo_mode *out)
{
    if (strcmp(s, "colo") == 0)
        *out = COLO_MODE_COLO;
    else if (strcmp(s, "checkpoint") == 0)
        *out = COLO_MODE_CHECKPOINT;
    else
        return -EINVAL;
    return 0;
}

const char *colo_cause_name(colo_cause c)
{
    static const char *const names[COLO_CAUSE_N] = {
        "periodic", "mismatch", "timeout", "manual", "held_output_limit",
    };
    return c < COLO_CAUSE_N ? names[c] : "?";
}

int colo_new(colo **out, outqueue *q, uint64_t timeout_ns)
{
    colo *c = calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    c->timeout_ns = timeout_ns ? timeout_ns : COLO_DEFAULT_TIMEOUT_NS;
    if (colonet_new(&c->net, q, c->timeout_ns) < 0) {
        free(c);
        return -ENOMEM;
    }
    c->q = q;
    pthread_mutex_init(&c->lock, NULL);
    *out = c;
    return 0;
}

void colo_set_timeout(colo *c, uint64_t timeout_ns)
{
    pthread_mutex_lock(&c->lock);
    c->timeout_ns = timeout_ns ? timeout_ns : COLO_DEFAULT_TIMEOUT_NS;
    pthread_mutex_unlock(&c->lock);
    colonet_set_timeout(c->net, c->timeout_ns);
}

/* A release record may go: none on its way, and matched bytes left. */
static bool release_due(const colo *c)
{
    return c->epoch && c->rel_asked == c->released && c->pbase > c->released;
}

colonet *colo_net(colo *c)
{
    return c->net;
}

void colo_set_release_notify(colo *c, void (*fn)(void *opaque), void *opaque)
{
    pthread_mutex_lock(&c->lock);
    c->notify = fn;
    c->notify_opaque = opaque;
    pthread_mutex_unlock(&c->lock);
}

bool colo_release_due(colo *c, uint64_t *id, uint64_t *upto)
{
    pthread_mutex_lock(&c->lock);
    bool due = release_due(c);
    if (due) {
        c->rel_asked = c->pbase;
        *id = c->epoch;
        *upto = c->pbase;
    }
    pthread_mutex_unlock(&c->lock);
    return due;
}

void colo_release_failed(colo *c, uint64_t id)
{
    pthread_mutex_lock(&c->lock);
    if (id == c->epoch)
        c->rel_asked = c->released;
    pthread_mutex_unlock(&c->lock);
}

bool colo_released(colo *c, uint64_t id, uint64_t upto)
{
    bool more = false;
    pthread_mutex_lock(&c->lock);
    if (c->epoch && id == c->epoch && upto > c->released &&
        upto <= c->rel_asked) {
        outqueue_release_console(c->q, c->epoch,
                                 (size_t)(upto - c->released));
        c->st.released_bytes += upto - c->released;
        c->released = upto;
        c->rel_asked = upto;
        more = c->pbase > c->released;
    }
    pthread_mutex_unlock(&c->lock);
    return more;
}

void colo_free(colo *c)
{
    if (!c)
        return;
    colonet_free(c->net);
    bytebuf_free(&c->pri);
    bytebuf_free(&c->sec);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

/* ---- with the lock held ---- */

static void reset_epoch(colo *c, uint64_t epoch)
{
    c->epoch = epoch;
    c->diverged = c->asked = false;
    c->acked_t = c->ready_t = 0;
    c->want = COLO_OK;
    c->pri.len = c->sec.len = 0;
    c->pbase = 0;
    c->released = c->rel_asked = 0;
    c->nchunks = 0;
    c->st.secondary_bytes = 0;
}

/* The epoch differs: no more comparing until the next checkpoint. */
static colo_verdict diverge(colo *c)
{
    c->diverged = true;
    c->pri.len = c->sec.len = 0;
    c->nchunks = 0;
    if (c->asked)
        return COLO_OK;
    c->asked = true;
    c->st.mismatches++;
    return COLO_CHECKPOINT_MISMATCH;
}

/* Compares what both sides have; releases the agreeing prefix. */
static colo_verdict match(colo *c)
{
    size_t n = c->pri.len < c->sec.len ? c->pri.len : c->sec.len;
    if (n == 0)
        return COLO_OK;
    if (memcmp(c->pri.data, c->sec.data, n) != 0)
        return diverge(c);
    bytebuf_drop(&c->pri, n);
    bytebuf_drop(&c->sec, n);
    c->pbase += n;
    size_t k = 0;
    while (k < c->nchunks && c->chunks[k].end <= c->pbase)
        k++;
    memmove(c->chunks, c->chunks + k, (c->nchunks - k) * sizeof(chunk));
    c->nchunks -= k;
    c->st.matched_bytes += n;
    /* Out once the secondary knows: its SVM then will not write them. */
    if (release_due(c) && c->notify)
        c->notify(c->notify_opaque);
    return COLO_OK;
}

/* ---- the primary's bytes ---- */

int colo_console(void *opaque, const void *buf, size_t len)
{
    colo *c = opaque;
    uint64_t t = mono_ns();
    pthread_mutex_lock(&c->lock);
    /* Into the queue first, so a match can release it. */
    outqueue_console(c->q, buf, len);
    if (c->epoch && !c->diverged && len) {
        if (!bytebuf_add(&c->pri, buf, len, COLO_MAX_PENDING)) {
            if (diverge(c) != COLO_OK)
                c->want = COLO_CHECKPOINT_MISMATCH;
        } else {
            uint64_t end = c->pbase + c->pri.len;
            if (c->nchunks == COLO_MAX_CHUNKS)
                c->chunks[c->nchunks - 1].end = end;  /* keeps the older t */
            else
                c->chunks[c->nchunks++] = (chunk){ .end = end, .t = t };
            if (match(c) != COLO_OK)
                c->want = COLO_CHECKPOINT_MISMATCH;
        }
    }
    pthread_mutex_unlock(&c->lock);
    return 0;
}

void colo_checkpoint(colo *c, uint64_t id)
{
    uint64_t t = mono_ns();
    pthread_mutex_lock(&c->lock);
    reset_epoch(c, id);
    c->ckpt_t = t;
    pthread_mutex_unlock(&c->lock);
    colonet_checkpoint(c->net, id);
}

void colo_stop(colo *c)
{
    colo_checkpoint(c, 0);
}

/* What the frames' comparison asks for, as a verdict. */
static colo_verdict of_net(colonet_ask a)
{
    switch (a) {
    case COLONET_MISMATCH: return COLO_CHECKPOINT_MISMATCH;
    case COLONET_TIMEOUT: return COLO_CHECKPOINT_TIMEOUT;
    case COLONET_LIMIT: return COLO_CHECKPOINT_LIMIT;
    case COLONET_OK: break;
    }
    return COLO_OK;
}

colo_verdict colo_secondary_frame(colo *c, uint64_t id, const void *frame,
                                  size_t len, uint64_t now)
{
    return of_net(colonet_secondary(c->net, id, frame, len, now));
}

/* ---- the loop's ---- */

colo_verdict colo_secondary(colo *c, uint64_t id, const void *buf,
                            size_t len, uint64_t now)
{
    colo_verdict v = COLO_OK;
    pthread_mutex_lock(&c->lock);
    if (c->epoch && id == c->epoch && len == 0) {
        if (!c->ready_t)
            c->ready_t = now;
    } else if (!c->epoch || id != c->epoch) {
        c->st.ignored_bytes += len;
    } else if (!c->diverged) {
        c->st.secondary_bytes += len;
        v = bytebuf_add(&c->sec, buf, len, COLO_MAX_PENDING) ? match(c) : diverge(c);
    }
    pthread_mutex_unlock(&c->lock);
    return v;
}

/*
 * How much later than the primary the SVM runs through this epoch: it
 * started from the checkpoint ready_t - ckpt_t later (send, apply, ACK,
 * reset), so it writes each byte and frame that much later.  Without its
 * word, the ACK plus COLO_READY_GRACE timeouts (an SVM that never says so
 * must not hold output for ever).  false before the ACK: no lag known.
 */
static bool svm_lag(const colo *c, uint64_t *lag)
{
    if (c->ready_t)
        *lag = c->ready_t > c->ckpt_t ? c->ready_t - c->ckpt_t : 0;
    else if (c->acked_t)
        *lag = c->acked_t + COLO_READY_GRACE * c->timeout_ns - c->ckpt_t;
    else
        return false;
    return true;
}

/*
 * Whether the oldest unmatched byte is past the timeout on the SVM's time
 * line: written at t, the SVM writes it lag later; without the SVM's word
 * the grace counts from the checkpoint, not from the byte.
 */
static bool late(const colo *c, uint64_t now, uint64_t lag)
{
    uint64_t t = c->chunks[0].t;
    uint64_t from = (c->ready_t ? t : c->ckpt_t) + lag;
    if (t > from)
        from = t;
    return now >= from && now - from >= c->timeout_ns;
}

colo_verdict colo_tick(colo *c, uint64_t now)
{
    colo_verdict v = COLO_OK;
    pthread_mutex_lock(&c->lock);
    /* A release record that could not be queued is tried again. */
    if (release_due(c) && c->notify)
        c->notify(c->notify_opaque);
    uint64_t lag = 0;
    bool known = c->epoch && svm_lag(c, &lag);
    if (c->want != COLO_OK) {
        v = c->want;
        c->want = COLO_OK;
    } else if (known && !c->diverged && !c->asked && c->nchunks &&
               late(c, now, lag)) {
        c->asked = true;
        c->st.timeouts++;
        v = COLO_CHECKPOINT_TIMEOUT;
    }
    pthread_mutex_unlock(&c->lock);
    colo_verdict nv = of_net(colonet_tick(c->net, now, lag, known));
    return v != COLO_OK ? v : nv;
}

void colo_acked(colo *c, uint64_t id, uint64_t now)
{
    pthread_mutex_lock(&c->lock);
    if (c->epoch && id == c->epoch && !c->acked_t)
        c->acked_t = now;
    pthread_mutex_unlock(&c->lock);
}

uint64_t colo_tick_period(const colo *c)
{
    uint64_t p = c->timeout_ns / 4;
    return p < 1000000 ? 1000000 : p > 10000000 ? 10000000 : p;
}

void colo_get_stats(colo *c, colo_stats *out)
{
    pthread_mutex_lock(&c->lock);
    *out = c->st;
    out->epoch = c->epoch;
    out->diverged = c->diverged;
    out->pending_primary = c->pri.len;
    out->pending_secondary = c->sec.len;
    pthread_mutex_unlock(&c->lock);
}
