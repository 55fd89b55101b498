/*
 * disk: a raw image with a chunk dirty bitmap.  The bitmap is only ever
 * changed with atomic operations, so vCPU threads mark while the loop
 * takes, without a lock.
 */
#include "checkpoint/disk.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define LONG_BITS (sizeof(unsigned long) * CHAR_BIT)

struct disk {
    int fd;
    bool readonly;
    uint64_t size;
    uint64_t chunks;
    char *path;
    char name[DISK_NAME_MAX + 1];
    unsigned long *dirty;
    size_t words;
};

int disk_parse_spec(const char *spec, disk_spec *out, char *err,
                    size_t errlen)
{
    const char *comma = spec ? strchr(spec, ',') : NULL;
    size_t plen = comma ? (size_t)(comma - spec) : (spec ? strlen(spec) : 0);

    memset(out, 0, sizeof(*out));
    if (plen == 0) {
        snprintf(err, errlen, "--disk: no image file given (FILE[,readonly])");
        return -EINVAL;
    }
    if (plen >= sizeof(out->path)) {
        snprintf(err, errlen, "--disk: image path longer than %zu bytes",
                 sizeof(out->path) - 1);
        return -EINVAL;
    }
    memcpy(out->path, spec, plen);
    while (comma) {
        const char *opt = comma + 1;
        size_t olen;

        comma = strchr(opt, ',');
        olen = comma ? (size_t)(comma - opt) : strlen(opt);
        if (olen == 8 && memcmp(opt, "readonly", 8) == 0) {
            out->readonly = true;
        } else {
            snprintf(err, errlen, "--disk %s: unknown option '%.*s' "
                     "(the only one is readonly)", out->path,
                     (int)(olen > 64 ? 64 : olen), opt);
            return -EINVAL;
        }
    }
    return 0;
}

int disk_open(disk **out, const char *path, bool readonly, const char *name,
              char *err, size_t errlen)
{
    size_t nlen = name ? strlen(name) : 0;
    struct stat st;
    disk *d;
    int fd, rc;

    *out = NULL;
    if (nlen == 0 || nlen > DISK_NAME_MAX) {
        snprintf(err, errlen, "disk %s: device name must be 1..%d bytes",
                 path, DISK_NAME_MAX);
        return -EINVAL;
    }
    fd = open(path, (readonly ? O_RDONLY : O_RDWR) | O_CLOEXEC);
    if (fd < 0) {
        rc = -errno;
        snprintf(err, errlen, "disk %s: %s", path, strerror(errno));
        return rc;
    }
    if (fstat(fd, &st) < 0) {
        rc = -errno;
        snprintf(err, errlen, "disk %s: %s", path, strerror(errno));
        goto fail;
    }
    /*
     * As QEMU locks its images: two writers of one image (a primary and
     * a secondary given the same path on one host) would corrupt it.
     */
    if (flock(fd, (readonly ? LOCK_SH : LOCK_EX) | LOCK_NB) < 0) {
        rc = errno == EWOULDBLOCK ? -EBUSY : -errno;
        snprintf(err, errlen, "disk %s: %s", path, errno == EWOULDBLOCK
                 ? "in use by another user of the image (it is locked)"
                 : strerror(errno));
        goto fail;
    }
    rc = -EINVAL;
    if (!S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "disk %s: not a regular file (a raw image)",
                 path);
        goto fail;
    }
    if (st.st_size <= 0 || st.st_size % DISK_SECTOR_SIZE ||
        (uint64_t)st.st_size > DISK_MAX_SIZE) {
        snprintf(err, errlen, "disk %s: size %" PRIu64 " bytes is not a "
                 "nonzero multiple of %u up to %" PRIu64 " (1 TiB)", path,
                 (uint64_t)st.st_size, DISK_SECTOR_SIZE,
                 (uint64_t)DISK_MAX_SIZE);
        goto fail;
    }
    rc = -ENOMEM;
    d = calloc(1, sizeof(*d));
    if (!d)
        goto nomem;
    d->fd = fd;
    d->readonly = readonly;
    d->size = (uint64_t)st.st_size;
    d->chunks = (d->size + DISK_CHUNK_SIZE - 1) >> DISK_CHUNK_BITS;
    d->words = (size_t)((d->chunks + LONG_BITS - 1) / LONG_BITS);
    d->path = strdup(path);
    d->dirty = calloc(d->words, sizeof(unsigned long));
    memcpy(d->name, name, nlen);
    if (!d->path || !d->dirty) {
        free(d->path);
        free(d->dirty);
        free(d);
        goto nomem;
    }
    *out = d;
    return 0;

