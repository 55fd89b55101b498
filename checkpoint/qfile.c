/*
 * qfile: see qfile.h.  Three backends share one struct:
 *
 *  - fd writer: small puts are appended to buf; qfile_put_iov queues external
 *    pointers; both become one iovec list written with writev at flush.
 *  - mem writer: one growable array; qfile_put_iov copies.
 *  - readers (fd and view): a window [pos, len) over buf.  For a view, buf
 *    is the caller's bytes and the window is all of them.
 */
#include "checkpoint/qfile.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>
#include <zlib.h>

typedef enum qf_kind {
    QF_KIND_FD,
    QF_KIND_MEM,
    QF_KIND_VIEW,
} qf_kind;

#define QF_IOV_MAX 64

struct qfile {
    qf_kind kind;
    qfile_dir dir;
    int fd;
    char name[128];

    uint8_t *buf;       /* fd: owned bounce buffer; mem: data; view: caller's */
    size_t cap;         /* allocated size of buf (fd, mem) */
    size_t len;         /* bytes valid in buf */
    size_t pos;         /* readers: next byte in buf */

    /* fd writer: queued iovecs; entries may point into buf or outside it */
    struct iovec iov[QF_IOV_MAX];
    int niov;

    off_t start;        /* fd readers: file offset of the first byte */
    uint64_t done;      /* bytes consumed or produced before buf's window */
    uint64_t base;

    bool crc_on; /* a running CRC-32 of the bytes since qfile_crc_start */
    uint32_t crc;

    int err;
    uint64_t err_off;
    char errmsg[512];
};

static qfile *qf_alloc(qf_kind kind, qfile_dir dir, const char *name)
{
    qfile *f = calloc(1, sizeof(*f));
    if (!f)
        return NULL;
    f->kind = kind;
    f->dir = dir;
    f->fd = -1;
    snprintf(f->name, sizeof(f->name), "%s", name ? name : "stream");
    return f;
}

qfile *qfile_open_fd(int fd, qfile_dir dir, const char *name)
{
    qfile *f = qf_alloc(QF_KIND_FD, dir, name);
    if (!f)
        return NULL;
    f->fd = fd;
    f->start = dir == QFILE_READ ? lseek(fd, 0, SEEK_CUR) : -1;
    f->cap = QFILE_BUF_SIZE;
    f->buf = malloc(f->cap);
    if (!f->buf) {
        free(f);
        return NULL;
    }
    return f;
}

qfile *qfile_open_mem(const char *name)
{
    return qf_alloc(QF_KIND_MEM, QFILE_WRITE, name);
}

qfile *qfile_open_view(const void *buf, size_t len, const char *name)
{
    qfile *f = qf_alloc(QF_KIND_VIEW, QFILE_READ, name);
    if (!f)
        return NULL;
    f->buf = (uint8_t *)buf;
    f->len = len;
    return f;
}

int qfile_close(qfile *f)
{
    if (!f)
        return 0;
    if (f->dir == QFILE_WRITE)
        qfile_flush(f);
    int err = f->err;
    if (f->kind != QF_KIND_VIEW)
        free(f->buf);
    free(f);
    return err;
}

/* ---- errors ---- */

static int vfail_at(qfile *f, uint64_t off, int err, const char *fmt,
                    va_list ap)
{
    if (f->err)
        return f->err;
    f->err = err < 0 ? err : -EINVAL;
    f->err_off = f->base + off;
    int n = snprintf(f->errmsg, sizeof(f->errmsg), "%s: byte %llu: ", f->name,
                     (unsigned long long)f->err_off);
    if (n > 0 && (size_t)n < sizeof(f->errmsg))
        vsnprintf(f->errmsg + n, sizeof(f->errmsg) - n, fmt, ap);
    return f->err;
}

int qfile_vfail(qfile *f, int err, const char *fmt, va_list ap)
{
    return vfail_at(f, qfile_tell(f), err, fmt, ap);
}

int qfile_fail_at(qfile *f, uint64_t offset, int err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int r = vfail_at(f, offset, err, fmt, ap);
    va_end(ap);
    return r;
}

int qfile_fail(qfile *f, int err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int r = qfile_vfail(f, err, fmt, ap);
    va_end(ap);
    return r;
}

