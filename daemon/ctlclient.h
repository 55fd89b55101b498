/*
 * ctlclient: the client side of the control protocol
 * (docs/control-protocol.md), as ftvmctl speaks it: one request, its
 * reply printed for people (a table of dotted keys) or for scripts (the
 * result as JSON).
 */
#ifndef FTVM_DAEMON_CTLCLIENT_H
#define FTVM_DAEMON_CTLCLIENT_H

#include <stdbool.h>

/* The exit statuses of ctlclient_run, which are ftvmctl's. */
enum {
    CTLCLIENT_OK = 0,           /* the command succeeded */
    CTLCLIENT_REFUSED = 1,      /* the process answered with an error */
    CTLCLIENT_FAILED = 2,       /* bad arguments, no connection or reply */
};

/*
 * Sends cmd to the process listening on sock.  argv holds its arguments:
 * KEY=VALUE ("123" a number, "true"/"false" booleans, else a string), or
 * bare values for the commands whose arguments have names by position
 * (save FILE, set KEY VALUE, attach-secondary ADDRESS).  Prints the result
 * on stdout, an error on the log; returns one of the statuses above.
 */
int ctlclient_run(const char *sock, const char *cmd, int argc, char **argv,
                  bool as_json);

#endif
