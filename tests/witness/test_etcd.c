/*
 * witness/etcd.c and etcdwatch.c against a real etcd cluster that
 * etcd_test.py starts (and hurts between cases); each case checks its
 * own results.
 *
 *     test_etcd args
 *     test_etcd race ENDPOINTS_A ENDPOINTS_B KEY
 *     test_etcd create ENDPOINTS KEY VALUE EXPECT     (EXPECT: won|lost)
 *     test_etcd get ENDPOINTS KEY VALUE               (VALUE "-": absent)
 *     test_etcd lease ENDPOINTS KEY
 *     test_etcd unknown ENDPOINTS KEY VALUE TIMEOUT_MS
 *     test_etcd survive ENDPOINTS DOWN_URL KEY
 *     test_etcd bogus ENDPOINT NOT_ETCD_URL KEY
 *     test_etcd watch ENDPOINTS PID_OF_THE_FIRST PREFIX
 *     test_etcd watch-old ENDPOINTS PREFIX REVISION   (compacted away)
 *
 * Exit 0 pass, 1 fail (saying what), 2 usage.  Waits are for conditions
 * with deadlines scaled by FTVM_TIME_SCALE; what a case gives the client
 * (its timeouts) is behaviour and is not scaled.
 */
#include <errno.h>
#include <signal.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "witness/etcd.h"
#include "witness/etcdwatch.h"
#include "evwait.h"

#define RACERS 20       /* create attempts per client in the race */

static struct event_base *base;
static double scale = 1;


/* One reply, copied out of the callback. */
typedef struct answer {
    bool create;        /* outcome means something */
    bool done;
    etcd_status status;
    etcd_outcome outcome;
    bool earlier;
    char value[256];
    int64_t lease, ttl;
    char endpoint[256];
    char err[1024];
    double at;
} answer;

static void on_reply(void *opaque, const etcd_reply *r)
{
    answer *a = opaque;
    if (a->done)
        evwait_die("a callback ran twice");
    a->done = true;
    a->at = evwait_now();
    a->status = r->status;
    a->outcome = r->outcome;
    a->earlier = r->earlier;
    snprintf(a->value, sizeof(a->value), "%.*s",
             (int)(r->value_len < 255 ? r->value_len : 255),
             r->value ? (const char *)r->value : "");
    a->lease = r->lease;
    a->ttl = r->ttl;
    snprintf(a->endpoint, sizeof(a->endpoint), "%s", r->endpoint);
    snprintf(a->err, sizeof(a->err), "%s", r->err);
    if (r->status == ETCD_FAILED && !*r->err)
        evwait_die("a failed request without an error string");
    if (a->create && (r->status == ETCD_FAILED) !=
                     (r->outcome == ETCD_UNKNOWN))
        evwait_die("status %s with outcome %s", etcd_status_name(r->status),
            etcd_outcome_name(r->outcome));
}

typedef struct answers {
    answer *a;
    size_t n;
} answers;

static bool all_in(void *arg)
{
    answers *w = arg;
    for (size_t i = 0; i < w->n; i++)
        if (!w->a[i].done)
            return false;
    return true;
}

/* Runs the loop until every answer is in; fails after seconds (scaled). */
static void wait_all(answer *a, size_t n, double seconds, const char *what)
{
    char why[256];
    snprintf(why, sizeof(why), "%s: all %zu answers", what, n);
    evwait_until(base, all_in, &(answers){ a, n }, seconds, why);
}

static void pause_s(double seconds)
{
    evwait_pause(base, seconds);
}

static etcd *client(const char *endpoints, unsigned timeout_ms,
                    unsigned attempt_ms)
{
    etcd *c;
    char err[512];
    /* etcd_test.py's tls case gives the credentials this way. */
    etcd_options o = { .timeout_ms = timeout_ms, .attempt_ms = attempt_ms,
                       .tls_dir = getenv("FTVM_TEST_ETCD_TLS") };
    if (etcd_new(&c, base, endpoints, &o, err, sizeof(err)) < 0)
        evwait_die("etcd_new(%s): %s", endpoints, err);
    return c;
}

static void need(etcd_req *r, const char *err)
{
    if (!r)
        evwait_die("a request was refused: %s", err);
}

