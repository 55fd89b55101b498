/*
 * Unit tests for daemon/tls and daemon/tlspump: the settings' rules, what
 * counts as loopback, credentials that do not load, and real handshakes
 * over a socket pair with certificates made at test time by
 * scripts/make-certs.sh (FTVM_MAKE_CERTS names it): one that succeeds and
 * carries data both ways through the pumps, ends included, and refusals
 * with the words the operator reads (another CA, an expired certificate,
 * a name that does not match, a plaintext peer, a peer that never
 * finishes).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "daemon/tls.h"
#include "daemon/tlspump.h"
#include "vm/mono.h"

static char dir[256];

static int make_certs(void **state)
{
    (void)state;
    const char *script = getenv("FTVM_MAKE_CERTS");
    if (!script)
        return -1;
    snprintf(dir, sizeof(dir), "/tmp/ftvm-test-tls-XXXXXX");
    if (!mkdtemp(dir))
        return -1;
    char cmd[2048];
    snprintf(cmd, sizeof(cmd),
             "sh %s %s/pair primary secondary >/dev/null && "
             "sh %s --expired %s/pair old >/dev/null && "
             "sh %s %s/rogue primary >/dev/null", script, dir, script, dir,
             script, dir);
    return system(cmd) == 0 ? 0 : -1;
}

static int remove_certs(void **state)
{
    (void)state;
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static tls_ctx *ctx(tls_role role, const char *node, const char *peer)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", dir, node);
    tls_opts o = { .creds = path, .peer = peer };
    tls_ctx *c = NULL;
    char err[512];
    int r = tls_ctx_new(&c, role, &o, err, sizeof(err));
    if (r < 0)
        fail_msg("%s", err);
    return c;
}

/* ---- a handshake between two threads ---- */

typedef struct side {
    tls_ctx *c;
    int fd;
    const char *peer_name;
    uint64_t timeout_ns;
    tls_session *s;
    int rc;
    char err[512];
} side;

static void *run_side(void *arg)
{
    side *x = arg;
    x->rc = tls_handshake(x->c, x->fd, "peer", x->peer_name,
                          mono_ns() + (x->timeout_ns ? x->timeout_ns
                                                     : 5000000000ull),
                          NULL, NULL, &x->s, x->err, sizeof(x->err));
    return NULL;
}

/* Both handshakes, the server on a thread; fds stay open. */
static void handshake(side *cl, side *sv)
{
    int sp[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sp), 0);
    cl->fd = sp[0];
    sv->fd = sp[1];
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, run_side, sv), 0);
    run_side(cl);
    if (cl->rc < 0)
        shutdown(cl->fd, SHUT_RDWR);    /* the server must not wait on */
    pthread_join(t, NULL);
}

static void done(side *cl, side *sv)
{
    tls_session_free(cl->s);
    tls_session_free(sv->s);
    close(cl->fd);
    close(sv->fd);
    tls_ctx_free(cl->c);
    tls_ctx_free(sv->c);
}

/* ---- cases ---- */

static void test_opts(void **state)
{
    (void)state;
    char err[256];
    tls_opts none = { 0 }, both = { .creds = "d", .insecure = true },
             peer = { .peer = "x", .insecure = true },
             ok = { .creds = "d", .peer = "x" }, plain = { .insecure = true };
    assert_int_equal(tls_opts_check(&none, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "--tls-creds"));
    assert_non_null(strstr(err, "--insecure"));
    assert_int_equal(tls_opts_check(&both, err, sizeof(err)), -EINVAL);
    assert_int_equal(tls_opts_check(&peer, err, sizeof(err)), -EINVAL);
    assert_int_equal(tls_opts_check(&ok, err, sizeof(err)), 0);
    assert_int_equal(tls_opts_check(&plain, err, sizeof(err)), 0);
}

