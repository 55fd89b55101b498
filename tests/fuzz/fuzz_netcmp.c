/*
 * libFuzzer target: net-compare's comparator (net-compare/netcmp.h).  The
 * input is a list of events (tests/fuzz/netcmp_inputs.h): frames from
 * either VM, copies of the primary's last frame to the secondary (as is,
 * with a byte changed, or as another TCP stack would cut and number
 * it), time passing, checkpoints, TCP offsets.
 *
 * What must hold, whatever the frames: a frame is refused only for its
 * length (-EINVAL) or a bound (-ENOSPC, and then a LIMIT verdict once
 * per checkpoint); a primary frame is released only once, in its flow's
 * order, and only with a reason: matched (for frames other than TCP, by
 * a secondary frame that equals it by the rules, checked here apart from
 * the library's code), a TCP pure ACK or retransmission, or a checkpoint
 * that released everything; mismatch and timeout verdicts name frames
 * still held; after a tick no timeout is due; the counters add up and
 * agree with this model.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "net-compare/netcmp.h"
#include "tests/fuzz/fuzzcheck.h"
#include "tests/fuzz/netcmp_inputs.h"

#define MS 1000000ull
#define MODEL_MAX 256           /* above the bounds below */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct mframe {
    netcmp_key key;
    size_t len;
    uint8_t b[NETCMP_FRAME_MAX];
} mframe;

typedef struct model {
    mframe p[MODEL_MAX];        /* primary frames held, oldest first */
    size_t np;
    mframe s[MODEL_MAX];        /* secondary frames other than TCP held */
    size_t ns;
    netcmp_key tcp_seen[64];    /* TCP flows the secondary sent segments
                                   with sequence space on, since a reset */
    size_t ntcp;
    bool limit_due;             /* a -ENOSPC since the last LIMIT/reset */
    bool limit_said;
} model;

typedef struct run {
    netcmp *nc;
    const uint8_t *in;
    size_t len, pos;
    uint64_t now;
    uint8_t last[NETCMP_FRAME_MAX];
    size_t last_len;
    model m;
} run;

static int next_byte(run *r)
{
    return r->pos < r->len ? r->in[r->pos++] : -1;
}

static unsigned next_be(run *r, int n)
{
    unsigned v = 0;
    for (int i = 0; i < n; i++) {
        int c = next_byte(r);
        v = v << 8 | (unsigned)(c < 0 ? 0 : c);
    }
    return v;
}

static bool key_eq(const netcmp_key *a, const netcmp_key *b)
{
    return memcmp(a, b, sizeof(*a)) == 0;
}

/* The rules of docs/net-compare.md, restated byte by byte. */
static bool rule_same(const mframe *a, const mframe *b)
{
    netcmp_frame f, g;
    netcmp_frame_parse(&f, a->b, a->len);
    netcmp_frame_parse(&g, b->b, b->len);
    if (f.cls == NETCMP_ETHER || f.cls == NETCMP_MALFORMED)
        return a->len == b->len && memcmp(a->b, b->b, a->len) == 0;
    if (f.l3_end != g.l3_end || f.l3_hlen != g.l3_hlen)
        return false;
    for (size_t i = 0; i < f.l3_end; i++) {
        size_t r = i - f.l3_off;
        bool ignored = (i >= f.l3_off && (r == 4 || r == 5 || r == 10 ||
                                          r == 11)) ||
                       (f.cls == NETCMP_UDP && (i == f.l4_off + 6 ||
                                                i == f.l4_off + 7));
        if (!ignored && a->b[i] != b->b[i])
            return false;
    }
    return true;
}

static void drop_at(mframe *v, size_t *n, size_t i)
{
    memmove(v + i, v + i + 1, (*n - i - 1) * sizeof(*v));
    (*n)--;
}

/* The oldest held primary frame of key: its index, or -1. */
static long oldest(const model *m, const netcmp_key *k)
{
    for (size_t i = 0; i < m->np; i++)
        if (key_eq(&m->p[i].key, k))
            return (long)i;
    return -1;
}

static bool tcp_seen(const model *m, const netcmp_key *k)
{
    for (size_t i = 0; i < m->ntcp; i++)
        if (key_eq(&m->tcp_seen[i], k))
            return true;
    return false;
}

static void check_stats(run *r)
{
    netcmp_stats s;
    netcmp_get_stats(r->nc, &s);
    if (s.frames[0] != s.released + s.held_frames[0] ||
        s.frames[1] != s.consumed + s.held_frames[1] + s.dropped_at_reset ||
        s.compared != s.matched + s.mismatched)
        fuzzcheck_broken("fuzz_netcmp: counters do not add up");
    if (s.held_frames[0] != r->m.np)
        fuzzcheck_broken("fuzz_netcmp: %llu primary frames held, the model "
                         "has %zu", (unsigned long long)s.held_frames[0],
                         r->m.np);
}

