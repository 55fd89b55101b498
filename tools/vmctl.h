/*
 * vmctl: what a process running one VM offers its operator: the control
 * commands (status, pause, resume, save, checkpoint, quit) and the
 * periodic checkpoints to a directory.  Used by `ftvm run` and `ftvm
 * restore`; docs/control-protocol.md lists the commands and their results.
 */
#ifndef FTVM_TOOLS_VMCTL_H
#define FTVM_TOOLS_VMCTL_H

#include <stdint.h>

#include "tools/control.h"
#include "vm/vm.h"

typedef struct vmc_opts {
    const char *checkpoint_dir;     /* NULL: no periodic checkpoints */
    uint64_t checkpoint_every_ns;   /* 0: only on request */
    unsigned keep;                  /* checkpoints kept in the directory */
} vmc_opts;

typedef struct vmc vmc;

/*
 * Registers the commands on ctl (may be NULL: no control socket) and
 * starts the checkpoint timer.  quit calls vm_stop, so the caller's
 * on_stop ends the loop as for a guest that halts.
 */
int vmc_new(vmc **out, vm *v, struct event_base *base, ctl_server *ctl,
            const vmc_opts *o, char *err, size_t errlen);
/* Whether a checkpoint is being written (the caller waits before exit). */
bool vmc_busy(const vmc *c);
void vmc_free(vmc *c);

#endif
