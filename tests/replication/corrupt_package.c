/*
 * Test only: an LD_PRELOAD shim for `ftvm primary` that damages packages
 * on their way to the secondary, as a bad link would, so that the tests
 * of refusals (pri_test.py nack, nack-full; e2e_test.py corrupt) need no
 * hook in the primary itself.
 *
 *     FTVM_TEST_CORRUPT_PACKAGE=N[,M...]   (up to 8 numbers, from 1)
 *
 * Packages are counted from 1 over the process's life, in the order they
 * go out.  The shim watches sendmsg(2): the primary's link thread writes
 * each record of the stream whole, beginning with a fresh sendmsg, and a
 * checkpoint package is the record COMMAND PACKAGED (docs/stream-format.md:
 * 0x08, be16 command 7, be16 length 4, be32 L, then the L bytes of the
 * package).  In the Nth one it flips a byte in the middle of the package
 * (0x40 at offset L / 2), after the primary computed its CRC, so the
 * secondary must refuse it; the bytes the caller passed are not touched
 * (the flipped byte goes out from a copy), and a record written in several
 * sendmsg calls is followed to its end.  It says so on stderr, as
 * "TEST: damaged package N (checkpoint K)".  A value that is not such a
 * list ends the process at start with status 2 and a message.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define ENV "FTVM_TEST_CORRUPT_PACKAGE"
#define MAX_DAMAGED 8
#define MAX_FDS 16
#define RECORD_HEAD 9       /* 0x08, be16 7, be16 4, be32 L */

static uint64_t damaged[MAX_DAMAGED];
static size_t ndamaged;

/* A socket in the middle of writing a package record. */
typedef struct stream {
    int fd;                 /* -1: a free slot */
    uint64_t left;          /* bytes of the current package record to go */
    int64_t flip_in;        /* bytes to go before the one to flip; -1 */
} stream;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static stream streams[MAX_FDS];
static uint64_t packages;   /* PACKAGED records seen */

static void say(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));

static void say(const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    if (n > 0)
        (void)!write(STDERR_FILENO, buf,
                     (size_t)n < sizeof(buf) ? (size_t)n : sizeof(buf) - 1);
}

__attribute__((constructor)) static void parse_env(void)
{
    for (size_t i = 0; i < MAX_FDS; i++)
        streams[i].fd = -1;
    const char *s = getenv(ENV);
    if (!s || !*s)
        return;
    const char *p = s;
    while (*p) {
        char *end;
        errno = 0;
        unsigned long long n = strtoull(p, &end, 10);
        if (ndamaged == MAX_DAMAGED || *p < '0' || *p > '9' || n == 0 ||
            errno || (*end && *end != ',') ||
            (*end == ',' && !end[1])) {
            say("%s='%s': expected up to %d package numbers from 1, "
                "separated by commas\n", ENV, s, MAX_DAMAGED);
            _exit(2);
        }
        damaged[ndamaged++] = n;
        p = *end ? end + 1 : end;
    }
    say("TEST: package(s) %s will be damaged in flight\n", s);
}

static uint64_t be(const uint8_t *p, size_t n)
{
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++)
        v = v << 8 | p[i];
    return v;
}

/* Copies the first len bytes the message carries into out; false if fewer. */
static bool peek(const struct msghdr *m, uint8_t *out, size_t len)
{
    size_t got = 0;
    for (size_t i = 0; i < m->msg_iovlen && got < len; i++) {
        size_t take = m->msg_iov[i].iov_len;
        if (take > len - got)
            take = len - got;
        memcpy(out + got, m->msg_iov[i].iov_base, take);
        got += take;
    }
    return got == len;
}

static size_t total_len(const struct msghdr *m)
{
    size_t t = 0;
    for (size_t i = 0; i < m->msg_iovlen; i++)
        t += m->msg_iov[i].iov_len;
    return t;
}

/* The stream of fd while a package record is under way, or NULL. */
static stream *find(int fd)
{
    for (size_t i = 0; i < MAX_FDS; i++)
        if (streams[i].fd == fd)
            return &streams[i];
    return NULL;
}

/*
 * At a record boundary: whether m is a whole PACKAGED record and, if it
 * is one to damage, where.  Returns its stream, or NULL for any other
 * record.
 */
