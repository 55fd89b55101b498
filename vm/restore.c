/* restore: see restore.h. */
#include "vm/restore.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "checkpoint/block.h"
#include "checkpoint/ram.h"
#include "checkpoint/savevm.h"
#include "devstate/trailer.h"
#include "devstate/vmdesc.h"

/* Chunk data staged at most while a chain's file is written (as vm_disk's). */
#define RESTORE_MAX_STAGE (1ull << 30)

/* The block list of the "ram" START that opens every ftvm checkpoint. */
static int probe_ram(const uint8_t *d, size_t len, const char *path,
                     restore_info *out, char *err, size_t errlen)
{
    qfile *f = qfile_open_view(d, len, path);
    savevm_loader *l = savevm_loader_new(&(savevm_target_ops){0}, NULL, NULL);
    ram_loader *rl = NULL;
    int r = f && l ? 0 : -ENOMEM;
    if (r == 0)
        r = savevm_load_header(l, f);
    if (r == 0) {
        savevm_section sec = {0};
        uint8_t type = qfile_get_u8(f);
        sec.section_id = qfile_get_be32(f);
        qfile_get_str(f, sec.idstr);
        sec.instance_id = qfile_get_be32(f);
        sec.version_id = qfile_get_be32(f);
        if (!qfile_error(f) && (type != SAVEVM_SECTION_START ||
                                strcmp(sec.idstr, RAM_SECTION_IDSTR) != 0))
            qfile_fail(f, -EINVAL,
                       "not an ftvm checkpoint: it does not open "
                       "with the RAM section");
        if (!qfile_error(f) && ram_loader_new_inspect(&rl) == 0)
            ram_load(rl, f, sec.version_id, SAVEVM_PASS_VALIDATE);
        r = qfile_error(f);
    }
    if (r < 0) {
        snprintf(err, errlen, "%s", f ? qfile_errmsg(f) : "out of memory");
    } else {
        ram_block_counts c;
        if (ram_loader_nblocks(rl) != 1 || ram_loader_counts(rl, 0, &c) < 0 ||
            strcmp(c.name, "ram0") != 0) {
            snprintf(err, errlen, "%s: not an ftvm checkpoint: its RAM is "
                     "not the one block 'ram0' of an ftvm VM", path);
            r = -EINVAL;
        } else {
            out->mem_size = c.length;
        }
    }
    ram_loader_free(rl);
    savevm_loader_free(l);
    qfile_close(f);
    return r;
}

/*
 * The size in "ftvm-disk", which follows the RAM and the disk's chunks:
 * the stream is walked as restore_load's validate pass walks it, RAM and
 * chunks counted by their codecs' inspect loaders, devices read through
 * the file's own VM description, the trailer's checksum checked.  So a
 * damaged file is refused before its image is created or resized.
 */
typedef struct disk_probe {
    const json_t *desc;
    ram_loader *ram;
    block_loader *block;
    vm_disk_info info;
    bool found;
    /* restore_chain_write: each block section written as it comes. */
    block_loader *apply;
    char *err;
    size_t errlen;
} disk_probe;

