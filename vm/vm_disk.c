/*
 * vm_disk: the VM's disk as the "block" registry entry (QEMU's block
 * section, checkpoint/block.h), beside "ram".
 *
 * Saving.  START is EOS alone, after marking every chunk dirty: a new
 * receiver (a secondary's bring-up, a checkpoint file) has nothing, so
 * the whole image goes, zero chunks as records without data.  PART sends
 * up to VM_DISK_ITER_CHUNKS dirty chunks while the guest runs (clearing
 * each bit before reading its chunk, so a write landing after goes
 * again), and counts as caught up once at most VM_DISK_LIVE_LEFT are
 * dirty; END, with the vCPUs paused, takes the dirty bitmap and sends
 * every chunk in it.  A vCPU completes a guest's write only after
 * disk_write() marked it, so a paused VM has no write the take misses.
 *
 * Each END's taken bitmap is kept for the last VM_DISK_RECENT pauses: a
 * package the secondary refused, or lost with the ones in flight behind
 * it, carried chunks the secondary never got.  A full package (the
 * primary's answer to a refusal) sends them again (vm_disk_resend),
 * not the whole image: the primary never has more than
 * PROTECTION_WINDOW packages unacknowledged, fewer than VM_DISK_RECENT.
 *
 * Checkpoint files as a chain.  A file's START marks nothing when the
 * file continues the chain (vm_disk_file_begin said so): the bitmap then
 * holds exactly what was written since the previous file's END took it,
 * and this file's PARTs and END send that, so the file is a delta on the
 * previous one.  Any other take (a package's END, a bring-up's START), a
 * load into the disk, or a file's save that failed breaks the chain: the
 * next file marks everything and holds the whole image.  "ftvm-disk"
 * says which a file is: its own id, and its base's id and name.
 *
 * Loading.  The VALIDATE pass checks; the APPLY pass stages the chunks
 * in memory (block_loader).  Where they go then depends on the caller:
 * by default (restore) each section's chunks are written at once; a
 * secondary (vm_disk_hold) keeps them staged until vm_disk_commit,
 * which it calls once a package's RAM is applied and before its ACK,
 * so its image moves only from one acknowledged checkpoint to the next.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "checkpoint/block.h"
#include "vm/vm_impl.h"

/* Chunks one live PART section sends at most (64 MiB, as RAM's). */
#define VM_DISK_ITER_CHUNKS 64u
/* Dirty chunks a live pass may leave for the END (the guest paused). */
#define VM_DISK_LIVE_LEFT 4u
/*
 * The most a secondary stages before a commit: a package's disk part.
 * A package is bounded by what it says (vmshape_package_bound); this
 * keeps a bring-up's section, which is not, from staging a whole image.
 */
#define VM_DISK_MAX_STAGE (1ull << 30)

/* The chain no longer ends at the disk's last take. */
static void chain_break(vm *v)
{
    v->chain.valid = false;
    v->chain.len = 0;
    /* A file being saved cannot be the chain's end either. */
    v->chain.spoiled = v->chain.pending;
}

/* Whether this START or END is the pending file's own (its first). */
static bool file_own(vm *v, unsigned *count)
{
    return v->chain.pending && (*count)++ == 0;
}

static int disk_setup(qfile *f, void *opaque)
{
    vm *v = opaque;
    bool own = file_own(v, &v->chain.setups);

    /* A delta continues from the previous file's take: nothing to add. */
    if (!own || vm_disk_id_zero(v->chain.plan.base_id)) {
        if (!own)
            chain_break(v);
        disk_mark_all_dirty(v->cfg.disk);
    }
    block_save_eos(f);
    return qfile_error(f);
}

static int disk_iterate(qfile *f, void *opaque)
{
    vm *v = opaque;
    int64_t n = block_save_dirty(f, v->cfg.disk, v->disk_scratch,
                                 VM_DISK_ITER_CHUNKS, &v->disk_stats);

    /*
     * Caught up once few chunks are left: a chunk the guest keeps writing
     * (a log's tail) is dirty again after every pass, and sending it pass
     * after pass until a pass happens to find it clean would put it in a
     * file (or bring-up) many times.  The END sends what is left.
     */
    return n < 0 ? (int)n : v->disk_stats.remaining <= VM_DISK_LIVE_LEFT;
}

