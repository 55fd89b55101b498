/*
 * vmrun: see vmrun.h.  The VM is created and booted (or loaded) before
 * the loop exists; the vCPU threads run the guest while the loop carries
 * signals, network input, the control socket and the VM's stop.
 */
#include "daemon/vmrun.h"

#include <errno.h>
#include <stdio.h>
#include <unistd.h>

#include "daemon/exitcode.h"
#include "daemon/guest.h"
#include "daemon/log.h"
#include "vm/restore.h"

typedef struct vmrun {
    daemon_process *d;
    vm *v;
} vmrun;

static void on_signal(void *opaque, int signo)
{
    vmrun *r = opaque;

    (void)signo;
    vm_stop(r->v);
}

static void on_stop(vm *v, void *arg)
{
    vmrun *r = arg;
    vm_stop_info si;

    /* A Linux guest's reset ends the VM with 0: say that it was one. */
    vm_get_stop_info(v, &si);
    if (vm_get_machine(v) == VM_MACHINE_PC && si.reason == VM_STOP_HALT &&
        !daemon_signal(r->d))
        log_msg("%s", si.msg);
    daemon_exit(r->d, exitcode_vm(v, daemon_signal(r->d)));
}

static char *fmt_size(uint64_t b, char *buf, size_t len)
{
    if (b % (1ull << 30) == 0)
        snprintf(buf, len, "%lluG", (unsigned long long)(b >> 30));
    else
        snprintf(buf, len, "%lluM", (unsigned long long)(b >> 20));
    return buf;
}

/* Shapes the VM after the checkpoint, creates it and loads it. */
static int restore_vm(vmrun_opts *o, vm **v, char *err, size_t errlen)
{
    restore_info info;
    int r = restore_probe(o->image, &info, err, errlen);
    if (r < 0)
        return r;
    char a[32], b[32];
    if (o->vm.mem_given && o->vm.cfg.mem_size != info.mem_size) {
        snprintf(err, errlen, "%s was saved from a VM with %s of RAM; "
                 "--mem %s differs", o->image,
                 fmt_size(info.mem_size, a, sizeof(a)),
                 fmt_size(o->vm.cfg.mem_size, b, sizeof(b)));
        return -EINVAL;
    }
    if (info.has_net && !o->vm.cfg.net) {
        snprintf(err, errlen, "%s holds a VM with a network device: give "
                 "--net (a TAP device or datagram socket to attach)",
                 o->image);
        return -EINVAL;
    }
    if (info.disk_size && !o->vm.has_disk) {
        snprintf(err, errlen, "%s holds a VM with a disk of %s: give --disk "
                 "FILE, where its image is written (created if missing)",
                 o->image, fmt_size(info.disk_size, a, sizeof(a)));
        return -EINVAL;
    }
    if (!info.disk_size && o->vm.has_disk) {
        snprintf(err, errlen, "%s holds a VM without a disk: --disk %.512s "
                 "would not be used", o->image, o->vm.disk.path);
        return -EINVAL;
    }
    if (o->vm.has_disk && o->vm.disk.readonly) {
        snprintf(err, errlen, "--disk %.512s,readonly: the restore writes the "
                 "saved image into it", o->vm.disk.path);
        return -EINVAL;
    }
    /* A delta's bases are all found and checked before the image is. */
    restore_chain chain = { 0 };
    if (info.disk_size &&
        (r = restore_chain_find(o->image, &info, &chain, err, errlen)) < 0)
        return r;
    if (info.disk_size &&
        (r = disk_open_resized(&o->vm.cfg.disk, o->vm.disk.path,
                               info.disk_size, VM_DISK_NAME, err,
                               errlen)) == 0)
        r = restore_chain_write(o->vm.cfg.disk, &chain, err, errlen);
    restore_chain_free(&chain);
    if (r < 0)
        return r;
    o->vm.cfg.mem_size = info.mem_size;
    o->vm.cfg.vcpus = info.vcpus;
    o->vm.cfg.machine = info.machine;
    guest_config(&o->vm.cfg);
    r = vm_create(v, &o->vm.cfg, err, errlen);
    if (r == 0)
        r = restore_load(*v, o->image, err, errlen);
    return r;
}

int vmrun_run(vmrun_opts *o)
{
    vmrun run = { 0 };
    char err[1024];
    int r;

    r = o->mode == VMRUN_BOOT ? guest_open_disk(&o->vm, err, sizeof(err)) : 0;
    if (r < 0) {
        log_msg("%s", err);
        return EXITCODE_SETUP;
    }
    if (o->mode == VMRUN_BOOT) {
        guest_config(&o->vm.cfg);
        r = vm_create(&run.v, &o->vm.cfg, err, sizeof(err));
        if (r == 0)
            r = guest_boot(run.v, &o->vm, o->image, o->guest_args, err,
                           sizeof(err));
    } else {
        r = restore_vm(o, &run.v, err, sizeof(err));
    }
    if (r < 0) {
        log_msg("%s", err);
        vm_destroy(run.v);
        guest_close_disk(&o->vm);
        return EXITCODE_SETUP;
    }
    o->process.role = o->mode == VMRUN_BOOT ? "run" : "restore";
    o->process.on_signal = on_signal;
    o->process.opaque = &run;
    if (daemon_new(&run.d, &o->process, err, sizeof(err)) < 0) {
        log_msg("%s", err);
        vm_destroy(run.v);
        guest_close_disk(&o->vm);
        return EXITCODE_SETUP;
    }
    daemon_set_vm(run.d, run.v);
    int status = EXITCODE_SETUP;
    if (vm_attach(run.v, daemon_base(run.d), on_stop, &run) < 0)
        log_msg("cannot put the VM on the event loop");
    else if (vm_start(run.v, err, sizeof(err)) < 0)
        log_msg("%s", err);
    else
        status = daemon_run(run.d);
    daemon_free(run.d);
    guest_close_disk(&o->vm);
    return status;
}