static void verdicts(run *r, bool resetting)
{
    model *m = &r->m;
    netcmp_verdict v;
    while (netcmp_next(r->nc, &v)) {
        long i = v.frame ? oldest(m, &v.key) : -1;
        switch (v.kind) {
        case NETCMP_RELEASE: {
            if (i < 0 || m->p[i].len != v.frame->len ||
                memcmp(m->p[i].b, v.frame->data, v.frame->len) != 0)
                fuzzcheck_broken("fuzz_netcmp: released a frame that is "
                                 "not its flow's oldest held");
            netcmp_frame f;
            netcmp_frame_parse(&f, v.frame->data, v.frame->len);
            bool tcp = f.cls == NETCMP_TCP;
            switch (v.why) {
            case NETCMP_MATCHED:
                if (tcp) {
                    if (!tcp_seen(m, &v.key))
                        fuzzcheck_broken("fuzz_netcmp: a TCP segment "
                                         "matched, the secondary sent none");
                    break;
                }
                size_t j = 0;
                while (j < m->ns && !key_eq(&m->s[j].key, &v.key))
                    j++;
                if (j == m->ns || !rule_same(&m->p[i], &m->s[j]))
                    fuzzcheck_broken("fuzz_netcmp: released as matched "
                                     "without an equal secondary frame");
                drop_at(m->s, &m->ns, j);
                break;
            case NETCMP_PURE_ACK:
                if (!tcp || netcmp_tcp_seqlen(&f) ||
                    (f.tcp_flags & NETCMP_TCP_RST))
                    fuzzcheck_broken("fuzz_netcmp: a pure ACK that is not");
                break;
            case NETCMP_RETRANSMIT:
                if (!tcp || !netcmp_tcp_seqlen(&f))
                    fuzzcheck_broken("fuzz_netcmp: a retransmission of "
                                     "nothing");
                break;
            case NETCMP_CHECKPOINT:
                if (!resetting)
                    fuzzcheck_broken("fuzz_netcmp: released for a "
                                     "checkpoint outside a reset");
                break;
            }
            drop_at(m->p, &m->np, (size_t)i);
            break;
        }
        case NETCMP_MISMATCH:
        case NETCMP_TIMEOUT:
            if (i < 0)
                fuzzcheck_broken("fuzz_netcmp: %s of a flow with nothing "
                                 "held", netcmp_verdict_name(v.kind));
            if (v.kind == NETCMP_MISMATCH && !v.field)
                fuzzcheck_broken("fuzz_netcmp: a mismatch of no field");
            break;
        case NETCMP_LIMIT:
            if (!m->limit_due || m->limit_said)
                fuzzcheck_broken("fuzz_netcmp: a LIMIT verdict without a "
                                 "frame refused, or twice");
            m->limit_said = true;
            break;
        }
        netcmp_verdict_done(&v);
    }
}

static void put(run *r, netcmp_side side, const uint8_t *b, size_t len)
{
    model *m = &r->m;
    int rc = netcmp_put(r->nc, side, b, len, r->now);
    bool bad_len = len == 0 || len > NETCMP_FRAME_MAX;
    if (rc == -EINVAL) {
        if (!bad_len)
            fuzzcheck_broken("fuzz_netcmp: a %zu-byte frame refused as "
                             "invalid", len);
        fuzzcheck_refused("fuzz_netcmp: a %zu-byte frame", len);
        return;
    }
    if (bad_len)
        fuzzcheck_broken("fuzz_netcmp: a %zu-byte frame taken (%d)", len, rc);
    if (rc == -ENOSPC) {
        m->limit_due = true;
        verdicts(r, false);
        if (!m->limit_said)
            fuzzcheck_broken("fuzz_netcmp: refused without a LIMIT verdict");
        return;
    }
    if (rc != 0)
        fuzzcheck_broken("fuzz_netcmp: netcmp_put: %d", rc);
    netcmp_frame f;
    netcmp_frame_parse(&f, b, len);
    mframe *mf = NULL;
    if (side == NETCMP_PRIMARY) {
        mf = &m->p[m->np++];
        memcpy(r->last, b, len);
        r->last_len = len;
    } else if (f.cls != NETCMP_TCP) {
        mf = &m->s[m->ns++];
    } else if (netcmp_tcp_seqlen(&f) || (f.tcp_flags & NETCMP_TCP_RST)) {
        if (!tcp_seen(m, &f.key) && m->ntcp < 64)
            m->tcp_seen[m->ntcp++] = f.key;
    }
    if (mf) {
        mf->key = f.key;
        mf->len = len;
        memcpy(mf->b, b, len);
    }
    verdicts(r, false);
}

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/*
 * The primary's last TCP segment as the secondary's stack might send it:
 * shifted by delta, its payload in two segments (headers copied, lengths
 * and sequence numbers set; checksums are ignored by the rules).
 */
