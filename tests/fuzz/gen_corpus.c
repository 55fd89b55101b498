/*
 * Writes the fuzzer's seed streams into a directory: complete streams from
 * the real saver, with every RAM encoding, subsections and packages, so the
 * fuzzer starts from inputs that reach deep into the loader.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "checkpoint/savevm.h"
#include "tests/fuzz/fixture.h"

static void fill(fixture *fx, unsigned seed)
{
    srand(seed);
    for (int b = 0; b < 2; b++)
        for (uint64_t p = 0; p < fx->blocks[b].length; p += RAM_PAGE_SIZE)
            if (rand() % 3 == 0)
                for (int k = 0; k < 64; k++)
                    fx->mem[b][p + (uint64_t)(rand() % RAM_PAGE_SIZE)] =
                        (uint8_t)rand();
    for (int i = 0; i < 2; i++) {
        fx->cpu[i].rip = 0x100000 + (uint64_t)i;
        fx->cpu[i].halted = i;
        fx->cpu[i].xsave[7] = 0x5a;
    }
    fx->console.seq = seed;
    fx->console.pending_len = (uint16_t)(seed % 5);
    memset(fx->console.pending, 'x', fx->console.pending_len);
}

static int write_file(const char *dir, const char *name, const uint8_t *b,
                      size_t n)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(b, 1, n, f) != n || fclose(f) != 0) {
        fprintf(stderr, "gen_corpus: %s: %s\n", path, strerror(errno));
        return -1;
    }
    return 0;
}

/* A complete stream: all RAM, then all devices, EOF and description. */
static int seed_stream(const char *dir, const char *name, int level,
                       uint64_t xbzrle, unsigned seed)
{
    fixture fx;
    if (fx_init(&fx, level, xbzrle) < 0)
        return -1;
    fill(&fx, seed);
    ram_mark_all_dirty(fx.blocks, 2);
    qfile *f = qfile_open_mem(name);
    if (xbzrle) {
        /* A first pass fills the cache; changed pages then go as deltas. */
        qfile *warm = qfile_open_mem("warm");
        ram_save_setup(fx.saver, warm);
        ram_save_dirty(fx.saver, warm, 0, NULL);
        qfile_close(warm);
        fill(&fx, seed + 1);
        ram_mark_all_dirty(fx.blocks, 2);
    }
    int r = registry_save_stream(fx.reg, f);
    size_t n;
    const uint8_t *b = qfile_mem_data(f, &n);
    if (r == 0)
        r = write_file(dir, name, b, n);
    qfile_close(f);
    fx_free(&fx);
    return r;
}

/* A stream whose state after setup travels in one PACKAGED checkpoint. */
static int seed_packaged(const char *dir)
{
    fixture fx;
    if (fx_init(&fx, 0, 0) < 0)
        return -1;
    fill(&fx, 7);
    ram_mark_all_dirty(fx.blocks, 2);
    qfile *f = qfile_open_mem("packaged");
    savevm_put_header(f);
    savevm_put_command(f, SAVEVM_CMD_ENABLE_COLO, 0, NULL);
    registry_save_setup(fx.reg, f);
    qfile *p = qfile_open_mem("pkg");
    registry_save_complete(fx.reg, p);
    registry_save_devices(fx.reg, p, NULL);
    savevm_put_eof(p);
    size_t pn;
    const uint8_t *pb = qfile_mem_data(p, &pn);
    savevm_put_packaged(f, pb, (uint32_t)pn);
    savevm_put_eof(f);
    size_t n;
    const uint8_t *b = qfile_mem_data(f, &n);
    int r = qfile_error(f) ? -1 : write_file(dir, "packaged", b, n);
    qfile_close(p);
    qfile_close(f);
    fx_free(&fx);
    return r;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: gen_corpus DIR\n");
        return 2;
    }
    const char *dir = argv[1];
    int r = seed_stream(dir, "plain", 0, 0, 1);
    r |= seed_stream(dir, "compressed", 6, 0, 2);
    r |= seed_stream(dir, "xbzrle", 0, 64 * 1024, 3);
    r |= seed_packaged(dir);
    return r ? 1 : 0;
}
