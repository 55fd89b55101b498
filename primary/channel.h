/*
 * channel: one TCP connection from the primary to a secondary, and the
 * sender thread that writes the stream to it.
 *
 * Everything that can block on the network happens on the link's thread:
 * connecting, the bring-up (which the owner writes through channel_write from
 * its bringup callback), and every package and the final EOF the owner
 * queues.  The owner's event-loop thread never waits on the peer:
 * it queues and returns, and reads the return path without blocking
 * (return-path messages are small; the socket stays blocking for the
 * thread and reads use MSG_DONTWAIT).  Writes use MSG_NOSIGNAL, so a peer
 * that resets the connection is an error, not a SIGPIPE.
 *
 * Heartbeats: a third thread, the link's heartbeat thread, writes a PING
 * (nine bytes, between two records, never waiting for the peer) whenever
 * nothing went out for the heartbeat interval.  Neither other thread can
 * be trusted to keep the line from going quiet: the owner's loop builds
 * and seals each package in one go (a full one copies and sums all of the
 * guest's RAM: hundreds of ms for 64 MiB on a slow machine, seconds for
 * GiBs), and the sender thread is idle meanwhile, or itself busy
 * encoding a bring-up pass.  A secondary whose failure timeout expired
 * during such a build would fail over from a healthy primary.  So the
 * PINGs say that the primary's process and the link are alive; that its
 * checkpoints keep coming is what the packages themselves show.
 *
 * Records (channel_send_record): whole top-level records other than
 * packages (COLO's "ftvm-colo-in" frames, vm/colosec.h), queued in order
 * with the packages and written whole under the same lock, so that no
 * PING falls inside one.  At most CHANNEL_RECORDS_MAX bytes of them wait
 * unwritten: a secondary that reads slowly makes the owner drop records,
 * never allocate without bound.
 *
 * Life: channel_new starts the thread; the owner is told (on its loop
 * thread) when the bring-up is done (on_ready), of each return-path
 * message (on_msg), of each package written (on_sent), and when the link
 * failed (on_down).  It ends a link with channel_finish (EOF, then close) or
 * channel_shutdown (at once), and frees it with channel_free, in on_exit or at
 * any time after channel_shutdown (channel_free joins the thread, which a
 * shut-down socket releases promptly).  Callbacks stop after channel_shutdown
 * and channel_finish, except on_sent (to hand back every package) and on_exit.
 */
#ifndef FTVM_PRIMARY_CHANNEL_H
#define FTVM_PRIMARY_CHANNEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "checkpoint/qfile.h"
#include "checkpoint/retpath.h"
#include "daemon/tls.h"

struct event_base;

typedef struct channel channel;

typedef struct channel_ops {
    /*
     * On the link's thread, once connected: writes the bring-up with
     * channel_write.  0, or -errno with a message in err.
     */
    int (*bringup)(void *opaque, channel *l, char *err, size_t errlen);
    /* The bring-up is written; packages may be queued. */
    void (*on_ready)(void *opaque, channel *l);
    void (*on_msg)(void *opaque, channel *l, const retpath_msg *m);
    /*
     * A queued package is written (sent_ns, CLOCK_MONOTONIC) or, when the
     * link went down first, dropped (sent_ns 0).  pkg is handed back.
     */
    void (*on_sent)(void *opaque, channel *l, uint64_t id, qfile *pkg,
                    uint64_t sent_ns);
    /*
     * The link failed: connecting, writing, or reading (the peer closed
     * or reset, or sent what is not a return-path message).  why names
     * the peer.
     */
    void (*on_down)(void *opaque, channel *l, int rc, const char *why);
    /* The thread has ended; the owner may channel_free(l) now and must not
     * touch l after. */
    void (*on_exit)(void *opaque, channel *l);
} channel_ops;

/*
 * Starts a link to addr: over fd when it is >= 0 (already connected, now
 * the link's), else connecting on the thread.  With tls, the thread first
 * runs the TLS handshake (the secondary's certificate must name the host
 * of addr unless tls pins another name) and the link then carries its
 * plaintext through a pump (daemon/tlspump.h).  0, or -errno + message.
 */
int channel_new(channel **out, struct event_base *base, const char *addr,
                int fd, int connect_timeout_ms, tls_ctx *tls,
                const channel_ops *ops, void *opaque, char *err,
                size_t errlen);
/* Ends the link at once and joins its thread; NULL is a no-op. */
void channel_free(channel *l);

const char *channel_addr(const channel *l);

/* On the link's thread, from bringup: 0, or -errno with a message. */
int channel_write(channel *l, const void *buf, size_t len, char *err,
                  size_t errlen);

/*
 * Queues, on the loop thread.  A package is one nested stream (it goes
 * out as COMMAND PACKAGED); the link holds pkg until on_sent.
 */
void channel_send_package(channel *l, uint64_t id, qfile *pkg);

/* The most bytes of records queued and not yet written (4 MiB). */
#define CHANNEL_RECORDS_MAX (4u << 20)
/*
 * Queues, on the loop thread, a copy of len bytes of whole records (one
 * "ftvm-colo-in" section, say: nothing of the framing is added) after
 * everything queued so far; the thread writes them whole, between two
 * records of its own.  Records queued before the bring-up is done wait
 * for it and go out after it, in order.  There is no on_sent for them.
 * 0; -ENOBUFS when they would take the bytes queued unwritten past
 * CHANNEL_RECORDS_MAX (the caller drops them, and counts that); -ECANCELED
 * after channel_finish or channel_shutdown, or once the link failed;
 * -EINVAL for len 0; -ENOMEM.
 */
int channel_send_record(channel *l, const void *buf, size_t len);
/*
 * The heartbeat interval (0: none), on the loop thread, at any time: a
 * PING goes out whenever the link wrote nothing for that long, once the
 * stream's header went out and until channel_finish or channel_shutdown.
 * A full socket buffer (a record being written, or the peer not reading)
 * skips it: that is traffic enough, or the stall checks' business.
 */
void channel_set_heartbeat(channel *l, uint64_t interval_ns);
/*
 * Writes what is queued, then notice (len bytes of whole records, copied;
 * NULL for none) and EOF as one write, then closes; if that takes longer
 * than timeout_ns (a stalled peer) the socket is shut down.
 */
void channel_finish(channel *l, uint64_t timeout_ns, const void *notice,
                    size_t len);
/* Shuts the socket down now: the thread stops at its next write. */
void channel_shutdown(channel *l);

typedef struct channel_times {
    uint64_t last_recv_ns;  /* last return-path bytes (or connect) */
    bool busy;              /* the thread has bytes to write */
    uint64_t progress_ns;   /* ... and last wrote some at */
    uint64_t pings;         /* PINGs written */
    uint64_t sending;       /* the last package whose write began */
    /* channel_send_record's: written (whole), and bytes still queued */
    uint64_t records, record_bytes;
    uint64_t records_queued_bytes;
} channel_times;
void channel_get_times(channel *l, channel_times *out);
/*
 * How long, at most, this process may have sent nothing on the link
 * because it did not run, since the last call (which it resets): how late
 * the heartbeat thread woke, or how long it has not woken beyond its
 * interval.  While the heartbeat thread is late, the secondary hears
 * nothing; past its failure timeout it may have taken over, so return-
 * path messages read after such a stall may be older than that takeover.
 * 0 without heartbeats.
 */
uint64_t channel_take_stall(channel *l, uint64_t now_ns);

#endif
