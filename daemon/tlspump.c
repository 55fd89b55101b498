/* tlspump: see tlspump.h. */
#include "daemon/tlspump.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "daemon/log.h"

/*
 * Each direction's buffer: a few TLS records (16 KiB each), enough that
 * a package streams at the cipher's speed.
 */
#define PUMP_BUF (256 * 1024)

typedef struct dir {
    uint8_t *buf;
    size_t off, len;        /* bytes [off, off + len) wait to go */
    bool eof;               /* the source has ended */
    bool done;              /* ... and the end went on */
} dir;

typedef struct pump {
    tls_session *s;
    SSL *ssl;
    int tcp, plain;
    char who[96];
    dir up;                 /* plain -> TLS */
    dir down;               /* TLS -> plain */
    short tcp_ev, plain_ev; /* what the next poll waits for */
    bool failed;
} pump;

static void fail(pump *p, const char *what, int ret)
{
    if (!p->failed) {
        char why[400];
        if (ret <= 0)
            tls_session_why(p->s, ret, why, sizeof(why));
        else
            snprintf(why, sizeof(why), "%s", strerror(ret));
        log_msg("%s: TLS %s: %s", p->who, what, why);
    }
    p->failed = true;
}

/* One step of plain -> TLS; whether anything moved. */
static bool step_up(pump *p)
{
    dir *d = &p->up;
    if (d->len == 0 && !d->eof) {
        ssize_t n = recv(p->plain, d->buf, PUMP_BUF, MSG_DONTWAIT);
        if (n > 0) {
            d->off = 0;
            d->len = (size_t)n;
            return true;
        }
        if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK &&
                       errno != EINTR)) {
            d->eof = true;      /* the role closed: that is its EOF */
            return true;
        }
        p->plain_ev |= POLLIN;
        return false;
    }
    if (d->len > 0) {
        ERR_clear_error();
        int n = SSL_write(p->ssl, d->buf + d->off, (int)d->len);
        if (n > 0) {
            d->off += (size_t)n;
            d->len -= (size_t)n;
            return true;
        }
        int e = SSL_get_error(p->ssl, n);
        if (e == SSL_ERROR_WANT_WRITE)
            p->tcp_ev |= POLLOUT;
        else if (e == SSL_ERROR_WANT_READ)
            p->tcp_ev |= POLLIN;
        else
            fail(p, "sending", n);
        return false;
    }
    if (d->eof && !d->done) {
        ERR_clear_error();
        int n = SSL_shutdown(p->ssl);
        if (n < 0) {
            int e = SSL_get_error(p->ssl, n);
            if (e == SSL_ERROR_WANT_WRITE) {
                p->tcp_ev |= POLLOUT;
                return false;
            }
            if (e == SSL_ERROR_WANT_READ) {
                p->tcp_ev |= POLLIN;
                return false;
            }
            /* The peer is gone already: nothing more to tell it. */
        }
        shutdown(p->tcp, SHUT_WR);
        d->done = true;
        return true;
    }
    return false;
}

/* One step of TLS -> plain; whether anything moved. */
static bool step_down(pump *p)
{
    dir *d = &p->down;
    if (d->len == 0 && !d->eof) {
        /*
         * As many records as have come (one SSL_read gives one): fewer,
         * larger writes to the pair.
         */
        d->off = 0;
        int n;
        do {
            ERR_clear_error();
            n = SSL_read(p->ssl, d->buf + d->len, (int)(PUMP_BUF - d->len));
            if (n > 0)
                d->len += (size_t)n;
        } while (n > 0 && PUMP_BUF - d->len >= 16384);
        if (n > 0)
            return true;
        int e = SSL_get_error(p->ssl, n);
        if (e == SSL_ERROR_WANT_READ) {
            p->tcp_ev |= POLLIN;
            return d->len > 0;
        }
        if (e == SSL_ERROR_WANT_WRITE) {
            p->tcp_ev |= POLLOUT;
            return d->len > 0;
        }
        /* The end: what came before it still goes to the role. */
        if (e != SSL_ERROR_ZERO_RETURN) {
            unsigned long err = ERR_peek_last_error();
            /* A TCP end without close_notify: the role says what it means. */
            if (err || (e == SSL_ERROR_SYSCALL && errno))
                fail(p, "receiving", n);
            else
                ERR_clear_error();
        }
        d->eof = true;
        return true;
    }
    if (d->len > 0) {
        ssize_t n = send(p->plain, d->buf + d->off, d->len,
                         MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n > 0) {
            d->off += (size_t)n;
            d->len -= (size_t)n;
            return true;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK ||
                      errno == EINTR)) {
            p->plain_ev |= POLLOUT;
            return false;
        }
        /* The role closed its end: it wants no more. */
        p->failed = true;
        return false;
    }
    if (d->eof && !d->done) {
        shutdown(p->plain, SHUT_WR);
        d->done = true;
        return true;
    }
    return false;
}

