/*
 * run: `ftvm run GUEST.elf [ARGS...]`, one guest in a VM with its console
 * on stdout, exiting with the guest's halt status.
 */
#ifndef FTVM_TOOLS_RUN_H
#define FTVM_TOOLS_RUN_H

#include <stdint.h>

#include "vm/vm.h"

/*
 * Exit statuses besides the guest's own (0..255, whatever it halts with;
 * these can collide with a guest's choice, so the message on stderr is
 * what tells them apart).
 */
enum {
    RUN_EXIT_USAGE = 2,         /* bad command line */
    RUN_EXIT_SETUP = 120,       /* no KVM, bad image, network backend */
    RUN_EXIT_FAULT = 121,       /* the guest broke the ABI or crashed */
    RUN_EXIT_ERROR = 122,       /* the monitor failed while running */
    RUN_EXIT_SIGNAL = 128,      /* + the signal that stopped it */
};

/* argv[0] is "run"; returns the exit status. */
int run_main(int argc, char **argv);
/* argv[0] is "restore": the same, from a checkpoint file. */
int restore_main(int argc, char **argv);

/*
 * Shared with `ftvm primary` and `ftvm secondary`, which run their VM the
 * same way.
 */

/*
 * The options that shape a VM, shared by the commands that boot one (run,
 * primary): put RUN_VM_LONGOPTS in a getopt_long table ("m:" in the short
 * ones), number further options from RUN_OPT_NEXT, and offer each option
 * to run_vm_option first.
 */
enum {
    RUN_OPT_VCPUS = 0x100, RUN_OPT_NET, RUN_OPT_MAC, RUN_OPT_COMPRESS,
    RUN_OPT_NEXT,
};
#define RUN_VM_LONGOPTS                                              \
    { "mem", required_argument, NULL, 'm' },                          \
    { "vcpus", required_argument, NULL, RUN_OPT_VCPUS },              \
    { "net", required_argument, NULL, RUN_OPT_NET },                  \
    { "mac", required_argument, NULL, RUN_OPT_MAC },                  \
    { "compress", required_argument, NULL, RUN_OPT_COMPRESS }
/*
 * Takes one of them into cfg: 0, RUN_EXIT_USAGE after a message naming
 * cmd ("ftvm run"), or 1 when opt is not one of them.
 */
int run_vm_option(int opt, const char *arg, vm_config *cfg, const char *cmd);
/*
 * The guest's command line from its arguments (malloc'd), or NULL after a
 * message: the guest splits on white space, so none may hold any.
 */
char *run_join_args(int argc, char **argv, const char *cmd);

/* "5s", "500ms", "2m", "1h", or a bare number of seconds: 0 or -errno. */
int run_parse_duration(const char *s, uint64_t *ns);
/*
 * The exit status once v has stopped (or signal, if nonzero, stopped
 * it), with the reason on stderr after who ("ftvm run").
 */
int run_exit_status(vm *v, int signal, const char *who);

#endif