static int probe_section(void *opaque, qfile *f, const savevm_section *sec,
                         savevm_pass pass)
{
    disk_probe *p = opaque;
    if (strcmp(sec->idstr, RAM_SECTION_IDSTR) == 0)
        return ram_load(p->ram, f, sec->version_id, pass);
    if (strcmp(sec->idstr, BLOCK_SECTION_IDSTR) == 0 && p->apply) {
        int r = block_load(p->apply, f, sec->version_id, pass);
        if (r == 0 && pass == SAVEVM_PASS_APPLY &&
            (r = block_apply(p->apply, false, p->err, p->errlen)) < 0)
            return qfile_fail(f, r, "%s", p->err);
        return r;
    }
    if (strcmp(sec->idstr, BLOCK_SECTION_IDSTR) == 0)
        return block_load(p->block, f, sec->version_id, pass);
    if (strcmp(sec->idstr, TRAILER_IDSTR) == 0) {
        trailer_info ti;
        return trailer_load(f, sec, &ti);
    }
    if (strcmp(sec->idstr, VM_DISK_INFO_IDSTR) == 0) {
        if (p->found)
            return qfile_fail(f, -EINVAL, "a second '%s'", sec->idstr);
        p->found = true;
        /* Into a struct of ours: its check expects what it read. */
        vm_disk_info any = { .expect_size = 0 };
        int r = vmstate_load(f, &vm_disk_info_desc, &any, sec->version_id,
                             SAVEVM_PASS_APPLY);
        p->info = any;
        if (r == 0 && sec->version_id >= 2 &&
            vm_disk_info_check_chain(f, &any) < 0)
            return qfile_error(f);
        if (r == 0 && (any.size == 0 || any.size % DISK_SECTOR_SIZE ||
                       any.size > DISK_MAX_SIZE))
            return qfile_fail(f, -EINVAL, "'%s': a disk of %" PRIu64
                              " bytes", sec->idstr, any.size);
        return r;
    }
    const json_t *dev = vmdesc_find_device(p->desc, sec->idstr,
                                           sec->instance_id);
    if (!dev)
        return qfile_fail(f, -EINVAL, "section '%s' has no VM description",
                          sec->idstr);
    json_t *values = NULL;
    int r = vmdesc_decode(f, dev, &values);
    json_decref(values);
    return r;
}

static int probe_disk(const uint8_t *d, size_t len, const char *path,
                      const json_t *desc, restore_info *out, char *err,
                      size_t errlen)
{
    disk_probe p = { .desc = desc };
    savevm_target_ops ops = { .section = probe_section };
    qfile *f = qfile_open_view(d, len, path);
    savevm_loader *l = savevm_loader_new(&ops, &p, NULL);
    int r = f && l && ram_loader_new_inspect(&p.ram) == 0 &&
                    block_loader_new_inspect(&p.block) == 0
                ? 0 : -ENOMEM;
    savevm_stop why;
    /* The checksum too: nothing is written before all of it is checked. */
    if (f)
        qfile_crc_start(f);
    if (r == 0 && (r = savevm_load_header(l, f)) == 0)
        r = savevm_load_main(l, f, SAVEVM_PASS_VALIDATE, false, &why);
    if (r < 0)
        snprintf(err, errlen, "%s", f ? qfile_errmsg(f) : "out of memory");
    else if (!p.found) {
        snprintf(err, errlen, "%s: its VM has a disk ('%s'), but no '%s' "
                 "section says its size", path, BLOCK_SECTION_IDSTR,
                 VM_DISK_INFO_IDSTR);
        r = -EINVAL;
    } else {
        out->disk_size = p.info.size;
        memcpy(out->disk_id, p.info.id, VM_DISK_ID_LEN);
        memcpy(out->disk_base_id, p.info.base_id, VM_DISK_ID_LEN);
        memcpy(out->disk_base, p.info.base, VM_DISK_BASE_LEN);
    }
    block_loader_free(p.block);
    ram_loader_free(p.ram);
    savevm_loader_free(l);
    qfile_close(f);
    return r;
}

/*
 * The end every checkpoint has: the VM description (returned), before it
 * EOF, before that the trailer, whose body's offset goes in *body_at.
 * NULL with *r and err set when the file does not end so.
 */
static json_t *find_end(const uint8_t *d, size_t len, const char *path,
                        uint64_t *body_at, int *r, char *err, size_t errlen)
{
    size_t at;
    json_t *desc = vmdesc_find_at_end(d, len, &at);
    trailer_info ti;
    char why[512];
    if (!desc) {
        snprintf(err, errlen, "%s: not a complete checkpoint: no VM "
                 "description at its end (truncated?)", path);
        *r = -EINVAL;
    } else if (trailer_find_end(d, at, &ti, body_at, why, sizeof(why)) < 0) {
        snprintf(err, errlen, "%s: %s", path, why);
        *r = -EBADMSG;
        json_decref(desc);
        desc = NULL;
    }
    return desc;
}

