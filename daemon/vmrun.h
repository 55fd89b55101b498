/*
 * vmrun: a process that runs one VM and nothing more (`ftvm run`, `ftvm
 * restore`): its console on stdout, the control socket, checkpoints to
 * disk, metrics, and the exit status the VM stops with
 * (daemon/exitcode.h).
 */
#ifndef FTVM_DAEMON_VMRUN_H
#define FTVM_DAEMON_VMRUN_H

#include "daemon/daemon.h"
#include "daemon/options.h"

typedef enum vmrun_mode {
    VMRUN_BOOT,         /* boot a guest image */
    VMRUN_RESTORE,      /* carry on from a checkpoint file */
} vmrun_mode;

typedef struct vmrun_opts {
    vmrun_mode mode;
    /*
     * The VM.  VMRUN_RESTORE takes RAM size and vCPUs from the file; a
     * --mem given must match it.
     */
    options_vm vm;
    const char *image;          /* the guest, or the checkpoint file */
    const char *guest_args;     /* VMRUN_BOOT: space-separated */
    daemon_opts process;        /* control, metrics, checkpoints to disk */
} vmrun_opts;

/* Runs the VM to its end; returns the exit status. */
int vmrun_run(vmrun_opts *o);

#endif