nomem:
    snprintf(err, errlen, "disk %s: out of memory", path);
fail:
    close(fd);
    return rc;
}

int disk_open_resized(disk **out, const char *path, uint64_t size,
                      const char *name, char *err, size_t errlen)
{
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        int e = errno;
        snprintf(err, errlen, "disk %s: %s", path, strerror(e));
        return -e;
    }
    struct stat st;
    int r = 0;
    if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        r = errno == EWOULDBLOCK ? -EBUSY : -errno;
        snprintf(err, errlen, "disk %s: %s", path,
                 r == -EBUSY ? "in use by another user of the image (it "
                               "is locked)" : strerror(-r));
    } else if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        r = -EINVAL;
        snprintf(err, errlen, "disk %s: not a regular file", path);
    } else if ((uint64_t)st.st_size != size &&
               ftruncate(fd, (off_t)size) < 0) {
        r = -errno;
        snprintf(err, errlen, "disk %s: making it %" PRIu64 " bytes: %s",
                 path, size, strerror(-r));
    }
    /* The lock goes with the fd; disk_open takes its own. */
    close(fd);
    return r < 0 ? r : disk_open(out, path, false, name, err, errlen);
}

void disk_close(disk *d)
{
    if (!d)
        return;
    close(d->fd);
    free(d->path);
    free(d->dirty);
    free(d);
}

const char *disk_name(const disk *d) { return d->name; }
const char *disk_path(const disk *d) { return d->path; }
bool disk_readonly(const disk *d) { return d->readonly; }
uint64_t disk_size(const disk *d) { return d->size; }
uint64_t disk_sectors(const disk *d) { return d->size >> DISK_SECTOR_BITS; }
uint64_t disk_chunks(const disk *d) { return d->chunks; }

uint32_t disk_chunk_len(const disk *d, uint64_t c)
{
    uint64_t off = c << DISK_CHUNK_BITS;

    if (off >= d->size)
        return 0;
    return d->size - off < DISK_CHUNK_SIZE ? (uint32_t)(d->size - off)
                                           : DISK_CHUNK_SIZE;
}

static int pread_all(int fd, void *buf, size_t len, uint64_t off)
{
    uint8_t *p = buf;

    while (len) {
        ssize_t n = pread(fd, p, len, (off_t)off);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            return -EIO;        /* the file shrank under us */
        p += n;
        len -= (size_t)n;
        off += (uint64_t)n;
    }
    return 0;
}

static int pwrite_all(int fd, const void *buf, size_t len, uint64_t off)
{
    const uint8_t *p = buf;

    while (len) {
        ssize_t n = pwrite(fd, p, len, (off_t)off);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            return -EIO;
        p += n;
        len -= (size_t)n;
        off += (uint64_t)n;
    }
    return 0;
}

static bool in_disk(const disk *d, uint64_t sector, uint64_t nsectors)
{
    uint64_t total = d->size >> DISK_SECTOR_BITS;

    return sector <= total && nsectors <= total - sector;
}

int disk_read(disk *d, uint64_t sector, void *buf, uint32_t nsectors)
{
    if (!in_disk(d, sector, nsectors))
        return -ERANGE;
    return pread_all(d->fd, buf, (size_t)nsectors << DISK_SECTOR_BITS,
                     sector << DISK_SECTOR_BITS);
}

int disk_write(disk *d, uint64_t sector, const void *buf, uint32_t nsectors)
{
    int rc;

    if (d->readonly)
        return -EROFS;
    if (!in_disk(d, sector, nsectors))
        return -ERANGE;
    rc = pwrite_all(d->fd, buf, (size_t)nsectors << DISK_SECTOR_BITS,
                    sector << DISK_SECTOR_BITS);
    /*
     * Marked even after a partial failure: some bytes may have changed,
     * and sending a chunk that did not is harmless.
     */
    disk_mark_dirty(d, sector, nsectors);
    return rc;
}

int disk_flush(disk *d)
{
    if (d->readonly)
        return 0;
    return fdatasync(d->fd) < 0 ? -errno : 0;
}

int disk_read_chunk(disk *d, uint64_t c, void *buf)
{
    uint32_t len = disk_chunk_len(d, c);

    if (len == 0)
        return -ERANGE;
    if (len < DISK_CHUNK_SIZE)
        memset((uint8_t *)buf + len, 0, DISK_CHUNK_SIZE - len);
    return pread_all(d->fd, buf, len, c << DISK_CHUNK_BITS);
}

