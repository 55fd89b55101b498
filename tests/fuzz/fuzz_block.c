/*
 * libFuzzer target: the block section's loader (checkpoint/block.c).
 * The input is one section body (version 1) for two real images in a
 * temporary directory: "disk0", 2.5 MiB (3 chunks, the last partial), and
 * "disk1", 1 MiB; the staging bound is 2 chunks of data.
 *
 * What must hold, whatever the input: a body the VALIDATE pass refuses
 * stages nothing; one it accepts, the APPLY pass accepts too, consuming
 * the same bytes, and stages at most the bound; block_apply then leaves
 * each chunk exactly as the last record for it in the body said (its
 * data, or zeros) and every other chunk as it was.  An inspecting loader
 * (no images) accepts whatever the real one accepts, and counts the same
 * chunks per disk.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "checkpoint/block.h"
#include "tests/fuzz/fuzzcheck.h"

#define MIB (1024u * 1024u)
#define NDISKS 2

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const names[NDISKS] = { "disk0", "disk1" };
static const uint64_t sizes[NDISKS] = { 5 * MIB / 2, MIB };
static char dir[4096], paths[NDISKS][4200];
static disk *disks[NDISKS];
static block_loader *loader;
static uint8_t *image[NDISKS];      /* what each image holds between runs */
static uint64_t counted[NDISKS][2]; /* the loader's counts before this run */

static void cleanup(void)
{
    block_loader_free(loader);
    for (int i = 0; i < NDISKS; i++) {
        disk_close(disks[i]);
        free(image[i]);
    }
}

static void init(void)
{
    const char *tmp = getenv("TMPDIR");
    char err[512];

    snprintf(dir, sizeof(dir), "%.4000s/fuzz_block-XXXXXX",
             tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(dir))
        fuzzcheck_broken("fuzz_block: mkdtemp %s failed", dir);
    for (int i = 0; i < NDISKS; i++) {
        FILE *f;

        snprintf(paths[i], sizeof(paths[i]), "%s/%s.img", dir, names[i]);
        image[i] = malloc(sizes[i]);
        if (!image[i])
            abort();
        for (uint64_t b = 0; b < sizes[i]; b++)
            image[i][b] = (uint8_t)(b * 31 + (uint64_t)i * 7 + b / 4096);
        f = fopen(paths[i], "wb");
        if (!f || fwrite(image[i], 1, sizes[i], f) != sizes[i] || fclose(f))
            fuzzcheck_broken("fuzz_block: cannot write %s", paths[i]);
        if (disk_open(&disks[i], paths[i], false, names[i], err,
                      sizeof(err)) < 0)
            fuzzcheck_broken("fuzz_block: %s", err);
    }
    /*
     * Gone from the file system at once, open all the same: libFuzzer
     * may end the process without running atexit.
     */
    for (int i = 0; i < NDISKS; i++)
        unlink(paths[i]);
    rmdir(dir);
    if (block_loader_new(&loader, disks, NDISKS, 2 * MIB) < 0)
        fuzzcheck_broken("fuzz_block: block_loader_new failed");
    atexit(cleanup);
}

