/* retpath: see retpath.h. */
#include "checkpoint/retpath.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

void retpath_put(qfile *f, const retpath_msg *m)
{
    size_t tl;
    switch (m->type) {
    case RETPATH_SHUT:
    case RETPATH_PONG:
        qfile_put_be16(f, m->type);
        qfile_put_be16(f, 4);
        qfile_put_be32(f, m->value32);
        break;
    case RETPATH_HEARTBEAT:
        qfile_put_be16(f, m->type);
        qfile_put_be16(f, 8);
        qfile_put_be64(f, m->value64);
        break;
    case RETPATH_ACK:
    case RETPATH_NACK:
    case RETPATH_REFUSE:
        tl = m->type != RETPATH_ACK
                 ? strnlen(m->text, RETPATH_ANSWER_MAX - RETPATH_ANSWER_LEN)
                 : 0;
        qfile_put_be16(f, m->type);
        qfile_put_be16(f, (uint16_t)(RETPATH_ANSWER_LEN + tl));
        qfile_put_be64(f, m->value64);
        qfile_put_buf(f, m->pair.id, PAIRING_ID_LEN);
        qfile_put_buf(f, m->pair.name, sizeof(m->pair.name));
        qfile_put_be64(f, m->pair.generation);
        qfile_put_buf(f, m->text, tl);
        break;
    case RETPATH_COLO_CONSOLE:
        tl = m->len < RETPATH_COLO_DATA_MAX ? m->len : RETPATH_COLO_DATA_MAX;
        qfile_put_be16(f, m->type);
        qfile_put_be16(f, (uint16_t)(8 + tl));
        qfile_put_be64(f, m->value64);
        qfile_put_buf(f, m->text, tl);
        break;
    case RETPATH_COLO_RELEASED:
        qfile_put_be16(f, m->type);
        qfile_put_be16(f, 16);
        qfile_put_be64(f, m->value64);
        qfile_put_be64(f, m->offset);
        break;
    case RETPATH_COLO_FRAME:
        if (m->len < 1 || m->len > RETPATH_COLO_FRAME_MAX) {
            qfile_fail(f, -EINVAL, "return path: a COLO frame of %u bytes "
                       "(1 to %u)", m->len, RETPATH_COLO_FRAME_MAX);
            break;
        }
        qfile_put_be16(f, m->type);
        qfile_put_be16(f, (uint16_t)(8 + m->len));
        qfile_put_be64(f, m->value64);
        qfile_put_buf(f, m->text, m->len);
        break;
    }
}

void retpath_put_colo_released(qfile *f, uint64_t id, uint64_t offset)
{
    retpath_put(f, &(retpath_msg){ .type = RETPATH_COLO_RELEASED,
                                   .value64 = id, .offset = offset });
}

void retpath_put_colo_console(qfile *f, uint64_t id, const void *buf,
                              size_t len)
{
    retpath_msg m = { .type = RETPATH_COLO_CONSOLE, .value64 = id };
    m.len = (uint16_t)(len < RETPATH_COLO_DATA_MAX ? len
                                                   : RETPATH_COLO_DATA_MAX);
    if (m.len)
        memcpy(m.text, buf, m.len);
    retpath_put(f, &m);
}

void retpath_put_colo_frame(qfile *f, uint64_t id, const void *frame,
                            size_t len)
{
    if (len < 1 || len > RETPATH_COLO_FRAME_MAX) {
        qfile_fail(f, -EINVAL, "return path: a COLO frame of %zu bytes "
                   "(1 to %u)", len, RETPATH_COLO_FRAME_MAX);
        return;
    }
    retpath_msg m = { .type = RETPATH_COLO_FRAME, .value64 = id,
                      .len = (uint16_t)len };
    memcpy(m.text, frame, len);
    retpath_put(f, &m);
}

void retpath_put_ack(qfile *f, uint64_t id, const pairing *pair)
{
    retpath_put(f, &(retpath_msg){ .type = RETPATH_ACK, .value64 = id,
                                   .pair = *pair });
}

void retpath_put_nack(qfile *f, uint64_t id, const pairing *pair,
                      const char *why)
{
    retpath_msg m = { .type = RETPATH_NACK, .value64 = id, .pair = *pair };
    snprintf(m.text, sizeof(m.text), "%s", why);
    retpath_put(f, &m);
}

void retpath_put_refuse(qfile *f, uint64_t decided, const pairing *pair,
                        const char *why)
{
    retpath_msg m = { .type = RETPATH_REFUSE, .value64 = decided,
                      .pair = *pair };
    snprintf(m.text, sizeof(m.text), "%s", why);
    retpath_put(f, &m);
}