int restore_probe(const char *path, restore_info *out, char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0) {
        int e = errno;
        snprintf(err, errlen, "%s: %s", path, strerror(e));
        if (fd >= 0)
            close(fd);
        return -e;
    }
    if (!S_ISREG(st.st_mode) || st.st_size < 8) {
        close(fd);
        snprintf(err, errlen, "%s: not a checkpoint file (%s)", path,
                 S_ISREG(st.st_mode) ? "too short" : "not a regular file");
        return -EINVAL;
    }
    size_t len = (size_t)st.st_size;
    const uint8_t *d = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (d == MAP_FAILED) {
        int e = errno;
        snprintf(err, errlen, "%s: %s", path, strerror(e));
        return -e;
    }
    *out = (restore_info){ 0 };
    int r = probe_ram(d, len, path, out, err, errlen);
    uint64_t body_at;
    json_t *desc = r == 0 ? find_end(d, len, path, &body_at, &r, err, errlen)
                          : NULL;
    size_t i;
    json_t *dev;
    bool has_disk = false;
    json_array_foreach(json_object_get(desc, "devices"), i, dev) {
        const char *name = json_string_value(json_object_get(dev, "name"));
        if (name && strcmp(name, "cpu") == 0)
            out->vcpus++;
        if (name && strcmp(name, "ftvm-net") == 0)
            out->has_net = true;
        if (name && strcmp(name, "pc") == 0)
            out->machine = VM_MACHINE_PC;
        if (name && strcmp(name, VM_DISK_INFO_IDSTR) == 0)
            has_disk = true;
    }
    if (r == 0 && has_disk)
        r = probe_disk(d, len, path, desc, out, err, errlen);
    if (r == 0 && (out->vcpus < 1 || out->vcpus > VM_MAX_VCPUS)) {
        snprintf(err, errlen, "%s: not an ftvm checkpoint: %u vCPUs", path,
                 out->vcpus);
        r = -EINVAL;
    }
    json_decref(desc);
    munmap((void *)d, len);
    return r;
}

/*
 * The VM's registry, plus the trailer every ftvm checkpoint must end with:
 * its checksum is checked in the validate pass, before anything applies.
 */
typedef struct rst_target {
    registry *reg;
    uint64_t trailer_at;    /* where the trailer's body must be */
    bool sealed;
} rst_target;

static int rst_section(void *opaque, qfile *f, const savevm_section *sec,
                       savevm_pass pass)
{
    rst_target *t = opaque;
    if (strcmp(sec->idstr, TRAILER_IDSTR) != 0)
        return registry_target_ops.section(t->reg, f, sec, pass);
    if (qfile_tell(f) != t->trailer_at)
        return qfile_fail(f, -EBADMSG,
                          "a '%s' section that is not the checkpoint's "
                          "last record (the trailer that ends the stream "
                          "has its body at byte %" PRIu64 "): what follows "
                          "it would not be covered by its checksum",
                          TRAILER_IDSTR, t->trailer_at);
    trailer_info info;
    int r = trailer_load(f, sec, &info);
    if (r == 0)
        t->sealed = true;
    return r;
}

static int rst_validated(void *opaque, qfile *f)
{
    rst_target *t = opaque;
    if (!t->sealed)
        return qfile_fail(f, -EBADMSG,
                          "no '%s' section with the checkpoint's "
                          "checksum: not a checkpoint ftvm wrote",
                          TRAILER_IDSTR);
    return 0;
}

static void rst_begin_validate(void *opaque)
{
    rst_target *t = opaque;
    registry_target_ops.begin_validate(t->reg);
}

static const savevm_target_ops rst_ops = {
    .section = rst_section,
    .validated = rst_validated,
    .begin_validate = rst_begin_validate,
};

/*
 * The file is mapped, not read: the trailer's place is found from its end
 * before the loader starts, so a trailer anywhere else is refused where
 * it sits, in the validate pass, before anything is applied.
 */
