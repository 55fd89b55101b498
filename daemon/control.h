/*
 * control: the control socket of an ftvm process (run, primary, secondary).
 *
 * A UNIX stream socket, mode 0600, speaking one JSON object per line in
 * each direction, in the manner of QEMU's QMP.  On connect the server
 * greets:
 *
 *     {"ftvm": {"version": "0.1.0", "role": "run", "commands": [...]}}
 *
 * A request names a command and may carry arguments and an id, echoed in
 * the reply so that a client can pipeline:
 *
 *     {"cmd": "save", "args": {"file": "/var/lib/vm.ftvm"}, "id": 7}
 *     {"id": 7, "ok": true, "result": {...}}
 *     {"id": 7, "ok": false, "error": "save: /var/lib: No space left ..."}
 *
 * Handlers run on the event loop's thread.  One that cannot answer at once
 * (a save) keeps its request and answers it later with control_reply*, from
 * the loop's thread.  docs/control-protocol.md lists the commands.
 */
#ifndef FTVM_DAEMON_CONTROL_H
#define FTVM_DAEMON_CONTROL_H

#include <event2/event.h>
#include <jansson.h>
#include <stddef.h>

typedef struct control_server control_server;
typedef struct control_req control_req;

/* What a handler did with its request. */
typedef enum control_outcome {
    CONTROL_DONE,     /* *result (or err) is the answer */
    CONTROL_DEFERRED, /* the handler kept req and will call control_reply* */
} control_outcome;

/*
 * A command handler.  args is the request's "args" object (never NULL).
 * On success it sets *result (a new reference; NULL means {}) and returns
 * CONTROL_DONE with a zero *rc.  On failure it sets *rc to a negative errno
 * and writes a message for a person to err.
 */
typedef control_outcome (*control_fn)(void *opaque, control_req *req,
                                      json_t *args, json_t **result, int *rc,
                                      char *err, size_t errlen);

/*
 * Listens on path.  A stale socket left by a dead process is replaced; one
 * another process is listening on is refused (-EADDRINUSE).
 */
int control_server_new(control_server **out, struct event_base *base,
                       const char *path, const char *role, char *err,
                       size_t errlen);
/* Stops listening, closes connections, removes the socket file. */
void control_server_free(control_server *s);

/*
 * Adds a command; help is one line shown by the "help" command.  A name
 * registered again replaces the earlier handler (a role's own "status",
 * say, over the common one).
 */
int control_register(control_server *s, const char *name, const char *help,
                     control_fn fn, void *opaque);

/* Answers a deferred request (takes result's reference) and frees req. */
void control_reply(control_req *req, json_t *result);
void control_reply_error(control_req *req, int rc, const char *msg);

#endif
