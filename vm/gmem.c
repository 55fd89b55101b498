/*
 * gmem: guest RAM blocks, address checks and the dirty log.
 */
#include "vm/gmem.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define BITS_PER_LONG (8 * sizeof(unsigned long))

void gmem_init(gmem *g, kvm_vm *kvm)
{
    memset(g, 0, sizeof(*g));
    g->kvm = kvm;
}

int gmem_add(gmem *g, const char *name, uint64_t gpa, uint64_t len, char *err,
             size_t errlen)
{
    int rc;

    if (g->n == GMEM_MAX_BLOCKS || len == 0 || len % RAM_PAGE_SIZE ||
        gpa % RAM_PAGE_SIZE || gpa + len < gpa || strlen(name) > 255) {
        snprintf(err, errlen, "RAM block '%s': bad size or address", name);
        return -EINVAL;
    }
    for (size_t i = 0; i < g->n; i++) {
        const gmem_region *o = &g->regions[i];
        if (gpa < o->gpa + g->blocks[i].length && o->gpa < gpa + len) {
            snprintf(err, errlen, "RAM block '%s' overlaps '%s'", name,
                     g->blocks[i].name);
            return -EINVAL;
        }
    }

    ram_block *b = &g->blocks[g->n];
    gmem_region *r = &g->regions[g->n];
    memset(b, 0, sizeof(*b));
    memset(r, 0, sizeof(*r));
    r->gpa = gpa;
    r->memfd = memfd_create(name, MFD_CLOEXEC);
    if (r->memfd < 0) {
        rc = -errno;
        snprintf(err, errlen, "RAM block '%s': memfd_create: %s", name,
                 strerror(-rc));
        return rc;
    }
    if (ftruncate(r->memfd, (off_t)len) < 0) {
        rc = -errno;
        snprintf(err, errlen, "RAM block '%s': cannot size it to %" PRIu64
                 " bytes: %s", name, len, strerror(-rc));
        goto fail;
    }
    void *host = mmap(NULL, len, PROT_READ | PROT_WRITE,
                      MAP_SHARED | MAP_NORESERVE, r->memfd, 0);
    if (host == MAP_FAILED) {
        rc = -errno;
        snprintf(err, errlen, "RAM block '%s': cannot map %" PRIu64
                 " bytes: %s", name, len, strerror(-rc));
        goto fail;
    }
    b->host = host;
    b->length = len;
    b->name = strdup(name);
    size_t words = ram_bitmap_longs(len);
    b->dirty = calloc(words, sizeof(long));
    r->kvm_bits = calloc(words, sizeof(long));
    r->mon_bits = calloc(words, sizeof(long));
    if (!b->name || !b->dirty || !r->kvm_bits || !r->mon_bits) {
        rc = -ENOMEM;
        snprintf(err, errlen, "RAM block '%s': no memory for its bitmaps",
                 name);
        goto fail_map;
    }
    rc = kvm_set_slot(g->kvm, (uint32_t)g->n, gpa, host, len, true);
    if (rc < 0) {
        snprintf(err, errlen, "RAM block '%s': KVM_SET_USER_MEMORY_REGION: "
                 "%s", name, strerror(-rc));
        goto fail_map;
    }
    g->n++;
    return 0;
fail_map:
    munmap(host, len);
    free((char *)b->name);
    free(b->dirty);
    free(r->kvm_bits);
    free(r->mon_bits);
fail:
    close(r->memfd);
    memset(b, 0, sizeof(*b));
    return rc;
}

void gmem_free(gmem *g)
{
    for (size_t i = 0; i < g->n; i++) {
        ram_block *b = &g->blocks[i];
        gmem_region *r = &g->regions[i];
        munmap(b->host, b->length);
        close(r->memfd);
        free((char *)b->name);
        free(b->dirty);
        free(r->kvm_bits);
        free(r->mon_bits);
    }
    g->n = 0;
}

