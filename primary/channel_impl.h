/*
 * channel_impl: the inside of struct channel, shared by channel.c (the loop's
 * side: the API, reading the return path, hearing from the thread) and
 * channel_thread.c (the sender thread).  Not for other modules.
 *
 * Locking: lock guards the queue, the done list, the flags, fd and the
 * heartbeat interval; send_lock is held across each record written to the
 * socket; the times and counts are atomics.  cond wakes the sender thread,
 * hb_cond (on CLOCK_MONOTONIC) the heartbeat thread.
 */
#ifndef FTVM_PRIMARY_CHANNEL_IMPL_H
#define FTVM_PRIMARY_CHANNEL_IMPL_H

#include <event2/event.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "primary/channel.h"

#define RX_BUF (4 * (RETPATH_MSG_MAX + 16))

typedef enum item_kind { IT_PACKAGE, IT_RECORD, IT_EOF } item_kind;

typedef struct item {
    struct item *next;
    item_kind kind;
    uint64_t id;
    qfile *pkg;
    uint64_t sent_ns;
    uint8_t hdr[16];        /* the record's framing, before pkg's bytes */
    size_t hdr_len;
    /*
     * RECORD: its bytes; EOF: the records before it, or NULL (malloc'd).
     */
    uint8_t *bytes;
    size_t bytes_len;
} item;

struct channel {
    struct event_base *base;
    char addr[256];
    int connect_timeout_ms;
    tls_ctx *tls;           /* NULL: plaintext */
    channel_ops ops;
    void *opaque;
    pthread_t thread, hb_thread;
    bool thread_started, hb_started;
    struct event *ev_wake, *ev_read, *ev_finish;
    bool read_added;
    bool heard;             /* the secondary has said something */
    qfile *framer;          /* encodes records' framing (loop thread) */
    qfile *hb_framer;       /* encodes PINGs (heartbeat thread) */

    pthread_mutex_t lock;
    pthread_cond_t cond;
    pthread_cond_t hb_cond;
    uint64_t heartbeat_ns;  /* 0: no PINGs */
    /*
     * Held across each record written, so that a PING from the heartbeat
     * thread falls between records, never inside one.
     */
    pthread_mutex_t send_lock;
    int fd;
    item *head, **tail;     /* queued for the thread */
    item *done;             /* written, to hand back (newest first) */
    bool connected, ready, failed, exited;
    bool told_ready, told_failed;
    bool closing;   /* channel_shutdown: stop at once */
    bool finishing; /* channel_finish: EOF is queued */
    int fail_rc;
    char fail_msg[512];

    /* Written by the thread, read by channel_get_times (atomics). */
    uint64_t last_recv_ns, last_sent_ns, progress_ns, bytes_sent;
    uint64_t pings;         /* written by the heartbeat thread */
    /*
     * The heartbeat thread's own wake-ups (CLOCK_MONOTONIC): the last,
     * and the most it woke late since channel_take_stall last looked.
     * A thread that wakes seconds late was not running, and neither was
     * anything else that could have kept the line from going quiet
     * (SIGSTOP, a host that froze the process).
     */
    uint64_t hb_wake_ns, hb_late_ns;
    uint64_t sending;       /* the last package whose write began */
    bool busy;
    /* Records: bytes queued unwritten (under lock); written (atomics). */
    size_t rec_queued;
    uint64_t rec_sent, rec_bytes_sent;

    uint8_t rx[RX_BUF];
    size_t rx_len;
};

/* channel.c */
/* From the thread: tells the loop something changed. */
void channel_wake(channel *l);

/* channel_thread.c */
void *channel_thread_main(void *arg);
void *channel_heartbeat_main(void *arg);
/* Writes all of iov (send_lock held).  0, or -errno with a message. */
int channel_send_iov(channel *l, struct iovec *iov, int n, char *err,
                     size_t errlen);

#endif