int restore_load(vm *v, const char *path, char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0) {
        int e = errno;
        snprintf(err, errlen, "%s: %s", path, strerror(e));
        if (fd >= 0)
            close(fd);
        return -e;
    }
    size_t len = (size_t)st.st_size;
    const uint8_t *d = len ? mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0)
                           : MAP_FAILED;
    int e = errno;
    close(fd);
    if (d == MAP_FAILED) {
        snprintf(err, errlen, "%s: %s", path, len ? strerror(e) : "empty");
        return len ? -e : -EINVAL;
    }
    rst_target t = { .reg = vm_registry(v) };
    int r = 0;
    json_decref(find_end(d, len, path, &t.trailer_at, &r, err, errlen));
    qfile *f = r == 0 ? qfile_open_view(d, len, path) : NULL;
    if (f)
        qfile_crc_start(f);
    savevm_loader *l = f ? savevm_loader_new(&rst_ops, &t, NULL) : NULL;
    if (r == 0) {
        r = l ? savevm_load_checked(l, f) : -ENOMEM;
        if (r < 0)
            snprintf(err, errlen, "%s", f ? qfile_errmsg(f)
                                          : "out of memory");
    }
    savevm_loader_free(l);
    qfile_close(f);
    munmap((void *)d, len);
    return r;
}

/* ---- a delta's chain ---- */

static void hex_id(const uint8_t *id, char *out)
{
    for (unsigned i = 0; i < VM_DISK_ID_LEN; i++)
        snprintf(out + 2 * i, 3, "%02x", id[i]);
}

void restore_chain_free(restore_chain *c)
{
    free(c->paths);
    c->paths = NULL;
    c->n = 0;
}

