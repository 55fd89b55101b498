/*
 * witness/claim.c against a real etcd cluster that claim_test.py starts
 * (and hurts); each case checks its own results.
 *
 *     test_claim race ENDPOINTS NAME GENERATION
 *     test_claim wait ENDPOINTS NAME GENERATION ROLE
 *     test_claim generations ENDPOINTS NAME HIGHEST
 *
 * race: a primary's and a secondary's claim objects claim generation G
 * at once: exactly one WON, the other LOST naming the winner's value; the
 * winner asking again is WON, the loser again LOST; generation G+1 is
 * undecided: the loser of G can win it; the status objects say so.
 * wait: one claim (a 500 ms attempt deadline); prints each state on stdout
 * as it comes ("state unknown", ...) and each new attempt ("attempts N")
 * and exits 0 on WON, 1 on LOST or after 60 s.
 * generations: witness/generations.c's scan of NAME (asked again every
 * 500 ms): prints "failed ERR" for each failure and "highest N" for the
 * answer, and exits 0 when N is HIGHEST, 1 otherwise or after 60 s.
 *
 * Exit 0 pass, 1 fail (saying what), 2 usage.
 */
#include <event2/event.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "witness/claim.h"
#include "witness/generations.h"
#include "evwait.h"

static struct event_base *base;

typedef struct side {
    claim *c;
    claim_state last;
    unsigned changes;
    unsigned unknowns;
} side;

static void on_state(void *opaque, claim_state s)
{
    side *d = opaque;
    if (s == d->last)
        evwait_die("a callback without a change of state (%s)",
            claim_state_name(s));
    d->last = s;
    d->changes++;
    if (s == CLAIM_UNKNOWN)
        d->unknowns++;
    printf("state %s\n", claim_state_name(s));
    fflush(stdout);
    if (s == CLAIM_WON || s == CLAIM_LOST)
        event_base_loopbreak(base);
}

static bool settled(side *d)
{
    return d->last == CLAIM_WON || d->last == CLAIM_LOST;
}

typedef struct sides {
    side *s;
    int n;
} sides;

static bool all_settled(void *arg)
{
    sides *w = arg;
    for (int i = 0; i < w->n; i++)
        if (!settled(&w->s[i]))
            return false;
    return true;
}

/* Runs the loop until every side has settled, or 20 s (scaled). */
static void settle(side *s, int n)
{
    evwait_until(base, all_settled, &(sides){ s, n }, 20, "an outcome");
}

static const char *vm_name;

static void start(side *d, uint64_t g)
{
    char err[512];
    d->last = CLAIM_CLAIMING;
    if (claim_start(d->c, vm_name, g, on_state, d, err, sizeof(err)) < 0)
        evwait_die("claim_start: %s", err);
    if (claim_get_state(d->c) != CLAIM_CLAIMING)
        evwait_die("claim_start: state %s, not claiming",
            claim_state_name(claim_get_state(d->c)));
}

static void check_status(const claim *c, const char *state,
                         const char *owner, uint64_t g)
{
    json_t *j = claim_status(c, NULL, 0);
    char key[CLAIM_KEY_MAX];
    claim_key_of(key, sizeof(key), "race-vm", g);
    const char *st = json_string_value(json_object_get(j, "state"));
    const char *k = json_string_value(json_object_get(j, "key"));
    json_t *o = json_object_get(j, "owner");
    if (!st || strcmp(st, state) || !k || strcmp(k, key) ||
        json_integer_value(json_object_get(j, "generation")) != (json_int_t)g ||
        (owner ? !json_is_string(o) || strcmp(json_string_value(o), owner)
               : !json_is_null(o)) ||
        json_array_size(json_object_get(j, "endpoints")) != 3)
        evwait_die("status %s", json_dumps(j, JSON_COMPACT));
    json_decref(j);
}

