/* b64: see b64.h. */
#include "witness/b64.h"

#include <stdlib.h>
#include <string.h>

static const char chars[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

char *b64_encode(const uint8_t *p, size_t n)
{
    char *out = malloc((n + 2) / 3 * 4 + 1), *o = out;
    if (!out)
        return NULL;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16;
        if (i + 1 < n)
            v |= (uint32_t)p[i + 1] << 8;
        if (i + 2 < n)
            v |= p[i + 2];
        *o++ = chars[(v >> 18) & 63];
        *o++ = chars[(v >> 12) & 63];
        *o++ = i + 1 < n ? chars[(v >> 6) & 63] : '=';
        *o++ = i + 2 < n ? chars[v & 63] : '=';
    }
    *o = '\0';
    return out;
}

static int value_of(char ch)
{
    const char *p = ch ? strchr(chars, ch) : NULL;
    if (p)
        return (int)(p - chars);
    if (ch == '-')
        return 62;
    if (ch == '_')
        return 63;
    return -1;
}

int b64_decode(const char *s, size_t max, uint8_t **out, size_t *len)
{
    size_t n = strlen(s);
    while (n && s[n - 1] == '=')
        n--;
    /* Four characters carry three bytes; a lone one carries none. */
    if (n % 4 == 1 || n / 4 * 3 + (n % 4 ? n % 4 - 1 : 0) > max)
        return -1;
    uint8_t *buf = malloc(n / 4 * 3 + 3), *o = buf;
    if (!buf)
        return -1;
    uint32_t acc = 0;
    unsigned bits = 0;
    for (size_t i = 0; i < n; i++) {
        int v = value_of(s[i]);
        if (v < 0) {
            free(buf);
            return -1;
        }
        acc = acc << 6 | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            *o++ = (uint8_t)(acc >> bits);
        }
    }
    *out = buf;
    *len = (size_t)(o - buf);
    return 0;
}
