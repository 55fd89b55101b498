/*
 * tls: mutual TLS 1.3 for the replication connection (docs/tls.md).
 *
 * Credentials come from a directory laid out as QEMU's tls-creds-x509
 * object wants it: ca.pem (the CA both ends trust), cert.pem (this node's
 * certificate, its chain after it) and key.pem.  Both ends present a
 * certificate and verify the other's against the CA; a peer name, when
 * given, must match the peer certificate's subjectAltName (DNS name or IP
 * address, checked by OpenSSL's X509_check_host / X509_check_ip during
 * verification, so that a mismatch is reported to the peer as a TLS
 * alert).  Only TLS 1.3; no session tickets (nothing is ever resumed).
 *
 * The handshake runs on a thread of its own, on a non-blocking socket with
 * a deadline; the SSL object it yields then belongs to daemon/tlspump.h.
 *
 * Without credentials, replication may run in clear only when asked for
 * (--insecure), and only on loopback: tls_loopback_addr and
 * tls_loopback_peer say whether an address is one.
 */
#ifndef FTVM_DAEMON_TLS_H
#define FTVM_DAEMON_TLS_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* How long a handshake may take, unless the caller says otherwise. */
#define TLS_HANDSHAKE_TIMEOUT_NS 5000000000ull

typedef enum tls_role {
    TLS_CLIENT,     /* the primary: it connects */
    TLS_SERVER,     /* the secondary: it accepts */
} tls_role;

/* The command-line settings: --tls-creds, --tls-peer, --insecure. */
typedef struct tls_opts {
    const char *creds;      /* the credentials directory, or NULL */
    const char *peer;       /* the name the peer's certificate must carry */
    bool insecure;          /* plaintext, loopback only */
} tls_opts;

typedef struct tls_ctx tls_ctx;

/* One handshaken connection's TLS state (an SSL object). */
typedef struct tls_session tls_session;

/*
 * Checks the settings for role: credentials, or --insecure, but not both
 * and not neither.  0, or -EINVAL with the message for the operator.
 */
int tls_opts_check(const tls_opts *o, char *err, size_t errlen);

/*
 * Loads the credentials of o->creds for role.  0, or -errno with a
 * message naming the file at fault.
 */
int tls_ctx_new(tls_ctx **out, tls_role role, const tls_opts *o, char *err,
                size_t errlen);
void tls_ctx_free(tls_ctx *c);

/*
 * Runs the handshake on the connected socket fd (made non-blocking) until
 * done, an error, the deadline (CLOCK_MONOTONIC ns), or *stop (read under
 * lock; stop may be NULL).  The peer's certificate must name the
 * context's --tls-peer, or else peer_name unless it is NULL (then any
 * certificate of the CA will do).  On success *out is the session (fd stays the caller's);
 * else -errno and a message naming who (e.g. "127.0.0.1:4000") that
 * says why: the verification's reason, the alert the peer sent, or that
 * the peer does not speak TLS.
 */
int tls_handshake(tls_ctx *c, int fd, const char *who, const char *peer_name,
                  uint64_t deadline_ns, const bool *stop,
                  pthread_mutex_t *lock, tls_session **out, char *err,
                  size_t errlen);
void tls_session_free(tls_session *s);

/* The SSL object (an SSL *), for daemon/tlspump.c. */
void *tls_session_ssl(tls_session *s);
/* What the session runs: "TLSv1.3 TLS_AES_128_GCM_SHA256, kernel TLS off". */
void tls_session_describe(tls_session *s, char *out, size_t outlen);
/*
 * Why an SSL call on s that returned ret failed, in words (the peer's
 * alert, its closing, ...); on the calling thread, right after the call.
 */
void tls_session_why(tls_session *s, int ret, char *out, size_t outlen);
/* The reason of the last TLS error on this thread, in words. */
void tls_last_error(char *out, size_t outlen);

/*
 * Whether host names only loopback addresses: a numeric one, or a name
 * every address of which is.  "" (every address) is not.
 */
bool tls_loopback_host(const char *host);
/* Whether HOST:PORT names only loopback addresses. */
bool tls_loopback_addr(const char *hostport);
/* Whether a peer's address is a loopback one. */
bool tls_loopback_peer(const struct sockaddr *sa);

#endif