static answer do_create(etcd *c, const char *key, const char *value,
                        int64_t lease, double wait)
{
    answer a = { .create = true };
    char err[512];
    need(etcd_create_if_absent(c, key, value, strlen(value), lease, on_reply,
                               &a, err, sizeof(err)), err);
    if (a.done)
        evwait_die("a callback ran from inside the call that made the request");
    wait_all(&a, 1, wait, "create_if_absent");
    return a;
}

static answer do_get(etcd *c, const char *key)
{
    answer a = { 0 };
    char err[512];
    need(etcd_get(c, key, on_reply, &a, err, sizeof(err)), err);
    wait_all(&a, 1, 30, "get");
    return a;
}

static answer do_lease(etcd *c, char op, int64_t arg)
{
    answer a = { 0 };
    char err[512];
    etcd_req *r = op == 'g' ? etcd_lease_grant(c, arg, on_reply, &a, err,
                                               sizeof(err))
                : op == 'k' ? etcd_lease_keepalive(c, arg, on_reply, &a, err,
                                                   sizeof(err))
                : etcd_lease_revoke(c, arg, on_reply, &a, err, sizeof(err));
    need(r, err);
    wait_all(&a, 1, 30, "lease");
    return a;
}

static void expect_status(const answer *a, etcd_status s, const char *what)
{
    if (a->status != s)
        evwait_die("%s: %s, expected %s (%s)", what, etcd_status_name(a->status),
            etcd_status_name(s), a->err);
}

/* ---- cases ---- */

static int case_args(void)
{
    static const char *bad[] = {
        "", "https://127.0.0.1:2379", "127.0.0.1:2379", "http://",
        "http://127.0.0.1:2379/v3", "http://127.0.0.1:2379?x=1",
        "http://127.0.0.1:2379,", "http://u@127.0.0.1:2379",
        "http://127.0.0.1:0",
    };
    char err[512];
    etcd *c;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        if (etcd_new(&c, base, bad[i], NULL, err, sizeof(err)) == 0)
            evwait_die("endpoints \"%s\" accepted", bad[i]);
        if (!*err)
            evwait_die("endpoints \"%s\" refused without a message", bad[i]);
        printf("refused \"%s\": %s\n", bad[i], err);
    }
    char many[17 * 32] = "";
    for (int i = 0; i < 17; i++)
        snprintf(many + strlen(many), sizeof(many) - strlen(many),
                 "%shttp://127.0.0.1:%d", i ? "," : "", 2000 + i);
    if (etcd_new(&c, base, many, NULL, err, sizeof(err)) == 0)
        evwait_die("17 endpoints accepted");
    etcd_options o = { .timeout_ms = ETCD_MAX_TIMEOUT_MS + 1 };
    if (etcd_new(&c, base, "http://127.0.0.1:2379", &o, err,
                 sizeof(err)) == 0)
        evwait_die("a timeout over the maximum accepted");

    c = client("http://127.0.0.1:2379,http://[::1]:2380/", 0, 0);
    if (etcd_endpoints(c) != 2)
        evwait_die("two endpoints counted as %zu", etcd_endpoints(c));
    char big[ETCD_MAX_KEY + 2];
    memset(big, 'k', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    static char value[ETCD_MAX_VALUE + 1];
    memset(value, 'v', sizeof(value));
    struct {
        const char *key;
        size_t len;
    } refused[] = {
        { "", 1 }, { big, 1 }, { "k", 0 }, { "k", sizeof(value) },
    };
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        err[0] = '\0';
        if (etcd_create_if_absent(c, refused[i].key, value, refused[i].len,
                                  0, on_reply, NULL, err, sizeof(err)))
            evwait_die("create_if_absent case %zu accepted", i);
        if (!*err)
            evwait_die("create_if_absent case %zu refused without a message", i);
        printf("refused: %s\n", err);
    }
    if (etcd_get(c, big, on_reply, NULL, err, sizeof(err)) ||
        etcd_lease_grant(c, 0, on_reply, NULL, err, sizeof(err)) ||
        etcd_lease_keepalive(c, 0, on_reply, NULL, err, sizeof(err)) ||
        etcd_lease_revoke(c, -1, on_reply, NULL, err, sizeof(err)))
        evwait_die("a bad key, TTL or lease id was accepted");
    /* A pending request cancelled, and the client freed with one pending:
     * no callback, nothing left behind (ASan would say). */
    answer a = { 0 };
    etcd_req *r = etcd_get(c, "k", on_reply, &a, err, sizeof(err));
    need(r, err);
    etcd_cancel(r);
    need(etcd_get(c, "k", on_reply, &a, err, sizeof(err)), err);
    etcd_free(c);
    pause_s(0.1);
    if (a.done)
        evwait_die("a cancelled request's callback ran");
    return 0;
}

