/*
 * net: host network backends and the guest NIC's receive queue.
 *
 * Two locks, so the event loop pumping frames in never waits on a vCPU
 * sending frames out: rx_lock guards the receive ring and its counters,
 * tx_lock the transmit counters.  Sends to the backend take no lock: the
 * order of the output is its caller's (primary/outqueue.c keeps it).  The
 * backend (fd, kind, REMOTE) is read without a lock too: it changes only
 * in net_take_backend, whose caller keeps sends and pumps out meanwhile.
 */
#include "vm/net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

/*
 * A bounded pump: a peer flooding us must not keep the event loop in one
 * callback forever; level-triggered watchers call again.
 */
#define RX_PUMP_BUDGET 4096

/*
 * How long one socket send may wait for room.  A UNIX datagram peer
 * accepts only net.unix.max_dgram_qlen (often 10) unread datagrams, so a
 * burst must wait for it to read rather than be dropped at once; a peer
 * that does not read costs one wait per release, then the rest drop.
 */
#define TX_WAIT_MS 10

/* NONE: a NIC with no host side yet (fd -1); see net_take_backend. */
enum net_kind { NET_KIND_NONE, NET_KIND_TAP, NET_KIND_DGRAM };

struct rx_slot {
    uint16_t len;
    uint8_t data[NET_FRAME_MAX];
};

struct net_dev {
    int fd;
    enum net_kind kind;

    struct sockaddr_storage remote;
    socklen_t remote_len;
    /* The UNIX path we bound, to remove at close if it is still ours. */
    char *bound_path;
    dev_t bound_dev;
    ino_t bound_ino;

    pthread_mutex_t rx_lock;
    struct rx_slot *rxq;            /* ring of NET_RXQ_MAX */
    size_t rx_head, rx_count;
    void (*rx_notify)(void *);
    void *rx_notify_opaque;
    void (*rx_tap)(void *, const void *, size_t);
    void *rx_tap_opaque;
    uint64_t rx_frames, rx_bytes, rx_dropped, rx_discarded;

    pthread_mutex_t tx_lock;
    uint64_t tx_frames, tx_bytes, tx_dropped;
};

static int fail(char *err, size_t errlen, const char *spec, int rc,
                const char *fmt, ...)
{
    if (err && errlen) {
        int k = snprintf(err, errlen, "net %s: ", spec);
        if (k >= 0 && (size_t)k < errlen) {
            va_list ap;
            va_start(ap, fmt);
            vsnprintf(err + k, errlen - (size_t)k, fmt, ap);
            va_end(ap);
        }
    }
    return rc;
}

/* ---- spec parsing ---- */

static int parse_port(const char *s, uint16_t *port)
{
    if (!*s || strlen(s) > 5)
        return -EINVAL;
    unsigned long v = 0;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9')
            return -EINVAL;
        v = v * 10 + (unsigned long)(*p - '0');
    }
    if (v > 65535)
        return -EINVAL;
    *port = (uint16_t)v;
    return 0;
}

/*
 * One side of a dgram spec into a socket address: an absolute path, or a
 * numeric IPv4 "HOST:PORT" or IPv6 "[HOST]:PORT".  Writes the reason into
 * why on failure.
 */
