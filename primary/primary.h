/*
 * primary: the primary process (`ftvm primary`): a guest run as `ftvm
 * run` runs it, its console (on stdout) and network output through output
 * commit (primary/outqueue.h), replicated to a secondary (primary/replicator.h,
 * docs/replication.md), with the control commands of primary/primary_ctl.h
 * and their figures as metrics.
 */
#ifndef FTVM_PRIMARY_PRIMARY_H
#define FTVM_PRIMARY_PRIMARY_H

#include "daemon/daemon.h"
#include "daemon/options.h"
#include "primary/replicator.h"

typedef struct primary_opts {
    options_vm vm;              /* the VM's shape */
    const char *image;          /* the guest */
    const char *guest_args;     /* its arguments, space-separated */
    /* --vm-name; NULL: the image's file name (pairing_default_name). */
    const char *vm_name;
    daemon_opts process;        /* --control, --metrics */
    /*
     * --secondary and the timings; shape, may_protect and opaque are
     * primary_run's.
     */
    replicator_opts rep;
} primary_opts;

/*
 * Runs the VM replicated to rep.secondary until it stops; returns the exit
 * status, as `ftvm run`'s (daemon/exitcode.h): 120 also when, without
 * rep.reconnect_ns, the secondary cannot be reached at start or its link
 * ends before it acknowledged a checkpoint (replicator_setup_failed).
 */
int primary_run(primary_opts *o);

#endif
