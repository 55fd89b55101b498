/*
 * etcd: an asynchronous client of etcd v3's JSON gateway (etcd 3.4's
 * /v3/ paths) on the owner's libevent loop, for the witness issue 9
 * describes.  Nothing here blocks the loop: every request is a POST over
 * libevent's HTTP client, and its callback runs later from the loop, never
 * from inside the call that made it.
 *
 * Both roles use it through witness/claim.h; docs/witness.md says what
 * exists and what is still to do.
 *
 * A client has one or more endpoints ("http://HOST:PORT[,...]", etcd's
 * client URLs; https:// ones with TLS credentials, witness/etcdtls.h).
 * Each request has a deadline (etcd_options.timeout_ms) and is tried on
 * one endpoint at a time, each attempt cut off after attempt_ms; a failed
 * attempt (refused, reset, cut off, a failed TLS handshake, an answer that
 * is an error, or not etcd's) moves on to the next endpoint while the
 * deadline allows.  The endpoint that last answered is tried first.
 *
 * The outcome of etcd_create_if_absent is one of three, and they must not
 * be confused (issue 9's fencing rests on it):
 *   ETCD_WON      etcd answered: the key now holds our value (this call put
 *                 it, or an earlier attempt of ours did: reply.earlier);
 *   ETCD_LOST     etcd answered: the key holds another value (the owner's,
 *                 in reply.value);
 *   ETCD_UNKNOWN  no answer from a quorum in time: the put may or may not
 *                 have happened.  Asking again with the same value is safe:
 *                 it answers WON if it had.
 * So a value must name its writer uniquely (two callers with one value
 * would both see WON).
 *
 * The process must ignore SIGPIPE, as ftvm's do (daemon/daemon.c): a
 * member that closes a connection while a request or a TLS handshake is
 * being written would otherwise kill it.
 */
#ifndef FTVM_WITNESS_ETCD_H
#define FTVM_WITNESS_ETCD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
struct evhttp_connection;
struct evhttp_request;
struct json_t;

#define ETCD_MAX_ENDPOINTS 16
#define ETCD_MAX_KEY 1024               /* bytes of a key we send */
#define ETCD_MAX_VALUE (64 * 1024)      /* bytes of a value, either way */
#define ETCD_MAX_BODY (1024 * 1024)     /* bytes of an answer's body */
#define ETCD_MAX_LIST 256               /* keys one etcd_list or
                                           etcd_range_keys returns */
#define ETCD_DEFAULT_TIMEOUT_MS 2000
#define ETCD_MAX_TIMEOUT_MS 600000

typedef struct etcd etcd;
typedef struct etcd_req etcd_req;

typedef enum etcd_outcome {
    ETCD_WON,
    ETCD_LOST,
    ETCD_UNKNOWN,
} etcd_outcome;

typedef enum etcd_status {
    ETCD_OK,            /* done as asked */
    ETCD_NOT_FOUND,     /* get: no such key; keepalive: no such lease */
    ETCD_FAILED,        /* no definite answer in time, or refused: err */
} etcd_status;

typedef struct etcd_options {
    unsigned timeout_ms;    /* a request's deadline; 0: the default */
    unsigned attempt_ms;    /* one endpoint's; 0: timeout_ms / endpoints */
    /*
     * TLS credentials for https:// endpoints (witness/etcdtls.h: ca.pem,
     * optionally cert.pem + key.pem), or NULL for http:// ones.
     */
    const char *tls_dir;
} etcd_options;

/* One key of etcd_list's answer. */
typedef struct etcd_kv {
    const char *key;            /* NUL-terminated (keys with NUL skipped) */
    const uint8_t *value;
    size_t value_len;
    int64_t mod_revision;       /* the key's last change */
    int64_t lease;              /* 0: none */
} etcd_kv;

typedef struct etcd_reply {
    etcd_status status;
    etcd_outcome outcome;       /* create_if_absent only (UNKNOWN: FAILED) */
    bool earlier;               /* WON by an earlier attempt of ours */
    const uint8_t *value;       /* get; create: the owner's (WON: ours) */
    size_t value_len;
    int64_t lease;              /* grant: the new lease; get: the key's */
    int64_t mod_revision;       /* get: the key's last change */
    int64_t ttl;                /* grant, keepalive: seconds left */
    int64_t revision;           /* the store's revision in the answer */
    const etcd_kv *kvs;         /* list, range_keys (no values): the
                                   keys, in key order */
    size_t nkvs;
    bool more;                  /* list, range_keys: keys beyond the limit */
    const char *endpoint;       /* who answered, or was tried last */
    const char *err;            /* FAILED: what went wrong ("" otherwise) */
} etcd_reply;

/* The reply is valid during the call only; the request is gone after it. */
typedef void (*etcd_cb)(void *opaque, const etcd_reply *reply);

