/*
 * netcmp: see netcmp.h.  Flows live in a hash table of fixed size; each
 * has a FIFO per side.  Frames other than TCP pair up head to head: the
 * primary's oldest with the secondary's oldest.  TCP is netcmp_tcp.c's.
 */
#include "net-compare/netcmp_impl.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

typedef struct vnode {
    struct vnode *next;
    netcmp_verdict v;
} vnode;

static uint32_t opt_or(uint32_t v, uint32_t dflt)
{
    return v ? v : dflt;
}

int netcmp_new(netcmp **out, const netcmp_opts *opts)
{
    netcmp *nc = calloc(1, sizeof(*nc));
    if (!nc)
        return -ENOMEM;
    if (opts)
        nc->o = *opts;
    if (!nc->o.timeout_ns)
        nc->o.timeout_ns = NETCMP_TIMEOUT_NS;
    nc->o.flow_frames = opt_or(nc->o.flow_frames, NETCMP_FLOW_FRAMES);
    nc->o.flow_bytes = opt_or(nc->o.flow_bytes, NETCMP_FLOW_BYTES);
    nc->o.total_frames = opt_or(nc->o.total_frames, NETCMP_TOTAL_FRAMES);
    nc->o.total_bytes = opt_or(nc->o.total_bytes, NETCMP_TOTAL_BYTES);
    nc->o.max_flows = opt_or(nc->o.max_flows, NETCMP_MAX_FLOWS);
    *out = nc;
    return 0;
}

static uint32_t key_hash(const netcmp_key *k)
{
    const uint8_t *b = (const uint8_t *)k;
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < sizeof(*k); i++)
        h = (h ^ b[i]) * 16777619u;
    return h % NETCMP_BUCKETS;
}

static netcmp_flow *flow_find(const netcmp *nc, const netcmp_key *k)
{
    for (netcmp_flow *fl = nc->buckets[key_hash(k)]; fl; fl = fl->next)
        if (memcmp(&fl->key, k, sizeof(*k)) == 0)
            return fl;
    return NULL;
}

static void held_free(netcmp_held *h)
{
    free(h->pkt);
    free(h);
}

static netcmp_held *dequeue(netcmp *nc, netcmp_flow *fl, netcmp_side side)
{
    netcmp_queue *q = &fl->q[side];
    netcmp_held *h = q->head;
    q->head = h->next;
    if (!q->head)
        q->tail = NULL;
    q->n--;
    q->bytes -= (uint32_t)h->pkt->len;
    nc->st.held_frames[side]--;
    nc->st.held_bytes[side] -= h->pkt->len;
    if (fl->p_cmp == h)
        fl->p_cmp = h->next;
    h->next = NULL;
    return h;
}

static void flow_unlink(netcmp *nc, netcmp_flow *fl)
{
    netcmp_flow **pp = &nc->buckets[key_hash(&fl->key)];
    while (*pp != fl)
        pp = &(*pp)->next;
    *pp = fl->next;
    nc->st.flows--;
    for (int side = 0; side < 2; side++)
        while (fl->q[side].head)
            held_free(dequeue(nc, fl, side));
    free(fl);
}

static bool flow_idle(const netcmp_flow *fl)
{
    return !fl->q[0].head && !fl->q[1].head;
}

/* Room for one more flow: an idle one goes if need be. */
static bool flow_room(netcmp *nc)
{
    if (nc->st.flows < nc->o.max_flows)
        return true;
    for (uint32_t b = 0; b < NETCMP_BUCKETS; b++)
        for (netcmp_flow *fl = nc->buckets[b]; fl; fl = fl->next)
            if (flow_idle(fl)) {
                flow_unlink(nc, fl);
                return true;
            }
    return false;
}

static netcmp_flow *flow_add(netcmp *nc, const netcmp_key *k)
{
    netcmp_flow *fl = calloc(1, sizeof(*fl));
    if (!fl)
        return NULL;
    fl->key = *k;
    uint32_t h = key_hash(k);
    fl->next = nc->buckets[h];
    nc->buckets[h] = fl;
    nc->st.flows++;
    return fl;
}