static int parse_endpoint(const char *s, struct sockaddr_storage *ss,
                          socklen_t *len, char *why, size_t whylen)
{
    memset(ss, 0, sizeof(*ss));
    if (s[0] == '/') {
        struct sockaddr_un *un = (struct sockaddr_un *)ss;
        size_t l = strlen(s);
        if (l >= sizeof(un->sun_path)) {
            snprintf(why, whylen, "path longer than %zu bytes",
                     sizeof(un->sun_path) - 1);
            return -ENAMETOOLONG;
        }
        un->sun_family = AF_UNIX;
        memcpy(un->sun_path, s, l + 1);
        *len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + l + 1);
        return 0;
    }

    char host[INET6_ADDRSTRLEN + 1];
    const char *port;
    bool v6 = s[0] == '[';
    if (v6) {
        const char *close = strchr(s, ']');
        if (!close || close[1] != ':') {
            snprintf(why, whylen, "expected [IPV6]:PORT");
            return -EINVAL;
        }
        size_t hl = (size_t)(close - s - 1);
        if (hl >= sizeof(host)) {
            snprintf(why, whylen, "bad IPv6 address");
            return -EINVAL;
        }
        memcpy(host, s + 1, hl);
        host[hl] = 0;
        port = close + 2;
    } else {
        const char *colon = strrchr(s, ':');
        if (!colon) {
            snprintf(why, whylen,
                     "expected HOST:PORT, [IPV6]:PORT or an absolute path");
            return -EINVAL;
        }
        size_t hl = (size_t)(colon - s);
        if (hl >= sizeof(host)) {
            snprintf(why, whylen, "bad IPv4 address");
            return -EINVAL;
        }
        memcpy(host, s, hl);
        host[hl] = 0;
        port = colon + 1;
    }

    uint16_t p;
    if (parse_port(port, &p) < 0) {
        snprintf(why, whylen, "bad port '%s'", port);
        return -EINVAL;
    }
    if (v6) {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
        if (inet_pton(AF_INET6, host, &in6->sin6_addr) != 1) {
            snprintf(why, whylen, "bad IPv6 address '%s'", host);
            return -EINVAL;
        }
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons(p);
        *len = sizeof(*in6);
    } else {
        struct sockaddr_in *in = (struct sockaddr_in *)ss;
        if (inet_pton(AF_INET, host, &in->sin_addr) != 1) {
            snprintf(why, whylen, "bad IPv4 address '%s' (numeric only)",
                     host);
            return -EINVAL;
        }
        in->sin_family = AF_INET;
        in->sin_port = htons(p);
        *len = sizeof(*in);
    }
    return 0;
}

/* A destination must name one peer: no wildcard address, no port 0. */
static bool endpoint_is_wildcard(const struct sockaddr_storage *ss)
{
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)ss;
        return in->sin_port == 0 || in->sin_addr.s_addr == htonl(INADDR_ANY);
    }
    if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ss;
        return in6->sin6_port == 0 ||
               IN6_IS_ADDR_UNSPECIFIED(&in6->sin6_addr);
    }
    return false;
}

/* ---- backends ---- */

static int open_tap(net_dev *n, const char *spec, const char *ifname,
                    char *err, size_t errlen)
{
    size_t l = strlen(ifname);
    if (l == 0)
        return fail(err, errlen, spec, -EINVAL, "missing interface name");
    if (l >= IFNAMSIZ)
        return fail(err, errlen, spec, -EINVAL,
                    "interface name longer than %d bytes", IFNAMSIZ - 1);
    /* '%' would let the kernel pick a name we did not ask for. */
    if (strpbrk(ifname, "%/: \t\n"))
        return fail(err, errlen, spec, -EINVAL, "bad interface name '%s'",
                    ifname);

    int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        return fail(err, errlen, spec, -e, "/dev/net/tun: %s%s", strerror(e),
                    e == ENOENT ? " (no tun module or device node)" :
                    e == EACCES || e == EPERM ?
                        " (need root or CAP_NET_ADMIN)" : "");
    }
    struct ifreq ifr;
    memset(&ifr, 0, sizeof(ifr));
    ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
    memcpy(ifr.ifr_name, ifname, l);
    if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
        int e = errno;
        close(fd);
        return fail(err, errlen, spec, -e, "TUNSETIFF: %s%s", strerror(e),
                    e == EPERM ? " (need root or CAP_NET_ADMIN)" :
                    e == EBUSY ? " (attached elsewhere, or not a TAP)" :
                    e == EINVAL ? " (exists with other flags, or not a TAP)"
                                : "");
    }
    n->fd = fd;
    n->kind = NET_KIND_TAP;
    return 0;
}

static int bind_unix(net_dev *n, const char *spec, const char *path,
                     const struct sockaddr_storage *ss, socklen_t len,
                     char *err, size_t errlen)
{
    struct stat st;
    if (lstat(path, &st) == 0) {
        /* A socket left by a dead process is ours to replace; anything
         * else at that path is someone's file. */
        if (!S_ISSOCK(st.st_mode))
            return fail(err, errlen, spec, -EEXIST,
                        "%s exists and is not a socket", path);
        if (unlink(path) < 0 && errno != ENOENT) {
            int e = errno;
            return fail(err, errlen, spec, -e, "unlink stale %s: %s", path,
                        strerror(e));
        }
    }
    if (bind(n->fd, (const struct sockaddr *)ss, len) < 0) {
        int e = errno;
        return fail(err, errlen, spec, -e, "bind %s: %s", path, strerror(e));
    }
    if (stat(path, &st) == 0) {
        n->bound_dev = st.st_dev;
        n->bound_ino = st.st_ino;
        n->bound_path = strdup(path);
        if (!n->bound_path) {
            unlink(path);
            return fail(err, errlen, spec, -ENOMEM, "out of memory");
        }
    }
    return 0;
}