static int disk_complete(qfile *f, void *opaque)
{
    vm *v = opaque;
    unsigned long *taken = v->disk_recent[v->disk_recent_next];

    vm_disk_chain *ch = &v->chain;
    bool own = file_own(v, &ch->completes);

    if (ch->pending && (!own || ch->setups != 1 ||
                        (ch->spoiled && !vm_disk_id_zero(ch->plan.base_id))))
        return qfile_fail(f, -EBUSY, "vm: another save of the disk ran "
                          "during this checkpoint's; its chunks are not "
                          "all in the file");
    if (own) {
        ch->taken_slot = v->disk_recent_next;
        memcpy(v->disk_info.id, ch->plan.id, VM_DISK_ID_LEN);
        memcpy(v->disk_info.base_id, ch->plan.base_id, VM_DISK_ID_LEN);
        memcpy(v->disk_info.base, ch->plan.base, VM_DISK_BASE_LEN);
    } else {
        chain_break(v);
        memset(v->disk_info.id, 0, VM_DISK_ID_LEN);
        memset(v->disk_info.base_id, 0, VM_DISK_ID_LEN);
        memset(v->disk_info.base, 0, VM_DISK_BASE_LEN);
    }
    disk_take_dirty(v->cfg.disk, taken);
    v->disk_recent_next = (v->disk_recent_next + 1) % VM_DISK_RECENT;
    int64_t n = block_save(f, v->cfg.disk, taken, v->disk_scratch,
                           &v->disk_stats);
    return n < 0 ? (int)n : 0;
}

static int disk_load(qfile *f, void *opaque, uint32_t version,
                     savevm_pass pass)
{
    vm *v = opaque;
    char err[512];

    if (pass == SAVEVM_PASS_APPLY && vm_get_state(v) == VM_RUNNING)
        return qfile_fail(f, -EBUSY, "vm: the disk cannot be loaded into "
                          "a running VM; pause it first");
    int rc = block_load(v->bloader, f, version, pass);
    if (rc < 0 || pass != SAVEVM_PASS_APPLY)
        return rc;
    /* The image changes without its bitmap knowing. */
    chain_break(v);
    if (v->disk_hold)
        return rc;
    rc = block_apply(v->bloader, false, err, sizeof(err));
    if (rc < 0)
        return qfile_fail(f, rc, "vm: %s", err);
    return 0;
}

static void disk_begin_validate(void *opaque)
{
    vm *v = opaque;

    block_loader_begin_validate(v->bloader);
}

/* ---- "ftvm-disk": the disk the chunks are of ---- */

static int info_check(qfile *f, const void *obj, uint32_t version)
{
    const vm_disk_info *i = obj;
    if (version >= 2 && vm_disk_info_check_chain(f, i) < 0)
        return qfile_error(f);
    if (memchr(i->name, 0, sizeof(i->name)) == NULL ||
        strcmp(i->name, VM_DISK_NAME) != 0)
        return qfile_fail(f, -EINVAL, "'%s': a disk not named '%s'",
                          VM_DISK_INFO_IDSTR, VM_DISK_NAME);
    if (i->size != i->expect_size)
        return qfile_fail(f, -EINVAL, "'%s': the saved disk '%s' has %"
                          PRIu64 " bytes, this VM's %" PRIu64,
                          VM_DISK_INFO_IDSTR, VM_DISK_NAME, i->size,
                          i->expect_size);
    return 0;
}

bool vm_disk_id_zero(const uint8_t id[VM_DISK_ID_LEN])
{
    for (unsigned i = 0; i < VM_DISK_ID_LEN; i++)
        if (id[i])
            return false;
    return true;
}

