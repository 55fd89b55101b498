/*
 * link: one TCP connection from the primary to a secondary, and the
 * sender thread that writes the stream to it.
 *
 * Everything that can block on the network happens on the link's thread:
 * connecting, the bring-up (which the owner writes through lnk_write from
 * its bringup callback), and every package and the final EOF the owner
 * queues; only a PING, nine bytes, is written from the loop, and never
 * waits.  The owner's event-loop thread never waits on the peer:
 * it queues and returns, and reads the return path without blocking
 * (return-path messages are small; the socket stays blocking for the
 * thread and reads use MSG_DONTWAIT).  Writes use MSG_NOSIGNAL, so a peer
 * that resets the connection is an error, not a SIGPIPE.
 *
 * Life: lnk_new starts the thread; the owner is told (on its loop
 * thread) when the bring-up is done (on_ready), of each return-path
 * message (on_msg), of each package written (on_sent), and when the link
 * failed (on_down).  It ends a link with lnk_finish (EOF, then close) or
 * lnk_shutdown (at once), and frees it with lnk_free, in on_exit or at any
 * time after lnk_shutdown (lnk_free joins the thread, which a shut-down
 * socket releases promptly).  Callbacks stop after lnk_shutdown and
 * lnk_finish, except on_sent (to hand back every package) and on_exit.
 */
#ifndef FTVM_PRIMARY_LINK_H
#define FTVM_PRIMARY_LINK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "checkpoint/qfile.h"
#include "checkpoint/retpath.h"

struct event_base;

typedef struct lnk lnk;

typedef struct lnk_ops {
    /*
     * On the link's thread, once connected: writes the bring-up with
     * lnk_write.  0, or -errno with a message in err.
     */
    int (*bringup)(void *opaque, lnk *l, char *err, size_t errlen);
    /* The bring-up is written; packages may be queued. */
    void (*on_ready)(void *opaque, lnk *l);
    void (*on_msg)(void *opaque, lnk *l, const rp_msg *m);
    /*
     * A queued package is written (sent_ns, CLOCK_MONOTONIC) or, when the
     * link went down first, dropped (sent_ns 0).  pkg is handed back.
     */
    void (*on_sent)(void *opaque, lnk *l, uint64_t id, qfile *pkg,
                    uint64_t sent_ns);
    /*
     * The link failed: connecting, writing, or reading (the peer closed
     * or reset, or sent what is not a return-path message).  why names
     * the peer.
     */
    void (*on_down)(void *opaque, lnk *l, int rc, const char *why);
    /* The thread has ended; the owner may lnk_free(l) now and must not
     * touch l after. */
    void (*on_exit)(void *opaque, lnk *l);
} lnk_ops;

/*
 * Starts a link to addr: over fd when it is >= 0 (already connected, now
 * the link's), else connecting on the thread.  0, or -errno + message.
 */
int lnk_new(lnk **out, struct event_base *base, const char *addr, int fd,
            int connect_timeout_ms, const lnk_ops *ops, void *opaque,
            char *err, size_t errlen);
/* Ends the link at once and joins its thread; NULL is a no-op. */
void lnk_free(lnk *l);

const char *lnk_addr(const lnk *l);

/* On the link's thread, from bringup: 0, or -errno with a message. */
int lnk_write(lnk *l, const void *buf, size_t len, char *err,
              size_t errlen);

/*
 * Queues, on the loop thread.  A package is one nested stream (it goes
 * out as COMMAND PACKAGED); the link holds pkg until on_sent.
 */
void lnk_send_package(lnk *l, uint64_t id, qfile *pkg);
/*
 * Writes PING value now, from the loop thread, unless the link's thread
 * is writing (which is traffic enough) or nothing was written yet (the
 * stream's header comes first).  Between two of the thread's records, so
 * also during the bring-up, whose passes over RAM can be silent for
 * longer than the peer's failure timeout.  Never waits for the peer: a
 * full socket buffer skips the PING.  Returns whether it was written.
 */
bool lnk_ping(lnk *l, uint32_t value);
/*
 * Writes what is queued and EOF, then closes; if that takes longer than
 * timeout_ns (a stalled peer) the socket is shut down.
 */
void lnk_finish(lnk *l, uint64_t timeout_ns);
/* Shuts the socket down now: the thread stops at its next write. */
void lnk_shutdown(lnk *l);

typedef struct lnk_times {
    uint64_t last_recv_ns;  /* last return-path bytes (or connect) */
    uint64_t last_sent_ns;  /* the thread last finished writing */
    bool busy;              /* the thread has bytes to write */
    uint64_t progress_ns;   /* ... and last wrote some at */
    uint64_t bytes_sent;
} lnk_times;
void lnk_get_times(lnk *l, lnk_times *out);

#endif
