/*
 * witness/pool.c against a real etcd cluster that pool_test.py starts
 * (and hurts); each case checks its own results.
 *
 *     test_pool args
 *     test_pool lease ENDPOINTS POOL TTL_S
 *     test_pool race ENDPOINTS POOL
 *     test_pool unknown ENDPOINTS POOL GO_FILE
 *
 * args: bad pool names, addresses and TTLs refused with a message; entry
 * values parsed and refused (needs no etcd).
 * lease: a standby registers (status registered, etcd holds its value
 * under a lease); kept alive, the key outlives 3 TTLs; its lease revoked
 * behind its back, it registers again (a second registration, a new
 * lease); withdrawn, the key goes at once; another standby freed without
 * withdrawing (keepalives stop), its key goes within the TTL.
 * race: one free standby, two pickers at once: exactly one PICKED, the
 * other EMPTY; etcd holds the winner's taker; a third pick finds it
 * taken (EMPTY); a standby serving only VM "other" is not picked for
 * "counter" and is for "other".
 * unknown: a standby listed, then GO_FILE awaited (the wrapper stops two
 * of three members before making it); the reservation is asked again and
 * again without an answer and is never PICKED meanwhile ("unknown
 * attempts N" on stdout); once the members are back it is PICKED ("picked
 * KEY earlier=E").
 *
 * Exit 0 pass, 1 fail (saying what), 2 usage.
 */
#include <event2/event.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "witness/etcd.h"
#include "witness/poolpick.h"
#include "evwait.h"

static struct event_base *base;
static etcd *client;            /* the test's own view of etcd */

/* ---- reading etcd ---- */

typedef struct got {
    bool done;
    etcd_status status;
    char value[POOL_MAX_VALUE + 1];
    int64_t lease;
} got;

static void on_get(void *opaque, const etcd_reply *r)
{
    got *g = opaque;
    g->status = r->status;
    g->lease = r->lease;
    snprintf(g->value, sizeof(g->value), "%.*s", (int)r->value_len,
             r->value ? (const char *)r->value : "");
    g->done = true;
}

static bool is_done(void *arg)
{
    return ((got *)arg)->done;
}

static got get(const char *key)
{
    got g = { 0 };
    char err[512];
    if (!etcd_get(client, key, on_get, &g, err, sizeof(err)))
        evwait_die("etcd_get: %s", err);
    evwait_until(base, is_done, &g, 20, "a get");
    if (g.status == ETCD_FAILED)
        evwait_die("get %s failed", key);
    return g;
}

static void revoke_lease(int64_t lease)
{
    got g = { 0 };
    char err[512];
    if (!etcd_lease_revoke(client, lease, on_get, &g, err, sizeof(err)))
        evwait_die("revoke: %s", err);
    evwait_until(base, is_done, &g, 20, "a revoke");
    if (g.status != ETCD_OK)
        evwait_die("revoking %" PRIx64 ": %s", (uint64_t)lease,
                   etcd_status_name(g.status));
}

/* ---- standbys ---- */

static void say(void *opaque, const char *msg)
{
    printf("%s: %s\n", (const char *)opaque, msg);
    fflush(stdout);
}

static uint64_t reserve_ns;     /* the next standby's; 0: the default */

static pool_standby *standby(const char *eps, const char *pool,
                             const char *addr, const char *vm, int64_t ttl)
{
    pool_standby *s;
    char err[512];
    pool_standby_opts o = { .endpoints = eps, .pool = pool, .addr = addr,
                            .vm_name = vm, .ttl_s = ttl,
                            .reserve_ns = reserve_ns,
                            .say = say, .opaque = (void *)addr };
    if (pool_standby_new(&s, base, &o, err, sizeof(err)) < 0)
        evwait_die("pool_standby_new: %s", err);
    if (pool_standby_registered(s) ||
        pool_standby_get_state(s) != POOL_STANDBY_OFF)
        evwait_die("registered before it was offered");
    pool_standby_offer(s, true);
    return s;
}

