/* virtq: see virtq.h. */
#include "devices/virtq.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "vm/le.h"

#define DESC_SIZE       16u
#define DESC_F_NEXT     1u
#define DESC_F_WRITE    2u
#define DESC_F_INDIRECT 4u
#define AVAIL_F_NO_INTERRUPT 1u

void virtq_reset(virtq *q, uint16_t max)
{
    memset(q, 0, sizeof(*q));
    q->size = max;
}

static uint64_t avail_len(const virtq *q)
{
    return 4 + 2ull * q->size;
}

static uint64_t used_len(const virtq *q)
{
    return 4 + 8ull * q->size;
}

int virtq_check_rings(const virtq *q, const virtq_mem *m, char *why,
                      size_t whylen)
{
    const char *bad = NULL;

    if ((q->desc & 15) || (q->avail & 1) || (q->used & 3)) {
        snprintf(why, whylen, "rings at 0x%" PRIx64 ", 0x%" PRIx64 ", 0x%"
                 PRIx64 " are not aligned as VIRTIO 1.0 requires", q->desc,
                 q->avail, q->used);
        return -EPROTO;
    }
    if (!m->ptr(m->opaque, q->desc, (uint64_t)DESC_SIZE * q->size))
        bad = "descriptor table";
    else if (!m->ptr(m->opaque, q->avail, avail_len(q)))
        bad = "driver (avail) ring";
    else if (!m->ptr(m->opaque, q->used, used_len(q)))
        bad = "device (used) ring";
    if (!bad)
        return 0;
    snprintf(why, whylen, "the %s of a %u-entry queue is not in RAM", bad,
             q->size);
    return -EPROTO;
}

int virtq_pop(virtq *q, const virtq_mem *m, virtq_chain *c, char *why,
              size_t whylen)
{
    if (virtq_check_rings(q, m, why, whylen) < 0)
        return -EPROTO;
    uint8_t *av = m->ptr(m->opaque, q->avail, avail_len(q));
    const uint8_t *dt = m->ptr(m->opaque, q->desc,
                               (uint64_t)DESC_SIZE * q->size);
    uint16_t idx = __atomic_load_n((uint16_t *)(av + 2), __ATOMIC_ACQUIRE);
    uint16_t ahead = (uint16_t)(idx - q->last_avail);
    if (ahead == 0)
        return 0;
    if (ahead > q->size) {
        snprintf(why, whylen, "the driver's index %u is %u ahead of the "
                 "device's %u in a %u-entry queue", idx, ahead,
                 q->last_avail, q->size);
        return -EPROTO;
    }
    uint16_t head = le_get16(av + 4 + 2u * (q->last_avail % q->size));
    if (head >= q->size) {
        snprintf(why, whylen, "chain head %u in a %u-entry queue", head,
                 q->size);
        return -EPROTO;
    }
    c->head = head;
    c->nseg = 0;
    c->readable = c->writable = 0;
    uint16_t i = head;
    for (;;) {
        if (c->nseg == q->size) {
            snprintf(why, whylen, "a chain from descriptor %u longer than "
                     "the queue (a loop)", head);
            return -EPROTO;
        }
        const uint8_t *d = dt + DESC_SIZE * i;
        uint16_t flags = le_get16(d + 12);
        if (flags & DESC_F_INDIRECT) {
            snprintf(why, whylen, "an indirect descriptor (%u), which was "
                     "not offered", i);
            return -EPROTO;
        }
        virtq_seg *s = &c->seg[c->nseg++];
        s->gpa = le_get64(d);
        s->len = le_get32(d + 8);
        s->write = flags & DESC_F_WRITE;
        if (!m->ptr(m->opaque, s->gpa, s->len)) {
            snprintf(why, whylen, "descriptor %u's buffer (0x%" PRIx64
                     ", %u bytes) is not in RAM", i, s->gpa, s->len);
            return -EPROTO;
        }
        if (s->write)
            c->writable += s->len;
        else
            c->readable += s->len;
        if (!(flags & DESC_F_NEXT))
            break;
        i = le_get16(d + 14);
        if (i >= q->size) {
            snprintf(why, whylen, "descriptor %u's next is %u in a "
                     "%u-entry queue", (unsigned)(d - dt) / DESC_SIZE, i,
                     q->size);
            return -EPROTO;
        }
    }
    q->last_avail++;
    return 1;
}

