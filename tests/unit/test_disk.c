/*
 * Unit tests for checkpoint/disk: the --disk spec, opening real image
 * files (and every refusal), sector I/O against the file's bytes, the
 * chunk dirty bitmap (marked by writer threads while another thread takes
 * it: no write is ever missed) and zero detection.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "checkpoint/disk.h"
#include "diskimg.h"

#define MIB (1024u * 1024u)
#define LBITS (sizeof(unsigned long) * CHAR_BIT)

static char err[512];

static disk *open_ok(const char *path, bool ro)
{
    disk *d = NULL;
    int rc = disk_open(&d, path, ro, "disk0", err, sizeof(err));

    if (rc)
        fail_msg("disk_open %s: %s", path, err);
    return d;
}

static bool bit(const unsigned long *map, uint64_t c)
{
    return map[c / LBITS] & (1UL << (c % LBITS));
}

static void test_spec(void **state)
{
    disk_spec s;

    (void)state;
    assert_int_equal(disk_parse_spec("a.img", &s, err, sizeof(err)), 0);
    assert_string_equal(s.path, "a.img");
    assert_false(s.readonly);
    assert_int_equal(disk_parse_spec("/x/a.img,readonly", &s, err,
                                     sizeof(err)), 0);
    assert_string_equal(s.path, "/x/a.img");
    assert_true(s.readonly);

    assert_int_equal(disk_parse_spec("", &s, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "no image file"));
    assert_int_equal(disk_parse_spec(NULL, &s, err, sizeof(err)), -EINVAL);
    assert_int_equal(disk_parse_spec(",readonly", &s, err, sizeof(err)),
                     -EINVAL);
    assert_non_null(strstr(err, "no image file"));
    assert_int_equal(disk_parse_spec("a.img,ro", &s, err, sizeof(err)),
                     -EINVAL);
    assert_non_null(strstr(err, "unknown option 'ro'"));
    assert_int_equal(disk_parse_spec("a.img,", &s, err, sizeof(err)),
                     -EINVAL);
    assert_non_null(strstr(err, "unknown option ''"));
}

static void test_open_refusals(void **state)
{
    const char *p;
    disk *d = NULL;
    char path[8192];

    (void)state;
    snprintf(path, sizeof(path), "%s/none.img", diskimg_dir());
    assert_int_equal(disk_open(&d, path, false, "disk0", err, sizeof(err)),
                     -ENOENT);
    assert_non_null(strstr(err, path));
    assert_null(d);

    p = diskimg_make("empty.img", 0, 0);
    assert_int_equal(disk_open(&d, p, false, "disk0", err, sizeof(err)),
                     -EINVAL);
    assert_non_null(strstr(err, "not a nonzero multiple of 512"));
    p = diskimg_make("odd.img", 1000, 0);
    assert_int_equal(disk_open(&d, p, false, "disk0", err, sizeof(err)),
                     -EINVAL);
    assert_non_null(strstr(err, "size 1000 bytes"));
    p = diskimg_make("huge.img", DISK_MAX_SIZE + 512, 0);
    assert_int_equal(disk_open(&d, p, false, "disk0", err, sizeof(err)),
                     -EINVAL);
    assert_non_null(strstr(err, "1 TiB"));
    /* The largest accepted. */
    p = diskimg_make("max.img", DISK_MAX_SIZE, 0);
    d = open_ok(p, true);
    assert_int_equal(disk_chunks(d), DISK_MAX_SIZE / DISK_CHUNK_SIZE);
    disk_close(d);
    d = NULL;

    /* Locked: one writer, or any number of readers. */
    p = diskimg_make("locked.img", MIB, 0);
    d = open_ok(p, false);
    {
        disk *e = NULL;

        assert_int_equal(disk_open(&e, p, false, "disk1", err, sizeof(err)),
                         -EBUSY);
        assert_non_null(strstr(err, "locked"));
        assert_int_equal(disk_open(&e, p, true, "disk1", err, sizeof(err)),
                         -EBUSY);
        disk_close(d);
        d = open_ok(p, true);
        e = open_ok(p, true);
        {
            disk *w = NULL;

            assert_int_equal(disk_open(&w, p, false, "disk1", err,
                                       sizeof(err)), -EBUSY);
            assert_null(w);
        }
        disk_close(e);
        disk_close(d);
        d = NULL;
    }

    assert_int_equal(disk_open(&d, diskimg_dir(), true, "disk0", err,
                               sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "not a regular file"));
    p = diskimg_make("ok.img", MIB, 0);
    assert_int_equal(disk_open(&d, p, false, "", err, sizeof(err)),
                     -EINVAL);
    assert_non_null(strstr(err, "device name"));
    assert_null(d);
}