void netcmp_free(netcmp *nc)
{
    if (!nc)
        return;
    for (uint32_t b = 0; b < NETCMP_BUCKETS; b++)
        while (nc->buckets[b])
            flow_unlink(nc, nc->buckets[b]);
    netcmp_verdict v;
    while (netcmp_next(nc, &v))
        netcmp_verdict_done(&v);
    free(nc);
}

/* ---- verdicts ---- */

static netcmp_pkt *pkt_copy(const netcmp_pkt *p)
{
    if (!p)
        return NULL;
    netcmp_pkt *c = malloc(sizeof(*c) + p->len);
    if (c)
        memcpy(c, p, sizeof(*c) + p->len);
    return c;
}

/*
 * A verdict without memory for its node is still a decision: the
 * primary's frame must not be lost, so this aborts rather than drop it
 * (a node is a few dozen bytes).
 */
static void push(netcmp *nc, const netcmp_verdict *v)
{
    vnode *n = malloc(sizeof(*n));
    if (!n)
        abort();
    n->next = NULL;
    n->v = *v;
    if (nc->verdicts_tail)
        nc->verdicts_tail->next = n;
    else
        nc->verdicts = n;
    nc->verdicts_tail = n;
}

bool netcmp_next(netcmp *nc, netcmp_verdict *v)
{
    vnode *n = nc->verdicts;
    if (!n)
        return false;
    nc->verdicts = n->next;
    if (!nc->verdicts)
        nc->verdicts_tail = NULL;
    *v = n->v;
    free(n);
    return true;
}

void netcmp_verdict_done(netcmp_verdict *v)
{
    free(v->frame);
    free(v->other);
    v->frame = v->other = NULL;
}

static void release(netcmp *nc, netcmp_flow *fl, netcmp_why why,
                    uint64_t now)
{
    netcmp_held *h = dequeue(nc, fl, NETCMP_PRIMARY);
    netcmp_verdict v = { .kind = NETCMP_RELEASE, .why = why,
                         .key = fl->key, .frame = h->pkt };
    v.delay_ns = now > h->pkt->t_ns ? now - h->pkt->t_ns : 0;
    h->pkt = NULL;
    held_free(h);
    nc->st.released++;
    if (why == NETCMP_CHECKPOINT) {
        nc->st.released_at_reset++;
    } else {
        if (why != NETCMP_MATCHED)
            nc->st.released_uncompared++;
        nc->st.delay_count++;
        nc->st.delay_sum_ns += v.delay_ns;
        if (v.delay_ns > nc->st.delay_max_ns)
            nc->st.delay_max_ns = v.delay_ns;
    }
    push(nc, &v);
}

void netcmp_release_head(netcmp *nc, netcmp_flow *fl, uint64_t now)
{
    release(nc, fl, fl->q[NETCMP_PRIMARY].head->why, now);
}

void netcmp_consume_head(netcmp *nc, netcmp_flow *fl)
{
    held_free(dequeue(nc, fl, NETCMP_SECONDARY));
    nc->st.consumed++;
}

void netcmp_complete(netcmp_held *p, netcmp_why why, netcmp_stats *st)
{
    p->complete = true;
    p->why = why;
    if (why == NETCMP_MATCHED) {
        st->compared++;
        st->matched++;
    }
}

void netcmp_mismatch(netcmp *nc, netcmp_flow *fl, const netcmp_held *p,
                     const netcmp_held *s, const char *field)
{
    fl->diverged = true;
    nc->st.compared++;
    nc->st.mismatched++;
    netcmp_verdict v = { .kind = NETCMP_MISMATCH, .key = fl->key,
                         .frame = pkt_copy(p->pkt),
                         .other = s ? pkt_copy(s->pkt) : NULL,
                         .field = field };
    push(nc, &v);
}

static void limit(netcmp *nc, const netcmp_key *k, netcmp_side side,
                  const char *which)
{
    nc->st.refused[side]++;
    if (nc->limit_reported)
        return;
    nc->limit_reported = true;
    nc->st.limits++;
    push(nc, &(netcmp_verdict){ .kind = NETCMP_LIMIT, .key = *k,
                                .field = which });
}

/* ---- comparing ---- */