static bool registered(void *arg)
{
    return pool_standby_registered(arg);
}

static void wait_registered(pool_standby *s)
{
    evwait_until(base, registered, s, 20, "the standby registered");
}

static json_t *status_of(pool_standby *s)
{
    json_t *j = pool_standby_status(s);
    if (!j)
        evwait_die("no status");
    return j;
}

static const char *jstr(json_t *j, const char *k)
{
    const char *s = json_string_value(json_object_get(j, k));
    return s ? s : "";
}

/* ---- args ---- */

static void args(void)
{
    char err[512];
    pool_standby *s;
    poolpick *p;
    const char *names[] = { "", "a/b", "has space", "x\n",
        "0123456789012345678901234567890123456789012345678901234567890123" };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        err[0] = '\0';
        pool_standby_opts o = { .endpoints = "http://127.0.0.1:1",
                                .pool = names[i], .addr = "127.0.0.1:1" };
        if (pool_standby_new(&s, base, &o, err, sizeof(err)) == 0 ||
            !strstr(err, "--pool") ||
            poolpick_new(&p, base, "http://127.0.0.1:1", NULL, names[i],
                            0, err, sizeof(err)) == 0)
            evwait_die("pool name \"%s\" accepted (%s)", names[i], err);
    }
    const char *addrs[] = { NULL, "", "nocolon" };
    for (size_t i = 0; i < sizeof(addrs) / sizeof(addrs[0]); i++) {
        pool_standby_opts o = { .endpoints = "http://127.0.0.1:1",
                                .addr = addrs[i] };
        if (pool_standby_new(&s, base, &o, err, sizeof(err)) == 0 ||
            !strstr(err, "HOST:PORT"))
            evwait_die("address %s accepted", addrs[i] ? addrs[i] : "NULL");
    }
    pool_standby_opts o = { .endpoints = "http://127.0.0.1:1",
                            .addr = "h:1", .ttl_s = -1 };
    if (pool_standby_new(&s, base, &o, err, sizeof(err)) == 0)
        evwait_die("TTL -1 accepted");
    o.ttl_s = 0;
    o.endpoints = "https://127.0.0.1:1";
    if (pool_standby_new(&s, base, &o, err, sizeof(err)) == 0 ||
        !strstr(err, "--witness"))
        evwait_die("an https endpoint accepted (%s)", err);
    pool_entry e;
    const char *bad[] = { "", "[]", "{}", "{\"addr\":\"\"}",
        "{\"addr\":\"nocolon\"}", "{\"addr\":5}",
        "{\"addr\":\"h:1\",\"taken_by\":3}", "not json" };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (pool_entry_parse(&e, "/ftvm-pool/p/x", (const uint8_t *)bad[i],
                             strlen(bad[i]), err, sizeof(err)) == 0)
            evwait_die("entry %s accepted", bad[i]);
    static char big[POOL_MAX_VALUE + 2];
    memset(big, ' ', sizeof(big) - 1);
    memcpy(big, "{\"addr\":\"h:1\"}", 14);
    if (pool_entry_parse(&e, "/k", (const uint8_t *)big, strlen(big), err,
                         sizeof(err)) == 0)
        evwait_die("an entry of %zu bytes accepted", strlen(big));
    const char *v = "{\"addr\":\"10.0.0.1:7000\",\"vm_name\":\"vm1\"}";
    if (pool_entry_parse(&e, "/ftvm-pool/p/x", (const uint8_t *)v, strlen(v),
                         err, sizeof(err)) < 0 ||
        strcmp(e.addr, "10.0.0.1:7000") || strcmp(e.vm_name, "vm1") ||
        e.taken_by[0] || !pool_entry_fits(&e, "vm1") ||
        pool_entry_fits(&e, "vm2") || pool_entry_fits(&e, NULL))
        evwait_die("entry %s: %s", v, err);
    snprintf(e.taken_by, sizeof(e.taken_by), "primary 1 for vm1 g2");
    char *again = pool_entry_value(&e);
    pool_entry e2;
    if (!again || pool_entry_parse(&e2, "/k", (const uint8_t *)again,
                                   strlen(again), err, sizeof(err)) < 0 ||
        strcmp(e2.taken_by, e.taken_by) || pool_entry_fits(&e2, "vm1"))
        evwait_die("taken entry %s", again ? again : "NULL");
    free(again);
    if (poolpick_new(&p, base, "http://127.0.0.1:1", NULL, NULL, 0,
                        err, sizeof(err)) < 0)
        evwait_die("poolpick_new: %s", err);
    if (poolpick_pick(p, "vm", "", NULL, NULL, err, sizeof(err)) == 0)
        evwait_die("an empty taker accepted");
    poolpick_free(p);
    /* The etcd calls the pool adds, refused at once (no callback). */
    etcd *c;
    if (etcd_new(&c, base, "http://127.0.0.1:1", NULL, err, sizeof(err)) < 0)
        evwait_die("etcd_new: %s", err);
    if (etcd_list(c, "/p/", 0, NULL, NULL, err, sizeof(err)) ||
        !strstr(err, "limit") ||
        etcd_list(c, "/p/", ETCD_MAX_LIST + 1, NULL, NULL, err,
                  sizeof(err)) ||
        etcd_list(c, "", 1, NULL, NULL, err, sizeof(err)) ||
        etcd_put_if_unchanged(c, "/k", 0, "v", 1, 0, NULL, NULL, err,
                              sizeof(err)) ||
        !strstr(err, "mod_revision") ||
        etcd_put_if_unchanged(c, "/k", 5, "v", 1, -1, NULL, NULL, err,
                              sizeof(err)) ||
        etcd_put_if_unchanged(c, "/k", 5, "", 0, 0, NULL, NULL, err,
                              sizeof(err)))
        evwait_die("a bad list or put-if-unchanged accepted");
    etcd_free(c);
}

