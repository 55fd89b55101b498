#include "tests/fuzz/fixture.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static const vmstate_field cpu_fields[] = {
    {VMSTATE_ARRAY(fx_cpu, regs)},
    {VMSTATE_SCALAR(fx_cpu, rip)},
    {VMSTATE_SCALAR(fx_cpu, flags)},
    {VMSTATE_SCALAR(fx_cpu, halted)},
    {VMSTATE_BUFFER(fx_cpu, xsave), .version = 2},
    VMSTATE_END,
};

static const vmstate_desc cpu_desc = {
    .name = "cpu", .version = 2, .minimum_version = 1,
    .size = sizeof(fx_cpu), .fields = cpu_fields,
};

static const vmstate_field console_pending_fields[] = {
    {VMSTATE_SCALAR(fx_console, pending_len)},
    {VMSTATE_VBUFFER(fx_console, pending, pending_len)},
    VMSTATE_END,
};

static bool console_pending_needed(const void *obj)
{
    return ((const fx_console *)obj)->pending_len > 0;
}

static const vmstate_desc console_pending_desc = {
    .name = "console/pending", .version = 1, .minimum_version = 1,
    .fields = console_pending_fields,
};

static const vmstate_subsection console_subsections[] = {
    { &console_pending_desc, console_pending_needed },
    { NULL, NULL },
};

static const vmstate_field console_fields[] = {
    {VMSTATE_SCALAR(fx_console, seq)},
    {VMSTATE_SCALAR(fx_console, last_error)},
    VMSTATE_END,
};

static const vmstate_desc console_desc = {
    .name = "console", .version = 1, .minimum_version = 1,
    .size = sizeof(fx_console), .fields = console_fields,
    .subsections = console_subsections,
};

static int live_setup(qfile *f, void *opaque)
{
    return ram_save_setup(((fixture *)opaque)->saver, f);
}

static int live_iterate(qfile *f, void *opaque)
{
    ram_save_stats st;
    int64_t r = ram_save_dirty(((fixture *)opaque)->saver, f, 64, &st);
    if (r < 0)
        return (int)r;
    return st.remaining == 0;
}

static int live_complete(qfile *f, void *opaque)
{
    int64_t r = ram_save_dirty(((fixture *)opaque)->saver, f, 0, NULL);
    return r < 0 ? (int)r : 0;
}

static int live_load(qfile *f, void *opaque, uint32_t version, savevm_pass pass)
{
    return ram_load(((fixture *)opaque)->loader, f, version, pass);
}

static void live_begin_validate(void *opaque)
{
    ram_loader_begin_validate(((fixture *)opaque)->loader);
}

static const registry_live_ops ram_ops = {
    .version = RAM_SECTION_VERSION,
    .minimum_version = RAM_SECTION_VERSION,
    .save_setup = live_setup,
    .save_iterate = live_iterate,
    .save_complete = live_complete,
    .load = live_load,
    .load_begin_validate = live_begin_validate,
};

void fx_fill(fixture *fx, unsigned seed)
{
    srand(seed);
    for (int b = 0; b < 2; b++)
        for (uint64_t p = 0; p < fx->blocks[b].length; p += RAM_PAGE_SIZE)
            if (rand() % 3 == 0)
                for (int k = 0; k < 64; k++)
                    fx->mem[b][p + (uint64_t)(rand() % RAM_PAGE_SIZE)] =
                        (uint8_t)rand();
    for (int i = 0; i < 2; i++) {
        fx->cpu[i].rip = 0x100000 + (uint64_t)i;
        fx->cpu[i].halted = i;
        fx->cpu[i].xsave[7] = 0x5a;
    }
    fx->console.seq = seed;
    fx->console.pending_len = (uint16_t)(seed % 5);
    memset(fx->console.pending, 'x', fx->console.pending_len);
}

