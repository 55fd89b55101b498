/*
 * xbzrle: delta encoding of a page against the copy the receiver holds.
 * The format is described in xbzrle.h and docs/ram-format.md.
 */
#include "checkpoint/xbzrle.h"

#include <errno.h>
#include <stdbool.h>
#include <string.h>

#define LOW7 0x7f7f7f7f7f7f7f7fULL

static inline uint64_t load64(const uint8_t *p)
{
    uint64_t v;

    memcpy(&v, p, sizeof(v));
    return v;
}

/* Index, in memory order, of the first nonzero byte of x (x != 0). */
static inline size_t first_nonzero_byte(uint64_t x)
{
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    return (size_t)__builtin_ctzll(x) / 8;
#else
    return (size_t)__builtin_clzll(x) / 8;
#endif
}

/*
 * Top bit of each byte set exactly where x has a zero byte.  The usual
 * "x - 0x01.." trick can also flag a byte above a zero one, which would
 * pick the wrong byte on big-endian hosts; this form cannot.
 */
static inline uint64_t zero_bytes(uint64_t x)
{
    return ~(((x & LOW7) + LOW7) | x | LOW7);
}

/* Length of the run starting at i where a and b agree. */
static size_t same_run(const uint8_t *a, const uint8_t *b, size_t i,
                       size_t len)
{
    size_t start = i;

    while (i + 8 <= len) {
        uint64_t x = load64(a + i) ^ load64(b + i);

        if (x)
            return i + first_nonzero_byte(x) - start;
        i += 8;
    }
    while (i < len && a[i] == b[i])
        i++;
    return i - start;
}

/* Length of the run starting at i where a and b differ. */
static size_t diff_run(const uint8_t *a, const uint8_t *b, size_t i,
                       size_t len)
{
    size_t start = i;

    while (i + 8 <= len) {
        uint64_t z = zero_bytes(load64(a + i) ^ load64(b + i));

        if (z)
            return i + first_nonzero_byte(z) - start;
        i += 8;
    }
    while (i < len && a[i] != b[i])
        i++;
    return i - start;
}

/* Callers guarantee v <= XBZRLE_MAX_LEN, so two bytes always suffice. */
static size_t put_uleb(uint8_t *out, size_t v)
{
    if (v < 0x80) {
        out[0] = (uint8_t)v;
        return 1;
    }
    out[0] = (uint8_t)(0x80 | (v & 0x7f));
    out[1] = (uint8_t)(v >> 7);
    return 2;
}

int xbzrle_encode(const uint8_t *old, const uint8_t *new, size_t len,
                  uint8_t *out, size_t out_max)
{
    size_t i = 0, d = 0;

    if (len > XBZRLE_MAX_LEN)
        return -1;
    while (i < len) {
        size_t skip, count;

        if (d + 2 > out_max)
            return -1;
        skip = same_run(old, new, i, len);
        i += skip;
        if (i == len)
            break;
        d += put_uleb(out + d, skip);

        if (d + 2 > out_max)
            return -1;
        count = diff_run(old, new, i, len);
        d += put_uleb(out + d, count);
        if (count > out_max - d)
            return -1;
        memcpy(out + d, new + i, count);
        d += count;
        i += count;
    }
    return (int)d;
}

/*
 * Reads a one- or two-byte uleb128; the caller has made sure two bytes
 * are there, as QEMU's decoder does.  Longer values are refused.
 */
static int get_uleb(const uint8_t *in, size_t *v)
{
    if (!(in[0] & 0x80)) {
        *v = in[0];
        return 1;
    }
    if (in[1] & 0x80)
        return -1;
    *v = (size_t)(in[0] & 0x7f) | (size_t)in[1] << 7;
    return 2;
}

/* Walks an encoding; writes into page unless it is NULL. */
static int walk(const uint8_t *in, size_t in_len, uint8_t *page,
                size_t page_len)
{
    size_t i = 0, d = 0;

    while (i < in_len) {
        size_t skip, count;
        int n;

        if (in_len - i < 2)
            return -EINVAL;
        n = get_uleb(in + i, &skip);
        if (n < 0 || (i > 0 && skip == 0))
            return -EINVAL;
        i += (size_t)n;
        if (skip > page_len - d)
            return -EINVAL;
        d += skip;

        if (in_len - i < 2)
            return -EINVAL;
        n = get_uleb(in + i, &count);
        if (n < 0 || count == 0)
            return -EINVAL;
        i += (size_t)n;
        if (count > page_len - d || count > in_len - i)
            return -EINVAL;
        if (page)
            memcpy(page + d, in + i, count);
        d += count;
        i += count;
    }
    return 0;
}

int xbzrle_decode(const uint8_t *in, size_t in_len, uint8_t *page,
                  size_t page_len)
{
    return walk(in, in_len, page, page_len);
}

int xbzrle_check(const uint8_t *in, size_t in_len, size_t page_len)
{
    return walk(in, in_len, NULL, page_len);
}
