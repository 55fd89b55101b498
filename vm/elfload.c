/*
 * elfload: header checks and segment loading.
 */
#include "vm/elfload.h"

#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* More program headers than any linker emits for a static image. */
#define ELF_MAX_PHDRS 64

typedef struct loader {
    const char *path;
    const uint8_t *file;
    uint64_t size;
    char *err;
    size_t errlen;
} loader;

__attribute__((format(printf, 2, 3)))
static int refuse(loader *l, const char *fmt, ...)
{
    char why[256];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    snprintf(l->err, l->errlen, "%s: %s", l->path, why);
    return -ENOEXEC;
}

/* Whether [off, off + len) lies inside the file. */
static bool in_file(const loader *l, uint64_t off, uint64_t len)
{
    return off <= l->size && len <= l->size - off;
}

static int check_ehdr(loader *l, const Elf64_Ehdr *eh)
{
    if (l->size < EI_NIDENT || memcmp(eh->e_ident, ELFMAG, SELFMAG) != 0)
        return refuse(l, "not an ELF file");
    if (eh->e_ident[EI_CLASS] != ELFCLASS64)
        return refuse(l, "not a 64-bit ELF file (EI_CLASS %u)",
                      eh->e_ident[EI_CLASS]);
    if (l->size < sizeof(*eh))
        return refuse(l, "truncated ELF header (%" PRIu64 " bytes)",
                      l->size);
    if (eh->e_ident[EI_DATA] != ELFDATA2LSB)
        return refuse(l, "not little-endian (EI_DATA %u)",
                      eh->e_ident[EI_DATA]);
    if (eh->e_ident[EI_VERSION] != EV_CURRENT || eh->e_version != EV_CURRENT)
        return refuse(l, "unknown ELF version %u", eh->e_version);
    if (eh->e_machine != EM_X86_64)
        return refuse(l, "not an x86-64 image (e_machine %u)",
                      eh->e_machine);
    if (eh->e_type == ET_DYN)
        return refuse(l, "position-independent or shared (ET_DYN); link "
                      "the guest -static -no-pie");
    if (eh->e_type != ET_EXEC)
        return refuse(l, "not an executable (e_type %u)", eh->e_type);
    if (eh->e_ehsize != sizeof(Elf64_Ehdr))
        return refuse(l, "e_ehsize %u, expected %zu", eh->e_ehsize,
                      sizeof(Elf64_Ehdr));
    if (eh->e_phentsize != sizeof(Elf64_Phdr))
        return refuse(l, "e_phentsize %u, expected %zu", eh->e_phentsize,
                      sizeof(Elf64_Phdr));
    if (eh->e_phnum == 0 || eh->e_phnum > ELF_MAX_PHDRS)
        return refuse(l, "%u program headers (1..%d accepted)",
                      eh->e_phnum, ELF_MAX_PHDRS);
    if (!in_file(l, eh->e_phoff, (uint64_t)eh->e_phnum * sizeof(Elf64_Phdr)))
        return refuse(l, "program header table (offset %" PRIu64 ", %u "
                      "entries) runs past the end of the file (%" PRIu64
                      " bytes)", (uint64_t)eh->e_phoff, eh->e_phnum, l->size);
    return 0;
}

static int check_phdr(loader *l, unsigned i, const Elf64_Phdr *ph,
                      uint64_t lo, uint64_t hi)
{
    if (ph->p_type == PT_INTERP)
        return refuse(l, "asks for a program interpreter (PT_INTERP): "
                      "dynamic images cannot run; link -static");
    if (ph->p_type == PT_DYNAMIC)
        return refuse(l, "is dynamically linked (PT_DYNAMIC); link -static");
    if (ph->p_type != PT_LOAD)
        return 0;
    if (ph->p_filesz > ph->p_memsz)
        return refuse(l, "segment %u: p_filesz %" PRIu64 " exceeds p_memsz %"
                      PRIu64, i, (uint64_t)ph->p_filesz,
                      (uint64_t)ph->p_memsz);
    if (!in_file(l, ph->p_offset, ph->p_filesz))
        return refuse(l, "segment %u: file bytes [%" PRIu64 ", +%" PRIu64
                      ") run past the end of the file (%" PRIu64 " bytes)",
                      i, (uint64_t)ph->p_offset, (uint64_t)ph->p_filesz,
                      l->size);
    if (ph->p_vaddr != ph->p_paddr)
        return refuse(l, "segment %u: p_vaddr 0x%" PRIx64 " differs from "
                      "p_paddr 0x%" PRIx64 "; guest memory is identity-"
                      "mapped", i, (uint64_t)ph->p_vaddr,
                      (uint64_t)ph->p_paddr);
    if (ph->p_vaddr < lo || ph->p_vaddr > hi || ph->p_memsz > hi - ph->p_vaddr)
        return refuse(l, "segment %u: [0x%" PRIx64 ", +0x%" PRIx64 ") is "
                      "outside the image area [0x%" PRIx64 ", 0x%" PRIx64
                      ") of guest RAM", i, (uint64_t)ph->p_vaddr,
                      (uint64_t)ph->p_memsz, lo, hi);
    return 0;
}

