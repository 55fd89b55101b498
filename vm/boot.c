/*
 * boot: page tables, GDT, TSS, exception handlers, boot info, entry state.
 */
#include "vm/boot.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "include/hypercall_abi.h"
#include "vm/le.h"

#define PTE_P   0x001ull
#define PTE_RW  0x002ull
#define PTE_US  0x004ull
#define PTE_PS  0x080ull

#define CR0_PE  (1ull << 0)
#define CR0_MP  (1ull << 1)
#define CR0_ET  (1ull << 4)
#define CR0_NE  (1ull << 5)
#define CR0_WP  (1ull << 16)
#define CR0_PG  (1ull << 31)
#define CR4_PAE (1ull << 5)
#define CR4_OSFXSR (1ull << 9)
#define CR4_OSXMMEXCPT (1ull << 10)
#define EFER_LME (1ull << 8)
#define EFER_LMA (1ull << 10)
#define EFER_NXE (1ull << 11)
#define RFLAGS_FIXED (1ull << 1)
#define RFLAGS_IOPL3 (3ull << 12)

#define TSS_SIZE 104u
#define TSS_IOMAP_BYTES 8192u
#define TSS_LIMIT (TSS_SIZE + TSS_IOMAP_BYTES)  /* the closing 0xff byte */

#define GDT_ENTRIES 8

/* Vectors for which the CPU pushes an error code. */
static bool has_error_code(unsigned v)
{
    return v == 8 || (v >= 10 && v <= 14) || v == 17 || v == 21 ||
           v == 29 || v == 30;
}

static void write_gdt(uint8_t *gdt)
{
    static const uint64_t flat[] = {
        0,
        0x00af9b000000ffffull,  /* 0x08 kernel code, 64-bit */
        0x00cf93000000ffffull,  /* 0x10 kernel data */
        0x00cffb000000ffffull,  /* 0x18 user code, 32-bit (unused) */
        0x00cff3000000ffffull,  /* 0x20 user data */
        0x00affb000000ffffull,  /* 0x28 user code, 64-bit */
    };
    uint64_t base = BOOT_TSS, limit = TSS_LIMIT;

    for (size_t i = 0; i < sizeof(flat) / sizeof(flat[0]); i++)
        le_put64(gdt + 8 * i, flat[i]);
    /* 0x30: the TSS, 64-bit busy (type 0xb), as TR holds it. */
    le_put64(gdt + 0x30, (limit & 0xffff) | (base & 0xffffff) << 16 |
                      0x8bull << 40 | ((limit >> 16) & 0xf) << 48 |
                      ((base >> 24) & 0xff) << 56);
    le_put64(gdt + 0x38, base >> 32);
}

static void write_tss(uint8_t *tss)
{
    memset(tss, 0, TSS_LIMIT + 1);
    le_put64(tss + 4, BOOT_EXC_STACK_TOP);     /* rsp0 */
    le_put16(tss + 102, TSS_SIZE);             /* I/O bitmap offset */
    tss[TSS_LIMIT] = 0xff;                  /* every port allowed before it */
}

/*
 * Each stub: [push $0], mov $vector,%eax; mov $BOOT_EXC_PORT,%dx;
 * out %eax,%dx; jmp .  The pushed zero gives every frame an error code.
 */
static void write_idt(uint8_t *idt, uint8_t *stubs)
{
    for (unsigned v = 0; v < BOOT_EXC_VECTORS; v++) {
        uint8_t *s = stubs + 16 * v;
        size_t n = 0;
        if (!has_error_code(v)) {
            s[n++] = 0x6a;
            s[n++] = 0x00;
        }
        s[n++] = 0xb8;
        s[n++] = (uint8_t)v;
        s[n++] = 0;
        s[n++] = 0;
        s[n++] = 0;
        s[n++] = 0x66;
        s[n++] = 0xba;
        s[n++] = BOOT_EXC_PORT & 0xff;
        s[n++] = BOOT_EXC_PORT >> 8;
        s[n++] = 0xef;
        s[n++] = 0xeb;
        s[n++] = 0xfe;

        uint64_t h = BOOT_EXC_STUBS + 16 * v;
        /* 64-bit interrupt gate, present, DPL 0. */
        le_put64(idt + 16 * v, (h & 0xffff) | (uint64_t)BOOT_SEL_KCODE << 16 |
                            0x8eull << 40 | ((h >> 16) & 0xffff) << 48);
        le_put64(idt + 16 * v + 8, h >> 32);
    }
}

static void write_page_tables(gmem *g, uint64_t mem_size)
{
    uint8_t *pml4 = gmem_ptr(g, BOOT_PML4, RAM_PAGE_SIZE);
    uint8_t *pdpt = gmem_ptr(g, BOOT_PDPT, RAM_PAGE_SIZE);
    uint64_t gibs = (mem_size + (1ull << 30) - 1) >> 30;
    uint8_t *pd = gmem_ptr(g, BOOT_PD, gibs * RAM_PAGE_SIZE);

    memset(pml4, 0, RAM_PAGE_SIZE);
    memset(pdpt, 0, RAM_PAGE_SIZE);
    memset(pd, 0, gibs * RAM_PAGE_SIZE);
    le_put64(pml4, BOOT_PDPT | PTE_P | PTE_RW | PTE_US);
    for (uint64_t i = 0; i < gibs; i++)
        le_put64(pdpt + 8 * i, (BOOT_PD + i * RAM_PAGE_SIZE) | PTE_P | PTE_RW |
                            PTE_US);
    for (uint64_t a = 0; a < mem_size; a += 2ull << 20)
        le_put64(pd + 8 * (a >> 21), a | PTE_P | PTE_RW | PTE_US | PTE_PS);
}

