/*
 * Writes the fuzz targets' seeds (with --targets into DIR/TARGET/, else
 * the load target's into DIR), each with the
 * product's own writers, so that they follow any change to a format (the
 * build runs it; the replay test requires every seed to be accepted):
 *   load     complete streams from the real saver, with every RAM
 *            encoding, subsections and packages;
 *   apply    checkpoints after the apply target's bring-up: incremental,
 *            full, with PINGs and EOF between them, every RAM encoding;
 *   retpath  what a secondary answers (retpath_put_*) between the
 *            primary's checkpoints;
 *   control  request lines as a client writes them (jansson);
 *   netcmp   frames of both VMs and checkpoints (netcmp_seeds.c).
 */
#include <dirent.h>
#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "checkpoint/savevm.h"
#include "checkpoint/retpath.h"
#include "devstate/dropnotice.h"
#include "tests/fuzz/block_seeds.h"
#include "tests/fuzz/fixture.h"
#include "tests/fuzz/inputs.h"
#include "tests/fuzz/netcmp_inputs.h"
#include "tests/fuzz/pkgstream.h"

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
    fx_fill(&fx, seed);
    ram_mark_all_dirty(fx.blocks, 2);
    qfile *f = qfile_open_mem(name);
    if (xbzrle) {
        /* A first pass fills the cache; changed pages then go as deltas. */
        qfile *warm = qfile_open_mem("warm");
        ram_save_setup(fx.saver, warm);
        ram_save_dirty(fx.saver, warm, 0, NULL);
        qfile_close(warm);
        fx_fill(&fx, seed + 1);
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
    fx_fill(&fx, 7);
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

/* ---- apply: chunks after pkgstream_start's checkpoint 1 ---- */

static void chunk(qfile *out, int kind, const uint8_t *b, size_t n)
{
    qfile_put_u8(out, (uint8_t)kind);
    qfile_put_be32(out, (uint32_t)n);
    qfile_put_buf(out, b, n);
}

/* Checkpoint id on base as an APPLY_CHUNK_PACKAGE chunk, the guest run. */
static int package_chunk(fixture *fx, qfile *out, uint64_t id, uint64_t base)
{
    pkgstream_touch(fx, (unsigned)id);
    qfile *q = qfile_open_mem("package");
    int r = pkgstream_package_body(fx, q, id, base);
    size_t n;
    const uint8_t *b = qfile_mem_data(q, &n);
    chunk(out, APPLY_CHUNK_PACKAGE, b, n);
    qfile_close(q);
    return r;
}

typedef enum apply_seed {
    SEED_INCREMENTAL,   /* 2 on 1, 3 on 2, 4 on 3 */
    SEED_FULL,          /* 2 in full, 3 on 2 */
    SEED_RAW,           /* PING, 2 as a raw PACKAGED, 3, PING, EOF */
    SEED_DROP,          /* 2 on 1, then the primary's drop notice, EOF */
} apply_seed;

static int seed_apply(const char *dir, const char *name, apply_seed kind,
                      int level, uint64_t xbzrle)
{
    fixture fx;
    qfile *pre = qfile_open_mem("bring-up");
    qfile *out = qfile_open_mem(name);
    int r = fx_init(&fx, level, xbzrle);
    if (r == 0)
        r = pkgstream_start(&fx, pre);
    if (r == 0 && kind == SEED_INCREMENTAL) {
        for (uint64_t id = 2; id <= 4 && r == 0; id++)
            r = package_chunk(&fx, out, id, id - 1);
    } else if (r == 0 && kind == SEED_DROP) {
        r = package_chunk(&fx, out, 2, 1);
        qfile *raw = qfile_open_mem("drop");
        dropnotice d;
        dropnotice_make(&d, &pkgstream_shape.pair, DROPNOTICE_STOPPED,
                        "replication stopped on request");
        dropnotice_put(raw, (uint32_t)registry_count(fx.reg) + 3, &d);
        savevm_put_eof(raw);
        size_t n;
        const uint8_t *b = qfile_mem_data(raw, &n);
        chunk(out, APPLY_CHUNK_RAW, b, n);
        qfile_close(raw);
    } else if (r == 0 && kind == SEED_FULL) {
        r = package_chunk(&fx, out, 2, 0);
        if (r == 0)
            r = package_chunk(&fx, out, 3, 2);
    } else if (r == 0) {
        qfile *raw = qfile_open_mem("raw");
        savevm_put_ping(raw, 7);
        pkgstream_touch(&fx, 2);
        r = pkgstream_package(&fx, raw, 2, 1);
        size_t n;
        const uint8_t *b = qfile_mem_data(raw, &n);
        chunk(out, APPLY_CHUNK_RAW, b, n);
        qfile_mem_reset(raw);
        if (r == 0)
            r = package_chunk(&fx, out, 3, 2);
        savevm_put_ping(raw, 8);
        savevm_put_eof(raw);
        b = qfile_mem_data(raw, &n);
        chunk(out, APPLY_CHUNK_RAW, b, n);
        qfile_close(raw);
    }
    size_t n;
    const uint8_t *b = qfile_mem_data(out, &n);
    if (r == 0 && !qfile_error(out))
        r = write_file(dir, name, b, n);
    qfile_close(out);
    qfile_close(pre);
    fx_free(&fx);
    return r ? -1 : 0;
}

/* ---- retpath: events, and what the secondary says ---- */

typedef struct rp_seed {
    qfile *q;
    uint8_t msg[RETPATH_MSG_MAX + 4];
    size_t len;
} rp_seed;

static void rp_op(rp_seed *s, int op, int arg)
{
    qfile_put_u8(s->q, (uint8_t)op);
    if (arg >= 0)
        qfile_put_u8(s->q, (uint8_t)arg);
}

/* The secondary's message m, arriving in pieces of at most piece bytes. */
static void rp_recv(rp_seed *s, const retpath_msg *m, size_t piece)
{
    qfile *w = qfile_open_mem("rp");
    retpath_put(w, m);
    size_t n;
    const uint8_t *b = qfile_mem_data(w, &n);
    for (size_t at = 0; at < n; at += piece) {
        size_t k = n - at < piece ? n - at : piece;
        rp_op(s, RP_OP_RECV, (int)k);
        qfile_put_buf(s->q, b + at, k);
    }
    qfile_close(w);
}

static void rp_ack(rp_seed *s, uint64_t id)
{
    rp_recv(s, &(retpath_msg){ .type = RETPATH_ACK, .value64 = id,
                               .pair = rp_pair }, 255);
}

static int seed_retpath(const char *dir)
{
    rp_seed s = { .q = qfile_open_mem("retpath") };
    /* Checkpoints acknowledged one by one, two at once, and in pieces. */
    rp_op(&s, RP_OP_CHECKPOINT, -1);
    rp_ack(&s, 1);
    rp_op(&s, RP_OP_CHECKPOINT, -1);
    rp_op(&s, RP_OP_CHECKPOINT, -1);
    rp_ack(&s, 3);
    rp_recv(&s, &(retpath_msg){ .type = RETPATH_HEARTBEAT, .value64 = 1 },
            255);
    rp_op(&s, RP_OP_TICK, 20);
    rp_op(&s, RP_OP_WAIT, -1);      /* takes checkpoint 4 */
    rp_recv(&s, &(retpath_msg){ .type = RETPATH_ACK, .value64 = 4,
                                .pair = rp_pair }, 5);
    /* A refusal: the next one (6) goes in full. */
    rp_op(&s, RP_OP_CHECKPOINT, -1);
    retpath_msg nack = { .type = RETPATH_NACK, .value64 = 5,
                         .pair = rp_pair };
    snprintf(nack.text, sizeof(nack.text), "checkpoint 5: a bad CRC");
    rp_recv(&s, &nack, 255);
    rp_ack(&s, 6);
    rp_recv(&s, &(retpath_msg){ .type = RETPATH_PONG, .value32 = 9 }, 255);
    /* COLO's messages (colo.h's, not protection's): the longest frame. */
    retpath_msg frame = { .type = RETPATH_COLO_FRAME, .value64 = 6,
                          .len = RETPATH_COLO_FRAME_MAX };
    memset(frame.text, 0x5a, frame.len);
    rp_recv(&s, &frame, 255);
    rp_recv(&s, &(retpath_msg){ .type = RETPATH_COLO_CONSOLE, .value64 = 6,
                                .len = 3, .text = "ok\n" }, 255);
    /* A window full, then acknowledged. */
    for (int i = 0; i < 5; i++)
        rp_op(&s, RP_OP_CHECKPOINT, -1);
    rp_ack(&s, 8);
    rp_ack(&s, 10);
    rp_op(&s, RP_OP_TICK, 40);
    /* Another secondary, stopped by the operator, then by itself. */
    rp_op(&s, RP_OP_LINK, RP_LINK_STOP);
    rp_op(&s, RP_OP_LINK, RP_LINK_ATTACH);
    rp_op(&s, RP_OP_CHECKPOINT, -1);
    rp_ack(&s, 1);
    rp_recv(&s, &(retpath_msg){ .type = RETPATH_SHUT, .value32 = 0 }, 3);
    /* A third, whose answers are of another pairing, then not sent. */
    rp_op(&s, RP_OP_LINK, RP_LINK_ATTACH);
    rp_op(&s, RP_OP_CHECKPOINT, -1);
    retpath_msg other = { .type = RETPATH_ACK, .value64 = 1,
                          .pair = rp_pair };
    other.pair.id[3] ^= 0x40;
    rp_recv(&s, &other, 255);
    /* A fourth, which refuses the pairing: a newer generation decided. */
    rp_op(&s, RP_OP_LINK, RP_LINK_ATTACH);
    retpath_msg refuse = { .type = RETPATH_REFUSE, .value64 = 5,
                           .pair = rp_pair };
    snprintf(refuse.text, sizeof(refuse.text), "primary of generation 1 is "
             "older than generation 5 decided by the witness");
    rp_recv(&s, &refuse, 255);
    rp_op(&s, RP_OP_LINK, RP_LINK_ATTACH);
    rp_op(&s, RP_OP_CHECKPOINT, -1);
    rp_ack(&s, 2);
    rp_op(&s, RP_OP_VM_STOP, 0);
    size_t n;
    const uint8_t *b = qfile_mem_data(s.q, &n);
    int r = qfile_error(s.q) ? -1 : write_file(dir, "acks", b, n);
    qfile_close(s.q);
    return r;
}

/* ---- control: request lines ---- */

static int seed_control(const char *dir, const char *name, json_t *reqs)
{
    qfile *q = qfile_open_mem(name);
    size_t i;
    json_t *req;
    json_array_foreach(reqs, i, req) {
        char *line = json_dumps(req, JSON_COMPACT);
        if (line) {
            qfile_put_buf(q, line, strlen(line));
            qfile_put_buf(q, i % 2 ? "\r\n" : "\n", i % 2 ? 2 : 1);
        }
        free(line);
    }
    json_decref(reqs);
    size_t n;
    const uint8_t *b = qfile_mem_data(q, &n);
    int r = qfile_error(q) ? -1 : write_file(dir, name, b, n);
    qfile_close(q);
    return r;
}

static int seed_controls(const char *dir)
{
    int r = seed_control(dir, "help", json_pack("[{s:s}]", "cmd", "help"));
    r |= seed_control(dir, "status", json_pack(
        "[{s:s, s:i}, {s:s, s:{}, s:s}, {s:s, s:[i, n]}]", "cmd", "status",
        "id", 1, "cmd", "status", "args", "id", "x", "cmd", "status", "id",
        2));
    r |= seed_control(dir, "quit", json_pack("[{s:s, s:{}, s:f}]", "cmd",
                                             "quit", "args", "id", 0.5));
    /* What must be refused: no VM yet, no such command, malformed. */
    const char *err = CONTROL_EXPECT_ERROR;
    r |= seed_control(dir, "errors", json_pack(
        "[{s:s, s:s}, {s:s, s:i, s:s}, {s:{}, s:s}, {s:i, s:s},"
        " {s:s, s:{s:s}, s:s}, {s:s, s:{s:i}, s:s}, {s:s, s:s},"
        " {s:s, s:s}, {s:s, s:s}]",
        "cmd", "no-such-command", "id", err,
        "cmd", "status", "args", 1, "id", err,
        "args", "id", err,
        "cmd", 7, "id", err,
        "cmd", "save", "args", "file", "/nonexistent/vm.ftvm", "id", err,
        "cmd", "save", "args", "file", 3, "id", err,
        "cmd", "pause", "id", err,
        "cmd", "resume", "id", err,
        "cmd", "checkpoint", "id", err));
    return r;
}

/* DIR/name, made if need be, emptied: a seed dropped here goes too. */
static const char *subdir(char *buf, size_t len, const char *dir,
                          const char *name)
{
    snprintf(buf, len, "%s/%s", dir, name);
    if (mkdir(buf, 0755) < 0 && errno != EEXIST) {
        fprintf(stderr, "gen_corpus: %s: %s\n", buf, strerror(errno));
        return NULL;
    }
    DIR *d = opendir(buf);
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (e->d_type == DT_REG)
            unlinkat(dirfd(d), e->d_name, 0);
    if (d)
        closedir(d);
    return buf;
}

int main(int argc, char **argv)
{
    bool targets = argc == 3 && strcmp(argv[1], "--targets") == 0;
    if (argc != 2 && !targets) {
        fprintf(stderr, "usage: gen_corpus [--targets] DIR\n"
                "  DIR: the load target's seeds; --targets: every "
                "target's, in DIR/TARGET\n");
        return 2;
    }
    const char *top = argv[argc - 1];
    char d[6][512];
    if (mkdir(top, 0755) < 0 && errno != EEXIST) {
        fprintf(stderr, "gen_corpus: %s: %s\n", top, strerror(errno));
        return 1;
    }
    const char *load = targets ? subdir(d[0], sizeof(d[0]), top, "load") : top;
    if (!load)
        return 1;
    int r = seed_stream(load, "plain", 0, 0, 1);
    r |= seed_stream(load, "compressed", 6, 0, 2);
    r |= seed_stream(load, "xbzrle", 0, 64 * 1024, 3);
    r |= seed_packaged(load);
    if (targets) {
        const char *app = subdir(d[1], sizeof(d[1]), top, "apply");
        const char *rp = subdir(d[2], sizeof(d[2]), top, "retpath");
        const char *ctl = subdir(d[3], sizeof(d[3]), top, "control");
        const char *nc = subdir(d[4], sizeof(d[4]), top, "netcmp");
        const char *blk = subdir(d[5], sizeof(d[5]), top, "block");
        if (!app || !rp || !ctl || !nc || !blk)
            return 1;
        r |= seed_apply(app, "incremental", SEED_INCREMENTAL, 0, 0);
        r |= seed_apply(app, "full", SEED_FULL, 0, 0);
        r |= seed_apply(app, "raw", SEED_RAW, 0, 0);
        r |= seed_apply(app, "drop", SEED_DROP, 0, 0);
        r |= seed_apply(app, "compressed", SEED_INCREMENTAL, 6, 0);
        r |= seed_apply(app, "xbzrle", SEED_INCREMENTAL, 0, 64 * 1024);
        r |= seed_retpath(rp);
        r |= seed_controls(ctl);
        r |= netcmp_seeds_write(nc);
        r |= block_seeds_write(blk);
    }
    if (r)
        fprintf(stderr, "gen_corpus: a seed could not be written\n");
    return r ? 1 : 0;
}