int vm_disk_info_check_chain(qfile *f, const vm_disk_info *i)
{
    const char *b = i->base;

    if (memchr(b, 0, sizeof(i->base)) == NULL)
        return qfile_fail(f, -EINVAL, "'%s': the base file's name has no "
                          "NUL in its %zu bytes", VM_DISK_INFO_IDSTR,
                          sizeof(i->base));
    if (vm_disk_id_zero(i->base_id) != (b[0] == 0))
        return qfile_fail(f, -EINVAL, "'%s': a base %s without a base %s",
                          VM_DISK_INFO_IDSTR, b[0] ? "name" : "id",
                          b[0] ? "id" : "name");
    if (b[0] && (strchr(b, '/') || strcmp(b, ".") == 0 ||
                 strcmp(b, "..") == 0))
        return qfile_fail(f, -EINVAL, "'%s': the base '%s' is not a file "
                          "name in the checkpoint's directory",
                          VM_DISK_INFO_IDSTR, b);
    if (b[0] && vm_disk_id_zero(i->id))
        return qfile_fail(f, -EINVAL, "'%s': a delta without an id of its "
                          "own", VM_DISK_INFO_IDSTR);
    return 0;
}

static const vmstate_field info_fields[] = {
    { VMSTATE_BUFFER(vm_disk_info, name) },
    { VMSTATE_SCALAR(vm_disk_info, size) },
    { VMSTATE_BUFFER(vm_disk_info, id), .version = 2 },
    { VMSTATE_BUFFER(vm_disk_info, base_id), .version = 2 },
    { VMSTATE_BUFFER(vm_disk_info, base), .version = 2 },
    VMSTATE_END,
};

const vmstate_desc vm_disk_info_desc = {
    .name = VM_DISK_INFO_IDSTR, .version = 2, .minimum_version = 1,
    .size = sizeof(vm_disk_info), .fields = info_fields,
    .check = info_check,
};

static const registry_live_ops disk_ops = {
    .version = BLOCK_SECTION_VERSION,
    .minimum_version = BLOCK_SECTION_VERSION,
    .save_setup = disk_setup,
    .save_iterate = disk_iterate,
    .save_complete = disk_complete,
    .load = disk_load,
    .load_begin_validate = disk_begin_validate,
};

int vm_disk_register(vm *v, char *err, size_t errlen)
{
    disk *d = v->cfg.disk;

    if (!d)
        return 0;
    if (strcmp(disk_name(d), VM_DISK_NAME) != 0) {
        snprintf(err, errlen, "vm: the disk is named '%s', not '%s'",
                 disk_name(d), VM_DISK_NAME);
        return -EINVAL;
    }
    size_t words = disk_bitmap_longs(d);
    v->disk_scratch = malloc(DISK_CHUNK_SIZE);
    int rc = v->disk_scratch ? 0 : -ENOMEM;
    for (unsigned i = 0; rc == 0 && i < VM_DISK_RECENT; i++)
        if (!(v->disk_recent[i] = calloc(words, sizeof(unsigned long))))
            rc = -ENOMEM;
    /* A readonly image is sent, never loaded into. */
    if (rc == 0 && !disk_readonly(d)) {
        uint64_t bound = disk_size(d) < VM_DISK_MAX_STAGE
                             ? disk_size(d) : VM_DISK_MAX_STAGE;
        rc = block_loader_new(&v->bloader, &d, 1, bound);
    }
    if (rc < 0) {
        snprintf(err, errlen, "vm: the disk's checkpoint state: %s",
                 strerror(-rc));
        return rc;
    }
    rc = registry_add_live(v->reg, BLOCK_SECTION_IDSTR, 0,
                           REGISTRY_PRIO_DISK, &disk_ops, v);
    snprintf(v->disk_info.name, sizeof(v->disk_info.name), "%s",
             VM_DISK_NAME);
    v->disk_info.size = v->disk_info.expect_size = disk_size(d);
    if (rc >= 0)
        rc = registry_add_device(v->reg, VM_DISK_INFO_IDSTR, 0,
                                 REGISTRY_PRIO_DEFAULT, &vm_disk_info_desc,
                                 &v->disk_info);
    if (rc < 0)
        snprintf(err, errlen, "vm: registering the disk: %s", strerror(-rc));
    return rc < 0 ? rc : 0;
}

void vm_disk_free(vm *v)
{
    block_loader_free(v->bloader);
    free(v->disk_scratch);
    for (unsigned i = 0; i < VM_DISK_RECENT; i++)
        free(v->disk_recent[i]);
}