static void *pump_main(void *arg)
{
    pump *p = arg;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &set, NULL);

    while (!p->failed && !(p->up.done && p->down.done)) {
        p->tcp_ev = p->plain_ev = 0;
        /*
         * Until neither direction can move without waiting (what SSL
         * holds decrypted is invisible to poll, so it must be taken
         * first).
         */
        bool more = true;
        for (int i = 0; i < 64 && more && !p->failed; i++) {
            p->tcp_ev = p->plain_ev = 0;
            bool a = step_up(p);
            bool b = step_down(p);
            more = a || b;
        }
        if (p->failed || (p->up.done && p->down.done))
            break;
        if (more)
            continue;
        /*
         * The TCP socket only when a step waits on it: its hang-up must
         * not spin the loop while the role is slow to take what came.
         */
        struct pollfd pf[2] = {
            { .fd = p->tcp_ev ? p->tcp : -1, .events = p->tcp_ev },
            { .fd = p->plain, .events = p->plain_ev },
        };
        if (poll(pf, 2, -1) < 0 && errno != EINTR) {
            fail(p, "waiting", errno);
            break;
        }
        /*
         * The pair hung up where nothing was asked of it: the role closed
         * its end, and no step would notice.
         */
        if ((pf[1].revents & (POLLHUP | POLLERR)) &&
            !(pf[1].revents & pf[1].events))
            p->failed = true;
    }
    if (p->failed) {
        shutdown(p->tcp, SHUT_RDWR);
        shutdown(p->plain, SHUT_RDWR);
    }
    close(p->plain);
    close(p->tcp);
    tls_session_free(p->s);
    free(p->up.buf);
    free(p->down.buf);
    free(p);
    return NULL;
}

int tlspump_start(tls_session *s, int tcp_fd, const char *who,
                  int *plain_fd, char *err, size_t errlen)
{
    int sv[2] = { -1, -1 };
    pump *p = calloc(1, sizeof(*p));
    int e = ENOMEM;
    if (p) {
        p->up.buf = malloc(PUMP_BUF);
        p->down.buf = malloc(PUMP_BUF);
    }
    if (!p || !p->up.buf || !p->down.buf)
        goto fail;
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
        e = errno;
        goto fail;
    }
    int fl = fcntl(sv[1], F_GETFL);
    if (fl < 0 || fcntl(sv[1], F_SETFL, fl | O_NONBLOCK) < 0) {
        e = errno;
        goto fail;
    }
    p->s = s;
    p->ssl = tls_session_ssl(s);
    p->tcp = tcp_fd;
    p->plain = sv[1];
    snprintf(p->who, sizeof(p->who), "%s", who);
    pthread_attr_t a;
    pthread_attr_init(&a);
    pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
    pthread_t t;
    e = pthread_create(&t, &a, pump_main, p);
    pthread_attr_destroy(&a);
    if (e != 0)
        goto fail;
    *plain_fd = sv[0];
    return 0;
fail:
    snprintf(err, errlen, "%s: cannot start the TLS pump: %s", who,
             strerror(e));
    if (sv[0] >= 0) {
        close(sv[0]);
        close(sv[1]);
    }
    if (p) {
        free(p->up.buf);
        free(p->down.buf);
        free(p);
    }
    tls_session_free(s);
    close(tcp_fd);
    return -e;
}