static struct kvm_segment segment(uint16_t sel, bool code)
{
    return (struct kvm_segment){
        .base = 0, .limit = 0xffffffff, .selector = sel,
        .type = code ? 11 : 3, .present = 1, .dpl = 3, .s = 1,
        .db = code ? 0 : 1, .l = code ? 1 : 0, .g = 1,
    };
}

uint64_t boot_stack_top(uint64_t mem_size)
{
    return mem_size < BOOT_STACK_TOP_MAX ? mem_size : BOOT_STACK_TOP_MAX;
}

int boot_setup(gmem *g, uint64_t mem_size, const elfload_image *img,
               const char *cmdline, bool nx, struct kvm_regs *regs,
               struct kvm_sregs *sregs, char *err, size_t errlen)
{
    size_t cl = strlen(cmdline);

    if (cl >= BOOT_CMDLINE_MAX) {
        snprintf(err, errlen, "the guest command line is %zu bytes; at most "
                 "%u fit", cl, BOOT_CMDLINE_MAX - 1);
        return -E2BIG;
    }
    if (mem_size < BOOT_MIN_MEM || mem_size > BOOT_MAX_MEM ||
        mem_size % BOOT_MEM_ALIGN || !gmem_ptr(g, 0, mem_size)) {
        snprintf(err, errlen, "RAM of %" PRIu64 " bytes cannot be booted",
                 mem_size);
        return -EINVAL;
    }

    write_gdt(gmem_ptr(g, BOOT_GDT, GDT_ENTRIES * 8));
    write_tss(gmem_ptr(g, BOOT_TSS, TSS_LIMIT + 1));
    write_idt(gmem_ptr(g, BOOT_IDT, 16 * BOOT_EXC_VECTORS),
              gmem_ptr(g, BOOT_EXC_STUBS, 16 * BOOT_EXC_VECTORS));
    write_page_tables(g, mem_size);

    struct ftvm_boot_info bi = {
        .abi_version = FTVM_HC_ABI_VERSION, .mem_size = mem_size,
        .image_end = img->end, .cmdline = BOOT_CMDLINE,
    };
    memcpy(gmem_ptr(g, BOOT_INFO, sizeof(bi)), &bi, sizeof(bi));
    memcpy(gmem_ptr(g, BOOT_CMDLINE, cl + 1), cmdline, cl + 1);

    memset(regs, 0, sizeof(*regs));
    regs->rip = img->entry;
    regs->rsp = boot_stack_top(mem_size) - 16;
    regs->rdi = BOOT_INFO;
    regs->rflags = RFLAGS_FIXED | RFLAGS_IOPL3;

    sregs->cs = segment(BOOT_SEL_UCODE, true);
    sregs->ds = sregs->es = sregs->fs = sregs->gs = sregs->ss =
        segment(BOOT_SEL_UDATA, false);
    sregs->tr = (struct kvm_segment){
        .base = BOOT_TSS, .limit = TSS_LIMIT, .selector = BOOT_SEL_TSS,
        .type = 11, .present = 1,
    };
    sregs->ldt = (struct kvm_segment){ .type = 2, .unusable = 1 };
    sregs->gdt.base = BOOT_GDT;
    sregs->gdt.limit = GDT_ENTRIES * 8 - 1;
    sregs->idt.base = BOOT_IDT;
    sregs->idt.limit = 16 * BOOT_EXC_VECTORS - 1;
    sregs->cr0 = CR0_PE | CR0_MP | CR0_ET | CR0_NE | CR0_WP | CR0_PG;
    sregs->cr2 = 0;
    sregs->cr3 = BOOT_PML4;
    sregs->cr4 = CR4_PAE | CR4_OSFXSR | CR4_OSXMMEXCPT;
    sregs->efer = EFER_LME | EFER_LMA | (nx ? EFER_NXE : 0);
    return 0;
}

static const char *const exc_names[BOOT_EXC_VECTORS] = {
    [0] = "#DE (divide error)", [1] = "#DB (debug)", [2] = "NMI",
    [3] = "#BP (breakpoint)", [4] = "#OF (overflow)",
    [5] = "#BR (bound range)", [6] = "#UD (invalid opcode)",
    [7] = "#NM (no FPU)", [8] = "#DF (double fault)",
    [10] = "#TS (invalid TSS)", [11] = "#NP (segment not present)",
    [12] = "#SS (stack fault)", [13] = "#GP (general protection)",
    [14] = "#PF (page fault)", [16] = "#MF (x87 error)",
    [17] = "#AC (alignment check)", [18] = "#MC (machine check)",
    [19] = "#XM (SIMD error)", [20] = "#VE (virtualisation)",
    [21] = "#CP (control protection)",
};

void boot_describe_exception(const gmem *g, const struct kvm_regs *regs,
                             const struct kvm_sregs *sregs, char *msg,
                             size_t msglen)
{
    unsigned v = (unsigned)(regs->rax & 0xff);
    const char *name = v < BOOT_EXC_VECTORS && exc_names[v] ? exc_names[v]
                                                            : "reserved";
    const uint8_t *frame = gmem_ptr(g, regs->rsp, 6 * 8);
    uint64_t f[6];

    if (!frame) {
        snprintf(msg, msglen, "CPU exception %u %s; its frame at 0x%" PRIx64
                 " is outside RAM", v, name, (uint64_t)regs->rsp);
        return;
    }
    memcpy(f, frame, sizeof(f));
    int n = snprintf(msg, msglen, "CPU exception %s at rip 0x%" PRIx64
                     ", error code 0x%" PRIx64, name, f[1], f[0]);
    if (v == 14 && n > 0 && (size_t)n < msglen)
        snprintf(msg + n, msglen - (size_t)n, ", address 0x%" PRIx64,
                 (uint64_t)sregs->cr2);
}
