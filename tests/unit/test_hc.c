/*
 * Unit tests for the block hypercalls of vm/hc: hc_call against a RAM
 * block made here (no KVM: gmem's blocks are filled in by hand, as the
 * vCPU thread would see them) and a real image file.  What the KVM tests
 * (tests/vm/disk_test.py) cannot reach: the order of the checks when
 * several apply, the host's I/O failing (EIO), and that a read marks the
 * guest pages it filled and a write the disk chunks it touched.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "checkpoint/disk.h"
#include "diskimg.h"
#include "vm/hc.h"

#define RAM_SIZE (4u << 20)
#define LBITS (sizeof(unsigned long) * CHAR_BIT)
/* Where the tests keep argument structs and buffers in guest RAM. */
#define ARG 0x1000u
#define BUF 0x100000u

static char err[512];

struct fixture {
    gmem g;
    hc_dev h;
    disk *d;
    const char *path;
};

static struct fixture fx;

static int setup(void **state)
{
    (void)state;
    memset(&fx, 0, sizeof(fx));
    if (diskimg_setup() != 0)
        return -1;
    fx.g.n = 1;
    fx.g.blocks[0].host = calloc(1, RAM_SIZE);
    fx.g.blocks[0].length = RAM_SIZE;
    fx.g.regions[0].gpa = 0;
    fx.g.regions[0].mon_bits = calloc(RAM_SIZE / 4096 / LBITS + 1,
                                      sizeof(unsigned long));
    if (!fx.g.blocks[0].host || !fx.g.regions[0].mon_bits)
        return -1;
    static const uint8_t mac[6] = { 2, 0, 0, 0, 0, 1 };
    if (hc_init(&fx.h, &fx.g, NULL, mac) != 0)
        return -1;
    /* 4 MiB (4 chunks) of seeded bytes. */
    fx.path = diskimg_make("hc.img", 4u << 20, 7);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    if (fx.d)
        disk_close(fx.d);
    hc_fini(&fx.h);
    free(fx.g.blocks[0].host);
    free(fx.g.regions[0].mon_bits);
    diskimg_cleanup();
    return 0;
}

static void attach(bool readonly)
{
    if (fx.d)
        disk_close(fx.d);
    fx.d = NULL;
    if (disk_open(&fx.d, fx.path, readonly, "disk0", err, sizeof(err)))
        fail_msg("disk_open: %s", err);
    fx.h.disk = fx.d;
}

static uint8_t *ram(uint64_t gpa)
{
    return fx.g.blocks[0].host + gpa;
}

static int64_t io(unsigned nr, uint64_t sector, uint64_t count,
                  uint64_t data)
{
    struct ftvm_hc_blk_io a = { .sector = sector, .count = count,
                                .data = data, .ret = 12345 };
    char msg[300];

    memcpy(ram(ARG), &a, sizeof(a));
    assert_int_equal(hc_call(&fx.h, nr, ARG, msg, sizeof(msg)), HC_DONE);
    memcpy(&a, ram(ARG), sizeof(a));
    return a.ret;
}

static bool ram_dirty(uint64_t gpa)
{
    uint64_t p = gpa / 4096;

    return fx.g.regions[0].mon_bits[p / LBITS] & (1ul << (p % LBITS));
}

static void clear_ram_dirty(void)
{
    memset(fx.g.regions[0].mon_bits, 0,
           (RAM_SIZE / 4096 / LBITS + 1) * sizeof(unsigned long));
}

static void test_info(void **state)
{
    struct ftvm_hc_blk_info a;
    char msg[300];

    (void)state;
    fx.h.disk = NULL;
    memset(ram(ARG), 0xee, sizeof(a));
    assert_int_equal(hc_call(&fx.h, FTVM_HC_BLK_INFO, ARG, msg, sizeof(msg)),
                     HC_DONE);
    memcpy(&a, ram(ARG), sizeof(a));
    assert_int_equal(a.ret, FTVM_ENODEV);
    assert_int_equal(a.sectors, 0);
    assert_int_equal(a.flags, 0);

    attach(true);
    hc_call(&fx.h, FTVM_HC_BLK_INFO, ARG, msg, sizeof(msg));
    memcpy(&a, ram(ARG), sizeof(a));
    assert_int_equal(a.ret, FTVM_OK);
    assert_int_equal(a.sectors, 8192);
    assert_int_equal(a.sector_size, 512);
    assert_int_equal(a.max_sectors, FTVM_BLK_MAX_SECTORS);
    assert_int_equal(a.flags, FTVM_BLK_READONLY);
}

