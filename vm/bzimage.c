/* bzimage: see bzimage.h.  Offsets are boot.rst's, in the zero page. */
#include "vm/bzimage.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vm/le.h"

/* Setup header fields (offsets in the file's first sector = zero page). */
#define HDR_START           0x1f1u
#define HDR_SETUP_SECTS     0x1f1u
#define HDR_BOOT_FLAG       0x1feu
#define HDR_JUMP_LEN        0x201u      /* the header ends at 0x202 + this */
#define HDR_MAGIC           0x202u
#define HDR_VERSION         0x206u
#define HDR_TYPE_OF_LOADER  0x210u
#define HDR_LOADFLAGS       0x211u
#define HDR_RAMDISK_IMAGE   0x218u
#define HDR_RAMDISK_SIZE    0x21cu
#define HDR_CMD_LINE_PTR    0x228u
#define HDR_INITRD_ADDR_MAX 0x22cu
#define HDR_XLOADFLAGS      0x236u
#define HDR_CMDLINE_SIZE    0x238u
#define HDR_INIT_SIZE       0x260u
#define HDR_END_MAX         0x290u
/* boot_params fields outside the header. */
#define BP_EXT_RAMDISK_IMAGE 0x0c0u
#define BP_EXT_RAMDISK_SIZE  0x0c4u
#define BP_EXT_CMD_LINE_PTR  0x0c8u
#define BP_E820_ENTRIES      0x1e8u
#define BP_E820_TABLE        0x2d0u
#define BP_SIZE              0x1000u

#define MAGIC_HDRS          0x53726448u     /* "HdrS" */
#define LOADED_HIGH         0x01u
#define XLF_KERNEL_64       0x01u
#define LOADER_UNDEFINED    0xffu
#define ENTRY_64_OFFSET     0x200u
#define MIN_VERSION         0x020cu         /* xloadflags exist */

#define E820_RAM            1u
#define E820_RESERVED       2u

#define GDT_ADDR            0x0500u
#define PML4_ADDR           0x9000u
#define PDPT_ADDR           0xa000u
#define PD_ADDR             0xb000u
#define STACK_TOP           0x8ff0u
#define SEL_CODE            0x10u
#define SEL_DATA            0x18u
#define SEL_TSS             0x20u

#define PAGE                4096u

/* Reads all of path (at most max bytes) into malloc'd *out. */
static int read_file(const char *path, const char *what, size_t max,
                     uint8_t **out, size_t *len, char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;

    if (fd < 0 || fstat(fd, &st) < 0) {
        int e = errno;
        snprintf(err, errlen, "%s %s: %s", what, path, strerror(e));
        if (fd >= 0)
            close(fd);
        return -e;
    }
    if (!S_ISREG(st.st_mode) || st.st_size <= 0 ||
        (uint64_t)st.st_size > max) {
        snprintf(err, errlen, "%s %s: %s", what, path,
                 !S_ISREG(st.st_mode) ? "not a regular file"
                 : st.st_size <= 0 ? "empty" : "too large");
        close(fd);
        return -EINVAL;
    }
    size_t n = (size_t)st.st_size, got = 0;
    uint8_t *buf = malloc(n);
    if (!buf) {
        close(fd);
        snprintf(err, errlen, "%s %s: no memory for %zu bytes", what, path, n);
        return -ENOMEM;
    }
    while (got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r <= 0) {
            int e = r < 0 ? errno : EIO;
            snprintf(err, errlen, "%s %s: reading: %s", what, path,
                     r < 0 ? strerror(e) : "it shrank");
            free(buf);
            close(fd);
            return -e;
        }
        got += (size_t)r;
    }
    close(fd);
    *out = buf;
    *len = n;
    return 0;
}

typedef struct kernel_info {
    size_t setup_len;           /* bytes before the protected-mode kernel */
    size_t hdr_end;
    uint32_t init_size, initrd_max, cmdline_size;
} kernel_info;

