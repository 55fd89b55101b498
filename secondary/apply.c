/* apply: see apply.h. */
#include "secondary/apply.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "devstate/trailer.h"
#include "daemon/log.h"
#include "daemon/sampler.h"
#include "vm/colosec.h"
#include "vm/vmshape.h"

/* The package being validated, then applied. */
typedef struct pkg_check {
    unsigned sections;      /* validated so far */
    bool have_hdr;
    trailer_pkg hdr;
    bool sealed;
    bool applying;          /* validated; its APPLY pass is running */
    bool foreign;           /* of another pairing: the stream is refused */
    bool stray;             /* holds what no package may: so is it */
    bool held;              /* the cache mutex is ours */
    uint64_t t0;            /* when its first section was validated */
} pkg_check;

struct apply {
    apply_opts o;
    savevm_loader *loader;
    registry *reg;          /* the VM's, once "ftvm-vm" made it */
    vmshape shape;          /* and its shape, with the pairing */
    bool return_path;       /* OPEN_RETURN_PATH arrived */
    bool colo;              /* ENABLE_COLO arrived */
    bool colo_mode;         /* "ftvm-colo" said COLO mode */
    bool packaged;          /* a package arrived: the bring-up is over */
    bool dropped;           /* "ftvm-drop" came: only EOF may follow */
    uint64_t last_applied;
    qfile *in;              /* apply_load's: where a failed commit ends */
    pkg_check cur;
    pthread_mutex_t cache;  /* a package being applied; apply_hold */
    pthread_mutex_t slock;  /* st, samples */
    apply_stats st;
    sampler samples;        /* apply times, ns */
};

static bool stopping(apply *a)
{
    return connection_get_state(a->o.conn, NULL, NULL, 0) != CONNECTION_OPEN;
}

/* The package is over, applied or not: the cache and the reader are free. */
static void reset_pkg(apply *a)
{
    if (a->cur.held)
        pthread_mutex_unlock(&a->cache);
    a->cur = (pkg_check){ 0 };
    connection_set_busy(a->o.conn, false);
}

/* ---- the bring-up, outside packages ---- */

static int create_vm(apply *a, qfile *f, const savevm_section *sec)
{
    if (a->reg)
        return qfile_fail(f, -EPROTO,
                          "a second '%s' section: the VM's shape "
                          "cannot change",
                          VMSHAPE_IDSTR);
    if (!a->return_path || !a->colo)
        return qfile_fail(f, -EPROTO,
                          "not a replication stream: '%s' before "
                          "OPEN_RETURN_PATH and ENABLE_COLO",
                          VMSHAPE_IDSTR);
    vmshape shape;
    if (vmshape_load(f, sec, &shape) < 0)
        return qfile_error(f);
    if (a->o.vm_name && strcmp(shape.pair.name, a->o.vm_name) != 0)
        return qfile_fail(f, -EPERM, "the primary's VM is '%s', this "
                          "secondary serves '%s' (--vm-name)",
                          shape.pair.name, a->o.vm_name);
    /* The primary is not silent while we are busy and not reading. */
    connection_set_busy(a->o.conn, true);
    if (a->o.admit) {
        char why[400];
        uint64_t decided = 0;
        int r = a->o.admit(a->o.opaque, &shape, &decided, why, sizeof(why));
        if (r < 0) {
            connection_set_busy(a->o.conn, false);
            /* The primary learns why before the SHUT that ends it (not
             * when this side is going away: that is no refusal). */
            if (r != -ECANCELED)
                connection_send_refuse(a->o.conn, decided, &shape.pair, why);
            return qfile_fail(f, r, "%s", why);
        }
    }
    registry *reg = NULL;
    int r = a->o.create(a->o.opaque, f, &shape, &reg);
    connection_set_busy(a->o.conn, false);
    if (r < 0 || qfile_error(f))
        return qfile_error(f) ? qfile_error(f) : r;
    a->reg = reg;
    a->shape = shape;
    uint64_t bound = vmshape_package_bound(&shape);
    savevm_loader_set_max_package(a->loader, bound > UINT32_MAX
                                                 ? UINT32_MAX
                                                 : (uint32_t)bound);
    pthread_mutex_lock(&a->slock);
    a->st.have_vm = true;
    a->st.pair = shape.pair;
    pthread_mutex_unlock(&a->slock);
    return 0;
}

