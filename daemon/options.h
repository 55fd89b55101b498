/*
 * options: the command lines of every ftvm command, one rule for all.
 *
 * GNU style: options may come anywhere; the arguments that are not
 * options are the operands, in order (for run and primary: the guest
 * image, then the guest's arguments); `--` ends the options, so that
 * everything after it is an operand even if it begins with '-'.  A lone
 * '-' is an operand (stdin, for inspect).
 *
 * A command describes its own options as a table (a name, what kind of
 * value, where it goes) and points at the groups it shares with others;
 * this module parses all of them, with the same messages everywhere
 * ("ftvm run: --keep 'x': expected ..."), and prints --help: the
 * command's text, then the groups' own, then the rule above.  Messages
 * go through daemon/log.h, so main sets who speaks first.
 */
#ifndef FTVM_DAEMON_OPTIONS_H
#define FTVM_DAEMON_OPTIONS_H

#include <stdbool.h>
#include <stdint.h>

#include "daemon/daemon.h"
#include "vm/vm.h"

/*
 * --mem --vcpus --net --mac --compress --disk: the VM's shape; and, for a
 * command with kernel_ok, --kernel --initrd --cmdline: a Linux guest
 * (cfg.machine VM_MACHINE_PC) instead of a guest image.
 */
typedef struct options_vm {
    vm_config cfg;
    bool mem_given;         /* --mem was on the command line */
    const char *kernel;     /* --kernel: a bzImage, or NULL */
    const char *initrd;     /* --initrd, or NULL */
    const char *cmdline;    /* --cmdline, or NULL */
    /* --disk FILE[,readonly]: parsed here, opened by guest_open_disk. */
    bool has_disk;
    disk_spec disk;
} options_vm;

typedef enum options_kind {
    OPTIONS_FLAG,           /* no value; value is a bool * */
    OPTIONS_STRING,         /* value is a const char ** */
    OPTIONS_DURATION,       /* "50ms", "2s"; value is a uint64_t * (ns) */
} options_kind;

/* One of a command's own options. */
typedef struct options_own {
    const char *name;       /* the long name, without "--" */
    char letter;            /* a short name too, or 0 */
    options_kind kind;
    void *value;
} options_own;

typedef enum options_operands {
    OPTIONS_NO_OPERANDS,
    OPTIONS_ONE_OPERAND,        /* a file */
    OPTIONS_IMAGE_AND_ARGS,     /* a guest image, then the guest's arguments */
} options_operands;

typedef struct options_command {
    /* --help: the usage line and what the command does, its own options. */
    const char *help;
    /* --help, after the groups: exit statuses and the like; or NULL. */
    const char *help_end;
    options_operands operands;
    const char *operand;        /* what the first is, for messages */
    const options_own *own;     /* ends with a NULL name; or NULL */
    /* The groups the command takes; NULL for one it does not. */
    options_vm *vm;                 /* --mem --vcpus --net --mac --compress */
    /*
     * The command boots Linux kernels (--kernel instead of a guest image);
     * without it, --kernel is refused (restore and the secondary take the
     * machine from what they load).
     */
    bool kernel_ok;
    daemon_opts *process;           /* --control --metrics */
    vmctl_opts *checkpoints;        /* --checkpoint-dir --checkpoint-every
                                       --keep */
} options_command;

typedef struct options_found {
    bool help;              /* --help was given (and printed): exit 0 */
    const char *operand;    /* the first operand, or NULL */
    /* IMAGE_AND_ARGS: the guest's arguments joined by spaces (malloc'd). */
    char *guest_args;
} options_found;

/*
 * Parses argv (argv[0] is the command's name) into the command's tables
 * and groups; the groups' defaults are set first.  0, or -EINVAL after a
 * message (exit with EXITCODE_USAGE).  Free found->guest_args.
 */
int options_parse(const options_command *c, int argc, char **argv,
                  options_found *found);

#endif