void virtq_unpop(virtq *q)
{
    q->last_avail--;
}

int virtq_push(virtq *q, const virtq_mem *m, uint16_t head, uint32_t len)
{
    uint8_t *u = m->ptr(m->opaque, q->used, used_len(q));

    if (!u)
        return -EPROTO;
    uint64_t at = 4 + 8ull * (q->used_idx % q->size);
    le_put32(u + at, head);
    le_put32(u + at + 4, len);
    q->used_idx++;
    /* The element before the index that publishes it. */
    __atomic_store_n((uint16_t *)(u + 2), q->used_idx, __ATOMIC_RELEASE);
    m->dirty(m->opaque, q->used + at, 8);
    m->dirty(m->opaque, q->used + 2, 2);
    return 0;
}

bool virtq_wants_interrupt(const virtq *q, const virtq_mem *m)
{
    const uint8_t *av = m->ptr(m->opaque, q->avail, avail_len(q));

    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    return !av || !(le_get16(av) & AVAIL_F_NO_INTERRUPT);
}

size_t virtq_read(const virtq_mem *m, const virtq_chain *c, uint64_t skip,
                  void *buf, size_t cap)
{
    size_t done = 0;

    for (unsigned i = 0; i < c->nseg && done < cap; i++) {
        const virtq_seg *s = &c->seg[i];
        if (s->write)
            continue;
        if (skip >= s->len) {
            skip -= s->len;
            continue;
        }
        uint64_t n = s->len - skip;
        if (n > cap - done)
            n = cap - done;
        const uint8_t *p = m->ptr(m->opaque, s->gpa + skip, n);
        if (!p)
            break;
        memcpy((uint8_t *)buf + done, p, n);
        done += n;
        skip = 0;
    }
    return done;
}

size_t virtq_write(const virtq_mem *m, const virtq_chain *c, uint64_t skip,
                   const void *buf, size_t len)
{
    size_t done = 0;

    for (unsigned i = 0; i < c->nseg && done < len; i++) {
        const virtq_seg *s = &c->seg[i];
        if (!s->write)
            continue;
        if (skip >= s->len) {
            skip -= s->len;
            continue;
        }
        uint64_t n = s->len - skip;
        if (n > len - done)
            n = len - done;
        uint8_t *p = m->ptr(m->opaque, s->gpa + skip, n);
        if (!p)
            break;
        memcpy(p, (const uint8_t *)buf + done, n);
        m->dirty(m->opaque, s->gpa + skip, n);
        done += n;
        skip = 0;
    }
    return done;
}

/* ---- state ---- */

int virtq_check_state(const virtq *q, char *why, size_t whylen)
{
    if (q->size == 0 || q->size > VIRTQ_MAX_SIZE || (q->size & (q->size - 1)))
        snprintf(why, whylen, "size %u; a power of two up to %u", q->size,
                 VIRTQ_MAX_SIZE);
    else if (q->enabled && ((q->desc & 15) || (q->avail & 1) || (q->used & 3)))
        snprintf(why, whylen, "rings at 0x%" PRIx64 ", 0x%" PRIx64 ", 0x%"
                 PRIx64 " are not aligned as VIRTIO 1.0 requires", q->desc,
                 q->avail, q->used);
    else if ((uint16_t)(q->last_avail - q->used_idx) > q->size)
        snprintf(why, whylen, "%u buffers taken and not returned in a "
                 "%u-entry queue", (uint16_t)(q->last_avail - q->used_idx),
                 q->size);
    else
        return 0;
    return -EINVAL;
}

static const vmstate_field virtq_fields[] = {
    {VMSTATE_SCALAR(virtq, size)},
    {VMSTATE_SCALAR(virtq, enabled)},
    {VMSTATE_SCALAR(virtq, desc)},
    {VMSTATE_SCALAR(virtq, avail)},
    {VMSTATE_SCALAR(virtq, used)},
    {VMSTATE_SCALAR(virtq, last_avail)},
    {VMSTATE_SCALAR(virtq, used_idx)},
    VMSTATE_END,
};

const vmstate_desc virtq_desc = {
    .name = "virtq", .version = 1, .minimum_version = 1,
    .size = sizeof(virtq), .fields = virtq_fields,
};
