/* precopy: see precopy.h. */
#include "vm/precopy.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "devstate/registry.h"
#include "vm/mono.h"

void precopy_begin(precopy_stats *st, uint64_t ram_pages)
{
    *st = (precopy_stats){ .budget = ram_pages * PRECOPY_BUDGET_ROUNDS };
}

bool precopy_account(precopy_stats *st, int iterate_rc,
                     const ram_save_stats *rs, uint64_t disk_chunks)
{
    uint64_t taken = rs->zero_pages + rs->normal_pages +
                     rs->compressed_pages + rs->xbzrle_pages +
                     rs->unchanged_pages +
                     disk_chunks * PRECOPY_PAGES_PER_CHUNK;
    st->passes++;
    st->pages += taken;
    st->sweep_pages += taken;
    if (iterate_rc > 0 && rs->remaining == 0) {
        st->sweeps++;
        st->last_sweep_pages = st->sweep_pages;
        st->sweep_pages = 0;
        if (st->last_sweep_pages <= PRECOPY_FINAL_PAGES) {
            st->end = PRECOPY_CONVERGED;
            return true;
        }
    }
    if (st->pages >= st->budget) {
        st->end = PRECOPY_BUDGET;
        return true;
    }
    return false;
}

/* The stream's latched error, else rc (a step that failed without one). */
static int stream_error(qfile *f, int rc, char *err, size_t errlen)
{
    if (qfile_error(f)) {
        snprintf(err, errlen, "%s", qfile_errmsg(f));
        return qfile_error(f);
    }
    rc = rc < 0 ? rc : -EIO;
    snprintf(err, errlen, "saving RAM: %s", strerror(-rc));
    return rc;
}

int precopy_run(vm *v, qfile *f, precopy_flush_fn flush, void *opaque,
                precopy_stats *st, char *err, size_t errlen)
{
    uint64_t t0 = mono_ns(), ram_pages = 0;
    size_t n;
    int rc = vm_check_savable(v, err, errlen);
    if (rc < 0)
        return rc;
    ram_block *b = vm_ram_blocks(v, &n);
    for (size_t i = 0; i < n; i++)
        ram_pages += b[i].length / RAM_PAGE_SIZE;
    /* The disk's chunks count as the pages they weigh. */
    if (vm_disk(v))
        ram_pages += disk_chunks(vm_disk(v)) * PRECOPY_PAGES_PER_CHUNK;
    precopy_begin(st, ram_pages);

    block_save_stats ds0;
    vm_get_disk_stats(v, &ds0);
    uint64_t disk_sent = ds0.data_chunks + ds0.zero_chunks;
    registry *reg = vm_registry(v);
    rc = registry_save_setup(reg, f);
    if (rc < 0 || qfile_error(f))
        rc = stream_error(f, rc, err, errlen);
    if (rc == 0)
        rc = flush(opaque, f, err, errlen);
    while (rc == 0) {
        int r = registry_save_iterate(reg, f);
        if (r < 0 || qfile_error(f)) {
            rc = stream_error(f, r, err, errlen);
            break;
        }
        ram_save_stats rs;
        vm_get_ram_stats(v, &rs);
        block_save_stats ds;
        vm_get_disk_stats(v, &ds);
        uint64_t chunks = ds.data_chunks + ds.zero_chunks;
        bool over = precopy_account(st, r, &rs, chunks - disk_sent);
        disk_sent = chunks;
        /* Out before the guest changes the pages again. */
        rc = flush(opaque, f, err, errlen);
        if (rc < 0 || over)
            break;
        if (vm_get_state(v) == VM_STOPPED) {
            snprintf(err, errlen, "the VM stopped");
            rc = -ESHUTDOWN;
        }
    }
    st->ns = mono_ns() - t0;
    return rc;
}