static int case_race(const char *eps_a, const char *eps_b, const char *key)
{
    etcd *ca = client(eps_a, 5000, 0), *cb = client(eps_b, 5000, 0);
    answer a[2 * RACERS] = { 0 };
    char values[2 * RACERS][32], err[512];
    for (int k = 0; k < 2 * RACERS; k++)
        a[k].create = true;
    /* Interleaved, all in flight at once on one loop. */
    /* Which client asks first in each pair varies from run to run. */
    srand((unsigned)getpid());
    for (int i = 0; i < RACERS; i++) {
        int first = rand() & 1;
        for (int j = 0; j < 2; j++) {
            int side = first ^ j, k = 2 * i + side;
            snprintf(values[k], sizeof(values[k]), "%s-%d",
                     side ? "b" : "a", i);
            need(etcd_create_if_absent(side ? cb : ca, key, values[k],
                                       strlen(values[k]), 0, on_reply, &a[k],
                                       err, sizeof(err)), err);
        }
    }
    wait_all(a, 2 * RACERS, 30, "the race");
    int winner = -1;
    for (int k = 0; k < 2 * RACERS; k++) {
        if (a[k].outcome == ETCD_WON) {
            if (winner >= 0)
                evwait_die("both %s and %s won", values[winner], values[k]);
            if (a[k].earlier || strcmp(a[k].value, values[k]) != 0)
                evwait_die("%s won with value \"%s\" (earlier %d)", values[k],
                    a[k].value, a[k].earlier);
            winner = k;
        } else if (a[k].outcome != ETCD_LOST) {
            evwait_die("%s: %s (%s)", values[k], etcd_outcome_name(a[k].outcome),
                a[k].err);
        }
    }
    if (winner < 0)
        evwait_die("nobody won");
    for (int k = 0; k < 2 * RACERS; k++) {
        if (k != winner && strcmp(a[k].value, values[winner]) != 0)
            evwait_die("%s lost to \"%s\", but %s won", values[k], a[k].value,
                values[winner]);
    }
    /* Asking again with the winner's value is a win (an earlier one);
     * with another, a loss naming the winner. */
    answer again = do_create(cb, key, values[winner], 0, 30);
    if (again.outcome != ETCD_WON || !again.earlier)
        evwait_die("the winner asking again: %s (earlier %d)",
            etcd_outcome_name(again.outcome), again.earlier);
    answer late = do_create(ca, key, "late", 0, 30);
    if (late.outcome != ETCD_LOST || strcmp(late.value, values[winner]) != 0)
        evwait_die("a late racer: %s naming \"%s\"", etcd_outcome_name(late.outcome),
            late.value);
    answer g = do_get(ca, key);
    expect_status(&g, ETCD_OK, "get");
    if (strcmp(g.value, values[winner]) != 0)
        evwait_die("get says \"%s\", the winner was %s", g.value, values[winner]);
    answer none = do_get(cb, "/ftvm-test/no-such-key");
    expect_status(&none, ETCD_NOT_FOUND, "get of a missing key");
    printf("winner %s\n", values[winner]);
    etcd_free(ca);
    etcd_free(cb);
    return 0;
}

static int case_create(const char *eps, const char *key, const char *value,
                       const char *expect)
{
    etcd *c = client(eps, 5000, 0);
    answer a = do_create(c, key, value, 0, 30);
    etcd_outcome want = strcmp(expect, "won") == 0 ? ETCD_WON : ETCD_LOST;
    if (a.outcome != want)
        evwait_die("create %s=%s: %s, expected %s (%s)", key, value,
            etcd_outcome_name(a.outcome), expect, a.err);
    printf("%s %s earlier=%d via %s\n", etcd_outcome_name(a.outcome),
           a.value, a.earlier, a.endpoint);
    etcd_free(c);
    return 0;
}