/* "ftvm-colo": the primary runs in COLO mode (docs/colo.md). */
static int colo_section(apply *a, qfile *f, const savevm_section *sec)
{
    uint32_t mode;
    if (a->packaged)
        return qfile_fail(f, -EPROTO, "'%s' after the bring-up",
                          COLOSEC_IDSTR);
    if (colosec_load(f, sec, &mode) < 0)
        return qfile_error(f);
    a->colo_mode = mode == COLOSEC_MODE_COLO;
    pthread_mutex_lock(&a->slock);
    a->st.colo = a->colo_mode;
    pthread_mutex_unlock(&a->slock);
    if (mode == COLOSEC_MODE_COLO && a->o.colo)
        a->o.colo(a->o.opaque);
    return 0;
}

/*
 * COLO's records between packages (ftvm-colo-in, ftvm-colo-rel) come
 * only in a COLO stream, after the VM's shape: 0, or -EPROTO on f.
 */
static int colo_record_here(apply *a, qfile *f, const char *idstr)
{
    if (!a->reg)
        return qfile_fail(f, -EPROTO, "'%s' before the VM's shape ('%s')",
                          idstr, VMSHAPE_IDSTR);
    if (!a->colo_mode)
        return qfile_fail(f, -EPROTO, "'%s' in a checkpoint-mode stream "
                          "(its bring-up had no '%s' saying COLO)",
                          idstr, COLOSEC_IDSTR);
    return 0;
}

/*
 * "ftvm-colo-rel": the primary is about to release console bytes its SVM
 * wrote alike (docs/colo.md, "Failover").
 */
static int colo_release(apply *a, qfile *f, const savevm_section *sec)
{
    if (colo_record_here(a, f, COLOSEC_RELEASE_IDSTR) < 0)
        return qfile_error(f);
    uint64_t id, console;
    if (colosec_load_release(f, sec, &id, &console) < 0)
        return qfile_error(f);
    if (a->o.colo_release)
        a->o.colo_release(a->o.opaque, id, console);
    return 0;
}

/*
 * "ftvm-colo-in": a frame the primary's NIC received, for the secondary's
 * running VM (docs/colo.md).  Only a COLO stream carries them.
 */
static int colo_input(apply *a, qfile *f, const savevm_section *sec)
{
    if (colo_record_here(a, f, COLOSEC_INPUT_IDSTR) < 0)
        return qfile_error(f);
    uint8_t frame[COLOSEC_INPUT_FRAME_MAX];
    uint64_t id;
    size_t len;
    if (colosec_load_input(f, sec, &id, frame, &len) < 0)
        return qfile_error(f);
    pthread_mutex_lock(&a->slock);
    a->st.colo_input_frames++;
    pthread_mutex_unlock(&a->slock);
    if (a->o.colo_input)
        a->o.colo_input(a->o.opaque, id, frame, len);
    return 0;
}

/*
 * The primary ends this secondary on purpose: kept, so that the end of
 * the connection that follows is never taken for the primary's loss.
 */
static int take_drop(apply *a, qfile *f, const savevm_section *sec)
{
    dropnotice d;
    if (dropnotice_load(f, sec, &d) < 0)
        return qfile_error(f);
    if (!pairing_equal(&d.pair, &a->shape.pair)) {
        char got[96], want[96];
        return qfile_fail(f, -EPROTO, "a drop notice of pairing %s, not %s, "
                          "the bring-up's", pairing_str(&d.pair, got,
                                                        sizeof(got)),
                          pairing_str(&a->shape.pair, want, sizeof(want)));
    }
    pthread_mutex_lock(&a->slock);
    a->st.dropped = true;
    a->st.drop = d;
    pthread_mutex_unlock(&a->slock);
    a->dropped = true;
    char rb[32];
    log_msg("%s: dropped by the primary: %s%s%s",
            connection_peer(a->o.conn),
            dropnotice_reason_name(d.reason, rb, sizeof(rb)),
            d.text[0] ? ": " : "", d.text);
    return 0;
}

/* After "ftvm-drop" only EOF may come. */
static int after_drop(apply *a, qfile *f)
{
    if (!a->dropped)
        return 0;
    return qfile_fail(f, -EPROTO, "a record after '%s': only EOF may "
                      "follow it", DROPNOTICE_IDSTR);
}