/* ---- lease ---- */

static void lease(const char *eps, const char *pool, int64_t ttl)
{
    pool_standby *s = standby(eps, pool, "127.0.0.1:7001", NULL, ttl);
    wait_registered(s);
    const char *key = pool_standby_key(s);
    char prefix[96];
    snprintf(prefix, sizeof(prefix), POOL_PREFIX "%s/", pool);
    if (strncmp(key, prefix, strlen(prefix)) ||
        strlen(key) != strlen(prefix) + 16)
        evwait_die("key %s", key);
    got g = get(key);
    if (g.status != ETCD_OK || strcmp(g.value, "{\"addr\":\"127.0.0.1:7001\"}")
        || g.lease == 0)
        evwait_die("etcd holds %s (lease %" PRIx64 ")", g.value,
                   (uint64_t)g.lease);
    json_t *j = status_of(s);
    if (strcmp(jstr(j, "state"), "registered") ||
        !json_is_true(json_object_get(j, "registered")) ||
        strcmp(jstr(j, "key"), key) ||
        json_integer_value(json_object_get(j, "registrations")) != 1)
        evwait_die("status %s", json_dumps(j, JSON_COMPACT));
    json_decref(j);
    /* Kept alive: still there after three TTLs, looked at every half. */
    double t0 = evwait_now();
    while (evwait_now() - t0 < 3.0 * ttl) {
        evwait_pause(base, ttl / 2.0);
        if (get(key).status != ETCD_OK)
            evwait_die("the key went after %.1f s of keepalives",
                       evwait_now() - t0);
    }
    printf("kept alive for %.1f s\n", evwait_now() - t0);
    /* The lease lost behind its back: a new lease, the key put again. */
    int64_t old = g.lease;
    revoke_lease(old);
    if (get(key).status != ETCD_NOT_FOUND)
        evwait_die("the key outlived its lease");
    t0 = evwait_now();
    while (get(key).status != ETCD_OK) {
        if (evwait_now() - t0 > 20 * evwait_scale())
            evwait_die("not registered again after its lease was revoked");
        evwait_pause(base, 0.05);
    }
    wait_registered(s);
    g = get(key);
    j = status_of(s);
    if (g.lease == old || g.lease == 0 ||
        json_integer_value(json_object_get(j, "registrations")) != 2)
        evwait_die("registered again: lease %" PRIx64 " (was %" PRIx64
                   "), status %s", (uint64_t)g.lease, (uint64_t)old,
                   json_dumps(j, JSON_COMPACT));
    json_decref(j);
    printf("registered again in %.2f s\n", evwait_now() - t0);
    /* Withdrawn: gone at once (the lease revoked), well before its TTL. */
    pool_standby_offer(s, false);
    t0 = evwait_now();
    while (get(key).status != ETCD_NOT_FOUND) {
        if (evwait_now() - t0 > ttl / 2.0 * evwait_scale() + 0.5)
            evwait_die("withdrawn, the key stayed %.2f s",
                       evwait_now() - t0);
        evwait_pause(base, 0.02);
    }
    j = status_of(s);
    if (json_is_true(json_object_get(j, "registered")) ||
        strcmp(jstr(j, "state"), "off") || !strstr(jstr(j, "error"),
                                                   "withdrawn"))
        evwait_die("withdrawn: status %s", json_dumps(j, JSON_COMPACT));
    json_decref(j);
    printf("withdrawn in %.3f s\n", evwait_now() - t0);
    pool_standby_free(s);
    /* Keepalives stopped: the key goes with its lease. */
    s = standby(eps, pool, "127.0.0.1:7002", NULL, ttl);
    wait_registered(s);
    char key2[128];
    snprintf(key2, sizeof(key2), "%s", pool_standby_key(s));
    pool_standby_free(s);
    t0 = evwait_now();
    while (get(key2).status != ETCD_NOT_FOUND) {
        if (evwait_now() - t0 > 3.0 * ttl * evwait_scale() + 2)
            evwait_die("keepalives stopped, the key stayed %.1f s",
                       evwait_now() - t0);
        evwait_pause(base, 0.1);
    }
    printf("expired %.1f s after the keepalives stopped\n",
           evwait_now() - t0);
}