disk *vm_disk(vm *v)
{
    return v->cfg.disk;
}

void vm_disk_hold(vm *v)
{
    v->disk_hold = true;
}

int vm_disk_commit(vm *v, char *err, size_t errlen)
{
    if (!v->bloader)
        return 0;
    chain_break(v);
    block_stage_counts c;
    block_stage_counts_get(v->bloader, &c);
    if (c.data_chunks == 0 && c.zero_chunks == 0)
        return 0;
    return block_apply(v->bloader, true, err, errlen);
}

void vm_disk_resend(vm *v)
{
    if (!v->cfg.disk)
        return;
    for (unsigned i = 0; i < VM_DISK_RECENT; i++)
        disk_mark_dirty_bits(v->cfg.disk, v->disk_recent[i]);
}

void vm_get_disk_stats(vm *v, block_save_stats *out)
{
    *out = v->disk_stats;
}

/* ---- checkpoint files as a chain ---- */

int vm_disk_file_begin(vm *v, const char *dir, const char *name,
                       unsigned max_files, vm_disk_file *out)
{
    vm_disk_chain *ch = &v->chain;

    memset(out, 0, sizeof(*out));
    if (!v->cfg.disk)
        return 0;
    size_t got = 0;
    while (got < VM_DISK_ID_LEN) {
        ssize_t r = getrandom(out->id + got, VM_DISK_ID_LEN - got, 0);
        if (r < 0 && errno != EINTR)
            return -errno;
        got += r > 0 ? (size_t)r : 0;
    }
    /*
     * A name that cannot be a base is no chain's link either; nor is a
     * secondary's file: kept simple, each is whole (the packages it
     * applies mark what they write, but a chain would have to follow
     * them across commits).
     */
    bool in_dir = dir && !v->disk_hold && strlen(name) < VM_DISK_BASE_LEN &&
                  strlen(dir) < sizeof(ch->dir) && !strchr(name, '/');
    char base_path[sizeof(ch->dir) + VM_DISK_BASE_LEN + 1];
    snprintf(base_path, sizeof(base_path), "%s/%s", ch->dir, ch->last);
    /* A base someone removed would make this file unrestorable. */
    if (in_dir && ch->valid && ch->len < max_files &&
        strcmp(dir, ch->dir) == 0 && strcmp(name, ch->last) != 0 &&
        access(base_path, F_OK) == 0) {
        memcpy(out->base_id, ch->last_id, VM_DISK_ID_LEN);
        snprintf(out->base, sizeof(out->base), "%s", ch->last);
    }
    ch->pending = true;
    ch->pending_in_dir = in_dir;
    snprintf(ch->pending_dir, sizeof(ch->pending_dir), "%s",
             in_dir ? dir : "");
    snprintf(ch->pending_name, sizeof(ch->pending_name), "%s",
             in_dir ? name : "");
    ch->plan = *out;
    ch->setups = ch->completes = 0;
    ch->spoiled = false;
    /* From here the disk's takes are this file's; it decides the chain. */
    ch->valid = false;
    return 0;
}

void vm_disk_file_end(vm *v, bool committed)
{
    vm_disk_chain *ch = &v->chain;

    if (!v->cfg.disk || !ch->pending)
        return;
    ch->pending = false;
    bool clean = ch->setups == 1 && ch->completes == 1 && !ch->spoiled;
    if (committed && clean && ch->pending_in_dir) {
        unsigned len = vm_disk_id_zero(ch->plan.base_id) ? 1 : ch->len + 1;
        ch->valid = true;
        ch->len = len;
        snprintf(ch->dir, sizeof(ch->dir), "%s", ch->pending_dir);
        snprintf(ch->last, sizeof(ch->last), "%s", ch->pending_name);
        memcpy(ch->last_id, ch->plan.id, VM_DISK_ID_LEN);
        return;
    }
    chain_break(v);
    /* Its END's chunks never reached a file: give them back. */
    if (!committed && ch->completes == 1)
        disk_mark_dirty_bits(v->cfg.disk, v->disk_recent[ch->taken_slot]);
}
