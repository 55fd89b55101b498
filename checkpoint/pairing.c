/* pairing: see pairing.h. */
#include "checkpoint/pairing.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>

static bool name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
}

int pairing_check_name(const char *name, char *err, size_t errlen)
{
    size_t n = strlen(name);
    if (n == 0 || n > PAIRING_NAME_MAX) {
        snprintf(err, errlen, "VM name '%s': 1 to %d characters", name,
                 PAIRING_NAME_MAX);
        return -EINVAL;
    }
    for (size_t i = 0; i < n; i++) {
        if (!name_char(name[i])) {
            snprintf(err, errlen, "VM name '%s': only letters, digits, '.', "
                     "'_' and '-' may be used", name);
            return -EINVAL;
        }
    }
    return 0;
}

void pairing_default_name(const char *image, char out[PAIRING_NAME_MAX + 1])
{
    const char *base = strrchr(image, '/');
    base = base ? base + 1 : image;
    const char *dot = strrchr(base, '.');
    size_t n = dot && dot != base ? (size_t)(dot - base) : strlen(base);
    if (n > PAIRING_NAME_MAX)
        n = PAIRING_NAME_MAX;
    memset(out, 0, PAIRING_NAME_MAX + 1);
    for (size_t i = 0; i < n; i++)
        out[i] = name_char(base[i]) ? base[i] : '-';
    if (n == 0)
        snprintf(out, PAIRING_NAME_MAX + 1, "%s", PAIRING_DEFAULT_NAME);
}

int pairing_draw(pairing *p, const char *name, uint64_t generation)
{
    /* name may be p's own; NUL-padded, as it goes on the wire whole. */
    char copy[sizeof(p->name)] = { 0 };
    snprintf(copy, sizeof(copy), "%s", name);
    memset(p, 0, sizeof(*p));
    memcpy(p->name, copy, sizeof(copy));
    p->generation = generation;
    size_t got = 0;
    while (got < sizeof(p->id)) {
        ssize_t r = getrandom(p->id + got, sizeof(p->id) - got, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -errno;
        got += (size_t)r;
    }
    return 0;
}

int pairing_check(const pairing *p, char *err, size_t errlen)
{
    if (p->name[PAIRING_NAME_MAX] != '\0') {
        snprintf(err, errlen, "VM name: not NUL-terminated");
        return -EINVAL;
    }
    if (p->generation == 0) {
        snprintf(err, errlen, "pairing of VM '%s': generation 0", p->name);
        return -EINVAL;
    }
    return pairing_check_name(p->name, err, errlen);
}

bool pairing_equal(const pairing *a, const pairing *b)
{
    return memcmp(a->id, b->id, sizeof(a->id)) == 0 &&
           a->generation == b->generation &&
           strncmp(a->name, b->name, sizeof(a->name)) == 0;
}

const char *pairing_str(const pairing *p, char *buf, size_t len)
{
    snprintf(buf, len, "%.*s/%02x%02x%02x%02x/g%" PRIu64, PAIRING_NAME_MAX,
             p->name, p->id[0], p->id[1], p->id[2], p->id[3], p->generation);
    return buf;
}