int restore_chain_find(const char *path, const restore_info *info,
                       restore_chain *out, char *err, size_t errlen)
{
    *out = (restore_chain){ 0 };
    out->paths = calloc(VM_DISK_CHAIN_MAX, sizeof(*out->paths));
    uint8_t (*ids)[VM_DISK_ID_LEN] = calloc(VM_DISK_CHAIN_MAX,
                                            sizeof(*ids));
    if (!out->paths || !ids) {
        free(ids);
        restore_chain_free(out);
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    /* Filled newest first, turned round at the end. */
    char dir[4096];
    snprintf(dir, sizeof(dir), "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash)
        slash[1] = '\0';
    else
        dir[0] = '\0';
    snprintf(out->paths[0], sizeof(out->paths[0]), "%s", path);
    memcpy(ids[0], info->disk_id, VM_DISK_ID_LEN);
    restore_info cur = *info;
    size_t n = 1;
    int r = 0;
    char want[2 * VM_DISK_ID_LEN + 1], got[2 * VM_DISK_ID_LEN + 1];
    while (r == 0 && !vm_disk_id_zero(cur.disk_base_id)) {
        const char *of = out->paths[n - 1];
        if (n == VM_DISK_CHAIN_MAX) {
            snprintf(err, errlen, "%s: its disk is a delta at the end of a "
                     "chain of more than %u files; refused", path,
                     VM_DISK_CHAIN_MAX);
            r = -ELOOP;
            break;
        }
        char *bp = out->paths[n];
        if ((size_t)snprintf(bp, sizeof(out->paths[n]), "%s%s", dir,
                             cur.disk_base) >= sizeof(out->paths[n])) {
            snprintf(err, errlen, "%s: the path of its base is too long", of);
            r = -ENAMETOOLONG;
            break;
        }
        restore_info bi;
        char why[1024];
        r = restore_probe(bp, &bi, why, sizeof(why));
        hex_id(cur.disk_base_id, want);
        hex_id(bi.disk_id, got);
        if (r < 0) {
            snprintf(err, errlen, "%s holds only the disk's changes since "
                     "%s, which cannot be used: %s", of, bp, why);
        } else if (!bi.disk_size) {
            snprintf(err, errlen, "%s holds only the disk's changes since "
                     "%s, which has no disk", of, bp);
            r = -EINVAL;
        } else if (memcmp(bi.disk_id, cur.disk_base_id, VM_DISK_ID_LEN)) {
            snprintf(err, errlen, "%s holds only the disk's changes since "
                     "%s with id %s, but that file's id is %s: not the "
                     "file it was saved on (another chain's?)", of, bp,
                     want, got);
            r = -ESTALE;
        } else if (bi.disk_size != info->disk_size) {
            snprintf(err, errlen, "%s: its base %s has a disk of %" PRIu64
                     " bytes, not %" PRIu64, of, bp, bi.disk_size,
                     info->disk_size);
            r = -EINVAL;
        }
        for (size_t k = 0; r == 0 && k < n; k++)
            if (memcmp(ids[k], bi.disk_id, VM_DISK_ID_LEN) == 0) {
                snprintf(err, errlen, "%s: its chain of bases goes round "
                         "(%s comes twice)", path, bp);
                r = -ELOOP;
            }
        if (r == 0) {
            memcpy(ids[n++], bi.disk_id, VM_DISK_ID_LEN);
            cur = bi;
        }
    }
    free(ids);
    if (r < 0) {
        restore_chain_free(out);
        return r;
    }
    for (size_t i = 0; i < n / 2; i++) {
        char t[4096];
        memcpy(t, out->paths[i], sizeof(t));
        memcpy(out->paths[i], out->paths[n - 1 - i], sizeof(t));
        memcpy(out->paths[n - 1 - i], t, sizeof(t));
    }
    out->n = n;
    return 0;
}

/* One file's chunks into l's disk, section by section. */
static int write_file(block_loader *l, const char *path, char *err,
                      size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0 || st.st_size < 8) {
        int e = fd < 0 || st.st_size >= 8 ? errno : EINVAL;
        snprintf(err, errlen, "%s: %s", path, strerror(e));
        if (fd >= 0)
            close(fd);
        return -e;
    }
    size_t len = (size_t)st.st_size;
    const uint8_t *d = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd);
    if (d == MAP_FAILED) {
        snprintf(err, errlen, "%s: %s", path, strerror(e));
        return -e;
    }
    uint64_t body_at;
    int r = 0;
    json_t *desc = find_end(d, len, path, &body_at, &r, err, errlen);
    char aerr[512] = "";
    disk_probe p = { .desc = desc, .apply = l, .err = aerr,
                     .errlen = sizeof(aerr) };
    savevm_target_ops ops = { .section = probe_section };
    qfile *f = desc ? qfile_open_view(d, len, path) : NULL;
    savevm_loader *sl = f ? savevm_loader_new(&ops, &p, NULL) : NULL;
    if (desc) {
        r = sl && ram_loader_new_inspect(&p.ram) == 0 &&
                    block_loader_new_inspect(&p.block) == 0
                ? 0 : -ENOMEM;
        savevm_stop why;
        qfile_crc_start(f);
        /* Probed in full already: this pass writes. */
        if (r == 0 && (r = savevm_load_header(sl, f)) == 0)
            r = savevm_load_main(sl, f, SAVEVM_PASS_APPLY, false, &why);
        if (r < 0)
            snprintf(err, errlen, "%s: writing its disk's chunks: %s", path,
                     f ? qfile_errmsg(f) : "out of memory");
    }
    block_loader_free(p.block);
    ram_loader_free(p.ram);
    savevm_loader_free(sl);
    qfile_close(f);
    json_decref(desc);
    munmap((void *)d, len);
    return r;
}

int restore_chain_write(disk *d, const restore_chain *c, char *err,
                        size_t errlen)
{
    if (c->n < 2)
        return 0;
    block_loader *l;
    uint64_t bound = disk_size(d) < RESTORE_MAX_STAGE ? disk_size(d)
                                                      : RESTORE_MAX_STAGE;
    int r = block_loader_new(&l, &d, 1, bound);
    if (r < 0) {
        snprintf(err, errlen, "the disk's loader: %s", strerror(-r));
        return r;
    }
    for (size_t i = 0; r == 0 && i + 1 < c->n; i++)
        r = write_file(l, c->paths[i], err, errlen);
    block_loader_free(l);
    return r;
}