/* ---- picks ---- */

typedef struct pick {
    bool done;
    poolpick_outcome outcome;
    pool_entry picked;
    bool earlier;
    char err[600];
} pick;

static void on_pick(void *opaque, const poolpick_result *r)
{
    pick *k = opaque;
    if (k->done)
        evwait_die("a pick called back twice");
    k->done = true;
    k->outcome = r->outcome;
    k->earlier = r->earlier;
    if (r->picked)
        k->picked = *r->picked;
    snprintf(k->err, sizeof(k->err), "%s", r->err ? r->err : "");
}

static bool picks_done(void *arg)
{
    pick *k = arg;
    return k[0].done && k[1].done;
}

static poolpick *picker(const char *eps, const char *pool)
{
    poolpick *p;
    char err[512];
    if (poolpick_new(&p, base, eps, NULL, pool, 0, err, sizeof(err)) < 0)
        evwait_die("poolpick_new: %s", err);
    return p;
}

static void start_pick(poolpick *p, const char *vm, const char *taker,
                       pick *k)
{
    char err[512];
    memset(k, 0, sizeof(*k));
    if (poolpick_pick(p, vm, taker, on_pick, k, err, sizeof(err)) < 0)
        evwait_die("poolpick_pick: %s", err);
}

static pick pick_one(poolpick *p, const char *vm, const char *taker)
{
    pick k[2];
    start_pick(p, vm, taker, &k[0]);
    k[1].done = true;
    evwait_until(base, picks_done, k, 20, "a pick");
    return k[0];
}

static bool registered(void *arg);

static bool is_taken(void *arg)
{
    return pool_standby_get_state(arg) == POOL_STANDBY_TAKEN;
}

