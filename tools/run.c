/*
 * run and restore: `ftvm run [OPTIONS] GUEST.elf [GUEST ARGS...]` and
 * `ftvm restore [OPTIONS] CHECKPOINT`, one VM in a process
 * (daemon/vmrun.h).
 */
#include "tools/run.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/exitcode.h"
#include "daemon/log.h"
#include "daemon/options.h"
#include "daemon/parse.h"
#include "daemon/vmrun.h"
#include "vm/net.h"

static const char run_help[] =
    "usage: ftvm run [OPTIONS] GUEST.elf [GUEST ARGS...]\n"
    "Runs a guest image in a KVM virtual machine, its console on stdout,\n"
    "and exits with the status the guest halts with.\n";
static const char restore_help[] =
    "usage: ftvm restore [OPTIONS] CHECKPOINT\n"
    "Carries on a VM from a checkpoint file (ftvm run --checkpoint-dir,\n"
    "ftvmctl save): RAM size and vCPUs come from the file, which is\n"
    "checked in full before the VM runs; a --mem given must match it,\n"
    "and a VM with a NIC needs --net.\n";
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

/* ---- until ftvm primary and ftvm secondary are on daemon/ too ---- */

int run_parse_duration(const char *s, uint64_t *ns)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || v <= 0)
        return -EINVAL;
    double mult = 1e9;
    if (strcmp(end, "ms") == 0)
        mult = 1e6;
    else if (strcmp(end, "m") == 0 || strcmp(end, "min") == 0)
        mult = 60e9;
    else if (strcmp(end, "h") == 0)
        mult = 3600e9;
    else if (*end && strcmp(end, "s") != 0)
        return -EINVAL;
    if (v * mult < 1e6 || v * mult > 1e18)
        return -ERANGE;
    *ns = (uint64_t)(v * mult);
    return 0;
}

char *run_join_args(int argc, char **argv, const char *cmd)
{
    size_t len = 1;

    for (int i = 0; i < argc; i++) {
        if (argv[i][strcspn(argv[i], " \t\n")] != '\0' || !argv[i][0]) {
            fprintf(stderr, "%s: guest argument '%s' is empty or holds "
                    "white space, which the guest would split\n", cmd,
                    argv[i]);
            return NULL;
        }
        len += strlen(argv[i]) + 1;
    }
    char *line = calloc(1, len);
    for (int i = 0; line && i < argc; i++) {
        if (i)
            strcat(line, " ");
        strcat(line, argv[i]);
    }
    return line;
}

int run_vm_option(int opt, const char *arg, vm_config *cfg, const char *cmd)
{
    char *end;
    long n;
    switch (opt) {
    case 'm': {
        char why[160];
        if (parse_size(arg, &cfg->mem_size) < 0) {
            fprintf(stderr, "%s: --mem '%s': expected a size such as 256M "
                    "or 4G\n", cmd, arg);
            return RUN_EXIT_USAGE;
        }
        if (vm_check_mem_size(cfg->mem_size, why, sizeof(why)) < 0) {
            fprintf(stderr, "%s: --mem '%s': %s\n", cmd, arg, why);
            return RUN_EXIT_USAGE;
        }
        return 0;
    }
    case RUN_OPT_COMPRESS:
        n = strtol(arg, &end, 10);
        if (*end || end == arg || n < 0 || n > 9) {
            fprintf(stderr, "%s: --compress '%s': expected a zlib level 0 "
                    "to 9\n", cmd, arg);
            return RUN_EXIT_USAGE;
        }
        cfg->ram_opts.compress_level = (int)n;
        return 0;
    case RUN_OPT_VCPUS:
        n = strtol(arg, &end, 10);
        if (*end || end == arg || n < 1 || n > VM_MAX_VCPUS) {
            fprintf(stderr, "%s: --vcpus '%s': expected 1 to %d\n", cmd,
                    arg, VM_MAX_VCPUS);
            return RUN_EXIT_USAGE;
        }
        cfg->vcpus = (unsigned)n;
        return 0;
    case RUN_OPT_NET:
        cfg->net = arg;
        return 0;
    case RUN_OPT_MAC:
        if (net_parse_mac(arg, cfg->mac) < 0) {
            fprintf(stderr, "%s: --mac '%s': expected six hex bytes such as "
                    "02:00:00:00:00:01\n", cmd, arg);
            return RUN_EXIT_USAGE;
        }
        return 0;
    default:
        return 1;
    }
}

int run_exit_status(vm *v, int signal, const char *who)
{
    vm_stop_info si;

    vm_get_stop_info(v, &si);
    if (signal) {
        fprintf(stderr, "%s: stopped by %s\n", who, strsignal(signal));
        return RUN_EXIT_SIGNAL + signal;
    }
    switch (si.reason) {
    case VM_STOP_HALT:
        return si.status;
    case VM_STOP_REQUESTED:     /* ftvmctl quit */
        return 0;
    case VM_STOP_FAULT:
        fprintf(stderr, "%s\n", si.msg);
        return RUN_EXIT_FAULT;
    default:
        fprintf(stderr, "%s\n", si.msg[0] ? si.msg : "vm: stopped");
        return RUN_EXIT_ERROR;
    }
}