int disk_write_bytes(disk *d, uint64_t offset, const void *buf, size_t len)
{
    if (d->readonly)
        return -EROFS;
    if (offset > d->size || len > d->size - offset)
        return -ERANGE;
    return pwrite_all(d->fd, buf, len, offset);
}

int disk_zero_chunk(disk *d, uint64_t c)
{
    static const uint8_t zeros[64 * 1024];
    uint32_t len = disk_chunk_len(d, c);
    uint64_t off = c << DISK_CHUNK_BITS;

    if (d->readonly)
        return -EROFS;
    if (len == 0)
        return -ERANGE;
    if (fallocate(d->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                  (off_t)off, len) == 0)
        return 0;
    if (errno != EOPNOTSUPP && errno != ENOSYS)
        return -errno;
    for (uint32_t done = 0; done < len; done += sizeof(zeros)) {
        uint32_t n = len - done < sizeof(zeros) ? len - done : sizeof(zeros);
        int rc = pwrite_all(d->fd, zeros, n, off + done);

        if (rc < 0)
            return rc;
    }
    return 0;
}

size_t disk_bitmap_longs(const disk *d)
{
    return d->words;
}

void disk_mark_dirty(disk *d, uint64_t sector, uint64_t nsectors)
{
    uint64_t first, last;

    if (nsectors == 0 || !in_disk(d, sector, nsectors))
        return;
    first = sector / DISK_CHUNK_SECTORS;
    last = (sector + nsectors - 1) / DISK_CHUNK_SECTORS;
    for (uint64_t c = first; c <= last; c++)
        __atomic_fetch_or(&d->dirty[c / LONG_BITS], 1UL << (c % LONG_BITS),
                          __ATOMIC_RELEASE);
}

/* The bits of word w that stand for chunks of the disk. */
static unsigned long word_mask(const disk *d, size_t w)
{
    uint64_t first = (uint64_t)w * LONG_BITS;

    if (d->chunks - first >= LONG_BITS)
        return ~0UL;
    return (1UL << (d->chunks - first)) - 1;
}

void disk_mark_all_dirty(disk *d)
{
    for (size_t w = 0; w < d->words; w++)
        __atomic_fetch_or(&d->dirty[w], word_mask(d, w), __ATOMIC_RELEASE);
}

void disk_mark_dirty_bits(disk *d, const unsigned long *bits)
{
    for (size_t w = 0; w < d->words; w++)
        if (bits[w] & word_mask(d, w))
            __atomic_fetch_or(&d->dirty[w], bits[w] & word_mask(d, w),
                              __ATOMIC_RELEASE);
}

uint64_t disk_take_dirty(disk *d, unsigned long *out)
{
    uint64_t n = 0;

    for (size_t w = 0; w < d->words; w++) {
        /* A plain load first: most words are clean, and an exchange on
         * each would bounce their cache lines off the writers' cores. */
        unsigned long v = __atomic_load_n(&d->dirty[w], __ATOMIC_RELAXED)
            ? __atomic_exchange_n(&d->dirty[w], 0, __ATOMIC_ACQUIRE) : 0;

        out[w] = v;
        n += (uint64_t)__builtin_popcountl(v);
    }
    return n;
}

uint64_t disk_next_dirty(const disk *d, uint64_t from)
{
    for (uint64_t w = from / LONG_BITS; w < d->words; w++) {
        unsigned long v = __atomic_load_n(&d->dirty[w], __ATOMIC_ACQUIRE);

        if (w == from / LONG_BITS)
            v &= ~0UL << (from % LONG_BITS);
        if (v)
            return w * LONG_BITS + (uint64_t)__builtin_ctzl(v);
    }
    return d->chunks;
}

bool disk_test_and_clear(disk *d, uint64_t c)
{
    unsigned long bit = 1UL << (c % LONG_BITS);

    if (c >= d->chunks)
        return false;
    return __atomic_fetch_and(&d->dirty[c / LONG_BITS], ~bit,
                              __ATOMIC_ACQUIRE) & bit;
}

uint64_t disk_dirty_count(const disk *d)
{
    uint64_t n = 0;

    for (size_t w = 0; w < d->words; w++)
        n += (uint64_t)__builtin_popcountl(
            __atomic_load_n(&d->dirty[w], __ATOMIC_RELAXED));
    return n;
}

/* As ram_page_is_zero: the head first, then memcmp against itself. */
bool disk_is_zero(const void *buf, size_t len)
{
    const uint8_t *p = buf;
    size_t head = len < 16 ? len : 16;

    for (size_t i = 0; i < head; i++)
        if (p[i])
            return false;
    return len <= 16 || memcmp(p, p + 16, len - 16) == 0;
}