static void test_sizes(void **state)
{
    disk *d;

    (void)state;
    d = open_ok(diskimg_make("s.img", 5 * MIB / 2, 0), false);
    assert_int_equal(disk_size(d), 5 * MIB / 2);
    assert_int_equal(disk_sectors(d), 5 * MIB / 2 / 512);
    assert_int_equal(disk_chunks(d), 3);
    assert_int_equal(disk_chunk_len(d, 0), MIB);
    assert_int_equal(disk_chunk_len(d, 2), MIB / 2);
    assert_int_equal(disk_chunk_len(d, 3), 0);
    assert_string_equal(disk_name(d), "disk0");
    assert_false(disk_readonly(d));
    disk_close(d);
    d = open_ok(diskimg_make("one.img", 512, 0), false);
    assert_int_equal(disk_chunks(d), 1);
    assert_int_equal(disk_chunk_len(d, 0), 512);
    disk_close(d);
}

static void test_read_write(void **state)
{
    const char *p = diskimg_make("rw.img", 3 * MIB, 7);
    uint8_t *buf = malloc(8 * 512), *back = malloc(8 * 512), *file;
    size_t len;
    disk *d = open_ok(p, false);

    (void)state;
    diskimg_fill(buf, 8 * 512, 99);
    /* Across the chunk boundary: sectors 2044..2051. */
    assert_int_equal(disk_write(d, 2044, buf, 8), 0);
    assert_int_equal(disk_flush(d), 0);
    file = diskimg_slurp(p, &len);
    assert_int_equal(len, 3 * MIB);
    assert_memory_equal(file + 2044 * 512, buf, 8 * 512);
    /* The bytes around it are the image's own. */
    diskimg_fill(back, 512, 7);
    assert_memory_equal(file, back, 512);
    assert_int_equal(disk_read(d, 2044, back, 8), 0);
    assert_memory_equal(back, buf, 8 * 512);
    assert_int_equal(disk_read(d, 0, back, 0), 0);

    /* The last sector, and one past it. */
    assert_int_equal(disk_write(d, 3 * MIB / 512 - 1, buf, 1), 0);
    assert_int_equal(disk_write(d, 3 * MIB / 512 - 1, buf, 2), -ERANGE);
    assert_int_equal(disk_read(d, 3 * MIB / 512, back, 1), -ERANGE);
    assert_int_equal(disk_read(d, UINT64_MAX, back, 1), -ERANGE);
    assert_int_equal(disk_write(d, UINT64_MAX / 2, buf, 1), -ERANGE);
    disk_close(d);
    free(file);

    d = open_ok(p, true);
    assert_true(disk_readonly(d));
    assert_int_equal(disk_write(d, 0, buf, 1), -EROFS);
    assert_int_equal(disk_zero_chunk(d, 0), -EROFS);
    assert_int_equal(disk_flush(d), 0);
    assert_int_equal(disk_dirty_count(d), 0);
    assert_int_equal(disk_read(d, 2044, back, 8), 0);
    assert_memory_equal(back, buf, 8 * 512);
    disk_close(d);
    free(buf);
    free(back);
}