static int top_section(apply *a, qfile *f, const savevm_section *sec)
{
    if (after_drop(a, f) < 0)
        return qfile_error(f);
    if (strcmp(sec->idstr, DROPNOTICE_IDSTR) == 0) {
        if (!a->reg)
            return qfile_fail(f, -EPROTO, "'%s' before the VM's shape "
                              "('%s')", DROPNOTICE_IDSTR, VMSHAPE_IDSTR);
        return take_drop(a, f, sec);
    }
    if (strcmp(sec->idstr, VMSHAPE_IDSTR) == 0)
        return create_vm(a, f, sec);
    if (strcmp(sec->idstr, COLOSEC_INPUT_IDSTR) == 0)
        return colo_input(a, f, sec);
    if (strcmp(sec->idstr, COLOSEC_RELEASE_IDSTR) == 0)
        return colo_release(a, f, sec);
    if (a->reg && strcmp(sec->idstr, COLOSEC_IDSTR) == 0)
        return colo_section(a, f, sec);
    if (!a->reg)
        return qfile_fail(f, -EPROTO,
                          "section '%s' before the VM's shape "
                          "('%s')",
                          sec->idstr, VMSHAPE_IDSTR);
    if (strcmp(sec->idstr, TRAILER_PKG_IDSTR) == 0 ||
        strcmp(sec->idstr, TRAILER_IDSTR) == 0)
        return qfile_fail(f, -EPROTO, "section '%s' outside a package",
                          sec->idstr);
    if (a->packaged)
        return qfile_fail(f, -EPROTO,
                          "section '%s' outside a package after "
                          "the bring-up: it could not be applied atomically",
                          sec->idstr);
    int r = registry_target_ops.section(a->reg, f, sec, SAVEVM_PASS_APPLY);
    char why[512];
    if (r == 0 && a->o.commit &&
        (r = a->o.commit(a->o.opaque, why, sizeof(why))) < 0)
        return qfile_fail(f, -ENOTRECOVERABLE, "the bring-up's '%s': %s",
                          sec->idstr, why);
    return r;
}

/* ---- a package: validate ---- */

static int validate_header(apply *a, qfile *f, const savevm_section *sec)
{
    pkg_check *c = &a->cur;
    int r = trailer_load_pkg(f, sec, &c->hdr);
    /* A header that reads but makes no sense still names its id. */
    c->have_hdr = c->hdr.id != 0;
    if (r < 0)
        return r;
    if (!pairing_equal(&c->hdr.pair, &a->shape.pair)) {
        char got[96], want[96];
        c->foreign = true;
        return qfile_fail(f, -EPROTO,
                          "checkpoint %" PRIu64 " is of pairing %s, not "
                          "%s, the bring-up's: a package of another pairing",
                          c->hdr.id, pairing_str(&c->hdr.pair, got,
                                                 sizeof(got)),
                          pairing_str(&a->shape.pair, want, sizeof(want)));
    }
    if (c->hdr.base != 0 && c->hdr.base != a->last_applied)
        return qfile_fail(f, -ESTALE,
                          "checkpoint %" PRIu64 " builds on %" PRIu64
                          ", but the last checkpoint applied here "
                          "is %" PRIu64,
                          c->hdr.id, c->hdr.base, a->last_applied);
    if (c->hdr.id <= a->last_applied)
        return qfile_fail(f, -ESTALE,
                          "checkpoint %" PRIu64 " is not newer "
                          "than %" PRIu64 ", the last applied",
                          c->hdr.id, a->last_applied);
    return 0;
}

static int validate_trailer(apply *a, qfile *f, const savevm_section *sec)
{
    pkg_check *c = &a->cur;
    trailer_info info;
    if (trailer_load(f, sec, &info) < 0)
        return qfile_error(f);
    if (info.id != c->hdr.id)
        return qfile_fail(f, -EINVAL,
                          "the trailer of checkpoint %" PRIu64
                          " in the package of checkpoint %" PRIu64,
                          info.id, c->hdr.id);
    c->sealed = true;
    return 0;
}