int qfile_take_error(qfile *dst, const qfile *src)
{
    if (!dst->err && src->err) {
        dst->err = src->err;
        dst->err_off = src->err_off;
        memcpy(dst->errmsg, src->errmsg, sizeof(dst->errmsg));
    }
    return dst->err;
}

int qfile_error(const qfile *f)
{
    return f->err;
}
const char *qfile_errmsg(const qfile *f)
{
    return f->err ? f->errmsg : "";
}
uint64_t qfile_error_offset(const qfile *f)
{
    return f->err_off;
}
const char *qfile_name(const qfile *f)
{
    return f->name;
}
void qfile_set_base(qfile *f, uint64_t base)
{
    f->base = base;
}
uint64_t qfile_base(const qfile *f)
{
    return f->base;
}

uint64_t qfile_tell(const qfile *f)
{
    if (f->dir == QFILE_READ)
        return f->done + f->pos;
    if (f->kind == QF_KIND_MEM)
        return f->len;
    uint64_t queued = 0;
    for (int i = 0; i < f->niov; i++)
        queued += f->iov[i].iov_len;
    return f->done + queued;
}

/* ---- writing ---- */

static int write_all(qfile *f)
{
    struct iovec *iov = f->iov;
    int n = f->niov;
    while (n > 0) {
        ssize_t w = writev(f->fd, iov, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            int e = -errno;
            return qfile_fail(f, e, "write failed: %s", strerror(-e));
        }
        f->done += (uint64_t)w;
        while (n > 0 && (size_t)w >= iov->iov_len) {
            w -= (ssize_t)iov->iov_len;
            iov++;
            n--;
        }
        if (n > 0) {
            iov->iov_base = (uint8_t *)iov->iov_base + w;
            iov->iov_len -= (size_t)w;
        }
    }
    return 0;
}

int qfile_flush(qfile *f)
{
    if (f->dir != QFILE_WRITE || f->kind != QF_KIND_FD)
        return f->err;
    if (!f->err && f->niov > 0)
        write_all(f);
    f->niov = 0;
    f->len = 0;
    return f->err;
}

/* Grows a memory channel so that extra more bytes fit. */
static bool mem_reserve(qfile *f, size_t extra)
{
    if (f->len + extra <= f->cap)
        return true;
    if (extra > SIZE_MAX / 2 - f->len) {
        qfile_fail(f, -ENOMEM, "memory channel would exceed the address space");
        return false;
    }
    size_t cap = f->cap ? f->cap : 64 * 1024;
    while (cap < f->len + extra)
        cap *= 2;
    uint8_t *nb = realloc(f->buf, cap);
    if (!nb) {
        qfile_fail(f, -ENOMEM, "out of memory growing buffer to %zu bytes",
                   cap);
        return false;
    }
    f->buf = nb;
    f->cap = cap;
    return true;
}

/* Appends to the last iovec when it ends where buf's free space begins. */
static void fd_queue_internal(qfile *f, const void *p, size_t n)
{
    uint8_t *dst = f->buf + f->len;
    memcpy(dst, p, n);
    f->len += n;
    struct iovec *last = f->niov ? &f->iov[f->niov - 1] : NULL;
    if (last && (uint8_t *)last->iov_base + last->iov_len == dst) {
        last->iov_len += n;
        return;
    }
    f->iov[f->niov].iov_base = dst;
    f->iov[f->niov].iov_len = n;
    f->niov++;
}

static void crc_add(qfile *f, const void *p, size_t n)
{
    while (n > 0) {
        uInt chunk = n > (1u << 30) ? (1u << 30) : (uInt)n;
        f->crc = (uint32_t)crc32(f->crc, p, chunk);
        p = (const uint8_t *)p + chunk;
        n -= chunk;
    }
}

void qfile_crc_start(qfile *f)
{
    f->crc_on = true;
    f->crc = (uint32_t)crc32(0, Z_NULL, 0);
}

void qfile_crc_start_mem(qfile *f)
{
    qfile_crc_start(f);
    if (f->kind == QF_KIND_MEM && f->dir == QFILE_WRITE)
        crc_add(f, f->buf, f->len);
}

void qfile_crc_stop(qfile *f)
{
    f->crc_on = false;
}

uint32_t qfile_crc(const qfile *f)
{
    return f->crc;
}

