/*
 * block_seeds: fuzz_block's seeds, written with the block codec's own
 * writer by gen_corpus at every build, so a change of format moves them:
 *
 *   eos       a body with nothing dirty
 *   bringup   block_save of a 2.5 MiB disk0 whose middle chunk is zero
 *             (two data records, one ZERO, EOS)
 *   mixed     PROGRESS, a chunk of disk1, disk0's last chunk sent as
 *             ZERO then as data, PROGRESS 100, EOS
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "checkpoint/block.h"
#include "tests/fuzz/block_seeds.h"

#define MIB (1024u * 1024u)

static int fail(const char *what, const char *why)
{
    fprintf(stderr, "gen_corpus: block seeds: %s: %s\n", what, why);
    return 1;
}

static int write_seed(const char *dir, const char *name, qfile *f)
{
    char path[4200];
    const uint8_t *b;
    size_t n;
    FILE *o;

    snprintf(path, sizeof(path), "%.4000s/%s", dir, name);
    b = qfile_mem_data(f, &n);
    o = fopen(path, "wb");
    int bad = qfile_error(f) || !o || fwrite(b, 1, n, o) != n;
    if ((o && fclose(o)) || bad) {
        int r = fail(path, qfile_error(f) ? qfile_errmsg(f)
                                          : "cannot write");
        qfile_close(f);
        return r;
    }
    qfile_close(f);
    return 0;
}

static void put_chunk(qfile *f, uint64_t chunk, unsigned flags,
                      const char *name, const uint8_t *data)
{
    qfile_put_be64(f, chunk * DISK_CHUNK_SECTORS << DISK_SECTOR_BITS |
                      flags);
    if (name)
        qfile_put_str(f, name);
    if (data)
        qfile_put_buf(f, data, DISK_CHUNK_SIZE);
}

int block_seeds_write(const char *dir)
{
    uint8_t *buf = malloc(DISK_CHUNK_SIZE);
    char img[4200], err[512] = "";
    unsigned long taken[1];
    qfile *f;
    disk *d;
    FILE *o;
    int r;

    if (!buf)
        return fail(dir, "out of memory");
    f = qfile_open_mem("eos");
    block_save_eos(f);
    r = write_seed(dir, "eos", f);

    snprintf(img, sizeof(img), "%.4000s/.disk0.img", dir);
    o = fopen(img, "wb");
    for (uint32_t i = 0; o && i < 5 * MIB / 2; i++)
        fputc(i / MIB == 1 ? 0 : (int)(i % 251) + 1, o);
    if (!o || fclose(o) || disk_open(&d, img, false, "disk0", err,
                                     sizeof(err))) {
        free(buf);
        return fail(img, err[0] ? err : "cannot write");
    }
    disk_mark_all_dirty(d);
    disk_take_dirty(d, taken);
    f = qfile_open_mem("bringup");
    if (block_save(f, d, taken, buf, NULL) != 3) {
        r |= fail("block_save", qfile_errmsg(f));
        qfile_close(f);
    } else {
        r |= write_seed(dir, "bringup", f);
    }
    disk_close(d);
    unlink(img);

    for (uint32_t i = 0; i < DISK_CHUNK_SIZE; i++)
        buf[i] = (uint8_t)(i * 7 + i / 512);
    f = qfile_open_mem("mixed");
    put_chunk(f, 0, BLOCK_FLAG_PROGRESS, NULL, NULL);
    put_chunk(f, 0, BLOCK_FLAG_DEVICE_BLOCK, "disk1", buf);
    put_chunk(f, 2, BLOCK_FLAG_DEVICE_BLOCK | BLOCK_FLAG_ZERO_BLOCK, "disk0",
              NULL);
    memset(buf + MIB / 2, 0, MIB / 2);      /* past disk0's end */
    put_chunk(f, 2, BLOCK_FLAG_DEVICE_BLOCK, "disk0", buf);
    qfile_put_be64(f, 100u << DISK_SECTOR_BITS | BLOCK_FLAG_PROGRESS);
    block_save_eos(f);
    r |= write_seed(dir, "mixed", f);
    free(buf);
    return r;
}