int fx_init(fixture *fx, int compress_level, uint64_t xbzrle_cache)
{
    static const uint64_t sizes[2] = { 64 * 1024, 16 * 1024 };
    static const char *const names[2] = { "ram0", "rom" };
    memset(fx, 0, sizeof(*fx));
    for (int i = 0; i < 2; i++) {
        fx->mem[i] = calloc(1, sizes[i]);
        fx->dirty[i] = calloc(ram_bitmap_longs(sizes[i]), sizeof(long));
        if (!fx->mem[i] || !fx->dirty[i])
            return -ENOMEM;
        fx->blocks[i] = (ram_block){ names[i], fx->mem[i], sizes[i],
                                     fx->dirty[i] };
    }
    ram_save_opts o = { .compress_level = compress_level,
                        .xbzrle_cache = xbzrle_cache };
    int r = ram_saver_new(&fx->saver, fx->blocks, 2, &o);
    if (r == 0)
        r = ram_loader_new(&fx->loader, fx->blocks, 2);
    fx->reg = registry_new();
    if (r < 0 || !fx->reg)
        return r < 0 ? r : -ENOMEM;
    /* Registration returns the section id, >= 0. */
    r = registry_add_live(fx->reg, RAM_SECTION_IDSTR, 0, REGISTRY_PRIO_RAM,
                          &ram_ops, fx);
    for (uint32_t i = 0; i < 2 && r >= 0; i++)
        r = registry_add_device(fx->reg, "cpu", i, REGISTRY_PRIO_DEFAULT,
                                &cpu_desc, &fx->cpu[i]);
    if (r >= 0)
        r = registry_add_device(fx->reg, "console", 0, REGISTRY_PRIO_DEFAULT,
                                &console_desc, &fx->console);
    return r < 0 ? r : 0;
}

void fx_free(fixture *fx)
{
    registry_free(fx->reg);
    ram_saver_free(fx->saver);
    ram_loader_free(fx->loader);
    for (int i = 0; i < 2; i++) {
        free(fx->mem[i]);
        free(fx->dirty[i]);
    }
}

int fx_state_save(const fixture *fx, fx_state *s)
{
    for (int i = 0; i < 2; i++) {
        size_t dn = ram_bitmap_longs(fx->blocks[i].length) * sizeof(long);
        if (!s->mem[i])
            s->mem[i] = malloc(fx->blocks[i].length);
        if (!s->dirty[i])
            s->dirty[i] = malloc(dn);
        if (!s->mem[i] || !s->dirty[i])
            return -ENOMEM;
        memcpy(s->mem[i], fx->mem[i], fx->blocks[i].length);
        memcpy(s->dirty[i], fx->dirty[i], dn);
    }
    memcpy(s->cpu, fx->cpu, sizeof(s->cpu));
    s->console = fx->console;
    return 0;
}

const char *fx_state_diff(const fixture *fx, const fx_state *s)
{
    static const char *const mem[2] = { "the RAM block 'ram0'",
                                        "the RAM block 'rom'" };
    static const char *const dirty[2] = { "the dirty bitmap of 'ram0'",
                                          "the dirty bitmap of 'rom'" };
    for (int i = 0; i < 2; i++) {
        size_t dn = ram_bitmap_longs(fx->blocks[i].length) * sizeof(long);
        if (memcmp(s->mem[i], fx->mem[i], fx->blocks[i].length) != 0)
            return mem[i];
        if (memcmp(s->dirty[i], fx->dirty[i], dn) != 0)
            return dirty[i];
    }
    if (memcmp(s->cpu, fx->cpu, sizeof(s->cpu)) != 0)
        return "the vCPU state";
    if (memcmp(&s->console, &fx->console, sizeof(s->console)) != 0)
        return "the console state";
    return NULL;
}

void fx_state_free(fx_state *s)
{
    for (int i = 0; i < 2; i++) {
        free(s->mem[i]);
        free(s->dirty[i]);
    }
}
