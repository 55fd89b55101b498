/*
 * Unit tests for devices/virtio_blk and the PCI bus that carries it
 * (vm/pcpci): a driver's setup through BAR 0 as Linux's does it, requests
 * in real virtqueues in guest memory against real image files (the bytes
 * in the file, the dirty chunks marked), every malformed request answered
 * or the queue broken, the configuration space, and the "pci" section
 * saved and loaded with and without a disk (a real KVM VM's RAM), every
 * mismatch refused naming the device.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint/disk.h"
#include "devices/pci.h"
#include "devices/virtio_blk.h"
#include "devround.h"
#include "diskimg.h"
#include "skips.h"
#include "vm/gmem.h"
#include "vm/kvm.h"
#include "vm/pcpci.h"

#define MIB (1024u * 1024u)
#define QSIZE 16u
#define DESC   0x00000u                 /* offsets from the ring base */
#define AVAIL  0x01000u
#define USED   0x02000u
#define HDR    0x03000u
#define STATUS 0x03100u
#define BUF    0x10000u                 /* data buffers from here */
#define IMG_SIZE (8ull * MIB)           /* 16384 sectors, 8 chunks */

/* Guest RAM for the bare device: GUEST_SIZE bytes at GUEST_BASE. */
#define GUEST_BASE 0x100000u
#define GUEST_SIZE (16u * MIB)

static char err[512];

typedef struct guest {
    uint8_t ram[GUEST_SIZE];
    unsigned dirty;
    bool level;
    unsigned raises;
} guest;

static guest g;

/* Where the driver's accesses go: a bare device or the bus. */
typedef struct target {
    virtio_blk *b;                  /* bare */
    pcpci *p;                       /* or through the bus */
    gmem *gm;
    uint64_t rings;                 /* guest-physical base of the rings */
} target;

static target T;

static void *ptr(void *opaque, uint64_t gpa, uint64_t len)
{
    guest *x = opaque;
    if (gpa < GUEST_BASE || len > GUEST_SIZE ||
        gpa - GUEST_BASE > GUEST_SIZE - len)
        return NULL;
    return x->ram + (gpa - GUEST_BASE);
}

static void dirty(void *opaque, uint64_t gpa, uint64_t len)
{
    (void)gpa;
    (void)len;
    ((guest *)opaque)->dirty++;
}

static void irq(void *opaque, bool level)
{
    guest *x = opaque;
    if (level && !x->level)
        x->raises++;
    x->level = level;
}

/* Host address of guest memory, rings-relative. */
static uint8_t *gp(uint64_t off, uint64_t len)
{
    uint8_t *p = T.gm ? gmem_ptr(T.gm, T.rings + off, len)
                      : ptr(&g, T.rings + off, len);
    assert_non_null(p);
    return p;
}

static void access_bar(uint64_t off, bool write, uint8_t *d, unsigned len)
{
    if (T.p)
        assert_true(pcpci_mmio(T.p, PCPCI_BLK_BAR + off, write, d, len));
    else
        virtio_blk_mmio(T.b, off, write, d, len);
}

static void w(uint64_t off, unsigned len, uint32_t v)
{
    uint8_t d[4];
    for (unsigned i = 0; i < 4; i++)
        d[i] = (uint8_t)(v >> (8 * i));
    access_bar(off, true, d, len);
}

static uint32_t r(uint64_t off, unsigned len)
{
    uint8_t d[4] = { 0 };
    access_bar(off, false, d, len);
    return d[0] | d[1] << 8 | (uint32_t)d[2] << 16 | (uint32_t)d[3] << 24;
}