static int validate_section(apply *a, qfile *f, const savevm_section *sec)
{
    pkg_check *c = &a->cur;
    if (c->sections++ == 0) {
        connection_set_busy(a->o.conn, true);
        c->t0 = connection_now(a->o.conn);
        a->packaged = true;
    }
    if (!a->reg)
        return qfile_fail(f, -EPROTO, "a package before the VM's shape ('%s')",
                          VMSHAPE_IDSTR);
    if (a->dropped) {
        c->foreign = true;      /* not a checkpoint to answer */
        return after_drop(a, f);
    }
    if (stopping(a))
        return qfile_fail(f, -ECANCELED, "replication is stopping");
    if (c->sealed)
        return qfile_fail(f, -EINVAL,
                          "section '%s' after the package's "
                          "trailer",
                          sec->idstr);
    if (strcmp(sec->idstr, COLOSEC_INPUT_IDSTR) == 0 ||
        strcmp(sec->idstr, COLOSEC_RELEASE_IDSTR) == 0) {
        /* Not a broken checkpoint: a primary that mixed up the two. */
        c->stray = true;
        return qfile_fail(f, -EPROTO, "'%s' inside a package: COLO's "
                          "records go between packages", sec->idstr);
    }
    bool hdr = strcmp(sec->idstr, TRAILER_PKG_IDSTR) == 0;
    if (hdr != (c->sections == 1))
        return qfile_fail(f, -EINVAL,
                          hdr ? "a second '%s' in one package"
                              : "a package must open with '%s'",
                          TRAILER_PKG_IDSTR);
    if (hdr)
        return validate_header(a, f, sec);
    if (strcmp(sec->idstr, TRAILER_IDSTR) == 0)
        return validate_trailer(a, f, sec);
    return registry_target_ops.section(a->reg, f, sec, SAVEVM_PASS_VALIDATE);
}

/* The loader's last word on a package before it is applied. */
static int on_validated(void *opaque, qfile *pf)
{
    apply *a = opaque;
    pkg_check *c = &a->cur;
    if (!c->have_hdr)
        return qfile_fail(pf, -EINVAL, "a package without '%s'",
                          TRAILER_PKG_IDSTR);
    if (!c->sealed)
        return qfile_fail(pf, -EBADMSG,
                          "checkpoint %" PRIu64 ": no trailer "
                          "('%s') seals the package",
                          c->hdr.id, TRAILER_IDSTR);
    if (stopping(a))
        return qfile_fail(pf, -ECANCELED,
                          "replication is stopping: checkpoint "
                          "%" PRIu64 " is not applied",
                          c->hdr.id);
    c->applying = true;
    return 0;
}

static int on_package_failed(void *opaque, qfile *pf)
{
    apply *a = opaque;
    /* Not a checkpoint to refuse: the stream is not this pair's, or is
     * not a stream this secondary can follow. */
    if (!a->reg || a->cur.foreign || a->cur.stray)
        return -EPROTO;
    uint64_t id = a->cur.have_hdr ? a->cur.hdr.id : 0;
    const char *why = qfile_errmsg(pf);
    reset_pkg(a);
    connection_send_nack(a->o.conn, id, &a->shape.pair, why);
    pthread_mutex_lock(&a->slock);
    a->st.refused++;
    snprintf(a->st.last_refusal, sizeof(a->st.last_refusal), "%s", why);
    pthread_mutex_unlock(&a->slock);
    log_msg("refused checkpoint %" PRIu64 ", staying at %" PRIu64 ": %s", id,
            a->last_applied, why);
    return 0;
}

/* ---- a package: apply ---- */

static int apply_section(apply *a, qfile *f, const savevm_section *sec)
{
    if (strcmp(sec->idstr, TRAILER_PKG_IDSTR) == 0) {
        /* The first section: from here to the ACK the cache is in flux. */
        if (!a->cur.held) {
            pthread_mutex_lock(&a->cache);
            a->cur.held = true;
        }
        trailer_pkg p;
        return trailer_load_pkg(f, sec, &p);
    }
    if (strcmp(sec->idstr, TRAILER_IDSTR) == 0)
        return trailer_skip(f, sec);
    return registry_target_ops.section(a->reg, f, sec, SAVEVM_PASS_APPLY);
}

static void package_applied(apply *a, uint32_t bytes)
{
    uint64_t id = a->cur.hdr.id;
    char why[512];
    if (a->o.commit && a->o.commit(a->o.opaque, why, sizeof(why)) < 0) {
        /* Not ACKed; the stream ends on this error (the input's). */
        qfile_fail(a->in, -ENOTRECOVERABLE, "checkpoint %" PRIu64 ": %s; "
                   "this secondary's disk is between two checkpoints and "
                   "it cannot take over", id, why);
        reset_pkg(a);
        return;
    }
    uint64_t took = connection_now(a->o.conn) - a->cur.t0;
    a->last_applied = id;
    reset_pkg(a);
    connection_established(a->o.conn);
    connection_send_ack(a->o.conn, id, &a->shape.pair);
    pthread_mutex_lock(&a->slock);
    bool first = a->st.applied++ == 0;
    a->st.last_id = id;
    a->st.package_bytes_last = bytes;
    a->st.package_bytes_total += bytes;
    sampler_add(&a->samples, took);
    pthread_mutex_unlock(&a->slock);
    if (first)
        log_msg("%s: checkpoint %" PRIu64 " applied: replication is active",
                connection_peer(a->o.conn), id);
    if (a->o.applied)
        a->o.applied(a->o.opaque, id);
}

