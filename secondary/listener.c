/* listener: see listener.h. */
#include "secondary/listener.h"

#include <errno.h>
#include <event2/listener.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "daemon/log.h"
#include "daemon/parse.h"

struct listener {
    struct evconnlistener *lis;
    listener_fn fn;
    void *opaque;
    char address[96];
};

/* "HOST:PORT" of a socket address, "[HOST]:PORT" for IPv6. */
static void addr_name(const struct sockaddr *sa, socklen_t len, char *out,
                      size_t outlen)
{
    char host[NI_MAXHOST], port[NI_MAXSERV];
    if (getnameinfo(sa, len, host, sizeof(host), port, sizeof(port),
                    NI_NUMERICHOST | NI_NUMERICSERV) != 0) {
        snprintf(out, outlen, "?");
        return;
    }
    snprintf(out, outlen, sa->sa_family == AF_INET6 ? "[%s]:%s" : "%s:%s",
             host, port);
}

static void on_accept(struct evconnlistener *evl, evutil_socket_t fd,
                      struct sockaddr *sa, int len, void *arg)
{
    listener *l = arg;
    char peer[96];

    (void)evl;
    addr_name(sa, (socklen_t)len, peer, sizeof(peer));
    l->fn(l->opaque, fd, peer);
}

static void on_accept_error(struct evconnlistener *evl, void *arg)
{
    (void)evl;
    (void)arg;
    log_msg("accepting a connection: %s", strerror(errno));
}

int listener_new(listener **out, struct event_base *base, const char *addr,
                 listener_fn fn, void *opaque, char *err, size_t errlen)
{
    char host[256], port[8];
    uint16_t portnum;
    if (parse_hostport(addr, host, sizeof(host), &portnum) < 0) {
        snprintf(err, errlen, "--listen '%s': expected ADDR:PORT", addr);
        return -EINVAL;
    }
    snprintf(port, sizeof(port), "%u", portnum);
    struct addrinfo hints = { .ai_family = AF_UNSPEC,
                              .ai_socktype = SOCK_STREAM,
                              .ai_flags = AI_PASSIVE | AI_NUMERICSERV },
                    *ai;
    int r = getaddrinfo(*host ? host : NULL, port, &hints, &ai);
    if (r != 0) {
        snprintf(err, errlen, "--listen '%s': %s", addr, gai_strerror(r));
        return -EINVAL;
    }
    listener *l = calloc(1, sizeof(*l));
    if (!l) {
        freeaddrinfo(ai);
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    l->fn = fn;
    l->opaque = opaque;
    l->lis = evconnlistener_new_bind(base, on_accept, l,
                                     LEV_OPT_CLOSE_ON_FREE |
                                     LEV_OPT_CLOSE_ON_EXEC |
                                     LEV_OPT_REUSEABLE, 4, ai->ai_addr,
                                     (int)ai->ai_addrlen);
    int e = errno;
    freeaddrinfo(ai);
    if (!l->lis) {
        snprintf(err, errlen, "--listen '%s': %s", addr, strerror(e));
        free(l);
        return -e;
    }
    evconnlistener_set_error_cb(l->lis, on_accept_error);
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    getsockname(evconnlistener_get_fd(l->lis), (struct sockaddr *)&ss, &len);
    addr_name((struct sockaddr *)&ss, len, l->address, sizeof(l->address));
    *out = l;
    return 0;
}

const char *listener_address(const listener *l)
{
    return l->address;
}

void listener_free(listener *l)
{
    if (!l)
        return;
    evconnlistener_free(l->lis);
    free(l);
}
