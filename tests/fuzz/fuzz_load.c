/*
 * libFuzzer target: any bytes, loaded as a checkpoint file into a VM-shaped
 * fixture.  The loader must never crash, hang or leak, and must leave the
 * fixture untouched whenever it reports an error.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint/savevm.h"
#include "tests/fuzz/fixture.h"

static fixture fx;

/* Says which promise the loader broke before the fuzzer reports the abort. */
static void broken(const char *what, const qfile *f)
{
    fprintf(stderr, "fuzz_load: %s (the loader said: \"%s\")\n", what,
            qfile_errmsg(f));
    abort();
}
static uint8_t *snapshot[2];
static fx_cpu cpu_before[2];
static fx_console console_before;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!fx.reg) {
        if (fx_init(&fx, 0, 0) < 0)
            abort();
        for (int i = 0; i < 2; i++)
            snapshot[i] = malloc(fx.blocks[i].length);
    }
    for (int i = 0; i < 2; i++) {
        memset(fx.mem[i], 0xa5, fx.blocks[i].length);
        memcpy(snapshot[i], fx.mem[i], fx.blocks[i].length);
    }
    memset(fx.cpu, 0x11, sizeof(fx.cpu));
    memset(&fx.console, 0x22, sizeof(fx.console));
    fx.console.pending_len = 3;
    memcpy(cpu_before, fx.cpu, sizeof(cpu_before));
    console_before = fx.console;

    qfile *f = qfile_open_view(data, size, "fuzz");
    savevm_loader *l = savevm_loader_new(&registry_target_ops, fx.reg, NULL);
    int r = savevm_load_checked(l, f);
    if (r < 0) {
        /* All or nothing: a refused stream changed nothing. */
        for (int i = 0; i < 2; i++)
            if (memcmp(snapshot[i], fx.mem[i], fx.blocks[i].length) != 0)
                broken(i ? "a refused stream changed the ROM block"
                         : "a refused stream changed the RAM block", f);
        if (memcmp(cpu_before, fx.cpu, sizeof(cpu_before)) != 0)
            broken("a refused stream changed the vCPU state", f);
        if (memcmp(&console_before, &fx.console, sizeof(fx.console)) != 0)
            broken("a refused stream changed the console state", f);
        if (qfile_errmsg(f)[0] == '\0')
            broken("a stream refused without a message", f);
    }
    savevm_loader_free(l);
    qfile_close(f);
    return 0;
}