/* ---- the target ---- */

static int on_section(void *opaque, qfile *f, const savevm_section *sec,
                      savevm_pass pass)
{
    apply *a = opaque;
    if (pass == SAVEVM_PASS_VALIDATE)
        return validate_section(a, f, sec);
    if (a->cur.applying)
        return apply_section(a, f, sec);
    return top_section(a, f, sec);
}

static int on_command(void *opaque, savevm_cmd cmd)
{
    apply *a = opaque;
    if (a->dropped)
        return -EPROTO;
    if (cmd == SAVEVM_CMD_OPEN_RETURN_PATH) {
        a->return_path = true;
        connection_open_return_path(a->o.conn);
    }
    if (cmd == SAVEVM_CMD_ENABLE_COLO)
        a->colo = true;
    return 0;
}

static void on_record(void *opaque, const savevm_record *rec)
{
    apply *a = opaque;
    if (rec->depth != 0)
        return;
    connection_progress(a->o.conn);
    if (rec->type != SAVEVM_COMMAND || rec->cmd != SAVEVM_CMD_PING)
        connection_useful(a->o.conn);
    if (rec->type != SAVEVM_COMMAND)
        return;
    if (rec->cmd == SAVEVM_CMD_PACKAGED && a->cur.applying) {
        package_applied(a, rec->package_len);
    } else if (rec->cmd == SAVEVM_CMD_PING) {
        /* The loader writes the PONG right after this. */
        connection_sent(a->o.conn);
        pthread_mutex_lock(&a->slock);
        a->st.pings++;
        pthread_mutex_unlock(&a->slock);
    }
}

static void on_begin_validate(void *opaque)
{
    apply *a = opaque;
    if (a->reg)
        registry_target_ops.begin_validate(a->reg);
}

static const savevm_target_ops target_ops = {
    .section = on_section,
    .command = on_command,
    .observe = on_record,
    .validated = on_validated,
    .package_failed = on_package_failed,
    .begin_validate = on_begin_validate,
};

/* ---- loading ---- */

int apply_load_header(apply *a, qfile *f)
{
    return savevm_load_header(a->loader, f);
}

int apply_load(apply *a, qfile *f, savevm_stop *why)
{
    a->in = f;
    int r = savevm_load_main(a->loader, f, SAVEVM_PASS_APPLY, true, why);
    /* A package cut off part way: nothing of it stays in flux. */
    reset_pkg(a);
    return r;
}

int apply_new(apply **out, const apply_opts *o)
{
    apply *a = calloc(1, sizeof(*a));
    if (!a)
        return -ENOMEM;
    a->o = *o;
    pthread_mutex_init(&a->cache, NULL);
    pthread_mutex_init(&a->slock, NULL);
    sampler_init(&a->samples, &sampler_ns);
    savevm_loader_opts lo = {
        .footers = true,
        .max_depth = 1,            /* packages do not nest */
        .max_package = APPLY_PRE_VM_MAX_PACKAGE, /* until "ftvm-vm" */
    };
    connection_loader_opts(o->conn, &lo);
    a->loader = savevm_loader_new(&target_ops, a, &lo);
    if (!a->loader) {
        apply_free(a);
        return -ENOMEM;
    }
    *out = a;
    return 0;
}

void apply_free(apply *a)
{
    if (!a)
        return;
    savevm_loader_free(a->loader);
    pthread_mutex_destroy(&a->cache);
    pthread_mutex_destroy(&a->slock);
    free(a);
}

void apply_hold(apply *a)
{
    pthread_mutex_lock(&a->cache);
}

void apply_release(apply *a)
{
    pthread_mutex_unlock(&a->cache);
}

void apply_get_stats(apply *a, apply_stats *out)
{
    pthread_mutex_lock(&a->slock);
    *out = a->st;
    sampler_summarize(&a->samples, &out->apply_ns);
    pthread_mutex_unlock(&a->slock);
}
