/*
 * primary: the primary process (`ftvm primary`): a guest run as `ftvm
 * run` runs it, its console on stdout through output commit
 * (primary/outbuf.h), replicated to a secondary (primary/replicator.h,
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
    daemon_opts process;        /* --control, --metrics */
    /*
     * --secondary and the timings; shape, corrupt, may_protect and opaque
     * are primary_run's.
     */
    replicator_opts rep;
} primary_opts;

/*
 * Runs the VM replicated to rep.secondary until it stops; returns the exit
 * status, as `ftvm run`'s (daemon/exitcode.h): 120 also when the
 * secondary cannot be reached at start without rep.reconnect_ns.
 *
 * TEST ONLY: FTVM_TEST_CORRUPT_PACKAGE=N[,M...] in the environment damages
 * the Nth (Mth...) package after its checksum, for the end-to-end tests
 * of refusals.
 */
int primary_run(primary_opts *o);

#endif