static void put_le(uint8_t *p, uint64_t v, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_le(const uint8_t *p, unsigned n)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < n; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

/* Descriptor i; addr is rings-relative unless abs. */
static void put_desc(unsigned i, uint64_t gpa, uint32_t len, uint16_t flags,
                     uint16_t next)
{
    uint8_t *d = gp(DESC + 16u * i, 16);
    put_le(d, gpa, 8);
    put_le(d + 8, len, 4);
    put_le(d + 12, flags, 2);
    put_le(d + 14, next, 2);
}

#define F_NEXT  1u
#define F_WRITE 2u

static uint64_t at(uint64_t off)
{
    return T.rings + off;
}

static uint16_t used_idx(void)
{
    return (uint16_t)get_le(gp(USED + 2, 2), 2);
}

/* Makes head available and notifies; returns the used idx after. */
static uint16_t kick(uint16_t head)
{
    uint8_t *idx = gp(AVAIL + 2, 2);
    uint16_t i = (uint16_t)get_le(idx, 2);
    put_le(gp(AVAIL + 4 + 2u * (i % QSIZE), 2), head, 2);
    put_le(idx, (uint16_t)(i + 1), 2);
    w(VIRTIO_PCI_NOTIFY, 2, 0);
    return used_idx();
}

/* The used element for the last request: its head and length. */
static uint32_t last_used_len(void)
{
    uint16_t i = (uint16_t)(used_idx() - 1);
    return (uint32_t)get_le(gp(USED + 4 + 8u * (i % QSIZE) + 4, 4), 4);
}

static void put_hdr(uint32_t type, uint64_t sector)
{
    uint8_t *h = gp(HDR, 16);
    put_le(h, type, 4);
    put_le(h + 4, 0, 4);
    put_le(h + 8, sector, 8);
}

/*
 * The usual request: header, data (len bytes at BUF, device-writable for
 * IN), status; its status byte (0xee left there if none came).
 */
static uint8_t req(uint32_t type, uint64_t sector, uint32_t len, bool in)
{
    uint16_t before = used_idx();
    put_hdr(type, sector);
    *gp(STATUS, 1) = 0xee;
    if (len) {
        put_desc(0, at(HDR), 16, F_NEXT, 1);
        put_desc(1, at(BUF), len, F_NEXT | (in ? F_WRITE : 0), 2);
    } else {
        put_desc(0, at(HDR), 16, F_NEXT, 2);
    }
    put_desc(2, at(STATUS), 1, F_WRITE, 0);
    assert_int_equal(kick(0), (uint16_t)(before + 1));
    return *gp(STATUS, 1);
}

/* What Linux's virtio_pci_modern and virtio_blk do, in that order. */
static void driver_setup(uint64_t features)
{
    w(0x14, 1, 0);
    w(0x14, 1, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
    w(0x08, 4, 0);
    w(0x0c, 4, (uint32_t)features);
    w(0x08, 4, 1);
    w(0x0c, 4, (uint32_t)(features >> 32));
    w(0x14, 1, 0x0b);
    assert_int_equal(r(0x14, 1), 0x0b);     /* FEATURES_OK kept */
    assert_int_equal(r(0x12, 2), 1);        /* num_queues */
    w(0x16, 2, 0);
    assert_int_equal(r(0x18, 2), VIRTIO_BLK_QUEUE_MAX);
    w(0x18, 2, QSIZE);
    memset(gp(0, BUF), 0, BUF);
    w(0x20, 4, (uint32_t)at(DESC));
    w(0x24, 4, (uint32_t)(at(DESC) >> 32));
    w(0x28, 4, (uint32_t)at(AVAIL));
    w(0x2c, 4, 0);
    w(0x30, 4, (uint32_t)at(USED));
    w(0x34, 4, 0);
    w(0x1c, 2, 1);
    assert_int_equal(r(0x1c, 2), 1);
    w(0x14, 1, 0x0f);
    assert_int_equal(r(0x14, 1), 0x0f);
}

static disk *open_img(const char *name, uint64_t size, uint32_t seed,
                      bool ro, const char **path)
{
    const char *p = diskimg_make(name, size, seed);
    disk *d = NULL;
    assert_non_null(p);
    if (disk_open(&d, p, ro, "disk0", err, sizeof(err)) < 0)
        fail_msg("disk_open: %s", err);
    if (path)
        *path = p;
    return d;
}

/* A bare device over d, set up by the driver. */
static void bare(virtio_blk *b, disk *d, uint64_t features)
{
    memset(&g, 0, sizeof(g));
    virtq_mem mem = { .ptr = ptr, .dirty = dirty, .opaque = &g };
    virtio_blk_init(b, d, &mem, irq, &g);
    T = (target){ .b = b, .rings = GUEST_BASE };
    driver_setup(features);
}

static bool needs_reset(void)
{
    return r(0x14, 1) & VIRTIO_STATUS_NEEDS_RESET;
}

static void test_config(void **state)
{
    static virtio_blk b;
    (void)state;
    disk *d = open_img("cfg.img", IMG_SIZE, 0, false, NULL);
    memset(&g, 0, sizeof(g));
    virtq_mem mem = { .ptr = ptr, .dirty = dirty, .opaque = &g };
    virtio_blk_init(&b, d, &mem, irq, &g);
    T = (target){ .b = &b, .rings = GUEST_BASE };

    /* PCI identity: virtio 0x1af4, modern block 0x1042, storage. */
    assert_int_equal(pci_func_read(&b.vp.pci, 0x00, 2), 0x1af4);
    assert_int_equal(pci_func_read(&b.vp.pci, 0x02, 2), 0x1042);
    assert_int_equal(pci_func_read(&b.vp.pci, 0x0b, 1), 0x01);
    assert_int_equal(pci_func_read(&b.vp.pci, 0x08, 1), 1);  /* revision */
    /* Features: SIZE_MAX, SEG_MAX, BLK_SIZE, FLUSH; VERSION_1; no RO. */
    w(0x00, 4, 0);
    assert_int_equal(r(0x04, 4), (1u << 1) | (1u << 2) | (1u << 6) |
                     (1u << 9));
    w(0x00, 4, 1);
    assert_int_equal(r(0x04, 4), 1);
    /* The configuration space. */
    uint64_t cap = r(VIRTIO_PCI_DEVCFG, 4) |
                   (uint64_t)r(VIRTIO_PCI_DEVCFG + 4, 4) << 32;
    assert_int_equal(cap, IMG_SIZE / 512);
    assert_int_equal(r(VIRTIO_PCI_DEVCFG + 8, 4), VIRTIO_BLK_SIZE_MAX);
    assert_int_equal(r(VIRTIO_PCI_DEVCFG + 12, 4), VIRTIO_BLK_SEG_MAX);
    assert_int_equal(r(VIRTIO_PCI_DEVCFG + 20, 4), 512);
    assert_int_equal(r(VIRTIO_PCI_DEVCFG + 20, 2), 512);
    /* Past the 24 bytes: nothing. */
    assert_int_equal(r(VIRTIO_PCI_DEVCFG + 24, 4), 0);
    /* A driver asking for what was not offered does not get FEATURES_OK. */
    w(0x14, 1, 3);
    w(0x08, 4, 0);
    w(0x0c, 4, 1u << 5);                    /* RO, not offered */
    w(0x08, 4, 1);
    w(0x0c, 4, 1);
    w(0x14, 1, 0x0b);
    assert_int_equal(r(0x14, 1), 0x03);
    disk_close(d);

    /* A readonly image offers VIRTIO_BLK_F_RO. */
    d = open_img("cfg-ro.img", IMG_SIZE, 0, true, NULL);
    virtio_blk_init(&b, d, &mem, irq, &g);
    w(0x00, 4, 0);
    assert_int_equal(r(0x04, 4) & (1u << 5), 1u << 5);
    disk_close(d);
}

static void test_read_write(void **state)
{
    static virtio_blk b;
    static uint8_t want[64 * 1024];
    (void)state;
    const char *path;
    disk *d = open_img("rw.img", IMG_SIZE, 7, false, &path);
    unsigned long bits[1];

    bare(&b, d, VIRTIO_BLK_FEATURES);
    assert_int_equal(disk_dirty_count(d), 0);

    /* IN: 8 sectors at 100, the image's bytes in the buffer. */
    uint8_t *img = NULL;
    size_t ilen;
    img = diskimg_slurp(path, &ilen);
    assert_non_null(img);
    assert_int_equal(req(VIRTIO_BLK_T_IN, 100, 4096, true), VIRTIO_BLK_S_OK);
    assert_memory_equal(gp(BUF, 4096), img + 100 * 512, 4096);
    assert_int_equal(last_used_len(), 4096 + 1);
    assert_true(g.dirty > 0);
    assert_true(g.level);
    assert_int_equal(r(VIRTIO_PCI_ISR, 1), VIRTIO_ISR_QUEUE);
    assert_false(g.level);
    assert_int_equal(disk_dirty_count(d), 0);   /* a read dirties nothing */
    free(img);

    /* OUT: 64 KiB at sector 2048 (chunk 1): in the file, chunk 1 dirty. */
    for (size_t i = 0; i < sizeof(want); i++)
        want[i] = (uint8_t)(i * 13 + 5);
    memcpy(gp(BUF, sizeof(want)), want, sizeof(want));
    assert_int_equal(req(VIRTIO_BLK_T_OUT, 2048, sizeof(want), false),
                     VIRTIO_BLK_S_OK);
    assert_int_equal(last_used_len(), 1);
    img = diskimg_slurp(path, &ilen);
    assert_int_equal(ilen, IMG_SIZE);
    assert_memory_equal(img + 2048 * 512, want, sizeof(want));
    free(img);
    assert_int_equal(disk_dirty_count(d), 1);
    assert_int_equal(disk_take_dirty(d, bits), 1);
    assert_int_equal(bits[0], 1ul << 1);
    assert_int_equal(disk_dirty_count(d), 0);

    /* Any framing: header and data in one readable descriptor, the data
       split off-sector across two more; a read whose data and status
       share a descriptor, split at odd places too. */
    uint8_t *h = gp(BUF + 0x20000 - 16, 16);
    put_le(h, VIRTIO_BLK_T_OUT, 4);
    put_le(h + 4, 0, 4);
    put_le(h + 8, 4094, 8);                 /* the last two sectors of */
    memcpy(gp(BUF + 0x20000, 700), want + 1000, 700);   /* chunk 1 */
    memcpy(gp(BUF + 0x30000, 324), want + 1700, 324);
    put_desc(5, at(BUF + 0x20000 - 16), 16 + 700, F_NEXT, 6);
    put_desc(6, at(BUF + 0x30000), 324, F_NEXT, 7);
    put_desc(7, at(STATUS), 1, F_WRITE, 0);
    *gp(STATUS, 1) = 0xee;
    kick(5);
    assert_int_equal(*gp(STATUS, 1), VIRTIO_BLK_S_OK);
    img = diskimg_slurp(path, &ilen);
    assert_memory_equal(img + 4094 * 512, want + 1000, 1024);
    free(img);
    assert_int_equal(disk_take_dirty(d, bits), 1);
    assert_int_equal(bits[0], 1ul << 1);

    put_hdr(VIRTIO_BLK_T_IN, 4094);
    memset(gp(BUF, 0x40000), 0, 0x40000);
    put_desc(3, at(HDR), 16, F_NEXT, 9);
    put_desc(9, at(BUF + 0x100), 3, F_NEXT | F_WRITE, 4);
    put_desc(4, at(BUF + 0x1000), 1022, F_WRITE, 0);   /* 1021 + status */
    kick(3);
    assert_int_equal(*gp(BUF + 0x1000 + 1021, 1), VIRTIO_BLK_S_OK);
    assert_memory_equal(gp(BUF + 0x100, 3), want + 1000, 3);
    assert_memory_equal(gp(BUF + 0x1000, 1021), want + 1003, 1021);
    assert_int_equal(last_used_len(), 1024 + 1);
    assert_int_equal(disk_dirty_count(d), 0);
    assert_int_equal(b.reads, 2);
    assert_int_equal(b.writes, 2);
    assert_int_equal(b.errors, 0);
    disk_close(d);
}

static void test_flush_id_unsupported(void **state)
{
    static virtio_blk b;
    (void)state;
    disk *d = open_img("misc.img", IMG_SIZE, 0, false, NULL);

    bare(&b, d, VIRTIO_BLK_FEATURES);
    assert_int_equal(req(VIRTIO_BLK_T_FLUSH, 0, 0, false), VIRTIO_BLK_S_OK);
    assert_int_equal(b.flushes, 1);
    assert_int_equal(last_used_len(), 1);

    memset(gp(BUF, 32), 0xaa, 32);
    assert_int_equal(req(VIRTIO_BLK_T_GET_ID, 0, 20, true), VIRTIO_BLK_S_OK);
    assert_memory_equal(gp(BUF, 11), "ftvm-disk0\0", 11);
    assert_int_equal(*gp(BUF + 19, 1), 0);
    assert_int_equal(*gp(BUF + 20, 1), 0xaa);
    assert_int_equal(last_used_len(), 21);
    /* A shorter buffer gets what fits. */
    memset(gp(BUF, 32), 0xaa, 32);
    assert_int_equal(req(VIRTIO_BLK_T_GET_ID, 0, 4, true), VIRTIO_BLK_S_OK);
    assert_memory_equal(gp(BUF, 4), "ftvm", 4);
    assert_int_equal(*gp(BUF + 4, 1), 0xaa);

    /* DISCARD (11), WRITE_ZEROES (13), a made-up type: unsupported. */
    assert_int_equal(req(11, 0, 16, false), VIRTIO_BLK_S_UNSUPP);
    assert_int_equal(req(13, 0, 16, false), VIRTIO_BLK_S_UNSUPP);
    assert_int_equal(req(0x7fffffff, 0, 0, false), VIRTIO_BLK_S_UNSUPP);
    assert_int_equal(b.errors, 3);
    assert_false(needs_reset());
    disk_close(d);
}

static void test_malformed(void **state)
{
    static virtio_blk b;
    (void)state;
    const char *path;
    disk *d = open_img("bad.img", IMG_SIZE, 3, false, &path);
    uint64_t cap = IMG_SIZE / 512;
    uint8_t *before, *after;
    size_t ilen;

    bare(&b, d, VIRTIO_BLK_FEATURES);
    before = diskimg_slurp(path, &ilen);
    memset(gp(BUF, 8 * MIB), 0x5a, 8 * MIB);
    /* Past the end: the last sector and one more; a sector far past it;
       one that wraps around; zero-length at the very end is fine. */
    assert_int_equal(req(VIRTIO_BLK_T_OUT, cap - 1, 1024, false),
                     VIRTIO_BLK_S_IOERR);
    assert_int_equal(req(VIRTIO_BLK_T_IN, cap - 1, 1024, true),
                     VIRTIO_BLK_S_IOERR);
    assert_int_equal(req(VIRTIO_BLK_T_OUT, cap, 512, false),
                     VIRTIO_BLK_S_IOERR);
    assert_int_equal(req(VIRTIO_BLK_T_OUT, UINT64_MAX, 512, false),
                     VIRTIO_BLK_S_IOERR);
    assert_int_equal(req(VIRTIO_BLK_T_IN, UINT64_MAX - 1, 1024, true),
                     VIRTIO_BLK_S_IOERR);
    assert_int_equal(req(VIRTIO_BLK_T_IN, cap, 0, true), VIRTIO_BLK_S_OK);
    /* Data not a whole number of sectors. */
    assert_int_equal(req(VIRTIO_BLK_T_OUT, 0, 513, false),
                     VIRTIO_BLK_S_IOERR);
    assert_int_equal(req(VIRTIO_BLK_T_IN, 0, 100, true), VIRTIO_BLK_S_IOERR);
    /* More than the device's bound (seg_max x size_max), in RAM. */
    assert_int_equal(req(VIRTIO_BLK_T_OUT, 0,
                         (uint32_t)VIRTIO_BLK_REQ_MAX + 512, false),
                     VIRTIO_BLK_S_IOERR);
    assert_int_equal(req(VIRTIO_BLK_T_OUT, 0, (uint32_t)VIRTIO_BLK_REQ_MAX,
                         false), VIRTIO_BLK_S_OK);
    memcpy(before, gp(BUF, VIRTIO_BLK_REQ_MAX), VIRTIO_BLK_REQ_MAX);
    /* A header too short (8 bytes). */
    put_desc(0, at(HDR), 8, F_NEXT, 2);
    put_desc(2, at(STATUS), 1, F_WRITE, 0);
    *gp(STATUS, 1) = 0xee;
    kick(0);
    assert_int_equal(*gp(STATUS, 1), VIRTIO_BLK_S_IOERR);
    after = diskimg_slurp(path, &ilen);
    assert_memory_equal(before, after, IMG_SIZE);   /* only the 8 MiB */
    free(after);
    assert_false(needs_reset());

    /* No writable byte for the status: the queue is broken. */
    r(VIRTIO_PCI_ISR, 1);
    put_desc(0, at(HDR), 16, 0, 0);
    put_hdr(VIRTIO_BLK_T_FLUSH, 0);
    uint16_t u = used_idx();
    kick(0);
    assert_int_equal(used_idx(), u);
    assert_true(needs_reset());
    assert_non_null(strstr(b.why, "no writable byte"));
    assert_int_equal(r(VIRTIO_PCI_ISR, 1), VIRTIO_ISR_CONFIG);
    /* A broken device serves nothing until reset. */
    assert_int_equal(kick(0), u);

    /* A buffer outside RAM (past its end): broken, nothing touched. */
    driver_setup(VIRTIO_BLK_FEATURES);
    put_hdr(VIRTIO_BLK_T_IN, 0);
    put_desc(0, at(HDR), 16, F_NEXT, 1);
    put_desc(1, GUEST_BASE + GUEST_SIZE - 256, 512, F_NEXT | F_WRITE, 2);
    put_desc(2, at(STATUS), 1, F_WRITE, 0);
    *gp(STATUS, 1) = 0xee;
    kick(0);
    assert_int_equal(*gp(STATUS, 1), 0xee);
    assert_true(needs_reset());
    assert_non_null(strstr(b.why, "not in RAM"));
    /* ... and the status byte itself outside. */
    driver_setup(VIRTIO_BLK_FEATURES);
    put_desc(0, at(HDR), 16, F_NEXT, 2);
    put_desc(2, 0x1000, 1, F_WRITE, 0);
    kick(0);
    assert_true(needs_reset());
    assert_non_null(strstr(b.why, "not in RAM"));
    /* A chain that loops. */
    driver_setup(VIRTIO_BLK_FEATURES);
    put_desc(0, at(HDR), 16, F_NEXT, 1);
    put_desc(1, at(BUF), 512, F_NEXT | F_WRITE, 0);
    kick(0);
    assert_true(needs_reset());
    assert_non_null(strstr(b.why, "loop"));
    free(before);
    disk_close(d);

    /* A write to a readonly image: an I/O error, the file untouched. */
    d = open_img("ro.img", IMG_SIZE, 9, true, &path);
    bare(&b, d, VIRTIO_BLK_FEATURES | VIRTIO_BLK_F_RO);
    before = diskimg_slurp(path, &ilen);
    assert_int_equal(req(VIRTIO_BLK_T_OUT, 0, 4096, false),
                     VIRTIO_BLK_S_IOERR);
    assert_int_equal(req(VIRTIO_BLK_T_IN, 0, 4096, true), VIRTIO_BLK_S_OK);
    assert_memory_equal(gp(BUF, 4096), before, 4096);
    assert_int_equal(req(VIRTIO_BLK_T_FLUSH, 0, 0, false), VIRTIO_BLK_S_OK);
    after = diskimg_slurp(path, &ilen);
    assert_memory_equal(before, after, IMG_SIZE);
    assert_int_equal(disk_dirty_count(d), 0);
    free(before);
    free(after);
    disk_close(d);
}

static void test_device_state(void **state)
{
    static virtio_blk a, b2, bad, target;
    (void)state;
    char why[256] = "";
    size_t len;
    disk *d = open_img("st.img", IMG_SIZE, 0, false, NULL);

    bare(&a, d, VIRTIO_BLK_FEATURES);
    assert_int_equal(req(VIRTIO_BLK_T_FLUSH, 0, 0, false), VIRTIO_BLK_S_OK);
    uint8_t *buf = devround_save(&virtio_blk_desc, &a, &len);
    assert_non_null(buf);
    virtq_mem mem = { .ptr = ptr, .dirty = dirty, .opaque = &g };
    virtio_blk_init(&b2, d, &mem, irq, &g);
    assert_int_equal(devround_load(&virtio_blk_desc, &b2, buf, len, why,
                                   sizeof(why)), 0);
    assert_int_equal(b2.vp.status, 0x0f);
    assert_int_equal(b2.vp.driver_features, VIRTIO_BLK_FEATURES);
    assert_int_equal(b2.vp.q[0].size, QSIZE);
    assert_true(b2.vp.q[0].enabled);
    assert_int_equal(b2.vp.q[0].last_avail, 1);
    assert_int_equal(b2.vp.q[0].used_idx, 1);
    assert_int_equal(b2.flushes, 1);
    assert_true(b2.vp.level);
    free(buf);

    /* Features beyond those offered (RO on a read-write image). */
    bad = a;
    bad.vp.driver_features |= VIRTIO_BLK_F_RO;
    buf = devround_save(&virtio_blk_desc, &bad, &len);
    target = b2;
    assert_int_equal(devround_load(&virtio_blk_desc, &target, buf, len, why,
                                   sizeof(why)), -EINVAL);
    assert_non_null(strstr(why, "virtio-blk: driver features"));
    assert_memory_equal(&target, &b2, sizeof(b2));
    free(buf);
    bad = a;
    bad.vp.q[0].size = 512;
    buf = devround_save(&virtio_blk_desc, &bad, &len);
    assert_int_equal(devround_load(&virtio_blk_desc, &target, buf, len, why,
                                   sizeof(why)), -EINVAL);
    assert_non_null(strstr(why, "virtio-blk: queue 0: size 512"));
    free(buf);
    disk_close(d);
}

/* ---- the bus, in a real KVM VM's RAM ---- */

typedef struct machine {
    kvm_vm kvm;
    gmem gm;
    pcpci *p;
    disk *d;
} machine;

/* A bus with RAM of ram bytes, a network device and/or a disk. */
static bool machine_new(machine *m, uint64_t ram, bool net, disk *d)
{
    memset(m, 0, sizeof(*m));
    if (kvm_open(&m->kvm, err, sizeof(err)) < 0)
        return false;
    gmem_init(&m->gm, &m->kvm);
    if (gmem_add(&m->gm, "ram0", 0, ram, err, sizeof(err)) < 0)
        fail_msg("gmem_add: %s", err);
    assert_int_equal(pcpci_create(&m->p, &m->kvm, &m->gm, err, sizeof(err)),
                     0);
    static const uint8_t mac[6] = { 0x02, 0, 0, 0, 0, 1 };
    if (net)
        assert_int_equal(pcpci_add_net(m->p, NULL, mac, NULL, NULL, err,
                                       sizeof(err)), 0);
    if (d)
        assert_int_equal(pcpci_add_blk(m->p, d, err, sizeof(err)), 0);
    if (d)      /* one disk at most */
        assert_int_equal(pcpci_add_blk(m->p, d, err, sizeof(err)), -EBUSY);
    m->d = d;
    return true;
}

static void machine_free(machine *m)
{
    pcpci_free(m->p);
    gmem_free(&m->gm);
    kvm_close(&m->kvm);
}

static uint32_t cfg_read(pcpci *p, unsigned slot, unsigned reg)
{
    uint8_t a[4], d[4];
    put_le(a, 0x80000000u | slot << 11 | reg, 4);
    pcpci_io(p, PCI_CONFIG_ADDRESS, true, a, 4);
    pcpci_io(p, PCI_CONFIG_DATA, false, d, 4);
    return (uint32_t)get_le(d, 4);
}

static void cfg_write(pcpci *p, unsigned slot, unsigned reg, uint32_t v)
{
    uint8_t a[4], d[4];
    put_le(a, 0x80000000u | slot << 11 | reg, 4);
    put_le(d, v, 4);
    pcpci_io(p, PCI_CONFIG_ADDRESS, true, a, 4);
    pcpci_io(p, PCI_CONFIG_DATA, true, d, 4);
}

static uint8_t *save_pci(machine *m, const vmstate_desc *d, size_t *len)
{
    pcpci_state_fetch(m->p);
    return devround_save(d, pcpci_state_obj(m->p), len);
}

/* Loads at version (VALIDATE, then APPLY); 0 or -errno, why filled. */
static int load_pci(machine *m, const uint8_t *buf, size_t len,
                    uint32_t version, char *why, size_t whylen)
{
    qfile *f = qfile_open_view(buf, len, "load");
    int rc = vmstate_load(f, &pcpci_state_desc, pcpci_state_obj(m->p),
                          version, SAVEVM_PASS_VALIDATE);
    if (rc < 0)
        snprintf(why, whylen, "%s", qfile_errmsg(f));
    qfile_close(f);
    if (rc < 0)
        return rc;
    f = qfile_open_view(buf, len, "load");
    rc = vmstate_load(f, &pcpci_state_desc, pcpci_state_obj(m->p), version,
                      SAVEVM_PASS_APPLY);
    qfile_close(f);
    return rc;
}

static void refused(machine *m, const uint8_t *buf, size_t len,
                    uint32_t version, const char *want)
{
    char why[512] = "";
    bool was = pcpci_state_loaded(m->p);
    assert_int_equal(load_pci(m, buf, len, version, why, sizeof(why)),
                     -EINVAL);
    if (!strstr(why, want))
        fail_msg("wanted '%s' in: %s", want, why);
    assert_int_equal(pcpci_state_loaded(m->p), was);    /* untouched */
}

static void test_pci_section(void **state)
{
    (void)state;
    static machine a, b, c, n, none;
    char why[512];
    size_t len, len1, lennet;
    const char *path;
    disk *d = open_img("pci.img", IMG_SIZE, 5, false, &path);
    disk *d2 = open_img("pci2.img", IMG_SIZE, 5, false, NULL);
    disk *small = open_img("small.img", IMG_SIZE / 2, 0, false, NULL);

    assert_int_equal(vmstate_desc_verify(&pcpci_state_desc, why,
                                         sizeof(why)), 0);
    if (!machine_new(&a, 32 * MIB, true, d)) {
        print_message("no KVM (%s): the bus's cases skip\n", err);
        skip();
    }
    /* The bus: the bridge, virtio-net at 00:01.0, virtio-blk at 00:02.0
       with its BAR after net's and its line on pin 17. */
    assert_int_equal(cfg_read(a.p, 0, 0), 0x00081b36u);
    assert_int_equal(cfg_read(a.p, 1, 0), 0x10411af4u);
    assert_int_equal(cfg_read(a.p, 2, 0), 0x10421af4u);
    assert_int_equal(cfg_read(a.p, 3, 0), 0xffffffffu);
    assert_int_equal(cfg_read(a.p, 2, 0x10), PCPCI_BLK_BAR);
    assert_int_equal(cfg_read(a.p, 2, 0x3c) & 0xffff, 0x100 | PCPCI_BLK_IRQ);
    assert_int_equal(PCPCI_BLK_BAR, PCPCI_NET_BAR + VIRTIO_PCI_BAR_SIZE);

    /* A write through the bus into the image, rings high in RAM. */
    T = (target){ .p = a.p, .gm = &a.gm, .rings = 24 * MIB };
    driver_setup(VIRTIO_BLK_FEATURES);
    memset(gp(BUF, 4096), 0x77, 4096);
    assert_int_equal(req(VIRTIO_BLK_T_OUT, 8, 4096, false), VIRTIO_BLK_S_OK);
    uint8_t *img = diskimg_slurp(path, &len);
    assert_memory_equal(img + 8 * 512, gp(BUF, 4096), 4096);
    free(img);

    uint8_t *buf = save_pci(&a, &pcpci_state_desc, &len);
    assert_non_null(buf);
    /* Into a like machine: loaded, pushed, the driver's queue as it was. */
    assert_true(machine_new(&b, 32 * MIB, true, d2));
    assert_int_equal(load_pci(&b, buf, len, 2, why, sizeof(why)), 0);
    assert_true(pcpci_state_loaded(b.p));
    pcpci_state_push(b.p);
    assert_false(pcpci_state_loaded(b.p));
    T.p = b.p;
    T.gm = &b.gm;
    assert_int_equal(r(0x14, 1), 0x0f);
    assert_int_equal(r(0x18, 2), QSIZE);
    assert_int_equal(r(0x20, 4), 24 * MIB);
    /* The device goes on where a left off: the next request is served. */
    memcpy(gmem_ptr(&b.gm, T.rings, BUF), gmem_ptr(&a.gm, T.rings, BUF),
           BUF);
    assert_int_equal(req(VIRTIO_BLK_T_FLUSH, 0, 0, false), VIRTIO_BLK_S_OK);
    assert_int_equal(used_idx(), 2);
    /* Loading twice works too (the secondary's every checkpoint). */
    assert_int_equal(load_pci(&b, buf, len, 2, why, sizeof(why)), 0);

    /* Mismatches, each named. */
    assert_true(machine_new(&n, 32 * MIB, true, NULL));
    refused(&n, buf, len, 2, "virtio-blk: the checkpoint's machine has a "
            "disk (16384 sectors) and this VM has none");
    assert_true(machine_new(&c, 32 * MIB, true, small));
    refused(&c, buf, len, 2, "virtio-blk: the checkpoint's disk has 16384 "
            "sectors, this VM's 8192");
    machine_free(&c);
    assert_true(machine_new(&c, 32 * MIB, false, d2));
    refused(&c, buf, len, 2, "virtio-net: the checkpoint's machine has a "
            "network device and this VM has none");
    machine_free(&c);
    /* Rings in RAM a smaller VM has not. */
    assert_true(machine_new(&c, 16 * MIB, true, d2));
    refused(&c, buf, len, 2, "virtio-blk: queue 0: the descriptor table");
    machine_free(&c);

    /* Without a disk: no subsection, a disk VM refuses it. */
    uint8_t *nb = save_pci(&n, &pcpci_state_desc, &lennet);
    refused(&b, nb, lennet, 2, "virtio-blk: the checkpoint's machine has "
            "no disk and this VM has one (16384 sectors)");
    assert_int_equal(load_pci(&n, nb, lennet, 2, why, sizeof(why)), 0);
    /* A version-1 stream (net, no disk) loads where there is no disk. */
    vmstate_desc v1 = pcpci_state_desc;
    vmstate_field f1[8] = { VMSTATE_END };
    for (unsigned i = 0; i < 7 && pcpci_state_desc.fields[i].name &&
                         pcpci_state_desc.fields[i].version < 2; i++)
        f1[i] = pcpci_state_desc.fields[i];
    v1.version = 1;
    v1.fields = f1;
    v1.subsections = NULL;
    uint8_t *b1 = save_pci(&n, &v1, &len1);
    assert_int_equal(len1, lennet - 1);     /* no has_net byte */
    assert_int_equal(load_pci(&n, b1, len1, 1, why, sizeof(why)), 0);
    refused(&b, b1, len1, 1, "virtio-blk: the checkpoint's machine has no "
            "disk");

    /* A disk and no network device. */
    assert_true(machine_new(&none, 32 * MIB, false, d2));
    assert_int_equal(cfg_read(none.p, 1, 0), 0xffffffffu);
    assert_int_equal(cfg_read(none.p, 2, 0), 0x10421af4u);
    uint8_t *nn = save_pci(&none, &pcpci_state_desc, &len1);
    assert_int_equal(load_pci(&none, nn, len1, 2, why, sizeof(why)), 0);
    refused(&b, nn, len1, 2, "virtio-net: the checkpoint's machine has no "
            "network device and this VM has one");
    /* The guest moved the BAR into RAM: a load refuses it. */
    cfg_write(none.p, 2, 0x10, 0x100000);
    assert_int_equal(cfg_read(none.p, 2, 0x10), 0x100000);
    free(nn);
    nn = save_pci(&none, &pcpci_state_desc, &len1);
    refused(&none, nn, len1, 2, "virtio-blk: BAR 0 at 0x00100000");
    /* Over the I/O APIC. */
    cfg_write(none.p, 2, 0x10, 0xfec00000u);
    free(nn);
    nn = save_pci(&none, &pcpci_state_desc, &len1);
    refused(&none, nn, len1, 2, "virtio-blk: BAR 0 at 0xfec00000");

    free(nn);
    free(b1);
    free(nb);
    free(buf);
    machine_free(&none);
    machine_free(&n);
    machine_free(&b);
    machine_free(&a);
    disk_close(small);
    disk_close(d2);
    disk_close(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config),
        cmocka_unit_test(test_read_write),
        cmocka_unit_test(test_flush_id_unsupported),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_device_state),
        cmocka_unit_test(test_pci_section),
    };
    return skips_status(cmocka_run_group_tests(tests, diskimg_group_setup,
                                  diskimg_group_teardown));
}
