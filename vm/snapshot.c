/* snapshot: see snapshot.h. */
#include "vm/snapshot.h"

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "checkpoint/ckptfile.h"
#include "checkpoint/savevm.h"
#include "devstate/dropnotice.h"
#include "devstate/trailer.h"
#include "devstate/vmdesc.h"
#include "vm/mono.h"
#include "vm/precopy.h"
#include "vm/colosec.h"
#include "vm/vmshape.h"

struct snapshot_job {
    vm *v;
    ckptfile_txn *txn;
    struct event *done_ev;
    pthread_t thread;
    snapshot_done_fn done;
    void *opaque;
    snapshot_gate gate;
    uint64_t id;            /* the trailer's checkpoint id */
    bool in_dir;            /* a directory's file: a link of its chain */
    char dir[4096];
    unsigned max_chain;     /* files a chain of dir may have */
    vm_disk_file dfile;     /* what its disk part is */
    char prune_dir[4096];   /* where to prune after a good commit */
    unsigned keep;
    int rc;
    char err[512];
    char path[4096];
    snapshot_stats st;
};

static int fail(snapshot_job *j, int rc, const char *what)
{
    if (!j->rc) {
        j->rc = rc < 0 ? rc : -EIO;
        snprintf(j->err, sizeof(j->err), "%s", what);
    }
    return j->rc;
}

static int stream_fail(snapshot_job *j, qfile *f)
{
    return fail(j, qfile_error(f), qfile_errmsg(f));
}

static int flush_file(void *opaque, qfile *f, char *err, size_t errlen)
{
    (void)opaque;
    int rc = qfile_flush(f);
    if (rc == 0 && !qfile_error(f))
        return 0;
    snprintf(err, errlen, "%s", qfile_errmsg(f));
    return qfile_error(f) ? qfile_error(f) : rc;
}

/* RAM passes while the guest runs, until little enough is left. */
static int live_phase(snapshot_job *j, qfile *f)
{
    qfile_crc_start(f);
    savevm_put_header(f);
    precopy_stats ps;
    char err[512];
    int rc = precopy_run(j->v, f, flush_file, NULL, &ps, err, sizeof(err));
    j->st.live_passes = ps.passes;
    j->st.live_pages = ps.pages;
    if (rc == -ESHUTDOWN)
        return fail(j, rc, "the VM stopped during the checkpoint");
    return rc < 0 ? fail(j, rc, err) : 0;
}

int snapshot_seal(qfile *f, uint32_t section_id, uint64_t id, json_t *desc)
{
    json_t *devices = vmdesc_devices(desc);
    if (!devices)
        return qfile_fail(f, -EINVAL, "the VM description has no devices");
    if (trailer_put_desc(f, section_id, id, devices) < 0)
        return qfile_error(f);
    savevm_put_eof(f);
    if (vmshape_describe(devices) < 0 || colosec_describe(devices) < 0 ||
        trailer_describe_pkg(devices) < 0 ||
        dropnotice_describe(devices) < 0)
        return qfile_fail(f, -ENOMEM, "no memory for the VM description");
    size_t len;
    char *json = vmdesc_dump(desc, &len);
    if (json && len <= UINT32_MAX)
        savevm_put_vmdesc(f, json, (uint32_t)len);
    else
        qfile_fail(f, -ENOMEM, "cannot encode the VM description");
    free(json);
    return qfile_error(f);
}

static json_t *hex_id(const uint8_t *id)
{
    char hex[2 * VM_DISK_ID_LEN + 1];
    for (unsigned i = 0; i < VM_DISK_ID_LEN; i++)
        snprintf(hex + 2 * i, 3, "%02x", id[i]);
    return json_string(hex);
}

/*
 * What "ftvm-disk" says of the chain, again in the VM description, which
 * a reader finds from the file's end: pruning learns each file's base
 * without walking the file.  Only a hint: restore reads "ftvm-disk".
 */
static json_t *chain_hint(const vm_disk_file *df)
{
    json_t *h = json_object();
    json_object_set_new(h, "id", hex_id(df->id));
    json_object_set_new(h, "base_id", hex_id(df->base_id));
    json_object_set_new(h, "base", json_string(df->base));
    return h;
}

