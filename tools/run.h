/*
 * run: `ftvm run GUEST.elf [ARGS...]`, one guest in a VM with its console
 * on stdout, exiting with the guest's halt status.
 */
#ifndef FTVM_TOOLS_RUN_H
#define FTVM_TOOLS_RUN_H

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

#endif