static void put_bytes(qfile *f, const void *p, size_t n)
{
    if (f->err || n == 0)
        return;
    if (f->dir != QFILE_WRITE) {
        qfile_fail(f, -EBADF, "write to a read channel");
        return;
    }
    /*
     * The sum is taken over the copy, not the source: a running guest's
     * page, or a RAM cache the receiver writes, may change in between.
     */
    if (f->kind == QF_KIND_MEM) {
        if (mem_reserve(f, n)) {
            memcpy(f->buf + f->len, p, n);
            if (f->crc_on)
                crc_add(f, f->buf + f->len, n);
            f->len += n;
        }
        return;
    }
    const uint8_t *src = p;
    while (n > 0 && !f->err) {
        if (f->len == f->cap || f->niov == QF_IOV_MAX)
            qfile_flush(f);
        size_t room = f->cap - f->len;
        size_t chunk = n < room ? n : room;
        const uint8_t *dst = f->buf + f->len;
        fd_queue_internal(f, src, chunk);
        if (f->crc_on)
            crc_add(f, dst, chunk);
        src += chunk;
        n -= chunk;
    }
}

void qfile_put_iov(qfile *f, const void *buf, size_t len)
{
    if (f->err || len == 0)
        return;
    /* A checksum must cover the bytes as written: copy them now. */
    if (f->kind != QF_KIND_FD || f->dir != QFILE_WRITE || f->crc_on) {
        put_bytes(f, buf, len);
        return;
    }
    if (f->niov == QF_IOV_MAX)
        qfile_flush(f);
    f->iov[f->niov].iov_base = (void *)buf;
    f->iov[f->niov].iov_len = len;
    f->niov++;
}

void qfile_put_buf(qfile *f, const void *buf, size_t len)
{
    put_bytes(f, buf, len);
}
void qfile_put_u8(qfile *f, uint8_t v)
{
    put_bytes(f, &v, 1);
}

void qfile_put_be16(qfile *f, uint16_t v)
{
    uint8_t b[2] = { v >> 8, v };
    put_bytes(f, b, 2);
}

void qfile_put_be32(qfile *f, uint32_t v)
{
    uint8_t b[4] = { v >> 24, v >> 16, v >> 8, v };
    put_bytes(f, b, 4);
}

void qfile_put_be64(qfile *f, uint64_t v)
{
    qfile_put_be32(f, (uint32_t)(v >> 32));
    qfile_put_be32(f, (uint32_t)v);
}

void qfile_put_str(qfile *f, const char *s)
{
    size_t n = strlen(s);
    if (n > 255) {
        qfile_fail(f, -ENAMETOOLONG,
                   "string '%.32s...' is %zu bytes, limit 255", s, n);
        return;
    }
    qfile_put_u8(f, (uint8_t)n);
    put_bytes(f, s, n);
}

const uint8_t *qfile_mem_data(const qfile *f, size_t *len)
{
    if (f->kind != QF_KIND_MEM) {
        if (len)
            *len = 0;
        return NULL;
    }
    if (len)
        *len = f->len;
    return f->buf;
}

void qfile_mem_reset(qfile *f)
{
    if (f->kind != QF_KIND_MEM)
        return;
    f->len = 0;
    f->err = 0;
    f->errmsg[0] = '\0';
    f->crc_on = false;
}

/* ---- reading ---- */

/* Makes at least want bytes available in [pos, len); returns how many are. */
static size_t fill(qfile *f, size_t want)
{
    size_t have = f->len - f->pos;
    if (have >= want || f->kind != QF_KIND_FD || f->err)
        return have;
    if (f->pos > 0) {
        memmove(f->buf, f->buf + f->pos, have);
        f->done += f->pos;
        f->pos = 0;
        f->len = have;
    }
    while (f->len < want && f->len < f->cap) {
        ssize_t r = read(f->fd, f->buf + f->len, f->cap - f->len);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            int e = -errno;
            qfile_fail(f, e, "read failed: %s", strerror(-e));
            break;
        }
        if (r == 0)
            break;
        f->len += (size_t)r;
    }
    return f->len - f->pos;
}

static bool get_check(qfile *f, size_t n)
{
    if (f->err)
        return false;
    if (f->dir != QFILE_READ) {
        qfile_fail(f, -EBADF, "read from a write channel");
        return false;
    }
    if (fill(f, n) < n) {
        qfile_fail(f, -ENODATA,
                   "stream ends early: %zu more bytes needed, %zu left", n,
                   f->len - f->pos);
        return false;
    }
    return true;
}

