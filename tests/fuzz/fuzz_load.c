/*
 * libFuzzer target: any bytes, loaded as a checkpoint file into a VM-shaped
 * fixture.  The loader must never crash, hang or leak, and must leave the
 * fixture untouched (RAM, dirty bitmaps, vCPUs, console) whenever it
 * reports an error.  Each input gets a fresh fixture and loader, so that
 * nothing one input left (the RAM loader's CONTINUE block, say) decides
 * what the next does, and a finding reproduces alone.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint/savevm.h"
#include "tests/fuzz/fixture.h"
#include "tests/fuzz/fuzzcheck.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fixture fx;
    fx_state before = { 0 };
    if (fx_init(&fx, 0, 0) < 0)
        fuzzcheck_broken("fuzz_load: the fixture cannot be made");
    for (int i = 0; i < 2; i++) {
        memset(fx.mem[i], 0xa5, fx.blocks[i].length);
        /* Some pages dirty, as on a VM that ran: loading must not clear them. */
        memset(fx.dirty[i], 0x24, ram_bitmap_longs(fx.blocks[i].length) *
                                      sizeof(long));
    }
    memset(fx.cpu, 0x11, sizeof(fx.cpu));
    memset(&fx.console, 0x22, sizeof(fx.console));
    fx.console.pending_len = 3;
    if (fx_state_save(&fx, &before) < 0)
        fuzzcheck_broken("fuzz_load: out of memory");

    qfile *f = qfile_open_view(data, size, "fuzz");
    savevm_loader *l = savevm_loader_new(&registry_target_ops, fx.reg, NULL);
    if (!f || !l)
        fuzzcheck_broken("fuzz_load: out of memory");
    int r = savevm_load_checked(l, f);
    if (r < 0) {
        /* All or nothing: a refused stream changed nothing. */
        const char *what = fx_state_diff(&fx, &before);
        if (what)
            fuzzcheck_broken("fuzz_load: a refused stream changed %s (the "
                             "loader said: \"%s\")", what, qfile_errmsg(f));
        if (qfile_errmsg(f)[0] == '\0')
            fuzzcheck_broken("fuzz_load: a stream refused without a "
                             "message");
        fuzzcheck_refused("fuzz_load: %s", qfile_errmsg(f));
    }
    savevm_loader_free(l);
    qfile_close(f);
    fx_state_free(&before);
    fx_free(&fx);
    return 0;
}
