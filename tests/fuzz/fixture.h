/*
 * The state the loader fuzzer loads into: two RAM blocks behind the RAM
 * codec and a few described devices, registered as a real VM's would be.
 * Shared by the fuzz target and the seed generator so seeds match it.
 */
#ifndef FTVM_TESTS_FUZZ_FIXTURE_H
#define FTVM_TESTS_FUZZ_FIXTURE_H

#include "checkpoint/ram.h"
#include "devstate/registry.h"

typedef struct fx_cpu {
    uint64_t regs[16];
    uint64_t rip;
    uint32_t flags;
    bool halted;
    uint8_t xsave[512];
} fx_cpu;

typedef struct fx_console {
    uint64_t seq;
    uint16_t pending_len;
    uint8_t pending[256];
    int32_t last_error;
} fx_console;

typedef struct fixture {
    uint8_t *mem[2];
    unsigned long *dirty[2];
    ram_block blocks[2];
    ram_saver *saver;
    ram_loader *loader;
    fx_cpu cpu[2];
    fx_console console;
    registry *reg;
} fixture;

/* Builds the fixture; compress/xbzrle configure the saver's encodings. */
int fx_init(fixture *fx, int compress_level, uint64_t xbzrle_cache);
void fx_free(fixture *fx);
/*
 * A copy of everything a load may change (RAM, dirty bitmaps, vCPUs,
 * console), to show that a refused unit changed none of it.
 */
typedef struct fx_state {
    uint8_t *mem[2];
    unsigned long *dirty[2];
    fx_cpu cpu[2];
    fx_console console;
} fx_state;

/* Copies fx into s (allocated on first use; zero s before).  0 or -ENOMEM. */
int fx_state_save(const fixture *fx, fx_state *s);
/* What differs between fx and s ("the RAM block 'rom'"), or NULL. */
const char *fx_state_diff(const fixture *fx, const fx_state *s);
void fx_state_free(fx_state *s);

/* Fills RAM and devices with a pattern of seed (the same every time). */
void fx_fill(fixture *fx, unsigned seed);

#endif
