/*
 * Writes two streams with every section of ftvm's own, without a VM, for
 * the stream reader test (test_analyze.py) to read:
 *
 *   DIR/file.ftvm     a checkpoint file as vm/snapshot.c writes one: RAM
 *                     START, PARTs and END, the devices, then the end every
 *                     checkpoint file has (snapshot_seal: ftvm-ckpt, EOF,
 *                     the VM description)
 *   DIR/replication   a COLO replication stream as primary/package.c
 *                     writes one: header, OPEN_RETURN_PATH, ENABLE_COLO,
 *                     ftvm-vm, ftvm-colo, RAM START and a PART, then two
 *                     PACKAGED checkpoints (ftvm-pkg, RAM END, devices,
 *                     ftvm-ckpt, EOF), a PING and two COLO input frames
 *                     (ftvm-colo-in, of 60 and 1514 bytes) between them,
 *                     the drop notice (ftvm-drop, the same section id as
 *                     ftvm-colo's) and EOF; no description of its own
 *
 * The devices are the fuzz fixture's (tests/fuzz/fixture.h): two cpus and
 * a console with a subsection, over two RAM blocks.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint/savevm.h"
#include "devstate/dropnotice.h"
#include "devstate/trailer.h"
#include "devstate/vmdesc.h"
#include "tests/fuzz/fixture.h"
#include "vm/colosec.h"
#include "vm/snapshot.h"
#include "vm/vmshape.h"

static void fill(fixture *fx, unsigned seed)
{
    for (int b = 0; b < 2; b++)
        for (uint64_t p = 0; p < fx->blocks[b].length; p += RAM_PAGE_SIZE)
            if ((p / RAM_PAGE_SIZE + seed) % 3 == 0)
                memset(fx->mem[b] + p, (int)(seed + p / RAM_PAGE_SIZE), 64);
    for (int i = 0; i < 2; i++) {
        fx->cpu[i].rip = 0x100000 + seed + (uint64_t)i;
        fx->cpu[i].halted = i;
    }
    fx->console.seq = seed;
    /* The same subsections in every save: a description is per save. */
    fx->console.pending_len = 3;
    memset(fx->console.pending, 'a' + (int)seed, 3);
}

static int write_out(const char *dir, const char *name, qfile *f)
{
    char path[512];
    size_t n;
    const uint8_t *b = qfile_mem_data(f, &n);
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *o = fopen(path, "wb");
    if (qfile_error(f) || !o || fwrite(b, 1, n, o) != n || fclose(o) != 0) {
        fprintf(stderr, "gen_streams: %s: %s\n", path,
                qfile_error(f) ? qfile_errmsg(f) : strerror(errno));
        return -1;
    }
    return 0;
}

static int checkpoint_file(const char *dir, fixture *fx)
{
    qfile *f = qfile_open_mem("file.ftvm");
    qfile *m = qfile_open_mem("final copy");
    json_t *desc = vmdesc_new(RAM_PAGE_SIZE);
    qfile_crc_start(f);
    savevm_put_header(f);
    registry_save_setup(fx->reg, f);
    while (registry_save_iterate(fx->reg, f) == 0)
        ;
    if (registry_save_complete(fx->reg, m) == 0 &&
        registry_save_devices(fx->reg, m, vmdesc_devices(desc)) == 0) {
        size_t n;
        const uint8_t *b = qfile_mem_data(m, &n);
        qfile_put_buf(f, b, n);
        snapshot_seal(f, (uint32_t)registry_count(fx->reg), 42, desc);
    } else {
        qfile_take_error(f, m);
    }
    int r = write_out(dir, "file.ftvm", f);
    json_decref(desc);
    qfile_close(m);
    qfile_close(f);
    return r;
}

/* A fixed pairing: the streams are the same at every run. */
static const pairing stream_pair = {
    .id = { 0x0f, 0x7e, 0x57, 0x1d, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11 },
    .name = "gen-streams",
};

static void package(qfile *f, fixture *fx, uint64_t id, uint64_t base)
{
    uint32_t n = (uint32_t)registry_count(fx->reg);
    qfile *q = qfile_open_mem("package");
    trailer_put_pkg(q, n + 1, &(trailer_pkg){ .id = id, .base = base,
                                              .pair = stream_pair });
    registry_save_complete(fx->reg, q);
    registry_save_devices(fx->reg, q, NULL);
    qfile_crc_start_mem(q);
    trailer_put(q, n + 2, id);
    savevm_put_eof(q);
    size_t len;
    const uint8_t *b = qfile_mem_data(q, &len);
    if (qfile_error(q))
        qfile_take_error(f, q);
    else
        savevm_put_packaged(f, b, (uint32_t)len);
    qfile_close(q);
}

static int replication(const char *dir, fixture *fx)
{
    qfile *f = qfile_open_mem("replication");
    uint32_t n = (uint32_t)registry_count(fx->reg);
    vmshape shape = { .mem_size = 64 << 20, .vcpus = 2, .has_net = true,
                      .mac = { 0x52, 0x54, 0x00, 0x12, 0x34, 0x56 },
                      .pair = stream_pair };
    savevm_put_header(f);
    savevm_put_command(f, SAVEVM_CMD_OPEN_RETURN_PATH, 0, NULL);
    savevm_put_command(f, SAVEVM_CMD_ENABLE_COLO, 0, NULL);
    vmshape_put(f, n, &shape);
    colosec_put(f, n + 3, COLOSEC_MODE_COLO);
    registry_save_setup(fx->reg, f);
    registry_save_iterate(fx->reg, f);
    package(f, fx, 1, 0);
    savevm_put_ping(f, 7);
    /* Frames the NIC received after checkpoint 1: byte i is i + len. */
    static uint8_t frame[COLOSEC_INPUT_FRAME_MAX];
    for (size_t len = 60; len <= COLOSEC_INPUT_FRAME_MAX; len += 1454) {
        for (size_t i = 0; i < len; i++)
            frame[i] = (uint8_t)(i + len);
        colosec_put_input(f, colosec_input_section_id(n), 1, frame, len);
    }
    fill(fx, 5);
    ram_mark_all_dirty(fx->blocks, 2);
    package(f, fx, 2, 1);
    dropnotice d;
    dropnotice_make(&d, &stream_pair, DROPNOTICE_STOPPED, "gen_streams");
    dropnotice_put(f, n + 3, &d);
    savevm_put_eof(f);
    int r = write_out(dir, "replication", f);
    qfile_close(f);
    return r;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: gen_streams DIR\n");
        return 2;
    }
    fixture fx;
    int r = fx_init(&fx, 0, 0);
    if (r == 0) {
        fill(&fx, 1);
        ram_mark_all_dirty(fx.blocks, 2);
        r = checkpoint_file(argv[1], &fx);
    }
    fx_free(&fx);
    if (r == 0 && (r = fx_init(&fx, 0, 0)) == 0) {
        fill(&fx, 2);
        ram_mark_all_dirty(fx.blocks, 2);
        r = replication(argv[1], &fx);
    }
    fx_free(&fx);
    return r == 0 ? 0 : 1;
}