static int check_kernel(const uint8_t *f, size_t len, const char *path,
                        kernel_info *ki, char *err, size_t errlen)
{
    if (len < HDR_END_MAX || le_get16(f + HDR_BOOT_FLAG) != 0xaa55 ||
        le_get32(f + HDR_MAGIC) != MAGIC_HDRS) {
        snprintf(err, errlen, "kernel %s: not a bzImage (no Linux boot "
                 "protocol header)", path);
        return -EINVAL;
    }
    uint16_t version = le_get16(f + HDR_VERSION);
    if (version < MIN_VERSION) {
        snprintf(err, errlen, "kernel %s: boot protocol %u.%02u; ftvm "
                 "needs 2.12 or later (64-bit entry)", path, version >> 8,
                 version & 0xff);
        return -EINVAL;
    }
    if (!(le_get16(f + HDR_XLOADFLAGS) & XLF_KERNEL_64) ||
        !(f[HDR_LOADFLAGS] & LOADED_HIGH)) {
        snprintf(err, errlen, "kernel %s: has no 64-bit entry point (a "
                 "32-bit kernel?)", path);
        return -EINVAL;
    }
    unsigned sects = f[HDR_SETUP_SECTS] ? f[HDR_SETUP_SECTS] : 4;
    ki->setup_len = (sects + 1) * 512u;
    ki->hdr_end = 0x202u + f[HDR_JUMP_LEN];
    if (ki->hdr_end > HDR_END_MAX)
        ki->hdr_end = HDR_END_MAX;
    if (ki->setup_len >= len) {
        snprintf(err, errlen, "kernel %s: %zu bytes, no kernel after its "
                 "%u setup sectors", path, len, sects);
        return -EINVAL;
    }
    ki->init_size = le_get32(f + HDR_INIT_SIZE);
    ki->initrd_max = le_get32(f + HDR_INITRD_ADDR_MAX);
    ki->cmdline_size = le_get32(f + HDR_CMDLINE_SIZE);
    return 0;
}

static void add_e820(uint8_t *bp, uint64_t addr, uint64_t size, uint32_t type)
{
    uint8_t *e = bp + BP_E820_TABLE + 20u * bp[BP_E820_ENTRIES]++;

    le_put64(e, addr);
    le_put64(e + 8, size);
    le_put32(e + 16, type);
}

static void write_tables(gmem *g)
{
    uint8_t *gdt = gmem_ptr(g, GDT_ADDR, 8 * 6);
    memset(gdt, 0, 8 * 6);
    le_put64(gdt + SEL_CODE, 0x00af9b000000ffffull);   /* 64-bit code, DPL 0 */
    le_put64(gdt + SEL_DATA, 0x00cf93000000ffffull);   /* data, DPL 0 */
    le_put64(gdt + SEL_TSS, 0x00008b0000000067ull);    /* busy 64-bit TSS */

    uint8_t *pml4 = gmem_ptr(g, PML4_ADDR, PAGE);
    uint8_t *pdpt = gmem_ptr(g, PDPT_ADDR, PAGE);
    uint8_t *pd = gmem_ptr(g, PD_ADDR, 4 * PAGE);
    memset(pml4, 0, PAGE);
    memset(pdpt, 0, PAGE);
    le_put64(pml4, PDPT_ADDR | 0x03);
    for (uint64_t i = 0; i < 4; i++)
        le_put64(pdpt + 8 * i, (PD_ADDR + i * PAGE) | 0x03);
    for (uint64_t i = 0; i < 4 * 512; i++)
        le_put64(pd + 8 * i, (i << 21) | 0x83);        /* present, RW, 2 MiB */
}

static void entry_state(struct kvm_regs *regs, struct kvm_sregs *sregs)
{
    struct kvm_segment code = {
        .base = 0, .limit = 0xffffffff, .selector = SEL_CODE, .type = 11,
        .present = 1, .s = 1, .l = 1, .g = 1,
    };
    struct kvm_segment data = {
        .base = 0, .limit = 0xffffffff, .selector = SEL_DATA, .type = 3,
        .present = 1, .s = 1, .db = 1, .g = 1,
    };

    memset(regs, 0, sizeof(*regs));
    regs->rip = BZIMAGE_KERNEL_ADDR + ENTRY_64_OFFSET;
    regs->rsi = BZIMAGE_ZERO_PAGE;
    regs->rsp = STACK_TOP;
    regs->rflags = 0x2;
    sregs->cs = code;
    sregs->ds = sregs->es = sregs->fs = sregs->gs = sregs->ss = data;
    sregs->tr = (struct kvm_segment){
        .base = 0, .limit = 0x67, .selector = SEL_TSS, .type = 11,
        .present = 1,
    };
    sregs->ldt = (struct kvm_segment){ .type = 2, .unusable = 1 };
    sregs->gdt.base = GDT_ADDR;
    sregs->gdt.limit = 8 * 6 - 1;
    sregs->idt.base = 0;
    sregs->idt.limit = 0;
    /* PE, ET, NE, PG: caches on (the reset value has CD and NW set). */
    sregs->cr0 = 0x1u | 0x10u | 0x20u | 0x80000000u;
    sregs->cr3 = PML4_ADDR;
    sregs->cr4 = 0x20;                              /* PAE */
    sregs->efer = (1u << 8) | (1u << 10);           /* LME, LMA */
}

