/* dial: see dial.h. */
#include "primary/dial.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "daemon/parse.h"

/* A connect in progress looks at the stop flag this often. */
#define CONNECT_SLICE_MS 20

/* One address: 0 and the fd, or -errno. */
static int try_connect(const struct addrinfo *ai, int timeout_ms,
                       const bool *stop, pthread_mutex_t *lock, int *out)
{
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC |
                    SOCK_NONBLOCK, ai->ai_protocol);
    if (fd < 0)
        return -errno;
    int rc = 0;
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
        rc = errno == EINPROGRESS ? -ETIMEDOUT : -errno;
        for (int waited = 0; rc == -ETIMEDOUT && waited < timeout_ms;
             waited += CONNECT_SLICE_MS) {
            if (stop) {
                pthread_mutex_lock(lock);
                bool s = *stop;
                pthread_mutex_unlock(lock);
                if (s) {
                    rc = -ECANCELED;
                    break;
                }
            }
            struct pollfd p = { .fd = fd, .events = POLLOUT };
            int n = poll(&p, 1, CONNECT_SLICE_MS);
            if (n < 0 && errno != EINTR) {
                rc = -errno;
            } else if (n > 0) {
                int e = 0;
                socklen_t len = sizeof(e);
                getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &len);
                rc = -e;
            }
        }
    }
    if (rc == 0) {
        /* Blocking from now on, for the sender thread. */
        int one = 1;
        if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0)
            rc = -errno;
        int fl = fcntl(fd, F_GETFL);
        if (rc == 0 && (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) < 0))
            rc = -errno;
    }
    if (rc < 0) {
        close(fd);
        return rc;
    }
    *out = fd;
    return 0;
}

int dial_connect(const char *addr, int timeout_ms, const bool *stop,
                 pthread_mutex_t *lock, int *fd, char *err, size_t errlen)
{
    char host[256], port[8];
    uint16_t portnum;
    if (parse_hostport(addr, host, sizeof(host), &portnum) < 0 || !*host ||
        portnum == 0) {
        snprintf(err, errlen, "secondary '%s': expected HOST:PORT (or "
                 "[IPv6]:PORT)", addr);
        return -EINVAL;
    }
    snprintf(port, sizeof(port), "%u", portnum);
    struct addrinfo hints = { .ai_socktype = SOCK_STREAM,
                              .ai_flags = AI_NUMERICSERV };
    struct addrinfo *res = NULL;
    int g = getaddrinfo(host, port, &hints, &res);
    if (g != 0) {
        snprintf(err, errlen, "secondary %s: %s", addr, gai_strerror(g));
        return -EHOSTUNREACH;
    }
    int rc = -EHOSTUNREACH;
    for (struct addrinfo *ai = res; ai && rc < 0 && rc != -ECANCELED;
         ai = ai->ai_next)
        rc = try_connect(ai, timeout_ms, stop, lock, fd);
    freeaddrinfo(res);
    if (rc == -ETIMEDOUT)
        snprintf(err, errlen, "secondary %s: no answer within %d ms", addr,
                 timeout_ms);
    else if (rc < 0)
        snprintf(err, errlen, "secondary %s: %s", addr, strerror(-rc));
    return rc;
}
