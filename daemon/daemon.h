/*
 * daemon: the process around one VM, as every long-running ftvm command
 * (run, restore, primary, secondary) has it.
 *
 * One libevent loop in the main thread (with libevent's pthreads support,
 * since the vCPU, checkpoint and replication threads wake it, and a
 * precise timer, since checkpoint intervals are a few ms) carries
 * SIGINT/SIGTERM, the control socket (daemon/control.h) with the VM
 * control commands (daemon/vmctl.h), the optional Prometheus endpoint
 * (daemon/metrics.h) and whatever the role puts on it.  SIGPIPE is
 * ignored: a console reader, control client or peer that goes away must
 * not kill the VM.
 *
 * The role's part: daemon_new, then its own set-up on daemon_base and
 * daemon_control, daemon_set_vm when it has the VM, daemon_run; from its
 * callbacks, daemon_exit(d, status) when the process is done; then it
 * frees what it made and calls daemon_free.  daemon_run ends only once a
 * checkpoint being written has ended ("drain, then free"), so the VM is
 * never destroyed under it.
 */
#ifndef FTVM_DAEMON_DAEMON_H
#define FTVM_DAEMON_DAEMON_H

#include <stddef.h>

#include "daemon/control.h"
#include "daemon/metrics.h"
#include "daemon/vmctl.h"
#include "vm/vm.h"

struct event_base;

typedef struct daemon_opts {
    /*
     * "run", "restore", "primary", "secondary": the control socket's
     * greeting, status's "role" and ftvm_build_info's.
     */
    const char *role;
    const char *control;        /* --control PATH, or NULL */
    const char *metrics;        /* --metrics ADDR:PORT, or NULL */
    /* Checkpoints to disk and the role's hooks (role is set from above). */
    vmctl_opts vmctl;
    /*
     * SIGINT or SIGTERM arrived (each time; daemon_signal says the first).
     * NULL: the process exits with 128 + the signal.
     */
    void (*on_signal)(void *opaque, int signo);
    /*
     * The role's metric families, after the process's and the VM's
     * (vmctl_metrics).  NULL: none.
     */
    metrics_collect_fn collect;
    void *opaque;
} daemon_opts;

typedef struct daemon_process daemon_process;

/*
 * The loop, signals, the control socket and the VM control commands,
 * metrics.  0, or -errno with a message naming what failed.
 */
int daemon_new(daemon_process **out, const daemon_opts *o, char *err,
               size_t errlen);
struct event_base *daemon_base(daemon_process *d);
/* The control socket, or NULL without --control: register commands on it. */
control_server *daemon_control(daemon_process *d);
vmctl *daemon_vmctl(daemon_process *d);
/*
 * Gives the process its VM (from the loop's thread): the control commands
 * reach it, and daemon_free destroys it, after a checkpoint of it ended.
 */
void daemon_set_vm(daemon_process *d, vm *v);
/* The first SIGINT or SIGTERM that arrived, or 0. */
int daemon_signal(const daemon_process *d);
/* Ends daemon_run with status (the last call's counts). */
void daemon_exit(daemon_process *d, int status);
/* Runs the loop until daemon_exit, then drains; returns the status. */
int daemon_run(daemon_process *d);
/*
 * Frees the loop's parts and the VM.  The role frees first what it put on
 * the loop or what uses the VM (a replicator, a receiver).
 */
void daemon_free(daemon_process *d);

#endif
