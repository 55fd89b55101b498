/* enlist: see enlist.h. */
#include "secondary/enlist.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "daemon/log.h"

int enlist_address(char *out, size_t len, const char *advertise,
                   const char *listening, char *err, size_t errlen)
{
    if (advertise) {
        const char *colon = strrchr(advertise, ':');
        if (!colon || colon == advertise || !colon[1] ||
            strspn(colon + 1, "0123456789") != strlen(colon + 1) ||
            strcmp(colon + 1, "0") == 0 || strlen(advertise) >= len) {
            snprintf(err, errlen, "--advertise '%s': expected HOST:PORT "
                     "(the address a primary dials)", advertise);
            return -EINVAL;
        }
        snprintf(out, len, "%s", advertise);
        return 0;
    }
    if (strncmp(listening, "0.0.0.0:", 8) == 0 ||
        strncmp(listening, "[::]:", 5) == 0) {
        snprintf(err, errlen, "--register: listening on every address "
                 "(%s); give --advertise HOST:PORT, the address a primary "
                 "dials", listening);
        return -EINVAL;
    }
    snprintf(out, len, "%s", listening);
    return 0;
}

bool enlist_offered(standby_state s)
{
    return s == STANDBY_WAITING;
}

static void say(void *opaque, const char *msg)
{
    (void)opaque;
    log_msg("%s", msg);
}

int enlist_new(pool_standby **out, struct event_base *base,
               const secondary_opts *o, const char *listening, char *err,
               size_t errlen)
{
    char addr[POOL_ADDR_MAX];
    int rc = enlist_address(addr, sizeof(addr), o->advertise, listening,
                            err, errlen);
    if (rc < 0)
        return rc;
    pool_standby_opts po = {
        .endpoints = o->witness,
        .tls_dir = o->witness_tls,
        .pool = o->pool,
        .addr = addr,
        .vm_name = o->vm_name,
        .ttl_s = (int64_t)((o->pool_ttl_ns + 999999999ull) / 1000000000ull),
        .timeout_ns = o->witness_timeout_ns,
        .say = say,
    };
    return pool_standby_new(out, base, &po, err, errlen);
}