/*
 * A client of the comma-separated endpoints, on base.  0, or -errno with
 * a message in err (a bad URL says which and why).
 */
int etcd_new(etcd **out, struct event_base *base, const char *endpoints,
             const etcd_options *opts, char *err, size_t errlen);
/* Cancels every pending request (their callbacks are not called). */
void etcd_free(etcd *c);
size_t etcd_endpoints(const etcd *c);

/*
 * Each request: a handle for etcd_cancel, or NULL with a message in err
 * for bad arguments (an empty or oversized key or value) or no memory; cb
 * is then never called.  Keys are NUL-terminated strings; values bytes.
 */

/* Puts key=value (under lease, 0 for none) only if key does not exist. */
etcd_req *etcd_create_if_absent(etcd *c, const char *key, const void *value,
                                size_t len, int64_t lease, etcd_cb cb,
                                void *opaque, char *err, size_t errlen);
/*
 * Puts key=value (under lease) only if the key's mod_revision is still
 * mod_revision, i.e. nobody changed or deleted it since it was read: the
 * outcome is WON (the key holds our value: this put, or an earlier
 * attempt of ours, reply.earlier), LOST (it changed: reply.value is its
 * value now, NULL when it is gone) or UNKNOWN.  As for create_if_absent,
 * value must name its writer uniquely.
 */
etcd_req *etcd_put_if_unchanged(etcd *c, const char *key,
                                int64_t mod_revision, const void *value,
                                size_t len, int64_t lease, etcd_cb cb,
                                void *opaque, char *err, size_t errlen);
/*
 * The keys that begin with prefix, at most limit (1 to ETCD_MAX_LIST) of
 * them in key order (reply.more: there are others), a linearizable read.
 */
etcd_req *etcd_list(etcd *c, const char *prefix, size_t limit, etcd_cb cb,
                    void *opaque, char *err, size_t errlen);
/* The value of key (a linearizable read: needs a quorum). */
etcd_req *etcd_get(etcd *c, const char *key, etcd_cb cb, void *opaque,
                   char *err, size_t errlen);
/*
 * The keys (no values: reply.kvs with empty values) in [from, end), or
 * (after) in (from, end): at most limit (1 to ETCD_MAX_LIST) of them in
 * key order, reply.more when there are others, read at revision (0: the latest; the answer's is in
 * reply.revision, for the next page) with a linearizable read.  Keys
 * holding a NUL are left out.
 */
etcd_req *etcd_range_keys(etcd *c, const char *from, bool after,
                          const char *end, size_t limit, int64_t revision,
                          etcd_cb cb, void *opaque, char *err, size_t errlen);
/* A new lease of ttl_s seconds (etcd may round it up to its minimum). */
etcd_req *etcd_lease_grant(etcd *c, int64_t ttl_s, etcd_cb cb, void *opaque,
                           char *err, size_t errlen);
/* Renews lease id once; NOT_FOUND when it has expired or never existed. */
etcd_req *etcd_lease_keepalive(etcd *c, int64_t id, etcd_cb cb, void *opaque,
                               char *err, size_t errlen);
/* Ends lease id and deletes its keys; NOT_FOUND when already gone. */
etcd_req *etcd_lease_revoke(etcd *c, int64_t id, etcd_cb cb, void *opaque,
                            char *err, size_t errlen);
/* Drops a pending request; its callback is not called. */
void etcd_cancel(etcd_req *r);

/*
 * For etcdwatch, which shares the client's loop and endpoints: the loop;
 * the endpoint that answered last; endpoint i's URL (i modulo their
 * number); the attempt cutoff; a new connection to endpoint i (NULL: no
 * memory); a POST of the JSON body to path on it, as evhttp_make_request
 * (its callbacks may run from inside, on a refused connection).
 */
struct event_base *etcd_base(const etcd *c);
size_t etcd_preferred(const etcd *c);
const char *etcd_endpoint_url(const etcd *c, size_t i);
unsigned etcd_attempt_ms(const etcd *c);
struct evhttp_connection *etcd_http_connect(etcd *c, size_t i);
int etcd_http_post(const etcd *c, size_t i, struct evhttp_connection *conn,
                   struct evhttp_request *hr, const char *path,
                   const char *body);
/*
 * Why conn's TLS failed, if it did and TLS knows ("" otherwise): for
 * messages that say more than "connection failed".
 */
void etcd_tls_failure(const etcd *c, struct evhttp_connection *conn,
                      char *buf, size_t len);

/*
 * An int64 as protobuf's JSON mapping writes it (a decimal string, or a
 * number; absent is 0, as zero values are left out): false if malformed.
 */
bool etcd_json_int64(struct json_t *j, int64_t *v);

const char *etcd_outcome_name(etcd_outcome o);
const char *etcd_status_name(etcd_status s);

#endif
