/*
 * pool: the standby pool of issue 9's re-protection, in the witness's
 * etcd (docs/witness.md, "The standby pool").
 *
 * A standby (`ftvm secondary --register`) puts /ftvm-pool/POOL/ID, ID
 * drawn once per process, under a lease it keeps alive; the value names
 * the address a primary dials, and the VM name it serves if it serves
 * only one:
 *     {"addr":"HOST:PORT","vm_name":"NAME"}
 * A picker (witness/poolpick.h) reserves a free one by putting the same
 * value with "taken_by" added.  A taken standby is never offered again;
 * the standby withdraws (revokes its lease, deleting the key) once a
 * primary connects, and a dead one's key goes with its lease.
 *
 * This module: the names and entries both sides read, and a standby's
 * registration.  As everywhere in the witness, an unanswered request is
 * never taken for a success, and everything runs on the owner's libevent
 * loop; nothing blocks.
 */
#ifndef FTVM_WITNESS_POOL_H
#define FTVM_WITNESS_POOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "witness/etcd.h"

struct event_base;
struct json_t;

#define POOL_PREFIX "/ftvm-pool/"
#define POOL_DEFAULT_NAME "default"
#define POOL_DEFAULT_TTL_S 5
#define POOL_MAX_LIST 64            /* standbys one listing reads */
#define POOL_MAX_VALUE 1024         /* bytes of an entry's value */
#define POOL_ADDR_MAX 256
#define POOL_TAKER_MAX 256
/* Between a retry and the next (an unanswered request, an empty pool). */
#define POOL_RETRY_NS 1000000000ull
/*
 * A standby reserved this long ago that no primary connected to offers
 * itself again (the picker died between its reservation and its dial).
 */
#define POOL_RESERVE_NS 30000000000ull

/* A pool name or a VM name: [A-Za-z0-9._-], 1 to 63.  0 or -EINVAL. */
int pool_check_name(const char *name, char *err, size_t errlen);
/*
 * The etcd client of a standby or a picker: the witness's endpoints and
 * TLS, a request's deadline timeout_ns (0: 1 s; at least 50 ms).  0, or
 * -errno with a message.
 */
int pool_client_new(etcd **c, struct event_base *base,
                    const char *endpoints, const char *tls_dir,
                    uint64_t timeout_ns, char *err, size_t errlen);

/* One entry, as listed. */
typedef struct pool_entry {
    char key[128];
    char addr[POOL_ADDR_MAX];
    char vm_name[64];               /* "": serves any VM */
    char taken_by[POOL_TAKER_MAX];  /* "": free */
    int64_t mod_revision, lease;
} pool_entry;

/* Parses a listed key's value: 0, or -EINVAL with why. */
int pool_entry_parse(pool_entry *e, const char *key, const uint8_t *value,
                     size_t len, char *err, size_t errlen);
/* The value of e (JSON, malloc'd), or NULL: no memory. */
char *pool_entry_value(const pool_entry *e);
/* Whether e may serve a primary of VM vm_name. */
bool pool_entry_fits(const pool_entry *e, const char *vm_name);

/* ---- the standby's registration ---- */

typedef enum pool_standby_state {
    POOL_STANDBY_OFF,           /* not offered */
    POOL_STANDBY_GRANTING,      /* asking for a lease */
    POOL_STANDBY_PUTTING,       /* putting the key under it */
    POOL_STANDBY_REGISTERED,    /* in the pool, the lease kept alive */
    POOL_STANDBY_TAKEN,         /* a picker reserved it: no longer free */
} pool_standby_state;

const char *pool_standby_state_name(pool_standby_state s);

typedef struct pool_standby_opts {
    const char *endpoints;      /* etcd client URLs */
    const char *tls_dir;        /* --witness-tls for https://, or NULL */
    const char *pool;           /* NULL: POOL_DEFAULT_NAME */
    const char *addr;           /* HOST:PORT a primary dials */
    const char *vm_name;        /* the only VM served, or NULL */
    int64_t ttl_s;              /* 0: POOL_DEFAULT_TTL_S */
    uint64_t timeout_ns;        /* a request's deadline (capped at TTL/3) */
    uint64_t reserve_ns;        /* 0: POOL_RESERVE_NS */
    /* Changes worth a log line; may be NULL. */
    void (*say)(void *opaque, const char *msg);
    void *opaque;
} pool_standby_opts;

typedef struct pool_standby pool_standby;

/* Not offered yet.  0, or -errno with a message. */
int pool_standby_new(pool_standby **out, struct event_base *base,
                     const pool_standby_opts *o, char *err, size_t errlen);
/*
 * Drops everything in flight; the key stays until its lease expires (as
 * when the process is killed).
 */
void pool_standby_free(pool_standby *s);
/*
 * offered: register (a lease, the key, keepalives every TTL/3, each
 * followed by a read of the key: TAKEN once a picker reserved it; a lost
 * lease is granted again and the key put again; a reservation unused for
 * reserve_ns is undone, if the key is unchanged since); not offered:
 * withdraw (stop, revoke the lease: the key goes).  Repeating a state
 * does nothing.
 */
void pool_standby_offer(pool_standby *s, bool offered);
pool_standby_state pool_standby_get_state(const pool_standby *s);
/* In the pool now: the key put and its lease answered within its TTL. */
bool pool_standby_registered(const pool_standby *s);
const char *pool_standby_key(const pool_standby *s);
/*
 * The status object "pool": pool, key, addr, state, registered, lease,
 * ttl_s, registrations, taken_by, error (docs/witness.md).
 */
struct json_t *pool_standby_status(const pool_standby *s);

#endif