static ssize_t find(const gmem *g, uint64_t gpa, uint64_t len)
{
    for (size_t i = 0; i < g->n; i++) {
        uint64_t start = g->regions[i].gpa, size = g->blocks[i].length;
        /* Overflow-safe: [gpa, gpa + len) within [start, start + size). */
        if (gpa >= start && gpa - start <= size && len <= size - (gpa - start))
            return (ssize_t)i;
    }
    return -1;
}

void *gmem_ptr(const gmem *g, uint64_t gpa, uint64_t len)
{
    ssize_t i = find(g, gpa, len);

    return i < 0 ? NULL : g->blocks[i].host + (gpa - g->regions[i].gpa);
}

void gmem_mark_dirty(gmem *g, uint64_t gpa, uint64_t len)
{
    ssize_t i = find(g, gpa, len);

    if (i < 0 || len == 0)
        return;
    uint64_t off = gpa - g->regions[i].gpa;
    unsigned long *bits = g->regions[i].mon_bits;
    for (uint64_t p = off / RAM_PAGE_SIZE; p <= (off + len - 1) / RAM_PAGE_SIZE;
         p++)
        __atomic_fetch_or(&bits[p / BITS_PER_LONG], 1ul << (p % BITS_PER_LONG),
                          __ATOMIC_RELAXED);
}

int gmem_sync_dirty(gmem *g)
{
    for (size_t i = 0; i < g->n; i++) {
        ram_block *b = &g->blocks[i];
        gmem_region *r = &g->regions[i];
        size_t words = ram_bitmap_longs(b->length);

        memset(r->kvm_bits, 0, words * sizeof(long));
        int rc = kvm_dirty_fetch(g->kvm, (uint32_t)i,
                                 b->length / RAM_PAGE_SIZE, r->kvm_bits);
        if (rc < 0)
            return rc;
        for (size_t w = 0; w < words; w++) {
            unsigned long mon =
                __atomic_load_n(&r->mon_bits[w], __ATOMIC_RELAXED)
                ? __atomic_exchange_n(&r->mon_bits[w], 0, __ATOMIC_RELAXED)
                : 0;
            if (r->kvm_bits[w] | mon)
                __atomic_fetch_or(&b->dirty[w], r->kvm_bits[w] | mon,
                                  __ATOMIC_RELAXED);
        }
    }
    return 0;
}

uint64_t gmem_total(const gmem *g)
{
    uint64_t t = 0;

    for (size_t i = 0; i < g->n; i++)
        t += g->blocks[i].length;
    return t;
}

/* Sets bits [first, last] of a bitmap, atomically (codec threads read it). */
static void set_bits(unsigned long *map, uint64_t first, uint64_t last)
{
    const unsigned bits = 8 * sizeof(unsigned long);
    for (uint64_t p = first; p <= last; p++)
        __atomic_fetch_or(&map[p / bits], 1ul << (p % bits),
                          __ATOMIC_RELAXED);
}

void gmem_mark_allocated_dirty(gmem *g)
{
    for (size_t i = 0; i < g->n; i++) {
        ram_block *b = &g->blocks[i];
        int fd = g->regions[i].memfd;
        off_t pos = 0, len = (off_t)b->length;
        while (pos < len) {
            off_t data = lseek(fd, pos, SEEK_DATA);
            if (data < 0)
                break;      /* ENXIO: no data after pos */
            off_t hole = lseek(fd, data, SEEK_HOLE);
            if (hole < 0 || hole > len)
                hole = len;
            set_bits(b->dirty, (uint64_t)data / RAM_PAGE_SIZE,
                     ((uint64_t)hole - 1) / RAM_PAGE_SIZE);
            pos = hole;
        }
        if (pos == 0 && lseek(fd, 0, SEEK_DATA) < 0 && errno != ENXIO)
            ram_mark_all_dirty(b, 1);   /* no hole support: copy it all */
    }
}
