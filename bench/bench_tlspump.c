/*
 * bench_tlspump: what the TLS pumps alone can carry, beside a plain TCP
 * connection, on 127.0.0.1: MIB MiB written by one thread into the
 * primary's end, read by another from the secondary's, through a real
 * handshake (credentials DIR/primary and DIR/secondary, as
 * scripts/make-certs.sh DIR primary secondary makes them) and the two
 * pumps of daemon/tlspump.h; then the same over the TCP connection
 * itself.  Prints MB/s and the process's CPU seconds for each.
 *
 *   build/bench/bench_tlspump DIR [MIB]        (default 1024)
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "daemon/tls.h"
#include "daemon/tlspump.h"
#include "vm/mono.h"

#define CHUNK (1 << 20)

typedef struct side {
    tls_ctx *c;
    int fd;
    tls_session *s;
    int rc;
    char err[512];
} side;

static void *handshake(void *arg)
{
    side *x = arg;
    x->rc = tls_handshake(x->c, x->fd, "bench", NULL,
                          mono_ns() + 5000000000ull, NULL, NULL, &x->s,
                          x->err, sizeof(x->err));
    return NULL;
}

typedef struct writer {
    int fd;
    size_t len;
} writer;

static void *write_all(void *arg)
{
    writer *w = arg;
    char *b = malloc(CHUNK);
    if (!b)
        return NULL;
    memset(b, 0x5a, CHUNK);
    for (size_t off = 0; off < w->len;) {
        size_t n = w->len - off < CHUNK ? w->len - off : CHUNK;
        ssize_t r = write(w->fd, b, n);
        if (r <= 0)
            break;
        off += (size_t)r;
    }
    shutdown(w->fd, SHUT_WR);
    free(b);
    return NULL;
}

static double cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec +
           (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

/* A connected TCP pair on 127.0.0.1, TCP_NODELAY as ftvm sets it. */
static void tcp_pair(int *a, int *b)
{
    int l = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    struct sockaddr_in sa = { .sin_family = AF_INET,
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof(sa);
    if (l < 0 || bind(l, (void *)&sa, sizeof(sa)) < 0 || listen(l, 1) < 0 ||
        getsockname(l, (void *)&sa, &len) < 0) {
        perror("bench_tlspump: listening");
        exit(1);
    }
    *a = socket(AF_INET, SOCK_STREAM, 0);
    if (*a < 0 || connect(*a, (void *)&sa, sizeof(sa)) < 0 ||
        (*b = accept(l, NULL, NULL)) < 0) {
        perror("bench_tlspump: connecting");
        exit(1);
    }
    setsockopt(*a, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    setsockopt(*b, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    close(l);
}

static void run(const char *what, int in, int out, size_t len)
{
    writer w = { .fd = in, .len = len };
    char *b = malloc(CHUNK);
    double c0 = cpu_s();
    uint64_t t0 = mono_ns();
    pthread_t t;
    if (!b || pthread_create(&t, NULL, write_all, &w) != 0)
        exit(1);
    size_t got = 0;
    for (;;) {
        ssize_t r = read(out, b, CHUNK);
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    pthread_join(t, NULL);
    double s = (mono_ns() - t0) / 1e9, cpu = cpu_s() - c0;
    printf("%-9s %6zu MiB in %6.3f s: %7.0f MB/s, %5.2f CPU s (%.2f ms "
           "per MiB)\n", what, got >> 20, s, got / s / 1e6, cpu,
           cpu * 1e3 / (double)(got >> 20 ? got >> 20 : 1));
    free(b);
}

static tls_ctx *ctx(tls_role role, const char *dir, const char *node)
{
    char path[4096], err[512];
    snprintf(path, sizeof(path), "%s/%s", dir, node);
    tls_opts o = { .creds = path };
    tls_ctx *c;
    if (tls_ctx_new(&c, role, &o, err, sizeof(err)) < 0) {
        fprintf(stderr, "bench_tlspump: %s\n", err);
        exit(1);
    }
    return c;
}

int main(int argc, char **argv)
{
    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: bench_tlspump DIR [MIB]\n");
        return 2;
    }
    size_t len = (size_t)(argc == 3 ? atol(argv[2]) : 1024) << 20;
    int a, b;
    tcp_pair(&a, &b);
    side cl = { .c = ctx(TLS_CLIENT, argv[1], "primary"), .fd = a };
    side sv = { .c = ctx(TLS_SERVER, argv[1], "secondary"), .fd = b };
    pthread_t t;
    pthread_create(&t, NULL, handshake, &sv);
    handshake(&cl);
    pthread_join(t, NULL);
    if (cl.rc < 0 || sv.rc < 0) {
        fprintf(stderr, "bench_tlspump: %s %s\n", cl.err, sv.err);
        return 1;
    }
    char what[160], err[256];
    tls_session_describe(cl.s, what, sizeof(what));
    int pa, pb;
    if (tlspump_start(cl.s, a, "secondary", &pa, err, sizeof(err)) < 0 ||
        tlspump_start(sv.s, b, "primary", &pb, err, sizeof(err)) < 0) {
        fprintf(stderr, "bench_tlspump: %s\n", err);
        return 1;
    }
    printf("%s\n", what);
    run("TLS pumps", pa, pb, len);
    close(pa);
    close(pb);
    tcp_pair(&a, &b);
    run("plain TCP", a, b, len);
    close(a);
    close(b);
    tls_ctx_free(cl.c);
    tls_ctx_free(sv.c);
    return 0;
}