static void race(const char *eps, const char *name, uint64_t g)
{
    vm_name = name;
    side d[2] = { 0 };
    char err[512];
    const char *roles[2] = { "primary", "secondary" };
    for (int i = 0; i < 2; i++)
        if (claim_new(&d[i].c, base, eps, NULL, roles[i], 0, err, sizeof(err)) < 0)
            evwait_die("claim_new: %s", err);
    if (strncmp(claim_value(d[0].c), "primary ", 8) ||
        strlen(claim_value(d[0].c)) != 8 + 16 ||
        strncmp(claim_value(d[1].c), "secondary ", 10))
        evwait_die("values %s, %s", claim_value(d[0].c), claim_value(d[1].c));
    start(&d[0], g);
    start(&d[1], g);
    settle(d, 2);
    int w = d[0].last == CLAIM_WON ? 0 : 1, l = 1 - w;
    if (d[w].last != CLAIM_WON || d[l].last != CLAIM_LOST)
        evwait_die("outcomes %s and %s", claim_state_name(d[0].last),
            claim_state_name(d[1].last));
    if (strcmp(claim_owner(d[l].c), claim_value(d[w].c)))
        evwait_die("the loser names %s, the winner is %s", claim_owner(d[l].c),
            claim_value(d[w].c));
    if (claim_owner(d[w].c))
        evwait_die("the winner names an owner");
    check_status(d[w].c, "won", NULL, g);
    check_status(d[l].c, "lost", claim_value(d[w].c), g);
    printf("winner %s\n", claim_value(d[w].c));
    /* Asked again: the same answers (a retry recognises its own write). */
    start(&d[w], g);
    start(&d[l], g);
    settle(d, 2);
    if (d[w].last != CLAIM_WON || d[l].last != CLAIM_LOST)
        evwait_die("again: %s and %s", claim_state_name(d[w].last),
            claim_state_name(d[l].last));
    /* The next generation is undecided: the loser of g takes it. */
    start(&d[l], g + 1);
    settle(&d[l], 1);
    if (d[l].last != CLAIM_WON)
        evwait_die("generation %" PRIu64 ": %s", g + 1, claim_state_name(d[l].last));
    start(&d[w], g + 1);
    settle(&d[w], 1);
    if (d[w].last != CLAIM_LOST)
        evwait_die("generation %" PRIu64 " for the first winner: %s", g + 1,
            claim_state_name(d[w].last));
    /* Cancelled: idle, and no callback comes. */
    start(&d[w], g + 2);
    claim_cancel(d[w].c);
    if (claim_get_state(d[w].c) != CLAIM_IDLE)
        evwait_die("cancelled: %s", claim_state_name(claim_get_state(d[w].c)));
    unsigned before = d[w].changes;
    struct timeval tv = { 1, 500000 };
    event_base_loopexit(base, &tv);
    event_base_dispatch(base);
    if (d[w].changes != before)
        evwait_die("a cancelled claim called back");
    json_t *none = claim_status(NULL, "vm", 3);
    const char *st = json_string_value(json_object_get(none, "state"));
    if (!st || strcmp(st, "none") ||
        strcmp(json_string_value(json_object_get(none, "key")),
               "/ftvm/vm/3/owner"))
        evwait_die("no witness: %s", json_dumps(none, JSON_COMPACT));
    json_decref(none);
    claim_free(d[0].c);
    claim_free(d[1].c);
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    static uint64_t seen;
    side *d = arg;
    (void)fd;
    (void)what;
    if (claim_attempts(d->c) != seen) {
        seen = claim_attempts(d->c);
        printf("attempts %" PRIu64 "\n", seen);
        fflush(stdout);
    }
}

static void wait_won(const char *eps, const char *name, uint64_t g,
                     const char *role)
{
    vm_name = name;
    side d = { 0 };
    char err[512];
    if (claim_new(&d.c, base, eps, NULL, role, 500000000u, err, sizeof(err)) < 0)
        evwait_die("claim_new: %s", err);
    start(&d, g);
    struct event *tick = event_new(base, -1, EV_PERSIST, on_tick, &d);
    struct timeval every = { 0, 20000 }, cap = { 60, 0 };
    event_add(tick, &every);
    event_base_loopexit(base, &cap);
    event_base_dispatch(base);
    event_free(tick);
    if (d.last != CLAIM_WON)
        evwait_die("%s (owner %s, error %s)", claim_state_name(d.last),
            claim_owner(d.c) ? claim_owner(d.c) : "-",
            claim_error(d.c) ? claim_error(d.c) : "-");
    claim_free(d.c);
}

typedef struct scan {
    bool done;
    uint64_t highest;
    unsigned failures;
} scan;

static void on_generations(void *opaque, int rc, uint64_t highest,
                           const char *err)
{
    scan *sc = opaque;
    if (rc < 0) {
        sc->failures++;
        printf("failed %s\n", err);
    } else {
        sc->done = true;
        sc->highest = highest;
        printf("highest %" PRIu64 "\n", highest);
        event_base_loopbreak(base);
    }
    fflush(stdout);
}

static void scan_generations(const char *eps, const char *name,
                             uint64_t want)
{
    claim *c;
    generations *g;
    scan sc = { 0 };
    char err[512];
    if (claim_new(&c, base, eps, NULL, "primary", 500000000u, err,
                  sizeof(err)) < 0)
        evwait_die("claim_new: %s", err);
    if (generations_new(&g, claim_client(c), 500000000u) < 0 ||
        generations_scan(g, name, on_generations, &sc, err, sizeof(err)) < 0)
        evwait_die("generations: %s", err);
    struct timeval cap = { 60, 0 };
    event_base_loopexit(base, &cap);
    event_base_dispatch(base);
    if (!sc.done || sc.highest != want)
        evwait_die("generations of %s: %s %" PRIu64 ", expected %" PRIu64,
                   name, sc.done ? "highest" : "no answer after 60 s",
                   sc.highest, want);
    generations_free(g);
    claim_free(c);
}

int main(int argc, char **argv)
{
    /* As ftvm's processes (witness/etcd.h): a member's close is an error. */
    signal(SIGPIPE, SIG_IGN);
    base = event_base_new();
    if (argc == 5 && !strcmp(argv[1], "race"))
        race(argv[2], argv[3], strtoull(argv[4], NULL, 10));
    else if (argc == 6 && !strcmp(argv[1], "wait"))
        wait_won(argv[2], argv[3], strtoull(argv[4], NULL, 10), argv[5]);
    else if (argc == 5 && !strcmp(argv[1], "generations"))
        scan_generations(argv[2], argv[3], strtoull(argv[4], NULL, 10));
    else {
        fprintf(stderr, "usage: see test_claim.c\n");
        return 2;
    }
    event_base_free(base);
    return 0;
}
