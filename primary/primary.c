/*
 * primary: see primary.h.  The VM is created and booted with its console
 * through output commit (primary/protected_vm.h) before the loop exists;
 * then the replicator connects to the secondary and the vCPUs start, and
 * the loop carries signals, network input, the control socket, metrics
 * and replication.
 */
#include "primary/primary.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "daemon/exitcode.h"
#include "daemon/guest.h"
#include "daemon/log.h"
#include "primary/primary_ctl.h"
#include "primary/protected_vm.h"

typedef struct primary {
    daemon_process *d;
    vm *v;
    protected_vm *pv;
} primary;

static void on_signal(void *opaque, int signo)
{
    primary *pm = opaque;

    (void)signo;
    vm_stop(pm->v);
}

static replicator *rep(primary *pm)
{
    return protected_vm_replicator(pm->pv);
}

/* vmctl's hooks: the replicator exists before the first command runs. */
static void hook_status(void *opaque, json_t *result)
{
    primary_ctl_status(rep(opaque), result);
}

static void collect(void *opaque, metrics_writer *w)
{
    primary_ctl_metrics(rep(opaque), w);
}

static int hook_can_save(void *opaque, char *err, size_t errlen)
{
    return replicator_may_save(rep(opaque), err, errlen);
}

/*
 * Creates and boots the VM with its console and its NIC's output through
 * output commit.
 */
static int create_vm(primary *pm, primary_opts *o)
{
    char err[1024];

    if (protected_vm_new(&pm->pv) < 0) {
        log_msg("out of memory");
        return -ENOMEM;
    }
    if (o->vm.has_disk && o->vm.disk.readonly) {
        /* The secondary's copy is written by the stream: never readonly. */
        log_msg("--disk %s,readonly: a replicated disk is written by its "
                "secondary's copy; give it without readonly",
                o->vm.disk.path);
        return -EINVAL;
    }
    protected_vm_route(pm->pv, &o->vm.cfg);
    guest_config(&o->vm.cfg);
    int r = guest_open_disk(&o->vm, err, sizeof(err));
    if (r == 0)
        r = vm_create(&pm->v, &o->vm.cfg, err, sizeof(err));
    if (r == 0) {
        protected_vm_use(pm->pv, pm->v);
        r = guest_boot(pm->v, &o->vm, o->image, o->guest_args, err,
                       sizeof(err));
    }
    if (r < 0) {
        log_msg("%s", err);
        return r;
    }
    o->rep.shape = (vmshape){ .mem_size = o->vm.cfg.mem_size,
                              .vcpus = o->vm.cfg.vcpus,
                              .has_net = vm_net(pm->v) != NULL,
                              .machine = (uint8_t)o->vm.cfg.machine,
                              .disk_size = o->vm.cfg.disk
                                               ? disk_size(o->vm.cfg.disk)
                                               : 0 };
    memcpy(o->rep.shape.mac, o->vm.cfg.mac, 6);
    /* The pairing id is drawn for each secondary (replicator.c). */
    if (o->vm_name)
        snprintf(o->rep.shape.pair.name, sizeof(o->rep.shape.pair.name),
                 "%s", o->vm_name);
    else
        pairing_default_name(o->vm.kernel ? o->vm.kernel : o->image,
                             o->rep.shape.pair.name);
    return 0;
}

static int run_vm(primary *pm);

/* The witness said which generations are decided: pair, then run. */
static void on_generations(void *opaque)
{
    primary *pm = opaque;
    if (run_vm(pm) < 0)
        daemon_exit(pm->d, EXITCODE_SETUP);
}

/* Replication, the control commands, the vCPUs: 0 or -errno (logged). */
static int start(primary *pm, primary_opts *o)
{
    char err[1024];
    int r;

    daemon_set_vm(pm->d, pm->v);
    if (vm_attach(pm->v, daemon_base(pm->d), protected_vm_on_stop,
                  pm->pv) < 0) {
        log_msg("cannot put the VM on the event loop");
        return -ENOMEM;
    }
    r = protected_vm_protect(pm->pv, pm->d, &o->rep, err, sizeof(err));
    if (r < 0) {
        log_msg("%s", err);
        return r;
    }
    if (daemon_control(pm->d) &&
        (r = primary_ctl_register(daemon_control(pm->d), rep(pm))) < 0) {
        log_msg("cannot register the control commands: %s", strerror(-r));
        return r;
    }
    if (!o->rep.witness)
        return run_vm(pm);
    r = replicator_read_generations(rep(pm), on_generations, pm, err,
                                    sizeof(err));
    if (r < 0)
        log_msg("%s", err);
    return r;
}

/* Connects to the secondary, then starts the vCPUs: 0 or -errno (logged). */
static int run_vm(primary *pm)
{
    char err[1024];
    int r = replicator_start(rep(pm), err, sizeof(err));
    if (r == -EPERM) {
        log_msg("%s", err);
        return r;
    }
    if (r < 0) {
        log_msg("%s (start the secondary first, or give --reconnect TIME "
                "to start unprotected and keep trying)", err);
        return r;
    }
    r = vm_start(pm->v, err, sizeof(err));
    if (r < 0)
        log_msg("%s", err);
    return r;
}

int primary_run(primary_opts *o)
{
    primary pm = { 0 };
    char err[1024];

    if (create_vm(&pm, o) < 0) {
        vm_destroy(pm.v);
        protected_vm_free(pm.pv);
        guest_close_disk(&o->vm);
        return EXITCODE_SETUP;
    }
    vmctl_hooks hooks = { .opaque = &pm, .status = hook_status,
                          .can_save = hook_can_save };
    o->process.role = "primary";
    o->process.collect = collect;
    o->process.vmctl.hooks = &hooks;
    o->process.on_signal = on_signal;
    o->process.opaque = &pm;
    int status = EXITCODE_SETUP;
    if (daemon_new(&pm.d, &o->process, err, sizeof(err)) < 0) {
        log_msg("%s", err);
        vm_destroy(pm.v);
    } else if (start(&pm, o) == 0) {
        status = daemon_run(pm.d);
    }
    protected_vm_end(pm.pv);
    daemon_free(pm.d);
    protected_vm_free(pm.pv);
    guest_close_disk(&o->vm);
    return status;
}
