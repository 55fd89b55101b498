/* tlsaccept: see tlsaccept.h. */
#include "daemon/tlsaccept.h"

#include <errno.h>
#include <event2/event.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include "daemon/log.h"
#include "daemon/tlspump.h"
#include "vm/mono.h"

typedef enum slot_state {
    SLOT_FREE,
    SLOT_HANDSHAKE,     /* its thread runs */
    SLOT_DONE,          /* its thread has ended; the loop joins it */
} slot_state;

typedef struct slot {
    struct tlsaccept *a;
    slot_state state;   /* under a->lock */
    pthread_t thread;
    int fd;
    char peer[96];
    int plain;          /* the result: -1 when the handshake failed */
} slot;

struct tlsaccept {
    tls_ctx *ctx;
    uint64_t timeout_ns;
    tlsaccept_fn fn;
    void *opaque;
    struct event *ev_done;
    pthread_mutex_t lock;
    bool stop;          /* under lock: tlsaccept_free cancels */
    slot slots[TLSACCEPT_MAX];
};

static void *handshake_main(void *arg)
{
    slot *sl = arg;
    tlsaccept *a = sl->a;
    char err[512];
    tls_session *s = NULL;
    int plain = -1;
    int r = tls_handshake(a->ctx, sl->fd, sl->peer, NULL,
                          mono_ns() + a->timeout_ns, &a->stop, &a->lock, &s,
                          err, sizeof(err));
    if (r == 0) {
        char what[160];
        tls_session_describe(s, what, sizeof(what));
        /* The pump takes a duplicate; the owner keeps sl->fd for TCP_INFO. */
        int tcp = dup(sl->fd);
        if (tcp < 0) {
            snprintf(err, sizeof(err), "%s: %s", sl->peer, strerror(errno));
            tls_session_free(s);
            r = -1;
        } else {
            log_msg("%s: TLS handshake done (%s)", sl->peer, what);
            if (tlspump_start(s, tcp, sl->peer, &plain, err,
                              sizeof(err)) < 0)
                r = -1;
        }
    }
    /* err names the peer (tls_handshake's who, the pump's). */
    if (r < 0 && r != -ECANCELED)
        log_msg("refusing the connection: %s", err);
    if (r < 0) {
        shutdown(sl->fd, SHUT_RDWR);
        close(sl->fd);
        sl->fd = -1;
    }
    pthread_mutex_lock(&a->lock);
    sl->plain = plain;
    sl->state = SLOT_DONE;
    if (!a->stop)
        event_active(a->ev_done, EV_READ, 0);
    pthread_mutex_unlock(&a->lock);
    return NULL;
}

/* On the loop: joins the finished handshakes, hands on their connections. */
static void on_done(evutil_socket_t fd, short what, void *arg)
{
    tlsaccept *a = arg;
    (void)fd;
    (void)what;
    for (int i = 0; i < TLSACCEPT_MAX; i++) {
        slot *sl = &a->slots[i];
        pthread_mutex_lock(&a->lock);
        bool done = sl->state == SLOT_DONE;
        pthread_mutex_unlock(&a->lock);
        if (!done)
            continue;
        pthread_join(sl->thread, NULL);
        int plain = sl->plain, tcp = sl->fd;
        char peer[96];
        snprintf(peer, sizeof(peer), "%s", sl->peer);
        pthread_mutex_lock(&a->lock);
        sl->state = SLOT_FREE;
        pthread_mutex_unlock(&a->lock);
        if (plain >= 0)
            a->fn(a->opaque, plain, tcp, peer);
    }
}

int tlsaccept_new(tlsaccept **out, struct event_base *base, tls_ctx *ctx,
                  uint64_t timeout_ns, tlsaccept_fn fn, void *opaque,
                  char *err, size_t errlen)
{
    tlsaccept *a = calloc(1, sizeof(*a));
    if (!a || !(a->ev_done = event_new(base, -1, 0, on_done, a))) {
        free(a);
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    a->ctx = ctx;
    a->timeout_ns = timeout_ns;
    a->fn = fn;
    a->opaque = opaque;
    pthread_mutex_init(&a->lock, NULL);
    *out = a;
    return 0;
}

void tlsaccept_add(tlsaccept *a, int fd, const char *peer)
{
    if (!a->ctx) {
        struct sockaddr_storage ss;
        socklen_t len = sizeof(ss);
        if (getpeername(fd, (struct sockaddr *)&ss, &len) < 0 ||
            !tls_loopback_peer((struct sockaddr *)&ss)) {
            log_msg("refusing the connection from %s: --insecure takes "
                    "plaintext from loopback addresses only", peer);
            close(fd);
            return;
        }
        a->fn(a->opaque, fd, -1, peer);
        return;
    }
    slot *sl = NULL;
    pthread_mutex_lock(&a->lock);
    for (int i = 0; i < TLSACCEPT_MAX && !sl; i++)
        if (a->slots[i].state == SLOT_FREE)
            sl = &a->slots[i];
    if (sl)
        sl->state = SLOT_HANDSHAKE;
    pthread_mutex_unlock(&a->lock);
    if (!sl) {
        log_msg("refusing the connection from %s: %d TLS handshakes are "
                "already in progress", peer, TLSACCEPT_MAX);
        close(fd);
        return;
    }
    /*
     * The role sets TCP_NODELAY on what it is given, the pump's end of a
     * socket pair: the TCP socket's is set here.  Acknowledgements are
     * small and latency-bound; Nagle would hold them back.
     */
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    sl->a = a;
    sl->fd = fd;
    sl->plain = -1;
    snprintf(sl->peer, sizeof(sl->peer), "%s", peer);
    if (pthread_create(&sl->thread, NULL, handshake_main, sl) != 0) {
        log_msg("refusing the connection from %s: cannot start its "
                "handshake", peer);
        close(fd);
        pthread_mutex_lock(&a->lock);
        sl->state = SLOT_FREE;
        pthread_mutex_unlock(&a->lock);
    }
}

void tlsaccept_free(tlsaccept *a)
{
    if (!a)
        return;
    pthread_mutex_lock(&a->lock);
    a->stop = true;
    pthread_mutex_unlock(&a->lock);
    for (int i = 0; i < TLSACCEPT_MAX; i++) {
        slot *sl = &a->slots[i];
        if (sl->state == SLOT_FREE)
            continue;
        pthread_join(sl->thread, NULL);
        if (sl->plain >= 0) {
            close(sl->plain);
            close(sl->fd);
        }
    }
    event_free(a->ev_done);
    pthread_mutex_destroy(&a->lock);
    free(a);
}
