/*
 * vmctl: what a process running one VM offers its operator: the control
 * commands (status, pause, resume, save, checkpoint, quit) and the
 * periodic checkpoints to a directory.  Used by `ftvm run`, `ftvm
 * restore` and `ftvm secondary`; docs/control-protocol.md lists the
 * commands and their results.
 */
#ifndef FTVM_DAEMON_VMCTL_H
#define FTVM_DAEMON_VMCTL_H

#include <stdint.h>

#include "daemon/control.h"
#include "daemon/metrics.h"
#include "vm/snapshot.h"
#include "vm/vm.h"

/*
 * What a process whose VM is more than a running guest adds (the
 * secondary: its VM appears when the primary's first sections arrive and
 * is a RAM cache until failover).  Every member may be NULL.
 */
typedef struct vmctl_hooks {
    void *opaque;
    /* Adds its fields to (or replaces fields of) status's result. */
    void (*status)(void *opaque, json_t *result);
    /* Whether a checkpoint may be written now: 0, or -errno and why. */
    int (*can_save)(void *opaque, char *err, size_t errlen);
    /* quit does this instead of vm_stop. */
    void (*quit)(void *opaque);
    /* Around the final phase of every checkpoint (vm/snapshot.h). */
    snapshot_gate gate;
} vmctl_hooks;

typedef struct vmctl_opts {
    const char *checkpoint_dir;     /* NULL: no periodic checkpoints */
    uint64_t checkpoint_every_ns;   /* 0: only on request */
    unsigned keep;                  /* checkpoints kept in the directory */
    const char *role;               /* status's "role"; NULL: "run" */
    const vmctl_hooks *hooks;       /* NULL: none; copied */
} vmctl_opts;

typedef struct vmctl vmctl;

/*
 * Registers the commands on ctl (may be NULL: no control socket) and
 * starts the checkpoint timer.  quit calls vm_stop, so the caller's
 * on_stop ends the loop as for a guest that halts.  v may be NULL until
 * vmctl_set_vm: the commands then answer that there is no VM yet.
 */
int vmctl_new(vmctl **out, vm *v, struct event_base *base, control_server *ctl,
              const vmctl_opts *o, char *err, size_t errlen);
/* Gives the commands their VM (from the loop's thread). */
void vmctl_set_vm(vmctl *c, vm *v);
/* What the status command answers (a new reference). */
json_t *vmctl_status(vmctl *c);
/*
 * The process's and its VM's metric families (docs/metrics.md): uptime,
 * checkpoints to disk, and once there is a VM its state, pauses, RAM and
 * network.
 */
void vmctl_metrics(vmctl *c, metrics_writer *w);
/* Whether a checkpoint is being written (the caller waits before exit). */
bool vmctl_busy(const vmctl *c);
void vmctl_free(vmctl *c);

#endif
