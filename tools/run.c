/*
 * run and restore: `ftvm run [OPTIONS] GUEST.elf [GUEST ARGS...]` and
 * `ftvm restore [OPTIONS] CHECKPOINT`, one VM in a process
 * (daemon/vmrun.h).
 */
#include "tools/run.h"

#include <stdlib.h>

#include "daemon/exitcode.h"
#include "daemon/log.h"
#include "daemon/options.h"
#include "daemon/vmrun.h"

static const char run_help[] =
    "usage: ftvm run [OPTIONS] GUEST.elf [GUEST ARGS...]\n"
    "       ftvm run [OPTIONS] --kernel BZIMAGE [--initrd FILE] "
    "[--cmdline STR]\n"
    "Runs a guest image in a KVM virtual machine, its console on stdout,\n"
    "and exits with the status the guest halts with; or boots a Linux\n"
    "kernel, its serial console on stdout, until it reboots (status 0).\n";
static const char restore_help[] =
    "usage: ftvm restore [OPTIONS] CHECKPOINT\n"
    "Carries on a VM from a checkpoint file (ftvm run --checkpoint-dir,\n"
    "ftvmctl save): RAM size and vCPUs come from the file, which is\n"
    "checked in full before the VM runs; a --mem given must match it,\n"
    "and a VM with a NIC needs --net.  A Linux VM's checkpoint (ftvm run\n"
    "--kernel) says so itself: no --kernel; its console input is stdin.\n";
static const char exit_help[] =
    "exit status: the guest's halt status (0..255), or\n"
    "  2    bad command line\n"
    "  120  the VM could not be set up (no /dev/kvm, bad image, ...)\n"
    "  121  the guest was stopped: it broke the hypercall ABI or\n"
    "       crashed (stderr says how)\n"
    "  122  the monitor failed while running the guest\n"
    "  128+N  stopped by signal N (SIGINT, SIGTERM)\n";

static int run_command(vmrun_mode mode, int argc, char **argv)
{
    vmrun_opts o = { .mode = mode };
    options_command c = {
        .help = mode == VMRUN_BOOT ? run_help : restore_help,
        .help_end = exit_help,
        .operands = mode == VMRUN_BOOT ? OPTIONS_IMAGE_AND_ARGS
                                       : OPTIONS_ONE_OPERAND,
        .operand = mode == VMRUN_BOOT ? "guest image" : "checkpoint file",
        .vm = &o.vm,
        .process = &o.process,
        .checkpoints = &o.process.vmctl,
        .kernel_ok = mode == VMRUN_BOOT,
    };
    options_found found;

    log_init(mode == VMRUN_BOOT ? "ftvm run" : "ftvm restore");
    if (options_parse(&c, argc, argv, &found) < 0)
        return EXITCODE_USAGE;
    if (found.help)
        return EXITCODE_OK;
    o.image = found.operand;
    o.guest_args = found.guest_args;
    int status = vmrun_run(&o);
    free(found.guest_args);
    return status;
}

int run_main(int argc, char **argv)
{
    return run_command(VMRUN_BOOT, argc, argv);
}

int restore_main(int argc, char **argv)
{
    return run_command(VMRUN_RESTORE, argc, argv);
}