static int case_get(const char *eps, const char *key, const char *value)
{
    etcd *c = client(eps, 5000, 0);
    answer g = do_get(c, key);
    if (strcmp(value, "-") == 0) {
        expect_status(&g, ETCD_NOT_FOUND, "get");
    } else {
        expect_status(&g, ETCD_OK, "get");
        if (strcmp(g.value, value) != 0)
            evwait_die("get %s: \"%s\", expected \"%s\"", key, g.value, value);
    }
    etcd_free(c);
    return 0;
}

static int case_lease(const char *eps, const char *key)
{
    etcd *c = client(eps, 5000, 0);
    /* 1 s (etcd's minimum here), longer where keepalives may be slow. */
    answer g = do_lease(c, 'g', (int64_t)(scale + 0.999));
    expect_status(&g, ETCD_OK, "grant");
    if (g.lease <= 0 || g.ttl < 1)
        evwait_die("granted lease %lld with TTL %lld", (long long)g.lease,
            (long long)g.ttl);
    int64_t id = g.lease, ttl = g.ttl;
    answer w = do_create(c, key, "leased", id, 30);
    if (w.outcome != ETCD_WON)
        evwait_die("create under the lease: %s (%s)", etcd_outcome_name(w.outcome),
            w.err);
    /* Kept alive for well over its TTL, the key stays. */
    double until = evwait_now() + 2.5 * (double)ttl;
    while (evwait_now() < until) {
        answer k = do_lease(c, 'k', id);
        expect_status(&k, ETCD_OK, "keepalive");
        if (k.ttl < 1 || k.lease != id)
            evwait_die("keepalive of %lld: lease %lld TTL %lld", (long long)id,
                (long long)k.lease, (long long)k.ttl);
        pause_s((double)ttl / 4);
    }
    answer still = do_get(c, key);
    expect_status(&still, ETCD_OK, "the key while its lease is kept alive");
    if (still.lease != id)
        evwait_die("the key's lease is %lld, not %lld", (long long)still.lease,
            (long long)id);
    /* Left alone, it goes: wait for that (the leader checks expiry on
     * its own schedule). */
    double t0 = evwait_now(), deadline = t0 + (double)(ttl + 10) * scale;
    for (;;) {
        answer x = do_get(c, key);
        if (x.status == ETCD_NOT_FOUND)
            break;
        expect_status(&x, ETCD_OK, "get while the lease runs out");
        if (evwait_now() > deadline)
            evwait_die("the key outlived its lease by %.1f s", evwait_now() - t0);
        pause_s(0.1);
    }
    printf("the key went %.2f s after the last keepalive\n", evwait_now() - t0);
    answer gone = do_lease(c, 'k', id);
    expect_status(&gone, ETCD_NOT_FOUND, "keepalive of an expired lease");
    /* Revoked, a lease's key goes at once; revoking again finds nothing. */
    answer g2 = do_lease(c, 'g', 60);
    expect_status(&g2, ETCD_OK, "grant");
    answer w2 = do_create(c, key, "revoked", g2.lease, 30);
    if (w2.outcome != ETCD_WON)
        evwait_die("create under the second lease: %s",
            etcd_outcome_name(w2.outcome));
    answer rv = do_lease(c, 'r', g2.lease);
    expect_status(&rv, ETCD_OK, "revoke");
    answer after = do_get(c, key);
    expect_status(&after, ETCD_NOT_FOUND, "the key of a revoked lease");
    answer rv2 = do_lease(c, 'r', g2.lease);
    expect_status(&rv2, ETCD_NOT_FOUND, "revoking a revoked lease");
    etcd_free(c);
    return 0;
}

static int case_unknown(const char *eps, const char *key, const char *value,
                        unsigned timeout_ms)
{
    etcd *c = client(eps, timeout_ms, 0);
    double t0 = evwait_now();
    answer a = do_create(c, key, value, 0, timeout_ms / 1000.0 + 30);
    double took = a.at - t0;
    if (a.outcome != ETCD_UNKNOWN)
        evwait_die("without a quorum create_if_absent said %s (value \"%s\")",
            etcd_outcome_name(a.outcome), a.value);
    /* The deadline is the client's behaviour; the slack is the machine's. */
    if (took > timeout_ms / 1000.0 + 2 * scale)
        evwait_die("UNKNOWN came %.2f s after a %u ms deadline", took, timeout_ms);
    printf("unknown after %.2f s: %s\n", took, a.err);
    answer g = do_get(c, key);
    if (g.status != ETCD_FAILED)
        evwait_die("without a quorum get said %s", etcd_status_name(g.status));
    etcd_free(c);
    return 0;
}

