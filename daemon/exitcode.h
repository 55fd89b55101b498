/*
 * exitcode: the exit statuses every ftvm process shares.
 *
 * A process that runs a guest exits with the guest's halt status
 * (0..255, whatever the guest halts with) when the guest ends it; the
 * statuses below can collide with a guest's choice, so the message on
 * stderr is what tells them apart.  A role may add its own below 120
 * (the secondary's 3, 4, 5 and 6: 5 "the witness gave the VM to the
 * primary (fenced)", 6 "the primary dropped this secondary" (ftvm-drop):
 * secondary/standby.h).
 */
#ifndef FTVM_DAEMON_EXITCODE_H
#define FTVM_DAEMON_EXITCODE_H

#include "vm/vm.h"

enum {
    EXITCODE_OK = 0,
    EXITCODE_USAGE = 2,         /* bad command line */
    EXITCODE_SETUP = 120,       /* no KVM, bad image, network, sockets;
                                   a primary never protected (no
                                   --reconnect) */
    EXITCODE_FAULT = 121,       /* the guest broke the ABI or crashed */
    EXITCODE_ERROR = 122,       /* the monitor failed while running */
    EXITCODE_FENCED = 123,      /* a primary: the witness gave the VM to
                                   the secondary; this copy stopped
                                   without releasing its output */
    EXITCODE_SIGNAL = 128,      /* + the signal that stopped it */
};

/*
 * The exit status once v has stopped, or once signal (if nonzero) stopped
 * it, with the reason on the log.
 */
int exitcode_vm(vm *v, int signal);

#endif