static void test_loopback(void **state)
{
    (void)state;
    assert_true(tls_loopback_addr("127.0.0.1:4000"));
    assert_true(tls_loopback_addr("127.1.2.3:4000"));
    assert_true(tls_loopback_addr("[::1]:4000"));
    assert_false(tls_loopback_addr(":4000"));
    assert_false(tls_loopback_addr("0.0.0.0:4000"));
    assert_false(tls_loopback_addr("[::]:4000"));
    assert_false(tls_loopback_addr("192.0.2.1:4000"));
    assert_false(tls_loopback_addr("[2001:db8::1]:4000"));
    assert_false(tls_loopback_addr("nonsense"));
    assert_false(tls_loopback_host(""));
}

static void test_missing_creds(void **state)
{
    (void)state;
    char path[1024], err[512];
    snprintf(path, sizeof(path), "%s/none", dir);
    tls_opts o = { .creds = path };
    tls_ctx *c = NULL;
    assert_true(tls_ctx_new(&c, TLS_SERVER, &o, err, sizeof(err)) < 0);
    assert_null(c);
    assert_non_null(strstr(err, "ca.pem"));
    /* A key that is not the certificate's. */
    char cmd[2048];
    snprintf(cmd, sizeof(cmd), "mkdir -p %s/mixed && cp %s/pair/primary/*.pem "
             "%s/mixed/ && cp %s/rogue/primary/key.pem %s/mixed/", dir, dir,
             dir, dir, dir);
    assert_int_equal(system(cmd), 0);
    snprintf(path, sizeof(path), "%s/mixed", dir);
    assert_true(tls_ctx_new(&c, TLS_CLIENT, &o, err, sizeof(err)) < 0);
    assert_non_null(strstr(err, "key.pem"));
}

typedef struct writer {
    int fd;
    const uint8_t *buf;
    size_t len;
    int rc;
} writer;

/* All of buf, then EOF. */
static void *write_all(void *arg)
{
    writer *w = arg;
    size_t off = 0;
    while (off < w->len) {
        ssize_t n = write(w->fd, w->buf + off, w->len - off);
        if (n <= 0) {
            w->rc = -1;
            return NULL;
        }
        off += (size_t)n;
    }
    shutdown(w->fd, SHUT_WR);
    return NULL;
}

/* The handshake, then bytes both ways through the pumps, and the ends. */
static void test_pump(void **state)
{
    (void)state;
    side cl = { .c = ctx(TLS_CLIENT, "pair/primary", NULL),
                .peer_name = "secondary" };
    side sv = { .c = ctx(TLS_SERVER, "pair/secondary", "primary") };
    handshake(&cl, &sv);
    assert_int_equal(cl.rc, 0);
    assert_int_equal(sv.rc, 0);
    char what[160];
    tls_session_describe(cl.s, what, sizeof(what));
    assert_non_null(strstr(what, "TLSv1.3"));
    int pc, ps;
    char err[256];
    assert_int_equal(tlspump_start(cl.s, cl.fd, "secondary", &pc, err,
                                   sizeof(err)), 0);
    assert_int_equal(tlspump_start(sv.s, sv.fd, "primary", &ps, err,
                                   sizeof(err)), 0);
    /* 4 MiB one way: more than every buffer on the way holds. */
    size_t n = 4 << 20;
    uint8_t *buf = malloc(n), *got = malloc(n);
    assert_non_null(buf);
    assert_non_null(got);
    for (size_t i = 0; i < n; i++)
        buf[i] = (uint8_t)(i * 7 + (i >> 13));
    writer w = { .fd = pc, .buf = buf, .len = n };
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, write_all, &w), 0);
    size_t off = 0;
    for (;;) {
        ssize_t r = read(ps, got + off, n - off);
        assert_true(r >= 0);
        if (r == 0)
            break;
        off += (size_t)r;
    }
    assert_int_equal(off, n);           /* then EOF: close_notify came */
    assert_memory_equal(buf, got, n);
    /* The other way, after the first has ended. */
    assert_int_equal(write(ps, "ACK", 3), 3);
    shutdown(ps, SHUT_WR);
    char small[8];
    ssize_t r = 0, got_n = 0;
    while ((r = read(pc, small + got_n, sizeof(small) - (size_t)got_n)) > 0)
        got_n += r;
    assert_int_equal(got_n, 3);
    assert_memory_equal(small, "ACK", 3);
    pthread_join(t, NULL);
    assert_int_equal(w.rc, 0);
    close(pc);
    close(ps);
    free(buf);
    free(got);
    tls_ctx_free(cl.c);
    tls_ctx_free(sv.c);
}