static void test_chunks_io(void **state)
{
    const char *p = diskimg_make("c.img", 5 * MIB / 2, 3);
    uint8_t *buf = malloc(DISK_CHUNK_SIZE), *file;
    size_t len;
    struct stat st0, st1;
    disk *d = open_ok(p, false);

    (void)state;
    /* The partial last chunk reads zero-filled past the end. */
    memset(buf, 0xee, DISK_CHUNK_SIZE);
    assert_int_equal(disk_read_chunk(d, 2, buf), 0);
    assert_true(disk_is_zero(buf + MIB / 2, MIB / 2));
    assert_false(disk_is_zero(buf, MIB / 2));
    assert_int_equal(disk_read_chunk(d, 3, buf), -ERANGE);

    assert_int_equal(stat(p, &st0), 0);
    assert_int_equal(disk_zero_chunk(d, 1), 0);
    assert_int_equal(stat(p, &st1), 0);
    assert_int_equal(st1.st_size, st0.st_size);
    file = diskimg_slurp(p, &len);
    assert_true(disk_is_zero(file + MIB, MIB));
    assert_false(disk_is_zero(file + 2 * MIB, MIB / 2));
    /* A hole where the file system punches them: fewer blocks. */
    assert_true(st1.st_blocks <= st0.st_blocks);
    free(file);
    assert_int_equal(disk_write_bytes(d, 2 * MIB, buf, MIB), -ERANGE);
    assert_int_equal(disk_write_bytes(d, 2 * MIB, buf, MIB / 2), 0);
    /* Codec writes are not the guest's: nothing marked. */
    assert_int_equal(disk_dirty_count(d), 0);
    disk_close(d);
    free(buf);
}

static void test_dirty(void **state)
{
    disk *d = open_ok(diskimg_make("d.img", 130 * MIB + 512, 0), false);
    unsigned long *taken = calloc(disk_bitmap_longs(d), sizeof(long));
    uint8_t sec[2 * 512] = { 1 };

    (void)state;
    assert_int_equal(disk_chunks(d), 131);
    assert_int_equal(disk_bitmap_longs(d), (131 + LBITS - 1) / LBITS);
    assert_int_equal(disk_take_dirty(d, taken), 0);

    assert_int_equal(disk_write(d, 0, sec, 1), 0);
    assert_int_equal(disk_write(d, 2047, sec, 2), 0);   /* chunks 0, 1 */
    assert_int_equal(disk_write(d, 130 * 2048, sec, 1), 0);  /* the last */
    assert_int_equal(disk_dirty_count(d), 3);
    assert_int_equal(disk_take_dirty(d, taken), 3);
    assert_true(bit(taken, 0) && bit(taken, 1) && bit(taken, 130));
    assert_false(bit(taken, 2));
    assert_int_equal(disk_dirty_count(d), 0);
    assert_int_equal(disk_take_dirty(d, taken), 0);
    assert_false(bit(taken, 0));

    /* All dirty sets exactly the disk's chunks, no bit past the last. */
    disk_mark_all_dirty(d);
    assert_int_equal(disk_take_dirty(d, taken), 131);
    for (uint64_t c = 131; c < disk_bitmap_longs(d) * LBITS; c++)
        assert_false(bit(taken, c));

    /* Giving bits back; bits past the disk are ignored. */
    memset(taken, 0xff, disk_bitmap_longs(d) * sizeof(long));
    disk_mark_dirty_bits(d, taken);
    assert_int_equal(disk_dirty_count(d), 131);
    disk_mark_dirty(d, 130 * 2048, 4096);               /* out of range */
    disk_mark_dirty(d, 0, 0);
    assert_int_equal(disk_take_dirty(d, taken), 131);
    disk_mark_dirty(d, 131 * 2048, 1);
    assert_int_equal(disk_dirty_count(d), 0);
    disk_close(d);
    free(taken);
}

/*
 * Writer threads write a stamp to a random chunk, then record that they
 * did; the taker reads each chunk it takes.  Whatever interleaving, every
 * write is in some take that came after it: once all writers are done
 * and a last take ran, each chunk's contents as read by its last take
 * are the last stamp written to it.
 */
#define WRITERS 4
#define WRITES 20000

static int writers_done;
#define TCHUNKS 16

struct writer {
    disk *d;
    int id;
};

