/* pkgstream: see pkgstream.h. */
#include "tests/fuzz/pkgstream.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "checkpoint/savevm.h"
#include "devstate/trailer.h"

const vmshape pkgstream_shape = {
    .mem_size = 4u << 20, .vcpus = 2, .mac = { 2, 0, 0, 0, 0, 1 },
    .pair = { .id = { 0xf0, 0x33, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13,
                      14 },
              .name = "fuzz-vm", .generation = 1 },
};

static void set_dirty(fixture *fx, int b, uint64_t page)
{
    fx->dirty[b][page / LONG_BIT] |= 1ul << (page % LONG_BIT);
}

void pkgstream_touch(fixture *fx, unsigned t)
{
    uint64_t pages0 = fx->blocks[0].length / RAM_PAGE_SIZE;
    uint64_t page = t % pages0;
    memset(fx->mem[0] + page * RAM_PAGE_SIZE, (int)(0x10 + t), 512);
    set_dirty(fx, 0, page);
    fx->mem[1][t % 4 * RAM_PAGE_SIZE + 7] = (uint8_t)t;
    set_dirty(fx, 1, t % 4);
    fx->cpu[0].rip = 0x1000 + t;
    fx->cpu[1].regs[3] = t * 3;
    fx->console.seq = t;
    fx->console.pending_len = (uint16_t)(1 + t % 5);
    memset(fx->console.pending, 'a' + (int)(t % 26), 1 + t % 5);
}

int pkgstream_bringup(fixture *fx, qfile *q)
{
    uint32_t n = (uint32_t)registry_count(fx->reg);
    ram_mark_all_dirty(fx->blocks, 2);
    savevm_put_header(q);
    savevm_put_command(q, SAVEVM_CMD_OPEN_RETURN_PATH, 0, NULL);
    savevm_put_command(q, SAVEVM_CMD_ENABLE_COLO, 0, NULL);
    vmshape_put(q, n, &pkgstream_shape);
    int r = registry_save_setup(fx->reg, q);
    while (r == 0)
        r = registry_save_iterate(fx->reg, q);
    return r < 0 ? r : qfile_error(q);
}

int pkgstream_package_body(fixture *fx, qfile *q, uint64_t id,
                           uint64_t base)
{
    uint32_t n = (uint32_t)registry_count(fx->reg);
    if (base == 0) {
        ram_mark_all_dirty(fx->blocks, 2);
        ram_saver_drop_cache(fx->saver);
    }
    trailer_put_pkg(q, n + 1, &(trailer_pkg){ .id = id, .base = base,
                                              .pair = pkgstream_shape.pair });
    if (registry_save_complete(fx->reg, q) == 0)
        registry_save_devices(fx->reg, q, NULL);
    qfile_crc_start_mem(q);
    trailer_put(q, n + 2, id);
    savevm_put_eof(q);
    return qfile_error(q);
}

int pkgstream_package(fixture *fx, qfile *out, uint64_t id, uint64_t base)
{
    qfile *q = qfile_open_mem("package");
    if (!q)
        return -ENOMEM;
    int r = pkgstream_package_body(fx, q, id, base);
    size_t len;
    const uint8_t *d = qfile_mem_data(q, &len);
    if (r == 0)
        savevm_put_packaged(out, d, (uint32_t)len);
    qfile_close(q);
    return r ? r : qfile_error(out);
}

int pkgstream_start(fixture *fx, qfile *q)
{
    fx_fill(fx, 11);
    int r = pkgstream_bringup(fx, q);
    if (r == 0) {
        pkgstream_touch(fx, 1);
        r = pkgstream_package(fx, q, 1, 0);
    }
    return r;
}