static void test_other_ca(void **state)
{
    (void)state;
    side cl = { .c = ctx(TLS_CLIENT, "rogue/primary", NULL) };
    side sv = { .c = ctx(TLS_SERVER, "pair/secondary", NULL) };
    handshake(&cl, &sv);
    assert_int_equal(cl.rc, -EPROTO);
    assert_non_null(strstr(cl.err, "not signed by our CA"));
    assert_int_equal(sv.rc, -EPROTO);
    assert_non_null(strstr(sv.err, "unknown CA"));
    done(&cl, &sv);
}

static void test_expired(void **state)
{
    (void)state;
    side cl = { .c = ctx(TLS_CLIENT, "pair/old", NULL) };
    side sv = { .c = ctx(TLS_SERVER, "pair/secondary", NULL) };
    handshake(&cl, &sv);
    assert_int_equal(sv.rc, -EPROTO);
    assert_non_null(strstr(sv.err, "certificate has expired"));
    done(&cl, &sv);
}

static void test_wrong_name(void **state)
{
    (void)state;
    side cl = { .c = ctx(TLS_CLIENT, "pair/primary", NULL),
                .peer_name = "elsewhere" };
    side sv = { .c = ctx(TLS_SERVER, "pair/secondary", NULL) };
    handshake(&cl, &sv);
    assert_int_equal(cl.rc, -EPROTO);
    assert_non_null(strstr(cl.err, "hostname mismatch"));
    assert_non_null(strstr(cl.err, "elsewhere"));
    assert_non_null(strstr(sv.err, "bad certificate"));
    done(&cl, &sv);
    /* --tls-peer wins over the name the caller gives (the host). */
    cl = (side){ .c = ctx(TLS_CLIENT, "pair/primary", "other"),
                 .peer_name = "secondary" };
    sv = (side){ .c = ctx(TLS_SERVER, "pair/secondary", NULL) };
    handshake(&cl, &sv);
    assert_int_equal(cl.rc, -EPROTO);
    assert_non_null(strstr(cl.err, "other"));
    done(&cl, &sv);
}

static void test_plaintext_peer(void **state)
{
    (void)state;
    side sv = { .c = ctx(TLS_SERVER, "pair/secondary", NULL) };
    int sp[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sp), 0);
    assert_int_equal(write(sp[0], "QEVM\0\0\0\3ftvm-vm", 15), 15);
    sv.fd = sp[1];
    run_side(&sv);
    assert_int_equal(sv.rc, -EPROTO);
    assert_non_null(strstr(sv.err, "does not speak TLS"));
    close(sp[0]);
    close(sp[1]);
    tls_ctx_free(sv.c);
}

static void test_deadline(void **state)
{
    (void)state;
    side sv = { .c = ctx(TLS_SERVER, "pair/secondary", NULL),
                .timeout_ns = 100000000u };
    int sp[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sp), 0);
    /* A record header's first byte, and nothing more. */
    assert_int_equal(write(sp[0], "\x16", 1), 1);
    sv.fd = sp[1];
    uint64_t t0 = mono_ns();
    run_side(&sv);
    assert_int_equal(sv.rc, -ETIMEDOUT);
    assert_true(mono_ns() - t0 >= 100000000u);
    assert_non_null(strstr(sv.err, "no TLS handshake within the deadline"));
    close(sp[0]);
    close(sp[1]);
    tls_ctx_free(sv.c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_opts),
        cmocka_unit_test(test_loopback),
        cmocka_unit_test(test_missing_creds),
        cmocka_unit_test(test_pump),
        cmocka_unit_test(test_other_ca),
        cmocka_unit_test(test_expired),
        cmocka_unit_test(test_wrong_name),
        cmocka_unit_test(test_plaintext_peer),
        cmocka_unit_test(test_deadline),
    };
    return cmocka_run_group_tests(tests, make_certs, remove_certs);
}
