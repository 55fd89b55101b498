/*
 * Writes a complete stream with a "block" section, as a VM with one disk
 * would send its disk, for the stream reader test
 * (test_analyze_block.py):
 *
 *   DIR/block.img      the disk: 3.5 MiB, chunks 0, 2 and 3 (partial)
 *                      random, chunk 1 zero
 *   DIR/block.stream   header, the block START (EOS alone), a PART with
 *                      every chunk (the bring-up), an END with the two
 *                      chunks the "guest" wrote since, EOF and a VM
 *                      description with no devices
 *
 * It prints what it sent, as JSON: {"part": {...}, "end": {...}} with
 * each body's data and zero chunk counts.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint/block.h"
#include "checkpoint/savevm.h"

#define MIB (1024u * 1024u)

static void die(const char *what, const char *why)
{
    fprintf(stderr, "gen_blockstream: %s: %s\n", what, why);
    exit(1);
}

static void body(qfile *f, disk *d, uint8_t *scratch, block_save_stats *st)
{
    unsigned long *taken = calloc(disk_bitmap_longs(d), sizeof(*taken));

    if (!taken)
        die("memory", "out of memory");
    disk_take_dirty(d, taken);
    if (block_save(f, d, taken, scratch, st) < 0)
        die("block_save", qfile_errmsg(f));
    free(taken);
}

int main(int argc, char **argv)
{
    static const char desc[] = "{\"page_size\": 4096, \"devices\": []}";
    char img[4096], out[4096], err[512];
    block_save_stats part = { 0 }, end = { 0 };
    uint8_t *scratch = malloc(DISK_CHUNK_SIZE);
    qfile *f = qfile_open_mem("block.stream");
    const uint8_t *bytes;
    FILE *o;
    disk *d;
    size_t n;

    if (argc != 2 || !scratch)
        die("usage", "gen_blockstream DIR");
    snprintf(img, sizeof(img), "%.4000s/block.img", argv[1]);
    snprintf(out, sizeof(out), "%.4000s/block.stream", argv[1]);
    o = fopen(img, "wb");
    for (uint32_t i = 0; i < 7 * MIB / 2; i++)
        fputc(i / MIB == 1 ? 0 : (int)((i * 2654435761u) >> 24), o);
    if (fclose(o) != 0)
        die(img, "cannot write");
    if (disk_open(&d, img, false, "virtio0", err, sizeof(err)) < 0)
        die(img, err);

    savevm_put_header(f);
    savevm_put_section_start(f, SAVEVM_SECTION_START, 0, BLOCK_SECTION_IDSTR,
                             0, BLOCK_SECTION_VERSION);
    block_save_eos(f);
    savevm_put_footer(f, 0);
    disk_mark_all_dirty(d);
    savevm_put_section_part(f, SAVEVM_SECTION_PART, 0);
    body(f, d, scratch, &part);
    savevm_put_footer(f, 0);
    memset(scratch, 0xa5, 512);
    if (disk_write(d, 2048 + 9, scratch, 1) < 0 ||
        disk_write(d, 3 * 2048 + 1, scratch, 1) < 0)
        die(img, "cannot write to the disk");
    savevm_put_section_part(f, SAVEVM_SECTION_END, 0);
    body(f, d, scratch, &end);
    savevm_put_footer(f, 0);
    savevm_put_eof(f);
    savevm_put_vmdesc(f, desc, sizeof(desc) - 1);
    bytes = qfile_mem_data(f, &n);
    o = fopen(out, "wb");
    if (qfile_error(f) || !o || fwrite(bytes, 1, n, o) != n || fclose(o))
        die(out, "cannot write");
    printf("{\"part\": {\"data\": %llu, \"zero\": %llu}, "
           "\"end\": {\"data\": %llu, \"zero\": %llu}}\n",
           (unsigned long long)part.data_chunks,
           (unsigned long long)part.zero_chunks,
           (unsigned long long)end.data_chunks,
           (unsigned long long)end.zero_chunks);
    qfile_close(f);
    disk_close(d);
    free(scratch);
    return 0;
}