static void split(run *r, unsigned cut, uint32_t delta)
{
    netcmp_frame f;
    netcmp_frame_parse(&f, r->last, r->last_len);
    if (f.cls != NETCMP_TCP)
        return;
    size_t hdr = f.payload_off;
    size_t k = cut % (f.payload_len + 1);
    bool syn = f.tcp_flags & NETCMP_TCP_SYN;
    /* One segment (k == 0), or SYN and the first k bytes, then the rest
       and FIN. */
    size_t from[2] = { 0, k }, len[2] = { k ? k : f.payload_len,
                                          f.payload_len - k };
    for (int i = 0; i < (k ? 2 : 1); i++) {
        uint8_t b[NETCMP_FRAME_MAX];
        memcpy(b, r->last, hdr);
        memcpy(b + hdr, r->last + hdr + from[i], len[i]);
        size_t tot = hdr - f.l3_off + len[i];
        b[f.l3_off + 2] = (uint8_t)(tot >> 8);
        b[f.l3_off + 3] = (uint8_t)tot;
        put_be32(b + f.l4_off + 4,
                 f.seq + delta + (i ? (uint32_t)(syn + k) : 0));
        if (k)
            b[f.l4_off + 13] &= (uint8_t)~(i ? NETCMP_TCP_SYN
                                             : NETCMP_TCP_FIN);
        put(r, NETCMP_SECONDARY, b, hdr + len[i]);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static run r;
    memset(&r, 0, sizeof(r));
    r.in = data;
    r.len = size;
    r.now = 1000 * MS;
    /* Small bounds, so that inputs reach them; the model holds more. */
    netcmp_opts o = { .timeout_ns = 100 * MS, .flow_frames = 8,
                      .flow_bytes = 4096, .total_frames = 48,
                      .total_bytes = 32768, .max_flows = 16 };
    if (netcmp_new(&r.nc, &o) < 0)
        return 0;
    int op;
    while ((op = next_byte(&r)) >= 0) {
        switch (op % NC_OP_COUNT) {
        case NC_OP_PUT: {
            int side = next_byte(&r);
            size_t len = next_be(&r, 2) % NC_LEN_MOD;
            if (len > r.len - r.pos)
                len = r.len - r.pos;
            uint8_t b[NC_LEN_MOD];
            memcpy(b, r.in + r.pos, len);
            r.pos += len;
            put(&r, side > 0 && (side & 1) ? NETCMP_SECONDARY
                                           : NETCMP_PRIMARY, b, len);
            break;
        }
        case NC_OP_ECHO: {
            unsigned at = next_be(&r, 2);
            int x = next_byte(&r);
            if (!r.last_len)
                break;
            uint8_t b[NETCMP_FRAME_MAX];
            memcpy(b, r.last, r.last_len);
            b[at % r.last_len] ^= (uint8_t)(x < 0 ? 0 : x);
            put(&r, NETCMP_SECONDARY, b, r.last_len);
            break;
        }
        case NC_OP_TICK: {
            int ms = next_byte(&r);
            r.now += (uint64_t)(ms < 0 ? 0 : ms) * MS;
            netcmp_tick(r.nc, r.now);
            verdicts(&r, false);
            uint64_t when;
            if (netcmp_next_timeout(r.nc, &when) && when <= r.now)
                fuzzcheck_broken("fuzz_netcmp: a timeout due at %llu "
                                 "after a tick at %llu",
                                 (unsigned long long)when,
                                 (unsigned long long)r.now);
            break;
        }
        case NC_OP_RESET: {
            int mode = next_byte(&r);
            bool keep = mode > 0 && (mode & 1);
            netcmp_reset(r.nc, keep ? NETCMP_RESET_KEEP
                                    : NETCMP_RESET_RELEASE, r.now);
            verdicts(&r, true);
            r.m.ns = r.m.ntcp = 0;
            r.m.limit_due = r.m.limit_said = false;
            netcmp_stats s;
            netcmp_get_stats(r.nc, &s);
            if (s.held_frames[1] || (!keep && (s.held_frames[0] || r.m.np)))
                fuzzcheck_broken("fuzz_netcmp: frames held after a reset");
            break;
        }
        case NC_OP_OFFSET: {
            uint32_t off = next_be(&r, 4);
            if (!r.last_len)
                break;
            netcmp_frame f;
            netcmp_frame_parse(&f, r.last, r.last_len);
            int rc = netcmp_set_tcp_offset(r.nc, &f.key, off);
            uint32_t got;
            if ((rc == 0) != (f.cls == NETCMP_TCP) && rc != -ENOSPC)
                fuzzcheck_broken("fuzz_netcmp: an offset for %s: %d",
                                 netcmp_class_name(f.cls), rc);
            if (rc == 0 && (!netcmp_tcp_offset(r.nc, &f.key, &got) ||
                            got != off))
                fuzzcheck_broken("fuzz_netcmp: the offset set is not kept");
            break;
        }
        case NC_OP_SPLIT: {
            int cut = next_byte(&r);
            uint32_t delta = next_be(&r, 4);
            split(&r, cut < 0 ? 0 : (unsigned)cut, delta);
            break;
        }
        case NC_OP_REWRITE: {
            uint8_t b[NETCMP_FRAME_MAX];
            memcpy(b, r.last, r.last_len);
            bool changed = netcmp_rewrite_to_secondary(r.nc, b, r.last_len);
            if (!changed && memcmp(b, r.last, r.last_len) != 0)
                fuzzcheck_broken("fuzz_netcmp: a frame changed, said not");
            break;
        }
        }
        check_stats(&r);
    }
    netcmp_free(r.nc);
    return 0;
}