static void race(const char *eps, const char *pool)
{
    pool_standby *s = standby(eps, pool, "127.0.0.1:7003", NULL, 5);
    wait_registered(s);
    poolpick *p[2] = { picker(eps, pool), picker(eps, pool) };
    const char *takers[2] = { "primary aaaa for counter g2",
                              "primary bbbb for counter g2" };
    pick k[2];
    start_pick(p[0], "counter", takers[0], &k[0]);
    start_pick(p[1], "counter", takers[1], &k[1]);
    evwait_until(base, picks_done, k, 20, "both picks");
    int w = k[0].outcome == POOLPICK_PICKED ? 0 : 1;
    if (k[w].outcome != POOLPICK_PICKED || k[1 - w].outcome != POOLPICK_EMPTY)
        evwait_die("outcomes %d and %d (%s %s)", k[0].outcome, k[1].outcome,
                   k[0].err, k[1].err);
    if (strcmp(k[w].picked.addr, "127.0.0.1:7003") ||
        strcmp(k[w].picked.taken_by, takers[w]) ||
        strcmp(k[w].picked.key, pool_standby_key(s)))
        evwait_die("picked %s %s %s", k[w].picked.key, k[w].picked.addr,
                   k[w].picked.taken_by);
    got g = get(pool_standby_key(s));
    pool_entry e;
    char err[512];
    if (pool_entry_parse(&e, pool_standby_key(s), (uint8_t *)g.value,
                         strlen(g.value), err, sizeof(err)) < 0 ||
        strcmp(e.taken_by, takers[w]) || strcmp(e.addr, "127.0.0.1:7003"))
        evwait_die("etcd holds %s", g.value);
    printf("winner %s\n", takers[w]);
    /* Taken: not offered again, to either. */
    for (int i = 0; i < 2; i++)
        if (pick_one(p[i], "counter", takers[i]).outcome != POOLPICK_EMPTY)
            evwait_die("a taken standby picked again");
    /* The standby still keeps its lease alive, marked taken. */
    evwait_pause(base, 2);
    g = get(pool_standby_key(s));
    if (g.status != ETCD_OK || !strstr(g.value, takers[w]))
        evwait_die("taken, then %s", g.value);
    /* One that serves only "other". */
    pool_standby *o = standby(eps, pool, "127.0.0.1:7004", "other", 5);
    wait_registered(o);
    if (pick_one(p[0], "counter", "primary cccc for counter g3").outcome !=
        POOLPICK_EMPTY)
        evwait_die("a standby of VM other picked for counter");
    pick x = pick_one(p[1], "other", "primary dddd for other g2");
    if (x.outcome != POOLPICK_PICKED ||
        strcmp(x.picked.addr, "127.0.0.1:7004"))
        evwait_die("not picked for VM other: %d %s", x.outcome, x.err);
    /* The standby sees it was taken (status), and keeps it so. */
    json_t *j = status_of(s);
    if (strcmp(jstr(j, "state"), "taken") ||
        strcmp(jstr(j, "taken_by"), takers[w]) ||
        json_is_true(json_object_get(j, "registered")))
        evwait_die("taken standby's status %s", json_dumps(j, JSON_COMPACT));
    json_decref(j);
    pool_standby_free(o);
    /* A reservation no primary followed up: offered again after it. */
    reserve_ns = 2000000000ull;
    o = standby(eps, pool, "127.0.0.1:7006", NULL, 3);
    reserve_ns = 0;
    wait_registered(o);
    x = pick_one(p[0], "counter", "primary ffff for counter g4");
    if (x.outcome != POOLPICK_PICKED ||
        strcmp(x.picked.addr, "127.0.0.1:7006"))
        evwait_die("not picked: %d %s", x.outcome, x.err);
    double t0 = evwait_now();
    evwait_until(base, is_taken, o, 20, "the standby to see it was taken");
    evwait_until(base, registered, o, 30, "offered again");
    printf("offered again %.1f s after its reservation\n",
           evwait_now() - t0);
    if (evwait_now() - t0 < 1.5)
        evwait_die("offered again after %.1f s, before its 2 s",
                   evwait_now() - t0);
    x = pick_one(p[1], "counter", "primary 9999 for counter g4");
    if (x.outcome != POOLPICK_PICKED ||
        strcmp(x.picked.addr, "127.0.0.1:7006"))
        evwait_die("not picked again: %d %s", x.outcome, x.err);
    poolpick_free(p[0]);
    poolpick_free(p[1]);
    pool_standby_free(s);
    pool_standby_free(o);
}