static int load(loader *l, gmem *g, uint64_t lo, uint64_t hi,
                elfload_image *out)
{
    Elf64_Ehdr eh = { .e_ident = { 0 } };
    Elf64_Phdr ph[ELF_MAX_PHDRS];

    memcpy(&eh, l->file, l->size < sizeof(eh) ? l->size : sizeof(eh));
    int rc = check_ehdr(l, &eh);
    if (rc < 0)
        return rc;
    memcpy(ph, l->file + eh.e_phoff, eh.e_phnum * sizeof(Elf64_Phdr));

    unsigned nload = 0;
    bool entry_ok = false;
    out->start = UINT64_MAX;
    out->end = 0;
    for (unsigned i = 0; i < eh.e_phnum; i++) {
        rc = check_phdr(l, i, &ph[i], lo, hi);
        if (rc < 0)
            return rc;
        if (ph[i].p_type != PT_LOAD || ph[i].p_memsz == 0)
            continue;
        nload++;
        uint64_t s = ph[i].p_vaddr, e = s + ph[i].p_memsz;
        for (unsigned j = 0; j < i; j++) {
            if (ph[j].p_type != PT_LOAD || ph[j].p_memsz == 0)
                continue;
            uint64_t s2 = ph[j].p_vaddr, e2 = s2 + ph[j].p_memsz;
            if (s < e2 && s2 < e)
                return refuse(l, "segments %u and %u overlap at 0x%" PRIx64,
                              j, i, s > s2 ? s : s2);
        }
        if ((ph[i].p_flags & PF_X) && eh.e_entry >= s && eh.e_entry < e)
            entry_ok = true;
        if (s < out->start)
            out->start = s;
        if (e > out->end)
            out->end = e;
    }
    if (nload == 0)
        return refuse(l, "no loadable segment");
    if (!entry_ok)
        return refuse(l, "entry point 0x%" PRIx64 " is not in an executable "
                      "segment", (uint64_t)eh.e_entry);

    /* Only now, with every header accepted, does guest memory change. */
    for (unsigned i = 0; i < eh.e_phnum; i++) {
        if (ph[i].p_type != PT_LOAD || ph[i].p_memsz == 0)
            continue;
        uint8_t *dst = gmem_ptr(g, ph[i].p_vaddr, ph[i].p_memsz);
        if (!dst)
            return refuse(l, "segment %u: [0x%" PRIx64 ", +0x%" PRIx64 ") is "
                          "not in guest RAM", i, (uint64_t)ph[i].p_vaddr,
                          (uint64_t)ph[i].p_memsz);
        memcpy(dst, l->file + ph[i].p_offset, ph[i].p_filesz);
        memset(dst + ph[i].p_filesz, 0, ph[i].p_memsz - ph[i].p_filesz);
    }
    out->entry = eh.e_entry;
    out->end = (out->end + RAM_PAGE_SIZE - 1) & ~(uint64_t)(RAM_PAGE_SIZE - 1);
    return 0;
}

int elfload_load(const char *path, gmem *g, uint64_t lo, uint64_t hi,
                 elfload_image *out, char *err, size_t errlen)
{
    loader l = { .path = path, .err = err, .errlen = errlen };
    struct stat st;
    int rc;

    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        rc = -errno;
        snprintf(err, errlen, "%s: %s", path, strerror(-rc));
        return rc;
    }
    if (fstat(fd, &st) < 0) {
        rc = -errno;
        snprintf(err, errlen, "%s: %s", path, strerror(-rc));
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        rc = refuse(&l, "not a regular file");
        goto out;
    }
    if (st.st_size == 0) {
        rc = refuse(&l, "empty file");
        goto out;
    }
    l.size = (uint64_t)st.st_size;
    void *m = mmap(NULL, l.size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (m == MAP_FAILED) {
        rc = -errno;
        snprintf(err, errlen, "%s: cannot map it: %s", path, strerror(-rc));
        goto out;
    }
    l.file = m;
    rc = load(&l, g, lo, hi, out);
    munmap(m, l.size);
out:
    close(fd);
    return rc;
}
