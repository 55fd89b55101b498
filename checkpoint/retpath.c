/* retpath: see retpath.h. */
#include "checkpoint/retpath.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

void rp_put(qfile *f, const rp_msg *m)
{
    size_t tl;
    switch (m->type) {
    case RP_SHUT:
    case RP_PONG:
        qf_put_be16(f, m->type);
        qf_put_be16(f, 4);
        qf_put_be32(f, m->value32);
        break;
    case RP_ACK:
    case RP_HEARTBEAT:
        qf_put_be16(f, m->type);
        qf_put_be16(f, 8);
        qf_put_be64(f, m->value64);
        break;
    case RP_NACK:
        tl = strnlen(m->text, RP_MSG_MAX - 9);
        qf_put_be16(f, m->type);
        qf_put_be16(f, (uint16_t)(8 + tl));
        qf_put_be64(f, m->value64);
        qf_put_buf(f, m->text, tl);
        break;
    }
}

void rp_put_ack(qfile *f, uint64_t id)
{
    rp_put(f, &(rp_msg){ .type = RP_ACK, .value64 = id });
}

void rp_put_nack(qfile *f, uint64_t id, const char *why)
{
    rp_msg m = { .type = RP_NACK, .value64 = id };
    snprintf(m.text, sizeof(m.text), "%s", why);
    rp_put(f, &m);
}

void rp_put_heartbeat(qfile *f, uint64_t seq)
{
    rp_put(f, &(rp_msg){ .type = RP_HEARTBEAT, .value64 = seq });
}

void rp_put_shut(qfile *f, uint32_t code)
{
    rp_put(f, &(rp_msg){ .type = RP_SHUT, .value32 = code });
}

const char *rp_type_name(uint16_t type)
{
    switch (type) {
    case RP_SHUT: return "SHUT";
    case RP_PONG: return "PONG";
    case RP_ACK: return "ACK";
    case RP_NACK: return "NACK";
    case RP_HEARTBEAT: return "HEARTBEAT";
    }
    return NULL;
}

static uint64_t be(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v = v << 8 | p[i];
    return v;
}

int rp_parse(const uint8_t *buf, size_t len, rp_msg *out, char *err,
             size_t errlen)
{
    if (len < 4)
        return 0;
    uint16_t type = (uint16_t)be(buf, 2), n = (uint16_t)be(buf + 2, 2);
    int want = -1;
    switch (type) {
    case RP_SHUT:
    case RP_PONG:
        want = 4;
        break;
    case RP_ACK:
    case RP_HEARTBEAT:
        want = 8;
        break;
    case RP_NACK:
        if (n >= 8 && n <= RP_MSG_MAX + 7)
            want = n;
        break;
    default:
        snprintf(err, errlen, "return path: unknown message type 0x%04x "
                 "(length %u)", type, n);
        return -EINVAL;
    }
    if (want < 0 || n != want) {
        snprintf(err, errlen, "return path: %s with length %u", 
                 rp_type_name(type), n);
        return -EINVAL;
    }
    if (len < 4u + n)
        return 0;
    memset(out, 0, sizeof(*out));
    out->type = (rp_type)type;
    if (n == 4)
        out->value32 = (uint32_t)be(buf + 4, 4);
    else
        out->value64 = be(buf + 4, 8);
    if (type == RP_NACK) {
        memcpy(out->text, buf + 12, n - 8u);
        out->text[n - 8] = '\0';
    }
    return 4 + n;
}