/* Frames other than TCP: head to head, whole frames by their rules. */
static void run_plain(netcmp *nc, netcmp_flow *fl, uint64_t now)
{
    while (!fl->diverged && fl->q[0].head && fl->q[1].head) {
        netcmp_held *p = fl->q[0].head, *s = fl->q[1].head;
        const char *field;
        if (!netcmp_frame_same(&p->f, p->pkt->data, &s->f, s->pkt->data,
                               &field)) {
            netcmp_mismatch(nc, fl, p, s, field);
            return;
        }
        netcmp_complete(p, NETCMP_MATCHED, &nc->st);
        netcmp_consume_head(nc, fl);
        release(nc, fl, NETCMP_MATCHED, now);
    }
}

static void run(netcmp *nc, netcmp_flow *fl, uint64_t now)
{
    if (fl->key.cls == NETCMP_TCP)
        netcmp_tcp_run(nc, fl, now);
    else
        run_plain(nc, fl, now);
    /* Only TCP flows have state worth keeping between frames. */
    if (fl->key.cls != NETCMP_TCP && flow_idle(fl))
        flow_unlink(nc, fl);
}

int netcmp_put(netcmp *nc, netcmp_side side, const void *frame, size_t len,
               uint64_t now)
{
    if (len == 0 || len > NETCMP_FRAME_MAX) {
        nc->st.invalid++;
        return -EINVAL;
    }
    netcmp_frame f;
    netcmp_frame_parse(&f, frame, len);
    netcmp_flow *fl = flow_find(nc, &f.key);
    if (!fl && !flow_room(nc)) {
        limit(nc, &f.key, side, "flows");
        return -ENOSPC;
    }
    const char *over = NULL;
    if (fl && fl->q[side].n + 1 > nc->o.flow_frames)
        over = "flow frames";
    else if (fl && fl->q[side].bytes + len > nc->o.flow_bytes)
        over = "flow bytes";
    else if (nc->st.held_frames[0] + nc->st.held_frames[1] + 1 >
             nc->o.total_frames)
        over = "total frames";
    else if (nc->st.held_bytes[0] + nc->st.held_bytes[1] + len >
             nc->o.total_bytes)
        over = "total bytes";
    else if (len > nc->o.flow_bytes)
        over = "flow bytes";
    if (over) {
        limit(nc, &f.key, side, over);
        return -ENOSPC;
    }
    if (!fl && !(fl = flow_add(nc, &f.key)))
        return -ENOMEM;
    nc->st.frames[side]++;
    nc->st.bytes[side] += len;
    nc->st.malformed[side] += f.cls == NETCMP_MALFORMED;
    if (side == NETCMP_SECONDARY && f.cls == NETCMP_TCP &&
        netcmp_tcp_secondary(fl, &f)) {
        nc->st.consumed++;
        run(nc, fl, now);
        return 0;
    }
    netcmp_held *h = calloc(1, sizeof(*h));
    netcmp_pkt *pkt = malloc(sizeof(*pkt) + len);
    if (!h || !pkt) {
        free(h);
        free(pkt);
        nc->st.frames[side]--;
        nc->st.bytes[side] -= len;
        nc->st.malformed[side] -= f.cls == NETCMP_MALFORMED;
        if (flow_idle(fl))
            flow_unlink(nc, fl);
        return -ENOMEM;
    }
    pkt->t_ns = now;
    pkt->len = len;
    memcpy(pkt->data, frame, len);
    h->pkt = pkt;
    h->f = f;
    h->t_wait = now;
    netcmp_queue *q = &fl->q[side];
    if (q->tail)
        q->tail->next = h;
    else
        q->head = h;
    q->tail = h;
    q->n++;
    q->bytes += (uint32_t)len;
    nc->st.held_frames[side]++;
    nc->st.held_bytes[side] += len;
    if (side == NETCMP_PRIMARY && !fl->p_cmp)
        fl->p_cmp = h;
    run(nc, fl, now);
    return 0;
}

