/*
 * outbuf: see outbuf.h.
 *
 * Two locks keep the output in order without making a vCPU wait on a
 * slow reader of stdout while the loop releases: lock guards the queue and
 * counters, wlock is held across every write to the fd.  A writer takes
 * wlock before it drops lock, so whoever took bytes off the queue (or
 * decided to write through) first also writes first.
 */
#include "primary/outbuf.h"
#include "vm/mono.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef struct chunk {
    struct chunk *next;
    uint64_t epoch;
    uint64_t t_ns;          /* when the guest wrote it */
    size_t len;
    uint8_t data[];
} chunk;

struct outbuf {
    int fd;
    size_t limit;
    void (*on_limit)(void *opaque);
    void *opaque;
    pthread_mutex_t lock;
    pthread_mutex_t wlock;
    bool holding;
    uint64_t epoch;
    size_t epoch_bytes;     /* held with the current epoch */
    bool limit_fired;       /* on_limit called for the current epoch */
    chunk *head, **tail;
    uint64_t held_bytes, held_writes;
    uint64_t written_bytes, dropped_bytes;
    sampler delay;
};

int outbuf_new(outbuf **out, int fd)
{
    outbuf *b = calloc(1, sizeof(*b));
    if (!b)
        return -ENOMEM;
    b->fd = fd;
    b->limit = OUTBUF_EPOCH_LIMIT;
    pthread_mutex_init(&b->lock, NULL);
    pthread_mutex_init(&b->wlock, NULL);
    b->tail = &b->head;
    sampler_init(&b->delay);
    *out = b;
    return 0;
}

static void free_list(chunk *c)
{
    while (c) {
        chunk *next = c->next;
        free(c);
        c = next;
    }
}

void outbuf_free(outbuf *b)
{
    if (!b)
        return;
    free_list(b->head);
    pthread_mutex_destroy(&b->lock);
    pthread_mutex_destroy(&b->wlock);
    free(b);
}

/* With wlock held.  Returns the bytes that could not be written. */
static size_t write_all(int fd, const uint8_t *p, size_t len)
{
    while (len) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return len;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/*
 * Writes a detached list; called with lock held, returns with it held,
 * having dropped it (but not wlock) around the writes.
 */
static size_t write_list(outbuf *b, chunk *list)
{
    if (!list)
        return 0;
    pthread_mutex_lock(&b->wlock);
    pthread_mutex_unlock(&b->lock);
    size_t written = 0, lost = 0;
    for (chunk *c = list; c; c = c->next) {
        lost += write_all(b->fd, c->data, c->len);
        written += c->len;
        c->t_ns = mono_ns() - c->t_ns;   /* now the delay */
    }
    pthread_mutex_unlock(&b->wlock);
    pthread_mutex_lock(&b->lock);
    b->written_bytes += written;
    b->dropped_bytes += lost;
    for (chunk *c = list; c; c = c->next)
        sampler_add(&b->delay, c->t_ns);
    free_list(list);
    return written;
}

/* Takes the head of the queue while its epoch is <= upto (all: every). */
static chunk *detach(outbuf *b, uint64_t upto, bool every)
{
    chunk *list = NULL, **lt = &list;
    while (b->head && (every || b->head->epoch <= upto)) {
        chunk *c = b->head;
        b->head = c->next;
        c->next = NULL;
        *lt = c;
        lt = &c->next;
        b->held_bytes -= c->len;
        b->held_writes--;
        if (c->epoch == b->epoch)
            b->epoch_bytes -= c->len;
    }
    if (!b->head)
        b->tail = &b->head;
    return list;
}

int outbuf_console(void *opaque, const void *buf, size_t len)
{
    outbuf *b = opaque;
    if (!len)
        return 0;
    uint64_t t = mono_ns();
    pthread_mutex_lock(&b->lock);
    if (!b->holding) {
        pthread_mutex_lock(&b->wlock);
        pthread_mutex_unlock(&b->lock);
        size_t lost = write_all(b->fd, buf, len);
        pthread_mutex_unlock(&b->wlock);
        pthread_mutex_lock(&b->lock);
        b->written_bytes += len;
        b->dropped_bytes += lost;
        pthread_mutex_unlock(&b->lock);
        return 0;
    }
    chunk *c = b->held_bytes + len <= OUTBUF_HOLD_MAX
                   ? malloc(sizeof(*c) + len)
                   : NULL;
    if (!c) {
        b->dropped_bytes += len;
        pthread_mutex_unlock(&b->lock);
        return 0;
    }
    c->next = NULL;
    c->epoch = b->epoch;
    c->t_ns = t;
    c->len = len;
    memcpy(c->data, buf, len);
    *b->tail = c;
    b->tail = &c->next;
    b->held_bytes += len;
    b->held_writes++;
    b->epoch_bytes += len;
    bool fire = !b->limit_fired && b->epoch_bytes >= b->limit;
    if (fire)
        b->limit_fired = true;
    void (*fn)(void *) = b->on_limit;
    void *arg = b->opaque;
    pthread_mutex_unlock(&b->lock);
    if (fire && fn)
        fn(arg);
    return 0;
}

void outbuf_set_limit(outbuf *b, size_t limit, void (*fn)(void *opaque),
                      void *opaque)
{
    pthread_mutex_lock(&b->lock);
    b->limit = limit ? limit : OUTBUF_EPOCH_LIMIT;
    b->on_limit = fn;
    b->opaque = opaque;
    pthread_mutex_unlock(&b->lock);
}

void outbuf_set_hold(outbuf *b, bool hold)
{
    pthread_mutex_lock(&b->lock);
    b->holding = hold;
    if (!hold)
        write_list(b, detach(b, 0, true));
    pthread_mutex_unlock(&b->lock);
}

void outbuf_mark(outbuf *b, uint64_t epoch)
{
    pthread_mutex_lock(&b->lock);
    if (epoch > b->epoch) {
        b->epoch = epoch;
        b->epoch_bytes = 0;
        b->limit_fired = false;
    }
    pthread_mutex_unlock(&b->lock);
}

size_t outbuf_release(outbuf *b, uint64_t upto)
{
    pthread_mutex_lock(&b->lock);
    size_t n = write_list(b, detach(b, upto, false));
    pthread_mutex_unlock(&b->lock);
    return n;
}

void outbuf_get_stats(outbuf *b, outbuf_stats *out)
{
    pthread_mutex_lock(&b->lock);
    out->held_bytes = b->held_bytes;
    out->held_writes = b->held_writes;
    out->written_bytes = b->written_bytes;
    out->dropped_bytes = b->dropped_bytes;
    out->epoch = b->epoch;
    out->holding = b->holding;
    sampler_summarize(&b->delay, &out->delay_ns);
    pthread_mutex_unlock(&b->lock);
}