static int case_survive(const char *eps, const char *down, const char *key)
{
    etcd *c = client(eps, 5000, 1000);
    answer a = do_create(c, key, "survivor", 0, 30);
    if (a.outcome != ETCD_WON)
        evwait_die("with one member down: %s (%s)", etcd_outcome_name(a.outcome),
            a.err);
    if (strcmp(a.endpoint, down) == 0)
        evwait_die("the dead member %s answered", down);
    answer g = do_get(c, key);
    expect_status(&g, ETCD_OK, "get with one member down");
    if (strcmp(g.value, "survivor") != 0)
        evwait_die("get: \"%s\"", g.value);
    printf("answered by %s\n", a.endpoint);
    etcd_free(c);
    return 0;
}

/* A port with nothing on it, and one whose listener never answers. */
static int closed_port(void)
{
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = { .sin_family = AF_INET,
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof(sa);
    if (s < 0 || bind(s, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
        getsockname(s, (struct sockaddr *)&sa, &len) < 0)
        evwait_die("a socket: %s", strerror(errno));
    close(s);
    return ntohs(sa.sin_port);
}

static int silent_listener(int *port)
{
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = { .sin_family = AF_INET,
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof(sa);
    if (s < 0 || bind(s, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
        listen(s, 16) < 0 ||
        getsockname(s, (struct sockaddr *)&sa, &len) < 0)
        evwait_die("a listener: %s", strerror(errno));
    *port = ntohs(sa.sin_port);
    return s;       /* never accepted: the kernel completes connections */
}

static int case_bogus(const char *real, const char *not_etcd,
                      const char *key)
{
    int silent_port, silent = silent_listener(&silent_port);
    char eps[2048], bad_only[1024];
    snprintf(bad_only, sizeof(bad_only),
             "http://127.0.0.1:%d,http://127.0.0.1:%d,%s", closed_port(),
             silent_port, not_etcd);
    snprintf(eps, sizeof(eps), "%s,%s", bad_only, real);
    /* Past a refused port, a silent one and a web server that is not
     * etcd, to the real one. */
    etcd *c = client(eps, 5000, 500);
    answer a = do_create(c, key, "past-the-bogus", 0, 30);
    if (a.outcome != ETCD_WON || strcmp(a.endpoint, real) != 0)
        evwait_die("past three bad endpoints: %s via %s (%s)",
            etcd_outcome_name(a.outcome), a.endpoint, a.err);
    etcd_free(c);
    /* Only bad ones: UNKNOWN by the deadline, never WON or LOST. */
    c = client(bad_only, 1500, 300);
    double t0 = evwait_now();
    answer u = do_create(c, key, "nobody", 0, 30);
    if (u.outcome != ETCD_UNKNOWN)
        evwait_die("with no etcd at all: %s", etcd_outcome_name(u.outcome));
    if (u.at - t0 > 1.5 + 2 * scale)
        evwait_die("UNKNOWN came %.2f s after a 1500 ms deadline", u.at - t0);
    printf("with no etcd: %s\n", u.err);
    answer k = do_lease(c, 'k', 12345);
    if (k.status != ETCD_FAILED)
        evwait_die("keepalive with no etcd: %s", etcd_status_name(k.status));
    etcd_free(c);
    close(silent);
    return 0;
}

/* ---- watch ---- */

#define MAX_SEEN 64

typedef struct seen {
    int n;
    char what[MAX_SEEN][300];   /* "PUT key=value" or "DELETE key" */
    int64_t rev[MAX_SEEN];
    int breaks;
    bool ended;
    char err[1024];
    etcdwatch *cancel_at_delete;    /* cancels itself on this DELETE */
    etcdwatch *w;
} seen;

static void on_event(void *opaque, const etcdwatch_event *ev)
{
    seen *s = opaque;
    if (s->n == MAX_SEEN)
        evwait_die("more than %d events", MAX_SEEN);
    if (s->n && ev->revision < s->rev[s->n - 1])
        evwait_die("revision %lld after %lld", (long long)ev->revision,
            (long long)s->rev[s->n - 1]);
    if (ev->type == ETCDWATCH_PUT)
        snprintf(s->what[s->n], sizeof(s->what[s->n]), "PUT %.*s=%.*s",
                 (int)ev->key_len, (const char *)ev->key,
                 (int)ev->value_len, (const char *)ev->value);
    else
        snprintf(s->what[s->n], sizeof(s->what[s->n]), "DELETE %.*s",
                 (int)ev->key_len, (const char *)ev->key);
    s->rev[s->n++] = ev->revision;
    printf("event r%lld %s\n", (long long)ev->revision, s->what[s->n - 1]);
    if (s->cancel_at_delete && ev->type == ETCDWATCH_DELETE) {
        etcdwatch_cancel(s->cancel_at_delete);
        s->w = NULL;
    }
}

static void on_watch_error(void *opaque, bool ended, const char *err)
{
    seen *s = opaque;
    if (s->ended)
        evwait_die("a callback after the end");
    s->breaks++;
    s->ended = ended;
    snprintf(s->err, sizeof(s->err), "%s", err);
    printf("watch %s: %s\n", ended ? "ended" : "broke", err);
    if (ended)
        s->w = NULL;
}

static bool pred_live(void *arg)
{
    return etcdwatch_live(arg);
}

typedef struct until_n {
    seen *s;
    int n;
} until_n;

static bool pred_n(void *arg)
{
    until_n *u = arg;
    return u->s->n >= u->n;
}

static bool pred_ended(void *arg)
{
    return ((seen *)arg)->ended;
}

static void wait_for(bool (*pred)(void *), void *arg, double seconds,
                     const char *what)
{
    evwait_until(base, pred, arg, seconds, what);
}

static void expect_seen(const seen *s, int i, const char *what)
{
    if (s->n <= i || strcmp(s->what[i], what) != 0)
        evwait_die("event %d: \"%s\", expected \"%s\"", i,
            s->n > i ? s->what[i] : "(none)", what);
}

static int case_watch(const char *eps, int pid, const char *prefix)
{
    etcd *c = client(eps, 5000, 500);
    seen s = { 0 };
    char err[512], key[300], outside[300];
    s.w = etcdwatch_new(c, prefix, 0, on_event, on_watch_error, &s, err,
                        sizeof(err));
    if (!s.w)
        evwait_die("etcdwatch_new: %s", err);
    wait_for(pred_live, s.w, 30, "the watch to be created");
    char first[256];
    snprintf(first, sizeof(first), "%.*s", (int)strcspn(eps, ","), eps);
    if (strcmp(etcdwatch_endpoint(s.w), first) != 0)
        evwait_die("watching via %s, not the first endpoint %s",
            etcdwatch_endpoint(s.w), first);
    /* A key beside the prefix, not under it, is not seen. */
    snprintf(outside, sizeof(outside), "%.*sx", (int)strlen(prefix) - 1,
             prefix);
    if (do_create(c, outside, "no", 0, 30).outcome != ETCD_WON)
        evwait_die("create %s", outside);
    snprintf(key, sizeof(key), "%sa", prefix);
    if (do_create(c, key, "1", 0, 30).outcome != ETCD_WON)
        evwait_die("create %s", key);
    answer g = do_lease(c, 'g', 60);
    expect_status(&g, ETCD_OK, "grant");
    snprintf(key, sizeof(key), "%sb", prefix);
    if (do_create(c, key, "2", g.lease, 30).outcome != ETCD_WON)
        evwait_die("create %s", key);
    answer rv = do_lease(c, 'r', g.lease);
    expect_status(&rv, ETCD_OK, "revoke");
    until_n three = { &s, 3 };
    wait_for(pred_n, &three, 30, "three events");
    char want[300];
    snprintf(want, sizeof(want), "PUT %sa=1", prefix);
    expect_seen(&s, 0, want);
    snprintf(want, sizeof(want), "PUT %sb=2", prefix);
    expect_seen(&s, 1, want);
    snprintf(want, sizeof(want), "DELETE %sb", prefix);
    expect_seen(&s, 2, want);
    /* The watch's member dies: the watch breaks, carries on from another
     * member, and sees what was written meanwhile, once. */
    if (kill(pid, SIGKILL) < 0)
        evwait_die("kill %d: %s", pid, strerror(errno));
    snprintf(key, sizeof(key), "%sc", prefix);
    if (do_create(c, key, "3", 0, 30).outcome != ETCD_WON)
        evwait_die("create %s with a member down", key);
    snprintf(key, sizeof(key), "%sd", prefix);
    if (do_create(c, key, "4", 0, 30).outcome != ETCD_WON)
        evwait_die("create %s with a member down", key);
    until_n five = { &s, 5 };
    wait_for(pred_n, &five, 30, "the events after the member died");
    snprintf(want, sizeof(want), "PUT %sc=3", prefix);
    expect_seen(&s, 3, want);
    snprintf(want, sizeof(want), "PUT %sd=4", prefix);
    expect_seen(&s, 4, want);
    if (s.breaks < 1 || s.ended)
        evwait_die("the watch's member died: %d breaks, ended %d", s.breaks,
            s.ended);
    if (strcmp(etcdwatch_endpoint(s.w), first) == 0)
        evwait_die("still watching via the dead member");
    /* Cancelled from inside its own event callback. */
    s.cancel_at_delete = s.w;
    answer g2 = do_lease(c, 'g', 60);
    snprintf(key, sizeof(key), "%se", prefix);
    if (do_create(c, key, "5", g2.lease, 30).outcome != ETCD_WON)
        evwait_die("create %s", key);
    do_lease(c, 'r', g2.lease);
    until_n seven = { &s, 7 };
    wait_for(pred_n, &seven, 30, "the last two events");
    snprintf(key, sizeof(key), "%sf", prefix);
    if (do_create(c, key, "6", 0, 30).outcome != ETCD_WON)
        evwait_die("create %s", key);
    pause_s(0.5);
    if (s.n != 7)
        evwait_die("%d events after the watch was cancelled", s.n - 7);
    etcd_free(c);
    return 0;
}

static int case_watch_old(const char *eps, const char *prefix, int64_t rev)
{
    etcd *c = client(eps, 5000, 500);
    seen s = { 0 };
    char err[512];
    s.w = etcdwatch_new(c, prefix, rev, on_event, on_watch_error, &s, err,
                        sizeof(err));
    if (!s.w)
        evwait_die("etcdwatch_new: %s", err);
    wait_for(pred_ended, &s, 30, "the watch to end");
    if (!strstr(s.err, "compacted"))
        evwait_die("ended, but not for compaction: %s", s.err);
    if (etcdwatch_new(c, "", 0, on_event, on_watch_error, &s, err,
                      sizeof(err)) ||
        etcdwatch_new(c, prefix, -1, on_event, on_watch_error, &s, err,
                      sizeof(err)))
        evwait_die("a bad watch was accepted");
    etcd_free(c);
    return 0;
}

int main(int argc, char **argv)
{
    scale = evwait_scale();
    /* As ftvm's processes (witness/etcd.h): a member's close is an error. */
    signal(SIGPIPE, SIG_IGN);
    setvbuf(stdout, NULL, _IOLBF, 0);
    base = event_base_new();
    if (!base)
        evwait_die("event_base_new");
    const char *c = argc > 1 ? argv[1] : "";
    int rc = 2;
    if (!strcmp(c, "args") && argc == 2)
        rc = case_args();
    else if (!strcmp(c, "race") && argc == 5)
        rc = case_race(argv[2], argv[3], argv[4]);
    else if (!strcmp(c, "create") && argc == 6)
        rc = case_create(argv[2], argv[3], argv[4], argv[5]);
    else if (!strcmp(c, "get") && argc == 5)
        rc = case_get(argv[2], argv[3], argv[4]);
    else if (!strcmp(c, "lease") && argc == 4)
        rc = case_lease(argv[2], argv[3]);
    else if (!strcmp(c, "unknown") && argc == 6)
        rc = case_unknown(argv[2], argv[3], argv[4],
                          (unsigned)atoi(argv[5]));
    else if (!strcmp(c, "survive") && argc == 5)
        rc = case_survive(argv[2], argv[3], argv[4]);
    else if (!strcmp(c, "watch") && argc == 5)
        rc = case_watch(argv[2], atoi(argv[3]), argv[4]);
    else if (!strcmp(c, "watch-old") && argc == 5)
        rc = case_watch_old(argv[2], argv[3], atoll(argv[4]));
    else if (!strcmp(c, "bogus") && argc == 5)
        rc = case_bogus(argv[2], argv[3], argv[4]);
    else
        fprintf(stderr, "usage: see the top of test_etcd.c\n");
    event_base_free(base);
    return rc;
}