/*
 * ckptfile_prune_chains' question: the file path's base, from the hint in
 * its VM description.  A file without a description (cut short) cannot
 * be restored, so nothing needs keeping for it (0, no base); one that
 * cannot be read now is -errno, and nothing is pruned.
 */
static int base_of(void *opaque, const char *path, char *base, size_t len)
{
    (void)opaque;
    static const size_t tails[] = { 64u << 10, 4u << 20 };
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    json_t *desc = NULL;
    int r = fd < 0 || fstat(fd, &st) < 0 ? -errno : 0;
    /* The description is a few KiB: a short tail first. */
    for (unsigned t = 0; r == 0 && t < 2 && !desc; t++) {
        size_t n = (uint64_t)st.st_size < tails[t] ? (size_t)st.st_size
                                                   : tails[t];
        uint8_t *buf = malloc(n ? n : 1);
        size_t at;
        if (!buf)
            r = -ENOMEM;
        else if (pread(fd, buf, n, st.st_size - (off_t)n) != (ssize_t)n)
            r = -EIO;
        else
            desc = vmdesc_find_at_end(buf, n, &at);
        free(buf);
        if ((uint64_t)st.st_size <= tails[t])
            break;
    }
    if (fd >= 0)
        close(fd);
    if (r < 0)
        return r;
    const char *b = json_string_value(json_object_get(
        json_object_get(desc, SNAPSHOT_CHAIN_KEY), "base"));
    r = b && *b && !strchr(b, '/') && strlen(b) < len;
    if (r)
        snprintf(base, len, "%s", b);
    json_decref(desc);
    return r;
}

/*
 * The rest, with the vCPUs out of the guest.  While they are, the last
 * dirty pages and the device state are only copied into memory; the write
 * into the file, and the checksum over it, happen after the guest runs
 * again, so the pause is a memcpy and not a CRC pass and write syscalls.
 */
static int final_copy(snapshot_job *j, qfile *f)
{
    registry *reg = vm_registry(j->v);
    json_t *desc = vmdesc_new(RAM_PAGE_SIZE);
    qfile *m = qfile_open_mem("final copy");
    if (!desc || !m) {
        json_decref(desc);
        qfile_close(m);
        return fail(j, -ENOMEM, "no memory for the checkpoint's last part");
    }
    uint64_t t0 = mono_ns();
    char perr[512];
    int prc = vm_pause(j->v, perr, sizeof(perr));
    if (prc < 0) {
        json_decref(desc);
        qfile_close(m);
        return fail(j, prc, perr);
    }
    bool stopped = vm_get_state(j->v) == VM_STOPPED;
    if (!stopped && registry_save_complete(reg, m) == 0 &&
        registry_save_devices(reg, m, vmdesc_devices(desc)) == 0) {
        ram_save_stats rs;
        vm_get_ram_stats(j->v, &rs);
        j->st.final_pages = rs.zero_pages + rs.normal_pages +
                            rs.compressed_pages + rs.xbzrle_pages;
    }
    char rerr[256] = "";
    /* Releases our hold only: an operator's pause stays in force. */
    if (vm_resume(j->v, rerr, sizeof(rerr)) < 0 && !stopped && !j->rc)
        fail(j, -EIO, rerr);
    j->st.pause_ns = mono_ns() - t0;

    if (stopped) {
        fail(j, -ESHUTDOWN, "the VM stopped during the checkpoint");
    } else if (qfile_error(m)) {
        qfile_take_error(f, m);
    } else {
        size_t len;
        const uint8_t *d = qfile_mem_data(m, &len);
        qfile_put_buf(f, d, len);
        if (vm_disk(j->v))
            json_object_set_new(desc, SNAPSHOT_CHAIN_KEY,
                                chain_hint(&j->dfile));
        /* Registered entries have section ids 0..count-1. */
        snapshot_seal(f, (uint32_t)registry_count(reg), j->id, desc);
        qfile_flush(f);
    }
    json_decref(desc);
    qfile_close(m);
    return qfile_error(f) ? stream_fail(j, f) : j->rc;
}

