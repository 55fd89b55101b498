/* parse: see parse.h. */
#include "daemon/parse.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int parse_duration(const char *s, uint64_t *ns)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || !(v > 0))
        return -EINVAL;
    double mult = 1e9;
    if (strcmp(end, "ms") == 0)
        mult = 1e6;
    else if (strcmp(end, "m") == 0 || strcmp(end, "min") == 0)
        mult = 60e9;
    else if (strcmp(end, "h") == 0)
        mult = 3600e9;
    else if (*end && strcmp(end, "s") != 0)
        return -EINVAL;
    if (v * mult < 1e6 || v * mult > 1e18)
        return -ERANGE;
    *ns = (uint64_t)(v * mult);
    return 0;
}

int parse_size(const char *s, uint64_t *bytes)
{
    char *end;
    unsigned shift = 0;

    if (!s || *s < '0' || *s > '9')
        return -EINVAL;
    errno = 0;
    unsigned long long n = strtoull(s, &end, 10);
    if (errno)
        return -EINVAL;
    switch (*end) {
    case 'k': case 'K': shift = 10; end++; break;
    case 'm': case 'M': shift = 20; end++; break;
    case 'g': case 'G': shift = 30; end++; break;
    case '\0': break;
    default: return -EINVAL;
    }
    if (*end == 'i' || *end == 'B')
        end += *end == 'i' && end[1] == 'B' ? 2 : 1;
    if (*end != '\0' || n > (UINT64_MAX >> shift))
        return -EINVAL;
    *bytes = (uint64_t)n << shift;
    return 0;
}

int parse_count(const char *s, long min, long max, long *out)
{
    char *end;
    /* Digits, with a minus at most: no blanks or plus sign before them. */
    const char *digits = *s == '-' ? s + 1 : s;
    if (*digits < '0' || *digits > '9')
        return -EINVAL;
    errno = 0;
    long n = strtol(s, &end, 10);
    if (*end)
        return -EINVAL;
    if (errno || n < min || n > max)
        return -ERANGE;
    *out = n;
    return 0;
}

int parse_hostport(const char *s, char *host, size_t hostlen,
                   uint16_t *port)
{
    const char *colon, *start = s;
    size_t len;

    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (!close || close[1] != ':' || close == s + 1)
            return -EINVAL;
        start = s + 1;
        len = (size_t)(close - start);
        colon = close + 1;
    } else {
        colon = strchr(s, ':');
        if (!colon || strchr(colon + 1, ':'))
            return -EINVAL;
        len = (size_t)(colon - s);
    }
    long p;
    if (len >= hostlen || parse_count(colon + 1, 0, 65535, &p) < 0)
        return -EINVAL;
    memcpy(host, start, len);
    host[len] = '\0';
    *port = (uint16_t)p;
    return 0;
}
