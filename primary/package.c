/* package: see package.h. */
#include "primary/package.h"

#include <errno.h>
#include <stdio.h>
#include <time.h>

#include "checkpoint/savevm.h"
#include "checkpoint/trailer.h"
#include "vm/mono.h"

/*
 * The bring-up ends when a sweep over the dirty set sent at most this
 * many pages with data (16 MiB: checkpoint 1 then copies little), or
 * after RAM size x MAX_PASSES pages for a guest that dirties memory faster
 * than the link takes them, as a checkpoint to disk does (vm/snapshot.c).
 */
#define FINAL_PAGES 4096u
#define MAX_PASSES 8

static uint64_t pages_sent(const ram_save_stats *rs)
{
    return rs->zero_pages + rs->normal_pages + rs->compressed_pages +
           rs->xbzrle_pages + rs->unchanged_pages;
}

/* Sends what f holds and empties it. */
static int drain(qfile *f, lnk *l, pkg_bringup_stats *st, char *err,
                 size_t errlen)
{
    if (qf_error(f)) {
        snprintf(err, errlen, "bring-up: %s", qf_errmsg(f));
        return qf_error(f);
    }
    size_t len;
    const uint8_t *d = qf_mem_data(f, &len);
    int rc = lnk_write(l, d, len, err, errlen);
    st->bytes += len;
    qf_mem_reset(f);
    return rc;
}

static int bringup(vm *v, const vmshape *shape, lnk *l, qfile *f,
                   pkg_bringup_stats *st, char *err, size_t errlen)
{
    reg_registry *reg = vm_registry(v);
    uint32_t n = (uint32_t)reg_count(reg);
    sv_put_header(f);
    sv_put_command(f, SV_CMD_OPEN_RETURN_PATH, 0, NULL);
    sv_put_command(f, SV_CMD_ENABLE_COLO, 0, NULL);
    vmshape_put(f, n, shape);
    reg_save_setup(reg, f);
    int rc = drain(f, l, st, err, errlen);
    uint64_t budget = 0;
    size_t nb;
    ram_block *b = vm_ram_blocks(v, &nb);
    for (size_t i = 0; i < nb; i++)
        budget += b[i].length / RAM_PAGE_SIZE;
    budget *= MAX_PASSES;
    /* Pages with data sent since the dirty set was last empty. */
    uint64_t sweep = 0;
    while (rc == 0) {
        int r = reg_save_iterate(reg, f);
        ram_save_stats rs;
        vm_get_ram_stats(v, &rs);
        st->passes++;
        st->pages += pages_sent(&rs);
        sweep += rs.normal_pages + rs.compressed_pages + rs.xbzrle_pages;
        rc = drain(f, l, st, err, errlen);
        if (r < 0 && rc == 0)
            rc = r;
        if (rc < 0 || st->pages >= budget)
            break;
        if (r > 0 && rs.remaining == 0) {
            if (sweep <= FINAL_PAGES)
                break;
            sweep = 0;
        }
        if (vm_get_state(v) == VM_STOPPED) {
            snprintf(err, errlen, "bring-up: the VM stopped");
            rc = -ESHUTDOWN;
        }
    }
    return rc;
}

int pkg_bringup(vm *v, const vmshape *shape, lnk *l, pkg_bringup_stats *st,
                char *err, size_t errlen)
{
    uint64_t t0 = mono_ns();
    *st = (pkg_bringup_stats){ 0 };
    qfile *f = qf_open_mem(lnk_addr(l));
    if (!f) {
        snprintf(err, errlen, "bring-up: out of memory");
        return -ENOMEM;
    }
    int rc = bringup(v, shape, l, f, st, err, errlen);
    qf_close(f);
    st->ns = mono_ns() - t0;
    return rc;
}

int pkg_build(vm *v, qfile *q, uint64_t id, uint64_t base, bool full,
              pkg_stats *st)
{
    reg_registry *reg = vm_registry(v);
    uint32_t n = (uint32_t)reg_count(reg);
    if (full) {
        size_t nb;
        ram_block *b = vm_ram_blocks(v, &nb);
        ram_mark_all_dirty(b, nb);
        ram_saver_drop_cache(vm_ram_saver(v));
    }
    ckt_put_pkg(q, n + 1, &(ckt_pkg){ .id = id, .base = base });
    if (reg_save_complete(reg, q) == 0)
        reg_save_devices(reg, q, NULL);
    ram_save_stats rs;
    vm_get_ram_stats(v, &rs);
    st->pages = pages_sent(&rs);
    st->bytes = qf_tell(q);
    return qf_error(q);
}

int pkg_seal(vm *v, qfile *q, uint64_t id, pkg_stats *st)
{
    uint32_t n = (uint32_t)reg_count(vm_registry(v));
    qf_crc_start_mem(q);
    ckt_put(q, n + 2, id);
    sv_put_eof(q);
    st->bytes = qf_tell(q);
    return qf_error(q);
}

void pkg_test_corrupt(qfile *q)
{
    size_t len;
    /* The channel's own buffer: this hook exists to damage it. */
    uint8_t *d = (uint8_t *)qf_mem_data(q, &len);
    if (len)
        d[len / 2] ^= 0x40;
}