/* The gate, if any, keeps other writers out of the final copy. */
static int final_phase(snapshot_job *j, qfile *f)
{
    char gerr[256];
    if (j->gate.close) {
        int r = j->gate.close(j->gate.opaque, gerr, sizeof(gerr));
        if (r < 0)
            return fail(j, r, gerr);
    }
    int r = final_copy(j, f);
    if (j->gate.open)
        j->gate.open(j->gate.opaque);
    return r;
}

static void *job_main(void *arg)
{
    snapshot_job *j = arg;
    uint64_t t0 = mono_ns();
    qfile *f = ckptfile_stream(j->txn);
    const char *slash = strrchr(j->path, '/');
    int dr = vm_disk_file_begin(j->v, j->in_dir ? j->dir : NULL,
                                slash ? slash + 1 : j->path, j->max_chain,
                                &j->dfile);
    if (dr < 0)
        fail(j, dr, "no random id for the disk's part of the checkpoint");
    snprintf(j->st.disk_base, sizeof(j->st.disk_base), "%s",
             j->dfile.base);
    if (dr == 0 && live_phase(j, f) == 0)
        final_phase(j, f);
    j->st.bytes = qfile_tell(f);
    if (j->rc == 0) {
        char err[512];
        int r = ckptfile_commit(j->txn, err, sizeof(err));
        if (r < 0)
            fail(j, r, err);
        vm_disk_file_end(j->v, r == 0);
        if (r == 0 && j->keep)
            ckptfile_prune_chains(j->prune_dir, j->keep, base_of, NULL);
    } else {
        ckptfile_abort(j->txn);
        vm_disk_file_end(j->v, false);
    }
    j->txn = NULL;
    j->st.total_ns = mono_ns() - t0;
    event_active(j->done_ev, EV_READ, 0);
    return NULL;
}

static void on_done(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    snapshot_job *j = arg;
    pthread_join(j->thread, NULL);
    j->done(j->opaque, j->rc, j->path, j->err, &j->st);
    event_free(j->done_ev);
    free(j);
}

int snapshot_start(snapshot_job **out, vm *v, struct event_base *base,
                   const snapshot_req *rq, snapshot_done_fn done, void *opaque,
                   char *err, size_t errlen)
{
    if (vm_get_state(v) == VM_STOPPED) {
        snprintf(err, errlen, "the VM has stopped: nothing to checkpoint");
        return -ESHUTDOWN;
    }
    int rc = vm_check_savable(v, err, errlen);
    if (rc < 0)
        return rc;
    snapshot_job *j = calloc(1, sizeof(*j));
    if (!j) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    j->v = v;
    j->done = done;
    j->opaque = opaque;
    if (rq->gate)
        j->gate = *rq->gate;
    if (rq->kind == SNAPSHOT_TO_DIR && rq->keep) {
        snprintf(j->prune_dir, sizeof(j->prune_dir), "%s", rq->path);
        j->keep = rq->keep;
    }
    /* A chain of more files than are kept would outlive its newest. */
    if (rq->kind == SNAPSHOT_TO_DIR &&
        strlen(rq->path) < sizeof(j->dir)) {
        j->in_dir = true;
        snprintf(j->dir, sizeof(j->dir), "%s", rq->path);
        j->max_chain = rq->keep && rq->keep < VM_DISK_CHAIN_MAX
                           ? rq->keep : VM_DISK_CHAIN_MAX;
    }
    int r = rq->kind == SNAPSHOT_TO_DIR
                ? ckptfile_begin(&j->txn, rq->path, err, errlen)
                : ckptfile_begin_file(&j->txn, rq->path, err, errlen);
    if (r < 0) {
        free(j);
        return r;
    }
    snprintf(j->path, sizeof(j->path), "%s", ckptfile_path(j->txn));
    j->id = ckptfile_seq(j->txn);
    j->done_ev = event_new(base, -1, 0, on_done, j);
    if (!j->done_ev || pthread_create(&j->thread, NULL, job_main, j) != 0) {
        snprintf(err, errlen, "cannot start the checkpoint thread");
        if (j->done_ev)
            event_free(j->done_ev);
        ckptfile_abort(j->txn);
        free(j);
        return -EAGAIN;
    }
    *out = j;
    return 0;
}
