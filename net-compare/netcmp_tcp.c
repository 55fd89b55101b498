/*
 * netcmp_tcp: TCP compared as two byte streams rather than segment by
 * segment (docs/net-compare.md, "TCP").  Two VMs running the same guest
 * write the same bytes, but not always cut into the same segments, nor
 * from the same initial sequence number.  So each side's segments are
 * laid out in the primary's sequence space (the secondary's shifted by
 * the flow's offset) and compared unit by unit: SYN, payload bytes, FIN,
 * and RST where it stands.  A primary segment is complete once every
 * unit of it met the same unit from the secondary; it is released, in
 * order, once the secondary also acknowledged as much as it does (the
 * ACK guard), so that a failover never leaves a client believing the
 * secondary VM has data it never received.  The same offset moves the
 * ACK numbers of what the world sends into the secondary's space
 * (netcmp_rewrite_to_secondary).
 */
#include "net-compare/netcmp_impl.h"

#include <string.h>

enum unit { U_SYN, U_DATA, U_FIN, U_END };

static bool seq_lt(uint32_t a, uint32_t b)
{
    return (int32_t)(a - b) < 0;
}

static bool seq_le(uint32_t a, uint32_t b)
{
    return (int32_t)(a - b) <= 0;
}

bool netcmp_tcp_secondary(netcmp_flow *fl, const netcmp_frame *f)
{
    if ((f->tcp_flags & NETCMP_TCP_ACK) &&
        (!fl->has_sack || seq_lt(fl->s_ack, f->ack))) {
        fl->s_ack = f->ack;
        fl->has_sack = true;
    }
    /* A pure ACK says only that: it is used up here. */
    return netcmp_tcp_seqlen(f) == 0 && !(f->tcp_flags & NETCMP_TCP_RST);
}

void netcmp_tcp_reset(netcmp_flow *fl)
{
    fl->has_cur = fl->has_offset = fl->has_sack = false;
    fl->cur = fl->offset = fl->s_ack = 0;
}

/* What stands at rel units into segment f, and how many units of it. */
static enum unit unit_at(const netcmp_frame *f, uint32_t rel, uint32_t *run)
{
    if (f->tcp_flags & NETCMP_TCP_SYN) {
        if (rel == 0) {
            *run = 1;
            return U_SYN;
        }
        rel--;
    }
    if (rel < f->payload_len) {
        *run = (uint32_t)f->payload_len - rel;
        return U_DATA;
    }
    if ((f->tcp_flags & NETCMP_TCP_FIN) && rel == f->payload_len) {
        *run = 1;
        return U_FIN;
    }
    *run = 0;
    return U_END;
}

static const uint8_t *data_at(const netcmp_held *h, uint32_t rel)
{
    return h->pkt->data + h->f.payload_off + rel -
           !!(h->f.tcp_flags & NETCMP_TCP_SYN);
}

/*
 * One step of the comparison of the primary's first incomplete segment p
 * with the secondary's first one: false when it must wait or diverged.
 */
