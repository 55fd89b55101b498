/* peer: see peer.h. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "tests/unit/peer.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

uint64_t peer_now_ns;
uint64_t peer_setup_timeout_ns;
bool peer_tcp;

/* A connected TCP pair over loopback, as a real link is. */
static void tcp_pair(int sv[2])
{
    struct sockaddr_in a = { .sin_family = AF_INET,
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t al = sizeof(a);
    int l = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(l >= 0);
    assert_int_equal(bind(l, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(l, 1), 0);
    assert_int_equal(getsockname(l, (struct sockaddr *)&a, &al), 0);
    sv[1] = socket(AF_INET, SOCK_STREAM, 0);
    assert_int_equal(connect(sv[1], (struct sockaddr *)&a, sizeof(a)), 0);
    sv[0] = accept(l, NULL, NULL);
    assert_true(sv[0] >= 0);
    close(l);
}
const pairing peer_pair = {
    .id = { 0xfe, 0xed, 0xfa, 0xce, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12 },
    .name = "test-vm",
    .generation = 1,
};

uint64_t peer_clock(void)
{
    return peer_now_ns;
}

void peer_open(peer *p, uint64_t failure_timeout_ns, uint64_t heartbeat_ns,
               uint64_t (*clock)(void))
{
    int sv[2];
    char err[256];
    memset(p, 0, sizeof(*p));
    peer_now_ns = 1000000000u;
    if (peer_tcp)
        tcp_pair(sv);
    else
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    p->fd = sv[1];
    p->secondary_fd = sv[0];
    p->base = event_base_new();
    assert_non_null(p->base);
    connection_opts o = { .failure_timeout_ns = failure_timeout_ns,
                          .heartbeat_ns = heartbeat_ns,
                          .setup_timeout_ns = peer_setup_timeout_ns,
                          .clock = clock ? clock : peer_clock };
    int r = connection_new(&p->conn, p->base, sv[0], PEER_NAME, &o, err,
                           sizeof(err));
    if (r < 0)
        fail_msg("connection_new: %s", err);
}

void peer_close(peer *p)
{
    connection_free(p->conn);
    event_base_free(p->base);
    close(p->fd);
}

int peer_next(peer *p, retpath_msg *m)
{
    char err[256];
    for (;;) {
        int n = retpath_parse(p->buf, p->len, m, err, sizeof(err));
        if (n < 0)
            fail_msg("%s", err);
        if (n > 0) {
            memmove(p->buf, p->buf + n, p->len - (size_t)n);
            p->len -= (size_t)n;
            return 1;
        }
        ssize_t got = recv(p->fd, p->buf + p->len, sizeof(p->buf) - p->len,
                           MSG_DONTWAIT);
        if (got == 0)
            return -1;
        if (got < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return 0;
            fail_msg("recv: %s", strerror(errno));
        }
        p->len += (size_t)got;
    }
}