int bzimage_load(gmem *g, uint64_t mem_size, const bzimage_boot *b,
                 struct kvm_regs *regs, struct kvm_sregs *sregs, char *err,
                 size_t errlen)
{
    uint8_t *kf = NULL, *rf = NULL;
    size_t klen = 0, rlen = 0;
    kernel_info ki = { 0 };
    const char *cmdline = b->cmdline ? b->cmdline : "";
    size_t cl = strlen(cmdline);

    if (mem_size > BZIMAGE_MAX_MEM || !gmem_ptr(g, 0, mem_size)) {
        snprintf(err, errlen, "a Linux guest can have at most 3G of RAM "
                 "(no memory above the 32-bit hole yet)");
        return -EINVAL;
    }
    int rc = read_file(b->kernel, "kernel", BZIMAGE_FILE_MAX, &kf, &klen,
                       err, errlen);
    if (rc == 0)
        rc = check_kernel(kf, klen, b->kernel, &ki, err, errlen);
    if (rc == 0 && b->initrd)
        rc = read_file(b->initrd, "initrd", BZIMAGE_MAX_MEM, &rf, &rlen,
                       err, errlen);
    if (rc < 0)
        goto out;
    if (cl >= BZIMAGE_CMDLINE_MAX || (ki.cmdline_size && cl > ki.cmdline_size)) {
        snprintf(err, errlen, "the kernel command line is %zu bytes; %s "
                 "takes at most %u", cl, b->kernel,
                 ki.cmdline_size ? ki.cmdline_size : BZIMAGE_CMDLINE_MAX - 1);
        rc = -E2BIG;
        goto out;
    }

    /* The kernel decompresses in place: it needs init_size bytes there. */
    size_t pm_len = klen - ki.setup_len;
    uint64_t kernel_end = BZIMAGE_KERNEL_ADDR +
                          (pm_len > ki.init_size ? pm_len : ki.init_size);
    uint64_t top = mem_size;
    if (ki.initrd_max && (uint64_t)ki.initrd_max + 1 < top)
        top = (uint64_t)ki.initrd_max + 1;
    uint64_t initrd_addr = rlen ? ((top - rlen) & ~(uint64_t)(PAGE - 1)) : 0;
    if (kernel_end > mem_size || (rlen && (rlen > top ||
                                           initrd_addr < kernel_end))) {
        snprintf(err, errlen, "%" PRIu64 " MiB of RAM is too little for "
                 "kernel %s (%" PRIu64 " MiB unpacked)%s%s", mem_size >> 20,
                 b->kernel, (kernel_end - BZIMAGE_KERNEL_ADDR) >> 20,
                 rlen ? " and initrd " : "", rlen ? b->initrd : "");
        rc = -ENOSPC;
        goto out;
    }

    memcpy(gmem_ptr(g, BZIMAGE_KERNEL_ADDR, pm_len), kf + ki.setup_len,
           pm_len);
    if (rlen)
        memcpy(gmem_ptr(g, initrd_addr, rlen), rf, rlen);
    memcpy(gmem_ptr(g, BZIMAGE_CMDLINE, cl + 1), cmdline, cl + 1);

    uint8_t *bp = gmem_ptr(g, BZIMAGE_ZERO_PAGE, BP_SIZE);
    memset(bp, 0, BP_SIZE);
    memcpy(bp + HDR_START, kf + HDR_START, ki.hdr_end - HDR_START);
    bp[HDR_TYPE_OF_LOADER] = LOADER_UNDEFINED;
    le_put32(bp + HDR_CMD_LINE_PTR, BZIMAGE_CMDLINE);
    le_put32(bp + BP_EXT_CMD_LINE_PTR, 0);
    le_put32(bp + HDR_RAMDISK_IMAGE, (uint32_t)initrd_addr);
    le_put32(bp + HDR_RAMDISK_SIZE, (uint32_t)rlen);
    le_put32(bp + BP_EXT_RAMDISK_IMAGE, (uint32_t)(initrd_addr >> 32));
    le_put32(bp + BP_EXT_RAMDISK_SIZE, (uint32_t)((uint64_t)rlen >> 32));
    add_e820(bp, 0, BZIMAGE_RESERVED_LOW, E820_RAM);
    add_e820(bp, BZIMAGE_RESERVED_LOW, BZIMAGE_KERNEL_ADDR -
             BZIMAGE_RESERVED_LOW, E820_RESERVED);
    add_e820(bp, BZIMAGE_KERNEL_ADDR, mem_size - BZIMAGE_KERNEL_ADDR,
             E820_RAM);

    write_tables(g);
    entry_state(regs, sregs);
out:
    free(kf);
    free(rf);
    return rc;
}