static uint64_t be64(const uint8_t *p)
{
    uint64_t v = 0;

    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

/*
 * The model: an accepted body walked again, independently, to apply its
 * records to the copies in image[]; returns the bytes it walked.
 */
static size_t model_apply(const uint8_t *data, size_t size)
{
    size_t pos = 0;

    for (;;) {
        if (size - pos < 8)
            fuzzcheck_broken("fuzz_block: accepted a body without EOS");
        uint64_t hdr = be64(data + pos), sector = hdr >> 9;
        unsigned flags = (unsigned)(hdr & 0x1ff);
        size_t nlen;
        int d = -1;

        pos += 8;
        if (flags == BLOCK_FLAG_EOS)
            return pos;
        if (flags == BLOCK_FLAG_PROGRESS)
            continue;
        nlen = data[pos++];
        for (int i = 0; i < NDISKS; i++)
            if (strlen(names[i]) == nlen &&
                memcmp(names[i], data + pos, nlen) == 0)
                d = i;
        pos += nlen;
        if (d < 0)
            fuzzcheck_broken("fuzz_block: accepted a chunk of no disk");
        uint64_t off = sector << 9;
        uint64_t len = sizes[d] - off < MIB ? sizes[d] - off : MIB;

        if (off >= sizes[d] || off % MIB)
            fuzzcheck_broken("fuzz_block: accepted sector %llu of %s",
                             (unsigned long long)sector, names[d]);
        if (flags & BLOCK_FLAG_ZERO_BLOCK) {
            memset(image[d] + off, 0, len);
        } else {
            memcpy(image[d] + off, data + pos, len);
            pos += MIB;
        }
    }
}

static void check_inspect(const uint8_t *data, size_t used)
{
    block_disk_counts want, got;
    uint64_t total = 0, seen = 0;
    block_loader *ins;
    qfile *f;

    if (block_loader_new_inspect(&ins) < 0)
        abort();
    for (int pass = 0; pass < 2; pass++) {
        f = qfile_open_view(data, used, "fuzz");
        if (block_load(ins, f, BLOCK_SECTION_VERSION,
                       pass ? SAVEVM_PASS_APPLY : SAVEVM_PASS_VALIDATE))
            fuzzcheck_broken("fuzz_block: inspecting refused what the "
                             "loader accepted: %s", qfile_errmsg(f));
        qfile_close(f);
    }
    for (size_t i = 0; i < block_loader_ndisks(ins); i++) {
        size_t j = 0;

        block_loader_counts(ins, i, &got);
        while (j < NDISKS && strcmp(names[j], got.name))
            j++;
        if (j == NDISKS)
            fuzzcheck_broken("fuzz_block: inspecting learned '%s'",
                             got.name);
        block_loader_counts(loader, j, &want);
        if (want.data_chunks - counted[j][0] != got.data_chunks ||
            want.zero_chunks - counted[j][1] != got.zero_chunks)
            fuzzcheck_broken("fuzz_block: inspecting counted otherwise");
        total += got.data_chunks + got.zero_chunks;
    }
    for (size_t j = 0; j < NDISKS; j++) {
        block_loader_counts(loader, j, &want);
        seen += (want.data_chunks - counted[j][0]) +
                (want.zero_chunks - counted[j][1]);
        counted[j][0] = want.data_chunks;
        counted[j][1] = want.zero_chunks;
    }
    if (seen != total)
        fuzzcheck_broken("fuzz_block: inspecting counted %llu chunks, the "
                         "loader %llu", (unsigned long long)total,
                         (unsigned long long)seen);
    block_loader_free(ins);
}

static void check_images(void)
{
    for (int i = 0; i < NDISKS; i++) {
        uint8_t *now = malloc(sizes[i]);

        if (!now || disk_read(disks[i], 0, now, (uint32_t)(sizes[i] >> 9)))
            fuzzcheck_broken("fuzz_block: cannot read %s back", paths[i]);
        if (memcmp(now, image[i], sizes[i]) != 0)
            fuzzcheck_broken("fuzz_block: %s differs from the model after "
                             "apply", names[i]);
        free(now);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    block_stage_counts sc;
    char err[512];
    uint64_t used;
    qfile *f;
    int rc;

    if (!loader)
        init();
    block_loader_begin_validate(loader);
    f = qfile_open_view(data, size, "fuzz");
    rc = block_load(loader, f, BLOCK_SECTION_VERSION, SAVEVM_PASS_VALIDATE);
    used = qfile_tell(f);
    if (rc) {
        fuzzcheck_refused("fuzz_block: %s", qfile_errmsg(f));
        qfile_close(f);
        block_stage_counts_get(loader, &sc);
        if (sc.zero_chunks || sc.data_chunks)
            fuzzcheck_broken("fuzz_block: a refused body staged chunks");
        return 0;
    }
    qfile_close(f);
    f = qfile_open_view(data, size, "fuzz");
    rc = block_load(loader, f, BLOCK_SECTION_VERSION, SAVEVM_PASS_APPLY);
    if (rc || qfile_tell(f) != used)
        fuzzcheck_broken("fuzz_block: validated, then the apply pass said "
                         "%d (%s) after %llu of %llu bytes", rc,
                         qfile_errmsg(f), (unsigned long long)qfile_tell(f),
                         (unsigned long long)used);
    qfile_close(f);
    block_stage_counts_get(loader, &sc);
    if (sc.data_chunks > 2 || sc.zero_chunks + sc.data_chunks > 4)
        fuzzcheck_broken("fuzz_block: staged %llu data and %llu zero "
                         "chunks, over the bound",
                         (unsigned long long)sc.data_chunks,
                         (unsigned long long)sc.zero_chunks);
    check_inspect(data, used);
    if (model_apply(data, used) != used)
        fuzzcheck_broken("fuzz_block: the model walked another length");
    if (block_apply(loader, false, err, sizeof(err)) < 0)
        fuzzcheck_broken("fuzz_block: %s", err);
    check_images();
    if (size != used)
        fuzzcheck_refused("fuzz_block: %llu bytes after EOS",
                          (unsigned long long)(size - used));
    return 0;
}