static stream *start_record(int fd, const struct msghdr *m, size_t total)
{
    uint8_t h[RECORD_HEAD + 22 + 8];
    if (!peek(m, h, RECORD_HEAD) ||
        memcmp(h, "\x08\x00\x07\x00\x04", 5) != 0)
        return NULL;
    uint64_t len = be(h + 5, 4);
    if (RECORD_HEAD + len != total)
        return NULL;
    stream *st = find(-1);
    if (!st)
        return NULL;
    *st = (stream){ .fd = fd, .left = total, .flip_in = -1 };
    packages++;
    for (size_t i = 0; i < ndamaged; i++) {
        if (damaged[i] != packages || len == 0)
            continue;
        st->flip_in = (int64_t)(RECORD_HEAD + len / 2);
        /* The package opens with ftvm-pkg: FULL, id, "ftvm-pkg", ... */
        uint64_t id = 0;
        if (peek(m, h, sizeof(h)) &&
            memcmp(h + RECORD_HEAD + 6, "ftvm-pkg", 8) == 0)
            id = be(h + RECORD_HEAD + 22, 8);
        say("ftvm primary: TEST: damaged package %llu (checkpoint %llu) "
            "in flight, byte %llu of %llu\n", (unsigned long long)packages,
            (unsigned long long)id, (unsigned long long)(len / 2),
            (unsigned long long)len);
    }
    return st;
}

ssize_t sendmsg(int fd, const struct msghdr *msg, int flags)
{
    static ssize_t (*real)(int, const struct msghdr *, int);
    if (!real)
        real = (ssize_t (*)(int, const struct msghdr *, int))
            dlsym(RTLD_NEXT, "sendmsg");
    if (!ndamaged)
        return real(fd, msg, flags);

    size_t total = total_len(msg);
    uint8_t magic[4];
    pthread_mutex_lock(&lock);
    stream *st = find(fd);
    /* A new stream: an earlier connection on this fd ended mid-record. */
    if (st && peek(msg, magic, 4) && memcmp(magic, "QEVM", 4) == 0) {
        st->fd = -1;
        st = NULL;
    }
    if (!st)
        st = start_record(fd, msg, total);
    int64_t flip_in = st ? st->flip_in : -1;
    pthread_mutex_unlock(&lock);

    ssize_t r;
    if (flip_in >= 0 && (uint64_t)flip_in < total &&
        msg->msg_iovlen < 64) {
        /* The same bytes, the one at flip_in from a flipped copy. */
        struct iovec iov[66];
        size_t n = 0, off = 0;
        uint8_t flipped = 0;
        for (size_t i = 0; i < msg->msg_iovlen; i++) {
            const struct iovec *v = &msg->msg_iov[i];
            uint64_t at = (uint64_t)flip_in;
            if (at >= off && at < off + v->iov_len) {
                size_t k = (size_t)(at - off);
                uint8_t *base = v->iov_base;
                flipped = base[k] ^ 0x40;
                iov[n++] = (struct iovec){ base, k };
                iov[n++] = (struct iovec){ &flipped, 1 };
                iov[n++] = (struct iovec){ base + k + 1,
                                           v->iov_len - k - 1 };
            } else {
                iov[n++] = *v;
            }
            off += v->iov_len;
        }
        struct msghdr copy = *msg;
        copy.msg_iov = iov;
        copy.msg_iovlen = n;
        r = real(fd, &copy, flags);
    } else {
        r = real(fd, msg, flags);
    }

    if (r > 0 && st) {
        pthread_mutex_lock(&lock);
        uint64_t sent = (uint64_t)r;
        st->left = sent < st->left ? st->left - sent : 0;
        if (st->flip_in >= 0)
            st->flip_in = sent > (uint64_t)st->flip_in
                              ? -1 : st->flip_in - (int64_t)sent;
        if (!st->left)
            st->fd = -1;        /* the record is out: free the slot */
        pthread_mutex_unlock(&lock);
    } else if (r < 0 && st && errno != EINTR && errno != EAGAIN) {
        int e = errno;
        pthread_mutex_lock(&lock);
        st->fd = -1;            /* the link has failed */
        pthread_mutex_unlock(&lock);
        errno = e;
    }
    return r;
}
