/*
 * apply: what the secondary does with each record of the stream
 * (docs/replication.md, "Applying a package"), as the loader's target.
 *
 * The bring-up: "ftvm-vm", after OPEN_RETURN_PATH and ENABLE_COLO and only
 * once, makes the VM (the create hook); the "ram" sections that follow are
 * applied as they come.  Then each checkpoint package is validated whole:
 * "ftvm-pkg" first and once, its base 0 or the last checkpoint applied,
 * its id newer than that, every section, nothing after the "ftvm-ckpt"
 * trailer, whose id is the header's and whose CRC covers the package.
 * Only then is it applied, under the cache lock, and ACKed.  A package
 * that fails is NACKed with the reason and changes nothing; the stream
 * goes on.  After the first package, a section outside a package ends
 * the stream: it could not be applied atomically.
 *
 * "ftvm-colo-in" at the top level (between packages) of a COLO stream
 * (one whose bring-up said COLO in "ftvm-colo") is a frame the primary's
 * NIC received: handed to the colo_input hook, in order, nothing applied.
 * One before "ftvm-vm", in a checkpoint-mode stream or inside a package
 * ends the stream as a protocol error (-EPROTO).
 *
 * "ftvm-drop" at the top level, of the bring-up's pairing, says that the
 * primary ended this secondary on purpose and keeps the VM: it is kept
 * (apply_stats.dropped) and nothing but EOF may follow it.  One of
 * another pairing ends the stream as a protocol error.
 *
 * It loads into a registry (devstate/) and answers on a connection; it
 * knows no VM, so that a unit test can drive it with a registry and RAM
 * blocks of its own.  Everything runs on the receiver thread, but for
 * apply_hold, apply_release and apply_get_stats.
 */
#ifndef FTVM_SECONDARY_APPLY_H
#define FTVM_SECONDARY_APPLY_H

#include <stdbool.h>
#include <stdint.h>

#include "checkpoint/qfile.h"
#include "checkpoint/savevm.h"
#include "devstate/dropnotice.h"
#include "devstate/registry.h"
#include "daemon/sampler.h"
#include "secondary/connection.h"
#include "vm/vmshape.h"

typedef struct apply apply;

/*
 * Makes the VM of the shape the "ftvm-vm" section gave and gives the
 * registry its state loads into.  0, or the error latched on f.
 */
typedef int (*apply_create_fn)(void *opaque, qfile *f, const vmshape *shape,
                               registry **reg);

/*
 * Whether the primary of this shape may be served (the witness's check of
 * its generation, docs/witness.md), before anything is created; may wait
 * (this is the receiver thread).  0, or -errno with the reason in err and
 * in *decided the generation that makes it stale (0: none known): it is
 * sent to the primary as REFUSE and the stream ends.
 */
typedef int (*apply_admit_fn)(void *opaque, const vmshape *shape,
                              uint64_t *decided, char *err, size_t errlen);

typedef struct apply_opts {
    connection *conn;       /* where answers go; told of liveness */
    apply_create_fn create;
    apply_admit_fn admit;   /* NULL: every primary of the right name */
    void *opaque;
    /* The VM name the primary must have (--vm-name); NULL: any. */
    const char *vm_name;
    /*
     * Optional: writes what the last unit applied staged (the disk's
     * chunks, vm_disk_commit) once it is applied: after each section of
     * the bring-up, and after each package's RAM and before its ACK.
     * 0, or -errno with the reason in err.  A package whose commit fails
     * is not ACKed and ends the stream as refused (-ENOTRECOVERABLE,
     * SHUT 1): the copy is between two checkpoints, so this secondary
     * must never take over.
     */
    int (*commit)(void *opaque, char *err, size_t errlen);
    /* Optional: checkpoint id was applied and ACKed (opaque's). */
    void (*applied)(void *opaque, uint64_t id);
    /* Optional: "ftvm-colo" said COLO mode (in the bring-up). */
    void (*colo)(void *opaque);
    /*
     * Optional: an "ftvm-colo-in" frame of len bytes (valid during the
     * call) that the primary's NIC received after checkpoint id.
     */
    void (*colo_input)(void *opaque, uint64_t id, const void *frame,
                       size_t len);
    /*
     * Optional: an "ftvm-colo-rel": the primary releases the first
     * console bytes the guest wrote after checkpoint id once told.
     */
    void (*colo_release)(void *opaque, uint64_t id, uint64_t console);
} apply_opts;

/*
 * The largest package accepted before "ftvm-vm" said what a package can
 * hold (vmshape_package_bound): none is valid then anyway.
 */
#define APPLY_PRE_VM_MAX_PACKAGE (1u << 20)

typedef struct apply_stats {
    bool have_vm;               /* "ftvm-vm" made it */
    pairing pair;               /* ... and its name and pairing id */
    uint64_t applied;           /* checkpoints applied */
    uint64_t last_id;           /* the last one applied, 0 for none */
    uint64_t refused;           /* packages answered NACK */
    char last_refusal[512];
    /* From a package's first section validated to its ACK. */
    sampler_summary apply_ns;
    uint64_t package_bytes_last, package_bytes_total;
    uint64_t pings;             /* PINGs answered */
    bool colo;                  /* "ftvm-colo": COLO mode (docs/colo.md) */
    uint64_t colo_input_frames; /* "ftvm-colo-in" frames taken */
    /* The primary's "ftvm-drop" (devstate/dropnotice.h), once it came. */
    bool dropped;
    dropnotice drop;
} apply_stats;

/* 0, or -ENOMEM. */
int apply_new(apply **out, const apply_opts *o);
void apply_free(apply *a);

/* The stream's header: magic, version, configuration.  0 or -errno. */
int apply_load_header(apply *a, qfile *f);
/*
 * Records until EOF or the clean end of f.  A refused package is answered
 * and does not stop it.  0 or the latched -errno; qfile_errmsg(f) says
 * what and where.  The loader (which sections were started) carries over
 * from one call to the next.
 */
int apply_load(apply *a, qfile *f, savevm_stop *why);

/*
 * Waits for a package being applied to finish and keeps the next one
 * out until apply_release: the registry then holds exactly the last
 * checkpoint applied.
 */
void apply_hold(apply *a);
void apply_release(apply *a);

void apply_get_stats(apply *a, apply_stats *out);

#endif