static int open_dgram(net_dev *n, const char *spec, const char *args,
                      char *err, size_t errlen)
{
    const char *comma = strchr(args, ',');
    if (!comma)
        return fail(err, errlen, spec, -EINVAL,
                    "expected dgram:LOCAL,REMOTE");
    size_t ll = (size_t)(comma - args);
    char *local = strndup(args, ll);
    if (!local)
        return fail(err, errlen, spec, -ENOMEM, "out of memory");
    const char *remote = comma + 1;

    struct sockaddr_storage lss;
    socklen_t llen;
    char why[128];
    int rc = parse_endpoint(local, &lss, &llen, why, sizeof(why));
    if (rc < 0) {
        rc = fail(err, errlen, spec, rc, "LOCAL '%s': %s", local, why);
        goto out;
    }
    rc = parse_endpoint(remote, &n->remote, &n->remote_len, why, sizeof(why));
    if (rc < 0) {
        rc = fail(err, errlen, spec, rc, "REMOTE '%s': %s", remote, why);
        goto out;
    }
    if (lss.ss_family != n->remote.ss_family) {
        rc = fail(err, errlen, spec, -EINVAL,
                  "LOCAL and REMOTE are of different kinds (IPv4, IPv6, "
                  "UNIX path)");
        goto out;
    }
    if (endpoint_is_wildcard(&n->remote)) {
        rc = fail(err, errlen, spec, -EINVAL,
                  "REMOTE '%s' needs a real address and a port", remote);
        goto out;
    }

    n->fd = socket(lss.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (n->fd < 0) {
        int e = errno;
        rc = fail(err, errlen, spec, -e, "socket: %s", strerror(e));
        goto out;
    }
    n->kind = NET_KIND_DGRAM;
    /* Blocking on purpose, with a send timeout: receives pass
     * MSG_DONTWAIT, sends wait a little for a slow peer (TX_WAIT_MS). */
    struct timeval tv = { .tv_sec = 0, .tv_usec = TX_WAIT_MS * 1000 };
    if (setsockopt(n->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) < 0) {
        int e = errno;
        rc = fail(err, errlen, spec, -e, "SO_SNDTIMEO: %s", strerror(e));
        goto out;
    }
    if (lss.ss_family == AF_UNIX) {
        rc = bind_unix(n, spec, local, &lss, llen, err, errlen);
    } else if (bind(n->fd, (struct sockaddr *)&lss, llen) < 0) {
        int e = errno;
        rc = fail(err, errlen, spec, -e, "bind %s: %s", local, strerror(e));
    }
out:
    free(local);
    return rc;
}

int net_open(net_dev **out, const char *spec, char *err, size_t errlen)
{
    *out = NULL;
    if (err && errlen)
        err[0] = 0;
    if (!spec)
        spec = "";

    net_dev *n = calloc(1, sizeof(*n));
    if (!n)
        return fail(err, errlen, spec, -ENOMEM, "out of memory");
    n->fd = -1;
    n->rxq = calloc(NET_RXQ_MAX, sizeof(*n->rxq));
    if (!n->rxq) {
        free(n);
        return fail(err, errlen, spec, -ENOMEM, "out of memory");
    }
    pthread_mutex_init(&n->rx_lock, NULL);
    pthread_mutex_init(&n->tx_lock, NULL);

    int rc = 0;
    if (strcmp(spec, "none") == 0) {
        n->kind = NET_KIND_NONE;
    } else if (strncmp(spec, "tap:", 4) == 0) {
        rc = open_tap(n, spec, spec + 4, err, errlen);
    } else if (strncmp(spec, "dgram:", 6) == 0) {
        rc = open_dgram(n, spec, spec + 6, err, errlen);
    } else {
        const char *colon = strchr(spec, ':');
        int kl = colon ? (int)(colon - spec) : (int)strlen(spec);
        rc = fail(err, errlen, spec, -EINVAL,
                  "unknown backend '%.*s' (expected tap:IFNAME, "
                  "dgram:LOCAL,REMOTE or none)", kl, spec);
    }
    if (rc < 0) {
        net_close(n);
        return rc;
    }
    *out = n;
    return 0;
}

void net_close(net_dev *n)
{
    if (!n)
        return;
    if (n->fd >= 0)
        close(n->fd);
    if (n->bound_path) {
        struct stat st;
        /* Only if nobody has bound a new socket there since. */
        if (lstat(n->bound_path, &st) == 0 && S_ISSOCK(st.st_mode) &&
            st.st_dev == n->bound_dev && st.st_ino == n->bound_ino)
            unlink(n->bound_path);
        free(n->bound_path);
    }
    pthread_mutex_destroy(&n->rx_lock);
    pthread_mutex_destroy(&n->tx_lock);
    free(n->rxq);
    free(n);
}

int net_parse_mac(const char *s, uint8_t mac[6])
{
    uint8_t m[6];
    if (!s)
        return -EINVAL;
    for (int i = 0; i < 6; i++) {
        int v = 0;
        for (int j = 0; j < 2; j++) {
            char c = *s++;
            int d;
            if (c >= '0' && c <= '9')
                d = c - '0';
            else if (c >= 'a' && c <= 'f')
                d = c - 'a' + 10;
            else if (c >= 'A' && c <= 'F')
                d = c - 'A' + 10;
            else
                return -EINVAL;
            v = v * 16 + d;
        }
        m[i] = (uint8_t)v;
        if (*s++ != (i == 5 ? '\0' : ':'))
            return -EINVAL;
    }
    memcpy(mac, m, 6);
    return 0;
}

int net_fd(const net_dev *n)
{
    return n->fd;
}

int net_take_backend(net_dev *dst, net_dev *src)
{
    if (!dst || !src || dst == src)
        return -EINVAL;
    if (dst->kind != NET_KIND_NONE)
        return -EBUSY;
    dst->fd = src->fd;
    dst->kind = src->kind;
    dst->remote = src->remote;
    dst->remote_len = src->remote_len;
    dst->bound_path = src->bound_path;
    dst->bound_dev = src->bound_dev;
    dst->bound_ino = src->bound_ino;

    src->fd = -1;
    src->kind = NET_KIND_NONE;
    memset(&src->remote, 0, sizeof(src->remote));
    src->remote_len = 0;
    src->bound_path = NULL;
    src->bound_dev = 0;
    src->bound_ino = 0;
    return 0;
}

/* ---- receive ---- */

static bool from_remote(const net_dev *n, const struct sockaddr_storage *ss)
{
    if (n->remote.ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
        const struct sockaddr_in *r = (const struct sockaddr_in *)&n->remote;
        return a->sin_family == AF_INET && a->sin_port == r->sin_port &&
               a->sin_addr.s_addr == r->sin_addr.s_addr;
    }
    if (n->remote.ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
        const struct sockaddr_in6 *r =
            (const struct sockaddr_in6 *)&n->remote;
        return a->sin6_family == AF_INET6 && a->sin6_port == r->sin6_port &&
               IN6_ARE_ADDR_EQUAL(&a->sin6_addr, &r->sin6_addr);
    }
    /* UNIX peers may send from an unbound socket; the path's
     * permissions decide who can reach us. */
    return true;
}

/*
 * Reads one frame from the backend's fd without waiting: its length (which
 * may exceed cap - 1: the frame was cut), or -EAGAIN, -EINTR, -errno.
 * *ok is false for a UDP datagram not from REMOTE.
 */
static ssize_t read_one(net_dev *n, uint8_t *buf, size_t cap, bool *ok)
{
    ssize_t r;
    *ok = true;
    if (n->kind == NET_KIND_TAP) {
        r = read(n->fd, buf, cap);
    } else {
        struct sockaddr_storage from;
        socklen_t fl = sizeof(from);
        memset(&from, 0, sizeof(from));
        r = recvfrom(n->fd, buf, cap, MSG_DONTWAIT | MSG_TRUNC,
                     (struct sockaddr *)&from, &fl);
        if (r >= 0)
            *ok = from_remote(n, &from);
    }
    if (r >= 0)
        return r;
    return errno == EWOULDBLOCK ? -EAGAIN : -errno;
}

/* Appends under rx_lock; false when the ring is full. */
static bool rxq_append_locked(net_dev *n, const void *frame, size_t len)
{
    if (n->rx_count == NET_RXQ_MAX)
        return false;
    struct rx_slot *s = &n->rxq[(n->rx_head + n->rx_count) % NET_RXQ_MAX];
    s->len = (uint16_t)len;
    memcpy(s->data, frame, len);
    n->rx_count++;
    return true;
}

/*
 * Reads what waits on the backend, at most RX_PUMP_BUDGET frames: into
 * the receive queue (keep: net_rx_pump), or dropped (net_rx_discard).
 * The frames queued or dropped, or -errno when there were none.
 */
static int read_frames(net_dev *n, bool keep)
{
    /* One byte over the limit is enough to tell an oversize frame: TAP
     * reads and MSG_TRUNC both report a length past it. */
    uint8_t buf[NET_FRAME_MAX + 1];
    int handled = 0, rc = 0;

    if (n->kind == NET_KIND_NONE)
        return 0;
    for (int i = 0; i < RX_PUMP_BUDGET; i++) {
        bool ok;
        ssize_t r = read_one(n, buf, sizeof(buf), &ok);
        if (r == -EINTR)
            continue;
        if (r < 0) {
            if (r != -EAGAIN)
                rc = (int)r;
            break;
        }
        if (!keep) {
            handled++;
            continue;
        }
        ok = ok && r > 0 && r <= NET_FRAME_MAX;

        void (*tap)(void *, const void *, size_t) = NULL;
        void *tap_opaque = NULL;
        pthread_mutex_lock(&n->rx_lock);
        if (ok && rxq_append_locked(n, buf, (size_t)r)) {
            n->rx_frames++;
            n->rx_bytes += (uint64_t)r;
            handled++;
            tap = n->rx_tap;
            tap_opaque = n->rx_tap_opaque;
        } else {
            n->rx_dropped++;
        }
        pthread_mutex_unlock(&n->rx_lock);
        /* buf still holds the frame just queued: the tap sees frames in
         * queue order without a copy and without our lock. */
        if (tap)
            tap(tap_opaque, buf, (size_t)r);
    }

    if (handled) {
        pthread_mutex_lock(&n->rx_lock);
        void (*fn)(void *) = keep ? n->rx_notify : NULL;
        void *opaque = n->rx_notify_opaque;
        if (!keep)
            n->rx_discarded += (uint64_t)handled;
        pthread_mutex_unlock(&n->rx_lock);
        if (fn)
            fn(opaque);
    }
    return rc < 0 && handled == 0 ? rc : handled;
}

int net_rx_pump(net_dev *n)
{
    return read_frames(n, true);
}

void net_set_rx_notify(net_dev *n, void (*fn)(void *opaque), void *opaque)
{
    pthread_mutex_lock(&n->rx_lock);
    n->rx_notify = fn;
    n->rx_notify_opaque = opaque;
    pthread_mutex_unlock(&n->rx_lock);
}

void net_set_rx_tap(net_dev *n,
                    void (*fn)(void *opaque, const void *frame, size_t len),
                    void *opaque)
{
    pthread_mutex_lock(&n->rx_lock);
    n->rx_tap = fn;
    n->rx_tap_opaque = fn ? opaque : NULL;
    pthread_mutex_unlock(&n->rx_lock);
}

int net_rx_discard(net_dev *n)
{
    return read_frames(n, false);
}

int net_rx_deliver(net_dev *n, const void *frame, size_t len)
{
    if (!frame || len == 0 || len > NET_FRAME_MAX)
        return -EINVAL;
    pthread_mutex_lock(&n->rx_lock);
    bool ok = rxq_append_locked(n, frame, len);
    if (ok) {
        n->rx_frames++;
        n->rx_bytes += len;
    } else {
        n->rx_dropped++;
    }
    pthread_mutex_unlock(&n->rx_lock);
    return ok ? 0 : -ENOSPC;
}

bool net_rx_pending(net_dev *n)
{
    pthread_mutex_lock(&n->rx_lock);
    bool r = n->rx_count > 0;
    pthread_mutex_unlock(&n->rx_lock);
    return r;
}

ssize_t net_recv(net_dev *n, void *buf, size_t cap)
{
    pthread_mutex_lock(&n->rx_lock);
    if (n->rx_count == 0) {
        pthread_mutex_unlock(&n->rx_lock);
        return -EAGAIN;
    }
    struct rx_slot *s = &n->rxq[n->rx_head];
    size_t len = s->len;
    if (cap)
        memcpy(buf, s->data, len < cap ? len : cap);
    n->rx_head = (n->rx_head + 1) % NET_RXQ_MAX;
    n->rx_count--;
    pthread_mutex_unlock(&n->rx_lock);
    return (ssize_t)len;
}

size_t net_rxq_count(net_dev *n)
{
    pthread_mutex_lock(&n->rx_lock);
    size_t c = n->rx_count;
    pthread_mutex_unlock(&n->rx_lock);
    return c;
}

ssize_t net_rxq_peek(net_dev *n, size_t i, void *buf, size_t cap)
{
    pthread_mutex_lock(&n->rx_lock);
    if (i >= n->rx_count) {
        pthread_mutex_unlock(&n->rx_lock);
        return -ENOENT;
    }
    struct rx_slot *s = &n->rxq[(n->rx_head + i) % NET_RXQ_MAX];
    size_t len = s->len;
    if (cap)
        memcpy(buf, s->data, len < cap ? len : cap);
    pthread_mutex_unlock(&n->rx_lock);
    return (ssize_t)len;
}

int net_rxq_push(net_dev *n, const void *frame, size_t len)
{
    if (!frame || len == 0 || len > NET_FRAME_MAX)
        return -EINVAL;
    pthread_mutex_lock(&n->rx_lock);
    bool ok = rxq_append_locked(n, frame, len);
    pthread_mutex_unlock(&n->rx_lock);
    return ok ? 0 : -ENOSPC;
}

void net_rxq_clear(net_dev *n)
{
    pthread_mutex_lock(&n->rx_lock);
    n->rx_head = n->rx_count = 0;
    pthread_mutex_unlock(&n->rx_lock);
}

/* ---- transmit ---- */

int net_transmit(net_dev *n, const void *frame, size_t len, bool may_wait)
{
    if (!frame || len == 0 || len > NET_FRAME_MAX)
        return -EINVAL;
    if (n->kind == NET_KIND_NONE) {
        /* No wire: lost, as on an unplugged cable. */
        pthread_mutex_lock(&n->tx_lock);
        n->tx_dropped++;
        pthread_mutex_unlock(&n->tx_lock);
        return -ENETDOWN;
    }
    ssize_t r;
    do {
        if (n->kind == NET_KIND_TAP)
            r = write(n->fd, frame, len);
        else
            r = sendto(n->fd, frame, len,
                       MSG_NOSIGNAL | (may_wait ? 0 : MSG_DONTWAIT),
                       (const struct sockaddr *)&n->remote, n->remote_len);
    } while (r < 0 && errno == EINTR);
    int e = r < 0 ? errno : 0;
    pthread_mutex_lock(&n->tx_lock);
    if (r < 0) {
        n->tx_dropped++;
    } else {
        n->tx_frames++;
        n->tx_bytes += len;
    }
    pthread_mutex_unlock(&n->tx_lock);
    if (r >= 0)
        return 0;
    return e == EWOULDBLOCK ? -EAGAIN : -e;
}

void net_get_stats(net_dev *n, net_stats *out)
{
    memset(out, 0, sizeof(*out));
    pthread_mutex_lock(&n->rx_lock);
    out->rx_frames = n->rx_frames;
    out->rx_bytes = n->rx_bytes;
    out->rx_dropped = n->rx_dropped;
    out->rx_discarded = n->rx_discarded;
    pthread_mutex_unlock(&n->rx_lock);
    pthread_mutex_lock(&n->tx_lock);
    out->tx_frames = n->tx_frames;
    out->tx_bytes = n->tx_bytes;
    out->tx_dropped = n->tx_dropped;
    pthread_mutex_unlock(&n->tx_lock);
}