static void *writer_main(void *arg)
{
    struct writer *w = arg;
    uint64_t s = 0x1234567ULL * (uint64_t)(w->id + 1);
    uint8_t sec[512];

    for (int i = 0; i < WRITES; i++) {
        uint64_t c;

        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        c = s % TCHUNKS;
        memset(sec, 0, sizeof(sec));
        /* Each writer owns one sector of every chunk. */
        sec[0] = (uint8_t)(w->id + 1);
        memcpy(sec + 8, &i, sizeof(i));
        if (disk_write(w->d, c * 2048 + (uint64_t)w->id, sec, 1) != 0)
            abort();
    }
    __atomic_fetch_add(&writers_done, 1, __ATOMIC_RELEASE);
    return NULL;
}

static void test_dirty_threads(void **state)
{
    disk *d = open_ok(diskimg_make("t.img", TCHUNKS * MIB, 0), false);
    unsigned long taken[1];
    /* What the taker saw of each writer's sector, per chunk. */
    static uint8_t seen[TCHUNKS][WRITERS][512];
    struct writer w[WRITERS];
    pthread_t th[WRITERS];
    uint64_t takes = 0, chunks_taken = 0;
    uint8_t sec[512];

    (void)state;
    memset(seen, 0, sizeof(seen));
    writers_done = 0;
    for (int i = 0; i < WRITERS; i++) {
        w[i] = (struct writer){ .d = d, .id = i };
        assert_int_equal(pthread_create(&th[i], NULL, writer_main, &w[i]),
                         0);
    }
    for (int round = 0; round < 2; round++) {
        do {
            uint64_t n = disk_take_dirty(d, taken);

            takes++;
            chunks_taken += n;
            for (uint64_t c = 0; c < TCHUNKS; c++)
                if (bit(taken, c))
                    for (int i = 0; i < WRITERS; i++)
                        assert_int_equal(disk_read(d, c * 2048 + (uint64_t)i,
                                                   seen[c][i], 1), 0);
        } while (round == 0 && __atomic_load_n(&writers_done,
                                               __ATOMIC_ACQUIRE) < WRITERS);
        if (round == 0)
            for (int i = 0; i < WRITERS; i++)
                pthread_join(th[i], NULL);
    }
    /* The last take after the joins found whatever was left. */
    assert_int_equal(disk_dirty_count(d), 0);
    for (uint64_t c = 0; c < TCHUNKS; c++)
        for (int i = 0; i < WRITERS; i++) {
            assert_int_equal(disk_read(d, c * 2048 + (uint64_t)i, sec, 1), 0);
            assert_memory_equal(seen[c][i], sec, sizeof(sec));
        }
    assert_true(chunks_taken > 0);
    print_message("%llu takes, %llu chunks taken\n",
                  (unsigned long long)takes,
                  (unsigned long long)chunks_taken);
    disk_close(d);
}

static void test_zero(void **state)
{
    uint8_t *buf = calloc(1, DISK_CHUNK_SIZE);

    (void)state;
    assert_true(disk_is_zero(buf, 0));
    for (size_t len = 1; len <= 64; len++)
        assert_true(disk_is_zero(buf + 3, len));
    assert_true(disk_is_zero(buf, DISK_CHUNK_SIZE));
    /* One nonzero byte anywhere in 4 KiB, and at a chunk's last byte. */
    for (size_t i = 0; i < 4096; i++) {
        buf[i] = 0x80;
        assert_false(disk_is_zero(buf, 4096));
        assert_true(disk_is_zero(buf, i));
        buf[i] = 0;
    }
    buf[DISK_CHUNK_SIZE - 1] = 1;
    assert_false(disk_is_zero(buf, DISK_CHUNK_SIZE));
    assert_true(disk_is_zero(buf, DISK_CHUNK_SIZE - 1));
    free(buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_spec),
        cmocka_unit_test(test_open_refusals),
        cmocka_unit_test(test_sizes),
        cmocka_unit_test(test_read_write),
        cmocka_unit_test(test_chunks_io),
        cmocka_unit_test(test_dirty),
        cmocka_unit_test(test_dirty_threads),
        cmocka_unit_test(test_zero),
    };

    return cmocka_run_group_tests(tests, diskimg_group_setup,
                                  diskimg_group_teardown);
}