int64_t qfile_remaining(const qfile *f)
{
    if (f->kind != QF_KIND_VIEW)
        return -1;
    return (int64_t)(f->len - f->pos);
}

const uint8_t *qfile_get_ptr(qfile *f, size_t len)
{
    if (f->kind == QF_KIND_FD && len > f->cap) {
        qfile_fail(f, -E2BIG,
                   "record of %zu bytes exceeds the %zu-byte window", len,
                   f->cap);
        return NULL;
    }
    if (!get_check(f, len))
        return NULL;
    const uint8_t *p = f->buf + f->pos;
    f->pos += len;
    if (f->crc_on)
        crc_add(f, p, len);
    return p;
}

/*
 * A read larger than the window (a package being staged) goes straight
 * from the fd into the caller's buffer, after what is already buffered,
 * instead of through the window: one copy fewer on the secondary's path.
 */
static void get_direct(qfile *f, uint8_t *dst, size_t len)
{
    size_t have = f->len - f->pos;
    memcpy(dst, f->buf + f->pos, have);
    if (f->crc_on)
        crc_add(f, dst, have);
    f->pos += have;
    size_t got = have;
    while (got < len) {
        ssize_t r = read(f->fd, dst + got, len - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            if (r < 0)
                qfile_fail(f, -errno, "read failed: %s", strerror(errno));
            else
                qfile_fail(f, -ENODATA,
                           "stream ends early: %zu more bytes "
                           "needed, 0 left",
                           len - got);
            memset(dst, 0, len);
            return;
        }
        if (f->crc_on)
            crc_add(f, dst + got, (size_t)r);
        f->done += (uint64_t)r;
        got += (size_t)r;
    }
}

void qfile_get_buf(qfile *f, void *buf, size_t len)
{
    uint8_t *dst = buf;
    if (f->kind == QF_KIND_FD && f->dir == QFILE_READ && !f->err &&
        len > f->cap) {
        get_direct(f, dst, len);
        return;
    }
    while (len > 0) {
        size_t chunk = len < QFILE_BUF_SIZE ? len : QFILE_BUF_SIZE;
        const uint8_t *p = qfile_get_ptr(f, chunk);
        if (!p) {
            memset(dst, 0, len);
            return;
        }
        memcpy(dst, p, chunk);
        dst += chunk;
        len -= chunk;
    }
}

uint8_t qfile_get_u8(qfile *f)
{
    const uint8_t *p = qfile_get_ptr(f, 1);
    return p ? p[0] : 0;
}

uint16_t qfile_get_be16(qfile *f)
{
    const uint8_t *p = qfile_get_ptr(f, 2);
    return p ? (uint16_t)(p[0] << 8 | p[1]) : 0;
}

uint32_t qfile_get_be32(qfile *f)
{
    const uint8_t *p = qfile_get_ptr(f, 4);
    if (!p)
        return 0;
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 |
           p[3];
}

uint64_t qfile_get_be64(qfile *f)
{
    uint64_t hi = qfile_get_be32(f);
    return hi << 32 | qfile_get_be32(f);
}

size_t qfile_get_str(qfile *f, char out[256])
{
    size_t n = qfile_get_u8(f);
    qfile_get_buf(f, out, n);
    if (f->err)
        n = 0;
    out[n] = '\0';
    return n;
}

int qfile_peek_u8(qfile *f)
{
    if (f->err || f->dir != QFILE_READ || fill(f, 1) < 1)
        return -1;
    return f->buf[f->pos];
}

bool qfile_at_eof(qfile *f)
{
    return f->dir == QFILE_READ && !f->err && fill(f, 1) == 0;
}

void qfile_skip(qfile *f, size_t len)
{
    while (len > 0 && !f->err) {
        size_t chunk = len < QFILE_BUF_SIZE ? len : QFILE_BUF_SIZE;
        qfile_get_ptr(f, chunk);
        len -= chunk;
    }
}

int qfile_rewind(qfile *f)
{
    if (f->dir != QFILE_READ)
        return -EBADF;
    if (f->kind == QF_KIND_FD) {
        if (f->start < 0 || lseek(f->fd, f->start, SEEK_SET) < 0)
            return -ESPIPE;
        f->len = 0;
    }
    f->pos = 0;
    f->done = 0;
    if (f->crc_on)
        qfile_crc_start(f);
    return 0;
}