static bool step(netcmp *nc, netcmp_flow *fl, netcmp_held *p)
{
    uint32_t plen = netcmp_tcp_seqlen(&p->f);
    bool prst = p->f.tcp_flags & NETCMP_TCP_RST;
    if (plen == 0 && !prst) {
        netcmp_complete(p, NETCMP_PURE_ACK, &nc->st);
        return true;
    }
    if (!fl->has_cur) {
        fl->cur = p->f.seq;
        fl->has_cur = true;
    }
    /*
     * Bytes compared before: the guest's TCP resends its send buffer.
     * (Only for a segment not begun: one whose units were all compared
     * may still have its RST to meet.)
     */
    if (plen && p->done == 0 && seq_le(p->f.seq + plen, fl->cur)) {
        netcmp_complete(p, NETCMP_RETRANSMIT, &nc->st);
        return true;
    }
    if (seq_lt(p->f.seq + p->done, fl->cur))
        p->done = fl->cur - p->f.seq;
    else if (seq_lt(fl->cur, p->f.seq + p->done))
        fl->cur = p->f.seq + p->done;   /* a gap: the secondary must skip
                                           it too */
    netcmp_held *s = fl->q[NETCMP_SECONDARY].head;
    if (!s)
        return false;
    uint32_t slen = netcmp_tcp_seqlen(&s->f);
    bool srst = s->f.tcp_flags & NETCMP_TCP_RST;
    if (!fl->has_offset && p->done == 0 && s->done == 0 &&
        (p->f.tcp_flags & s->f.tcp_flags & NETCMP_TCP_SYN)) {
        fl->offset = p->f.seq - s->f.seq;
        fl->has_offset = true;
    }
    uint32_t sseq = s->f.seq + fl->offset;
    if (slen && s->done == 0 && seq_le(sseq + slen, fl->cur)) {
        netcmp_consume_head(nc, fl);
        return true;
    }
    if (seq_lt(sseq + s->done, fl->cur))
        s->done = fl->cur - sseq;
    const char *field;
    if (!netcmp_frame_same(&p->f, p->pkt->data, &s->f, s->pkt->data,
                           &field)) {
        netcmp_mismatch(nc, fl, p, s, field);
        return false;
    }
    if (sseq + s->done != p->f.seq + p->done) {
        netcmp_mismatch(nc, fl, p, s, "tcp.seq");
        return false;
    }
    uint32_t prun, srun;
    enum unit pu = unit_at(&p->f, p->done, &prun);
    enum unit su = unit_at(&s->f, s->done, &srun);
    if (pu == U_END || su == U_END) {
        /* Where one side resets, the other must reset too. */
        if (pu != su || !prst || !srst) {
            netcmp_mismatch(nc, fl, p, s, "tcp.rst");
            return false;
        }
        netcmp_complete(p, NETCMP_MATCHED, &nc->st);
        fl->p_cmp = p->next;
        netcmp_consume_head(nc, fl);
        return true;
    }
    if (pu != su) {
        netcmp_mismatch(nc, fl, p, s, pu == U_SYN || su == U_SYN ? "tcp.syn"
                                                                 : "tcp.fin");
        return false;
    }
    uint32_t n = prun < srun ? prun : srun;
    if (pu == U_SYN && ((p->f.tcp_flags ^ s->f.tcp_flags) & NETCMP_TCP_ACK)) {
        netcmp_mismatch(nc, fl, p, s, "tcp.syn");
        return false;
    }
    if (pu == U_DATA && memcmp(data_at(p, p->done), data_at(s, s->done), n)) {
        netcmp_mismatch(nc, fl, p, s, "tcp.payload");
        return false;
    }
    p->done += n;
    s->done += n;
    fl->cur += n;
    if (p->done == plen && !prst) {
        netcmp_complete(p, NETCMP_MATCHED, &nc->st);
        fl->p_cmp = p->next;
    }
    if (s->done == slen && !srst)
        netcmp_consume_head(nc, fl);
    return true;
}

static bool may_go(const netcmp *nc, const netcmp_flow *fl,
                   const netcmp_held *h)
{
    if (!h->complete)
        return false;
    if (nc->o.no_ack_guard || !(h->f.tcp_flags & NETCMP_TCP_ACK))
        return true;
    return fl->has_sack && seq_le(h->f.ack, fl->s_ack);
}

void netcmp_tcp_run(netcmp *nc, netcmp_flow *fl, uint64_t now)
{
    while (!fl->diverged && fl->p_cmp) {
        netcmp_held *p = fl->p_cmp;
        if (!step(nc, fl, p))
            break;
        if (p->complete && fl->p_cmp == p)
            fl->p_cmp = p->next;
    }
    while (fl->q[NETCMP_PRIMARY].head &&
           may_go(nc, fl, fl->q[NETCMP_PRIMARY].head))
        netcmp_release_head(nc, fl, now);
}

/* RFC 1624's incremental update of a checksum for one 16-bit word. */
static uint16_t csum_update(uint16_t sum, uint16_t old, uint16_t new)
{
    uint32_t c = (uint16_t)~sum + (uint32_t)(uint16_t)~old + new;
    c = (c & 0xffff) + (c >> 16);
    c = (c & 0xffff) + (c >> 16);
    return (uint16_t)~c;
}

bool netcmp_rewrite_to_secondary(const netcmp *nc, uint8_t *b, size_t len)
{
    if (len > NETCMP_FRAME_MAX)
        return false;
    netcmp_frame f;
    netcmp_frame_parse(&f, b, len);
    if (f.cls != NETCMP_TCP || !(f.tcp_flags & NETCMP_TCP_ACK))
        return false;
    /* The VMs' replies: the other way round. */
    netcmp_key k = f.key;
    memcpy(k.ip_src, f.key.ip_dst, 4);
    memcpy(k.ip_dst, f.key.ip_src, 4);
    memcpy(k.port_src, f.key.port_dst, 2);
    memcpy(k.port_dst, f.key.port_src, 2);
    uint32_t off;
    if (!netcmp_tcp_offset(nc, &k, &off) || off == 0)
        return false;
    uint32_t ack = f.ack - off;
    uint8_t *a = b + f.l4_off + 8, *c = b + f.l4_off + 16;
    uint16_t sum = (uint16_t)(c[0] << 8 | c[1]);
    for (int i = 0; i < 4; i += 2) {
        uint16_t old = (uint16_t)(a[i] << 8 | a[i + 1]);
        uint16_t nw = (uint16_t)(ack >> (16 - 8 * i));
        sum = csum_update(sum, old, nw);
        a[i] = (uint8_t)(nw >> 8);
        a[i + 1] = (uint8_t)nw;
    }
    c[0] = (uint8_t)(sum >> 8);
    c[1] = (uint8_t)sum;
    return true;
}