/* ---- unknown ---- */

typedef struct listing {
    bool done;
    pool_entry e;
    size_t n;
} listing;

static void on_list(void *opaque, const pool_entry *es, size_t n,
                    const char *err)
{
    listing *l = opaque;
    if (!es)
        evwait_die("listing: %s", err);
    l->n = n;
    if (n)
        l->e = es[0];
    l->done = true;
}

static bool listed(void *arg)
{
    return ((listing *)arg)->done;
}

static bool file_exists(void *arg)
{
    return access(arg, F_OK) == 0;
}

typedef struct watch {
    poolpick *p;
    pick *k;
    bool said;
} watch;

static bool reserved_or_report(void *arg)
{
    watch *w = arg;
    if (w->k->done)
        return true;
    if (!w->said && poolpick_attempts(w->p) >= 3 &&
        poolpick_error(w->p)) {
        printf("unknown attempts %u: %s\n", poolpick_attempts(w->p),
               poolpick_error(w->p));
        fflush(stdout);
        w->said = true;
    }
    return false;
}

static void unknown(const char *eps, const char *pool, const char *go)
{
    pool_standby *s = standby(eps, pool, "127.0.0.1:7005", NULL, 5);
    wait_registered(s);
    poolpick *p = picker(eps, pool);
    listing l = { 0 };
    char err[512];
    if (poolpick_list(p, on_list, &l, err, sizeof(err)) < 0)
        evwait_die("poolpick_list: %s", err);
    evwait_until(base, listed, &l, 20, "the listing");
    if (l.n != 1 || strcmp(l.e.key, pool_standby_key(s)))
        evwait_die("listed %zu: %s", l.n, l.e.key);
    printf("listed %s\n", l.e.key);
    fflush(stdout);
    evwait_until(base, file_exists, (void *)go, 60, "the go file");
    pick k = { 0 };
    const char *taker = "primary eeee for counter g2";
    if (poolpick_reserve(p, &l.e, taker, on_pick, &k, err, sizeof(err)) < 0)
        evwait_die("poolpick_reserve: %s", err);
    watch w = { p, &k, false };
    evwait_until(base, reserved_or_report, &w, 90, "a definite answer");
    if (!w.said)
        evwait_die("answered without the members (outcome %d)", k.outcome);
    if (k.outcome != POOLPICK_PICKED || strcmp(k.picked.taken_by, taker))
        evwait_die("after the quorum came back: outcome %d %s", k.outcome,
                   k.err);
    printf("picked %s earlier=%d\n", k.picked.key, k.earlier);
    poolpick_free(p);
    pool_standby_free(s);
}

int main(int argc, char **argv)
{
    char err[512];
    /* As ftvm's processes (witness/etcd.h): a member's close is an error. */
    signal(SIGPIPE, SIG_IGN);
    base = event_base_new();
    if (argc == 2 && strcmp(argv[1], "args") == 0) {
        args();
        puts("ok");
        return 0;
    }
    if (argc < 4) {
        fprintf(stderr, "usage: test_pool args | lease EPS POOL TTL | race "
                "EPS POOL | unknown EPS POOL GO_FILE\n");
        return 2;
    }
    if (etcd_new(&client, base, argv[2], NULL, err, sizeof(err)) < 0)
        evwait_die("etcd_new: %s", err);
    if (strcmp(argv[1], "lease") == 0 && argc == 5)
        lease(argv[2], argv[3], atoi(argv[4]));
    else if (strcmp(argv[1], "race") == 0 && argc == 4)
        race(argv[2], argv[3]);
    else if (strcmp(argv[1], "unknown") == 0 && argc == 5)
        unknown(argv[2], argv[3], argv[4]);
    else
        return 2;
    etcd_free(client);
    event_base_free(base);
    puts("ok");
    return 0;
}