void retpath_put_heartbeat(qfile *f, uint64_t seq)
{
    retpath_put(f, &(retpath_msg){ .type = RETPATH_HEARTBEAT, .value64 = seq });
}

void retpath_put_shut(qfile *f, uint32_t code)
{
    retpath_put(f, &(retpath_msg){ .type = RETPATH_SHUT, .value32 = code });
}

const char *retpath_type_name(uint16_t type)
{
    switch (type) {
    case RETPATH_SHUT:
        return "SHUT";
    case RETPATH_PONG:
        return "PONG";
    case RETPATH_ACK:
        return "ACK";
    case RETPATH_NACK:
        return "NACK";
    case RETPATH_HEARTBEAT:
        return "HEARTBEAT";
    case RETPATH_COLO_CONSOLE:
        return "COLO_CONSOLE";
    case RETPATH_COLO_FRAME:
        return "COLO_FRAME";
    case RETPATH_COLO_RELEASED:
        return "COLO_RELEASED";
    case RETPATH_REFUSE:
        return "REFUSE";
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

int retpath_parse(const uint8_t *buf, size_t len, retpath_msg *out, char *err,
                  size_t errlen)
{
    if (len < 4)
        return 0;
    uint16_t type = (uint16_t)be(buf, 2), n = (uint16_t)be(buf + 2, 2);
    int want = -1;
    switch (type) {
    case RETPATH_SHUT:
    case RETPATH_PONG:
        want = 4;
        break;
    case RETPATH_HEARTBEAT:
        want = 8;
        break;
    case RETPATH_ACK:
        want = RETPATH_ANSWER_LEN;
        break;
    case RETPATH_NACK:
    case RETPATH_REFUSE:
        if (n >= RETPATH_ANSWER_LEN && n <= RETPATH_ANSWER_MAX)
            want = n;
        break;
    case RETPATH_COLO_CONSOLE:
        if (n >= 8 && n <= 8 + RETPATH_COLO_DATA_MAX)
            want = n;
        break;
    case RETPATH_COLO_FRAME:
        if (n >= 8 + 1 && n <= 8 + RETPATH_COLO_FRAME_MAX)
            want = n;
        break;
    case RETPATH_COLO_RELEASED:
        want = 16;
        break;
    default:
        snprintf(err, errlen, "return path: unknown message type 0x%04x "
                 "(length %u)", type, n);
        return -EINVAL;
    }
    if (want < 0 || n != want) {
        snprintf(err, errlen, "return path: %s with length %u",
                 retpath_type_name(type), n);
        return -EINVAL;
    }
    if (len < 4u + n)
        return 0;
    memset(out, 0, sizeof(*out));
    out->type = (retpath_type)type;
    if (type == RETPATH_COLO_CONSOLE || type == RETPATH_COLO_FRAME) {
        out->value64 = be(buf + 4, 8);
        out->len = (uint16_t)(n - 8);
        memcpy(out->text, buf + 12, out->len);
        return 4 + n;
    }
    if (n == 4)
        out->value32 = (uint32_t)be(buf + 4, 4);
    else
        out->value64 = be(buf + 4, 8);
    if (type == RETPATH_COLO_RELEASED)
        out->offset = be(buf + 12, 8);
    if (type == RETPATH_ACK || type == RETPATH_NACK ||
        type == RETPATH_REFUSE) {
        const uint8_t *p = buf + 12;
        memcpy(out->pair.id, p, PAIRING_ID_LEN);
        memcpy(out->pair.name, p + PAIRING_ID_LEN, sizeof(out->pair.name));
        out->pair.generation =
            be(p + PAIRING_ID_LEN + sizeof(out->pair.name), 8);
        char why[160];
        if (pairing_check(&out->pair, why, sizeof(why)) < 0) {
            snprintf(err, errlen, "return path: %s: %s",
                     retpath_type_name(type), why);
            return -EINVAL;
        }
        size_t tl = n - RETPATH_ANSWER_LEN;
        memcpy(out->text, buf + 4 + RETPATH_ANSWER_LEN, tl);
        out->text[tl] = '\0';
    }
    return 4 + n;
}

_Static_assert(RETPATH_MSG_MAX == 8 + RETPATH_COLO_FRAME_MAX &&
               RETPATH_ANSWER_MAX <= RETPATH_MSG_MAX,
               "RETPATH_MSG_MAX is the longest payload");