void netcmp_tick(netcmp *nc, uint64_t now)
{
    for (uint32_t b = 0; b < NETCMP_BUCKETS; b++)
        for (netcmp_flow *fl = nc->buckets[b]; fl; fl = fl->next) {
            netcmp_held *p = fl->q[NETCMP_PRIMARY].head;
            if (fl->diverged || !p || now - p->t_wait < nc->o.timeout_ns ||
                now < p->t_wait)
                continue;
            fl->diverged = true;
            nc->st.timeouts++;
            push(nc, &(netcmp_verdict){ .kind = NETCMP_TIMEOUT,
                                        .key = fl->key,
                                        .frame = pkt_copy(p->pkt) });
        }
}

bool netcmp_next_timeout(const netcmp *nc, uint64_t *when)
{
    bool any = false;
    for (uint32_t b = 0; b < NETCMP_BUCKETS; b++)
        for (const netcmp_flow *fl = nc->buckets[b]; fl; fl = fl->next) {
            const netcmp_held *p = fl->q[NETCMP_PRIMARY].head;
            if (fl->diverged || !p)
                continue;
            uint64_t t = p->t_wait + nc->o.timeout_ns;
            if (!any || t < *when)
                *when = t;
            any = true;
        }
    return any;
}

void netcmp_reset(netcmp *nc, netcmp_reset_mode mode, uint64_t now)
{
    nc->st.resets++;
    nc->limit_reported = false;
    for (uint32_t b = 0; b < NETCMP_BUCKETS; b++) {
        netcmp_flow *fl = nc->buckets[b];
        while (fl) {
            netcmp_flow *next = fl->next;
            while (fl->q[NETCMP_SECONDARY].head) {
                held_free(dequeue(nc, fl, NETCMP_SECONDARY));
                nc->st.dropped_at_reset++;
            }
            while (mode == NETCMP_RESET_RELEASE && fl->q[NETCMP_PRIMARY].head)
                release(nc, fl, NETCMP_CHECKPOINT, now);
            for (netcmp_held *h = fl->q[NETCMP_PRIMARY].head; h; h = h->next)
                h->t_wait = now;
            fl->diverged = false;
            netcmp_tcp_reset(fl);
            if (flow_idle(fl))
                flow_unlink(nc, fl);
            fl = next;
        }
    }
}

int netcmp_set_tcp_offset(netcmp *nc, const netcmp_key *key, uint32_t offset)
{
    if (key->cls != NETCMP_TCP)
        return -EINVAL;
    netcmp_flow *fl = flow_find(nc, key);
    if (!fl && !flow_room(nc))
        return -ENOSPC;
    if (!fl && !(fl = flow_add(nc, key)))
        return -ENOMEM;
    fl->offset = offset;
    fl->has_offset = true;
    return 0;
}

bool netcmp_tcp_offset(const netcmp *nc, const netcmp_key *key,
                       uint32_t *offset)
{
    const netcmp_flow *fl = key->cls == NETCMP_TCP ? flow_find(nc, key)
                                                   : NULL;
    if (!fl || !fl->has_offset)
        return false;
    *offset = fl->offset;
    return true;
}

void netcmp_get_stats(const netcmp *nc, netcmp_stats *out)
{
    *out = nc->st;
}

void netcmp_flows(const netcmp *nc,
                  void (*fn)(void *opaque, const netcmp_flow_info *fi),
                  void *opaque)
{
    for (uint32_t b = 0; b < NETCMP_BUCKETS; b++)
        for (const netcmp_flow *fl = nc->buckets[b]; fl; fl = fl->next) {
            netcmp_flow_info fi = { .key = fl->key,
                                    .diverged = fl->diverged };
            for (int s = 0; s < 2; s++) {
                fi.held[s] = fl->q[s].n;
                fi.held_bytes[s] = fl->q[s].bytes;
            }
            fn(opaque, &fi);
        }
}

const char *netcmp_verdict_name(netcmp_verdict_kind k)
{
    static const char *const n[] = { "release", "mismatch", "timeout",
                                      "limit" };
    return (unsigned)k < 4 ? n[k] : "?";
}

const char *netcmp_why_name(netcmp_why w)
{
    static const char *const n[] = { "matched", "pure-ack", "retransmit",
                                     "checkpoint" };
    return (unsigned)w < 4 ? n[w] : "?";
}
