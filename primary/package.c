/* package: see package.h. */
#include "primary/package.h"

#include <errno.h>
#include <stdio.h>
#include <time.h>

#include "checkpoint/savevm.h"
#include "devstate/dropnotice.h"
#include "devstate/trailer.h"
#include "vm/colosec.h"
#include "vm/mono.h"
#include "vm/precopy.h"

static uint64_t pages_sent(const ram_save_stats *rs)
{
    return rs->zero_pages + rs->normal_pages + rs->compressed_pages +
           rs->xbzrle_pages + rs->unchanged_pages;
}

typedef struct drain_ctx {
    channel *link;
    package_bringup_stats *st;
} drain_ctx;

/* The precopy flush: sends what f holds and empties it. */
static int drain(void *opaque, qfile *f, char *err, size_t errlen)
{
    drain_ctx *c = opaque;
    if (qfile_error(f)) {
        snprintf(err, errlen, "%s", qfile_errmsg(f));
        return qfile_error(f);
    }
    size_t len;
    const uint8_t *d = qfile_mem_data(f, &len);
    int rc = channel_write(c->link, d, len, err, errlen);
    c->st->bytes += len;
    qfile_mem_reset(f);
    return rc;
}

static int bringup(vm *v, const vmshape *shape, bool colo, channel *l,
                   qfile *f,
                   package_bringup_stats *st, char *err, size_t errlen)
{
    uint32_t n = (uint32_t)registry_count(vm_registry(v));
    savevm_put_header(f);
    savevm_put_command(f, SAVEVM_CMD_OPEN_RETURN_PATH, 0, NULL);
    savevm_put_command(f, SAVEVM_CMD_ENABLE_COLO, 0, NULL);
    vmshape_put(f, n, shape);
    if (colo)
        colosec_put(f, n + 3, COLOSEC_MODE_COLO);
    drain_ctx c = { .link = l, .st = st };
    precopy_stats ps;
    char why[512];
    int rc = precopy_run(v, f, drain, &c, &ps, why, sizeof(why));
    st->passes = ps.passes;
    st->pages = ps.pages;
    if (rc < 0)
        snprintf(err, errlen, "bring-up: %s", why);
    return rc;
}

int package_bringup(vm *v, const vmshape *shape, bool colo, channel *l,
                    package_bringup_stats *st, char *err, size_t errlen)
{
    uint64_t t0 = mono_ns();
    *st = (package_bringup_stats){0};
    qfile *f = qfile_open_mem(channel_addr(l));
    if (!f) {
        snprintf(err, errlen, "bring-up: out of memory");
        return -ENOMEM;
    }
    int rc = bringup(v, shape, colo, l, f, st, err, errlen);
    qfile_close(f);
    st->ns = mono_ns() - t0;
    return rc;
}

int package_build(vm *v, qfile *q, const pairing *pair, uint64_t id,
                  uint64_t base, bool full, package_stats *st)
{
    registry *reg = vm_registry(v);
    uint32_t n = (uint32_t)registry_count(reg);
    if (full) {
        size_t nb;
        ram_block *b = vm_ram_blocks(v, &nb);
        ram_mark_all_dirty(b, nb);
        ram_saver_drop_cache(vm_ram_saver(v));
        vm_disk_resend(v);
    }
    trailer_put_pkg(q, n + 1, &(trailer_pkg){ .id = id, .base = base,
                                              .pair = *pair });
    if (registry_save_complete(reg, q) == 0)
        registry_save_devices(reg, q, NULL);
    ram_save_stats rs;
    vm_get_ram_stats(v, &rs);
    st->pages = pages_sent(&rs);
    st->bytes = qfile_tell(q);
    return qfile_error(q);
}

int package_seal(vm *v, qfile *q, uint64_t id, package_stats *st)
{
    uint32_t n = (uint32_t)registry_count(vm_registry(v));
    qfile_crc_start_mem(q);
    trailer_put(q, n + 2, id);
    savevm_put_eof(q);
    st->bytes = qfile_tell(q);
    return qfile_error(q);
}

int package_drop(vm *v, qfile *q, const pairing *pair, uint32_t reason,
                 const char *text)
{
    uint32_t n = (uint32_t)registry_count(vm_registry(v));
    dropnotice d;
    dropnotice_make(&d, pair, reason, text);
    dropnotice_put(q, n + 3, &d);
    return qfile_error(q);
}