static void test_read_write(void **state)
{
    (void)state;
    attach(false);
    uint8_t want[2048];
    diskimg_fill(want, sizeof(want), 7);

    /* A read fills the buffer with the image's bytes and marks it. */
    clear_ram_dirty();
    assert_int_equal(io(FTVM_HC_BLK_READ, 0, 4, BUF + 4096 - 512), FTVM_OK);
    assert_memory_equal(ram(BUF + 4096 - 512), want, sizeof(want));
    assert_true(ram_dirty(BUF));
    assert_true(ram_dirty(BUF + 4096));
    assert_false(ram_dirty(BUF + 8192));

    /* A write lands in the file and marks its chunk for the checkpoint. */
    unsigned long bits[4] = { 0 };
    disk_take_dirty(fx.d, bits);
    memset(ram(BUF), 0x5a, 1024);
    assert_int_equal(io(FTVM_HC_BLK_WRITE, 2048 + 7, 2, BUF), FTVM_OK);
    assert_int_equal(disk_dirty_count(fx.d), 1);
    assert_int_equal(disk_next_dirty(fx.d, 0), 1);
    size_t len;
    uint8_t *file = diskimg_slurp(fx.path, &len);
    assert_int_equal(len, 4u << 20);
    for (size_t i = 0; i < 1024; i++)
        assert_int_equal(file[(2048 + 7) * 512 + i], 0x5a);
    free(file);
    char msg[300];
    memset(ram(ARG), 0xee, 8);
    assert_int_equal(hc_call(&fx.h, FTVM_HC_BLK_FLUSH, ARG, msg,
                             sizeof(msg)), HC_DONE);
    assert_int_equal(*(int64_t *)ram(ARG), FTVM_OK);

    /* The largest transfer, at the very end of the disk; and an empty one
     * at the end. */
    assert_int_equal(io(FTVM_HC_BLK_READ, 8192 - FTVM_BLK_MAX_SECTORS,
                        FTVM_BLK_MAX_SECTORS, BUF), FTVM_OK);
    assert_int_equal(io(FTVM_HC_BLK_WRITE, 8192, 0, BUF), FTVM_OK);
}

/* Where several checks apply, the first in docs/hypercall-abi.md's order
 * answers, and nothing moves. */
static void test_check_order(void **state)
{
    (void)state;
    const uint64_t outside = RAM_SIZE;

    fx.h.disk = NULL;
    assert_int_equal(io(FTVM_HC_BLK_WRITE, UINT64_MAX, 1ull << 63, outside),
                     FTVM_ENODEV);
    char msg[300];
    hc_call(&fx.h, FTVM_HC_BLK_FLUSH, ARG, msg, sizeof(msg));
    assert_int_equal(*(int64_t *)ram(ARG), FTVM_ENODEV);

    attach(true);
    assert_int_equal(io(FTVM_HC_BLK_WRITE, UINT64_MAX, 1ull << 63, outside),
                     FTVM_EROFS);
    assert_int_equal(io(FTVM_HC_BLK_READ, UINT64_MAX, 1ull << 63, outside),
                     FTVM_EINVAL);
    assert_int_equal(io(FTVM_HC_BLK_READ, UINT64_MAX, 2, outside),
                     FTVM_ERANGE);
    assert_int_equal(io(FTVM_HC_BLK_READ, 8191, 2, outside), FTVM_ERANGE);
    assert_int_equal(io(FTVM_HC_BLK_READ, 8193, 0, BUF), FTVM_ERANGE);
    assert_int_equal(io(FTVM_HC_BLK_READ, 0, 1, outside - 256), FTVM_EFAULT);
    assert_int_equal(io(FTVM_HC_BLK_READ, 0, 1, UINT64_MAX - 100),
                     FTVM_EFAULT);
    assert_int_equal(io(FTVM_HC_BLK_READ, 0, FTVM_BLK_MAX_SECTORS + 1, BUF),
                     FTVM_EINVAL);

    attach(false);
    unsigned long bits[4] = { 0 };
    disk_take_dirty(fx.d, bits);
    assert_int_equal(io(FTVM_HC_BLK_WRITE, 8192, 1, BUF), FTVM_ERANGE);
    assert_int_equal(io(FTVM_HC_BLK_WRITE, 0, 1, outside), FTVM_EFAULT);
    assert_int_equal(io(FTVM_HC_BLK_WRITE, 0, FTVM_BLK_MAX_SECTORS + 1, BUF),
                     FTVM_EINVAL);
    assert_int_equal(disk_dirty_count(fx.d), 0);
}

/* The host's I/O failing: the image shrank under the open disk, so a
 * read past the file's new end finds nothing. */
static void test_eio(void **state)
{
    (void)state;
    attach(false);
    assert_int_equal(truncate(fx.path, 1u << 20), 0);
    assert_int_equal(io(FTVM_HC_BLK_READ, 4096, 1, BUF), FTVM_EIO);
    assert_int_equal(io(FTVM_HC_BLK_READ, 0, 1, BUF), FTVM_OK);
}

/* A struct the monitor cannot read stops the VM, naming the call. */
static void test_struct_outside(void **state)
{
    char msg[300];

    (void)state;
    attach(false);
    assert_int_equal(hc_call(&fx.h, FTVM_HC_BLK_READ, RAM_SIZE - 16, msg,
                             sizeof(msg)), HC_FAULT);
    assert_non_null(strstr(msg, "hypercall BLK_READ: its 32-byte argument "
                                "struct at 0x3ffff0 is not inside guest "
                                "RAM"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_info, setup, teardown),
        cmocka_unit_test_setup_teardown(test_read_write, setup, teardown),
        cmocka_unit_test_setup_teardown(test_check_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_eio, setup, teardown),
        cmocka_unit_test_setup_teardown(test_struct_outside, setup,
                                        teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
