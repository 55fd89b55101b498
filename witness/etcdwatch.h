/*
 * etcdwatch: a watch on a key prefix through etcd v3's JSON gateway
 * (POST /v3/watch, a long-lived chunked answer of one JSON message per
 * line), on an etcd client's loop and endpoints.
 *
 * Every put and delete under the prefix after the start revision is
 * delivered once, in revision order.  When the stream breaks (the member
 * died, closed it, or answered with an error) the watch says so and
 * starts again on the next endpoint from the revision after the last one
 * delivered, so nothing is lost or repeated across the break.  Until a
 * stream is created, each try is cut off after the client's attempt_ms.
 *
 * A created stream has no deadline: a quiet prefix and a stalled member
 * (SIGSTOP, a partition without resets) look the same from here.  A user
 * that must know the watch is live checks the cluster by other requests
 * (a keepalive) and restarts the watch when those fail.
 *
 * Not yet used by the primary or the secondary (docs/witness.md).
 */
#ifndef FTVM_WITNESS_ETCDWATCH_H
#define FTVM_WITNESS_ETCDWATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "witness/etcd.h"

/* A break in the stream waits this long before the next endpoint. */
#define ETCDWATCH_RETRY_MS 100

typedef struct etcdwatch etcdwatch;

typedef enum etcdwatch_type {
    ETCDWATCH_PUT,
    ETCDWATCH_DELETE,
} etcdwatch_type;

typedef struct etcdwatch_event {
    etcdwatch_type type;
    const uint8_t *key;         /* bytes, not NUL-terminated */
    size_t key_len;
    const uint8_t *value;       /* PUT only */
    size_t value_len;
    int64_t revision;           /* the event's mod_revision */
    int64_t lease;
} etcdwatch_event;

/* Valid during the call only.  The watch may be cancelled from here. */
typedef void (*etcdwatch_event_fn)(void *opaque, const etcdwatch_event *ev);
/*
 * A break (ended false: the watch carries on from the next endpoint), or
 * the end (ended true: history the watch needs was compacted away, or
 * etcd cancelled it; the watch is freed after this call returns).
 */
typedef void (*etcdwatch_error_fn)(void *opaque, bool ended,
                                   const char *err);

/*
 * Watches every key that begins with prefix, from start_revision (0: from
 * now).  A watch, or NULL with a message in err.  Cancel every watch
 * before freeing the client.
 */
etcdwatch *etcdwatch_new(etcd *c, const char *prefix, int64_t start_revision,
                         etcdwatch_event_fn on_event,
                         etcdwatch_error_fn on_error, void *opaque,
                         char *err, size_t errlen);
/* Ends the watch; no callback runs after this. */
void etcdwatch_cancel(etcdwatch *w);
/* Whether a stream is created now, and the URL of its endpoint. */
bool etcdwatch_live(const etcdwatch *w);
const char *etcdwatch_endpoint(const etcdwatch *w);

#endif
