/*
 * connection: the secondary's end of the replication socket, apart from
 * what the stream says: the return path's writers and the primary's
 * liveness (docs/replication.md, "Heartbeats and failure detection").
 *
 * The receiver thread reads the stream from connection_input and answers
 * ACK, NACK and SHUT on the return path, blocking if it must.  The event
 * loop's thread sends a HEARTBEAT whenever nothing else went out for the
 * heartbeat interval, and declares the primary dead when nothing has
 * arrived from it for the failure timeout.  Arrival is the kernel's
 * (TCP_INFO's last data received), so that a large package arriving slowly
 * counts as life even though the loader reads it in one call; time spent
 * busy (validating and applying a package, creating the VM), while the
 * receiver thread does not read, never counts as silence.
 *
 * Locks: the return path's writers (PONG, ACK, NACK and SHUT on the
 * receiver thread, HEARTBEAT and a closing SHUT on the loop's) take one
 * mutex; the loop only ever tries it and writes without blocking, so a
 * primary that stops reading can never stall the loop and its failure
 * timer.
 *
 * Time is read from the clock of connection_opts (CLOCK_MONOTONIC unless
 * a test injects its own); the timers that run the checks are libevent's.
 */
#ifndef FTVM_SECONDARY_CONNECTION_H
#define FTVM_SECONDARY_CONNECTION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "checkpoint/pairing.h"
#include "checkpoint/qfile.h"
#include "checkpoint/retpath.h"
#include "checkpoint/savevm.h"

struct event_base;

typedef struct connection connection;

/* Whether the connection is still open, and who ended it if not. */
typedef enum connection_state {
    CONNECTION_OPEN,
    CONNECTION_SILENT,  /* nothing from the primary for the failure timeout */
    CONNECTION_UNREAD,  /* the primary leaves its return path unread */
    CONNECTION_CLOSED,  /* this side ended it (connection_close) */
    CONNECTION_IDLE,    /* no progress beyond PINGs during the setup */
} connection_state;

typedef struct connection_opts {
    uint64_t failure_timeout_ns;
    uint64_t heartbeat_ns;
    /*
     * fd is a TLS pump's plaintext end (daemon/tlspump.h) and tcp_fd the
     * TCP socket under it (the connection's, closed with it): the kernel's
     * view of arrival and of the return path's backlog is that socket's.
     */
    bool pumped;
    int tcp_fd;
    /*
     * Until connection_established: a record other than PING at least
     * this often (time busy excepted), or the peer is dropped
     * (CONNECTION_IDLE).  PINGs prove a process alive, not that it is
     * a primary bringing a VM up: alone they would hold the only
     * connection slot forever.  0: no such deadline.
     */
    uint64_t setup_timeout_ns;
    /* Nanoseconds of a monotonic clock; NULL for vm/mono.h's. */
    uint64_t (*clock)(void);
} connection_opts;

/*
 * Takes over a connected socket (blocking from now on, TCP_NODELAY where
 * it applies; peer names it in every message) and starts the loop's
 * heartbeat and failure timers on base.  0, or -errno with a message
 * (fd is then closed).
 */
int connection_new(connection **out, struct event_base *base, int fd,
                   const char *peer, const connection_opts *o, char *err,
                   size_t errlen);
/* Stops the timers and closes the socket. */
void connection_free(connection *c);

const char *connection_peer(const connection *c);
/* The clock's time now, in ns. */
uint64_t connection_now(const connection *c);

/* ---- the receiver thread ---- */

/* Where the stream is read from. */
qfile *connection_input(connection *c);
/* Where a loader answers PING: fills return_path and its lock in lo. */
void connection_loader_opts(connection *c, savevm_loader_opts *lo);
/* OPEN_RETURN_PATH arrived: heartbeats and SHUT may go from now on. */
void connection_open_return_path(connection *c);
/*
 * These block while the return path is full; the loop never waits on
 * them.  SHUT goes only once the return path is open.
 */
void connection_send_ack(connection *c, uint64_t id, const pairing *pair);
void connection_send_nack(connection *c, uint64_t id, const pairing *pair,
                          const char *why);
/* REFUSE: this pairing is refused (decided: the witness's generation). */
void connection_send_refuse(connection *c, uint64_t decided,
                            const pairing *pair, const char *why);
void connection_send_shut(connection *c, uint32_t code);
/*
 * From the loop's thread: one return-path message (encoded here, with
 * retpath_put), without blocking.  1 taken (sent; or, when the socket
 * took only part of it, its end kept and written before anything else
 * goes out), 0 not now (nothing of it sent), < 0 not open or failed.
 */
int connection_try_send(connection *c, const retpath_msg *m);
/* Something else went out on the return path (the loader's PONG). */
void connection_sent(connection *c);
/* A record was read: the primary is alive. */
void connection_progress(connection *c);
/* ... and it was more than a PING: the setup moves on. */
void connection_useful(connection *c);
/* The first checkpoint is applied: the setup deadline no longer runs. */
void connection_established(connection *c);
/*
 * Busy: the receiver thread does not read for a while (a package being
 * validated and applied, the VM being created), and the silence check
 * waits.  Leaving it counts as progress.
 */
void connection_set_busy(connection *c, bool busy);
/* The peer learns that the stream is over; the fd stays ours. */
void connection_hang_up(connection *c);

/* ---- the loop's thread ---- */

/*
 * Ends replication from this side: sends SHUT code unless code < 0 (and
 * only once OPEN_RETURN_PATH arrived), then shuts the socket down, which
 * unblocks the receiver thread.  Only the first end counts (this, or one
 * of the checks below): true when this call ended it.
 */
bool connection_close(connection *c, int code);
/*
 * The failure check the loop runs (see connection_next_check): ends the
 * connection as CONNECTION_SILENT when nothing arrived for the timeout and
 * the receiver thread is not busy, or, before connection_established, as
 * CONNECTION_IDLE when nothing but PINGs came for the setup timeout.  True
 * when it did.
 */
bool connection_check_silence(connection *c);
/*
 * The ns until the loop should check again: when the failure timeout
 * would pass if nothing arrives (at least 1 ms), and at most a tenth of
 * the timeout (5 to 50 ms, which also paces the setup timeout's check);
 * 0 once the connection ended.
 */
uint64_t connection_next_check(connection *c);
/*
 * Sends a HEARTBEAT if the return path is open and nothing went out for
 * the heartbeat interval; a primary that leaves more than 256 KiB of it
 * unread ends the connection (CONNECTION_UNREAD).  Returns the ns until it
 * should run again (the heartbeat timer's next delay), or 0 once the
 * connection has ended.
 */
uint64_t connection_heartbeat(connection *c);

/* The stream is over: no more heartbeats or failure checks. */
void connection_stop_timers(connection *c);

/*
 * The state now; once ended, when (clock ns) and why in words (empty for
 * connection_close).  msg may be NULL.
 */
connection_state connection_get_state(connection *c, uint64_t *when_ns,
                                      char *msg, size_t msglen);
/* HEARTBEATs sent so far. */
uint64_t connection_heartbeats(connection *c);
/* Milliseconds since data last arrived, by the kernel's count; -1 unknown. */
int64_t connection_heard_ms(connection *c);

#endif
