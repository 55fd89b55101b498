/*
 * tlsaccept: the gate between a listening socket and its owner: nothing
 * reaches the owner before its peer has completed the TLS handshake.
 *
 * Each accepted socket gets a handshake thread with a deadline; at most
 * TLSACCEPT_MAX handshakes run at once (more connections are refused at
 * once, with a message), so that peers who never finish a handshake can
 * hold neither the owner's single slot nor more than a fixed amount of
 * memory.  A handshake that succeeds becomes a pump (daemon/tlspump.h),
 * and the owner gets, on the loop's thread, the plaintext end and the TCP
 * socket under it.  The loop never waits on a handshake.
 *
 * Without a TLS context (--insecure) a connection passes at once, but only
 * from a loopback address.
 */
#ifndef FTVM_DAEMON_TLSACCEPT_H
#define FTVM_DAEMON_TLSACCEPT_H

#include <stddef.h>
#include <stdint.h>

#include "daemon/tls.h"

struct event_base;

#define TLSACCEPT_MAX 4

typedef struct tlsaccept tlsaccept;

/*
 * A connection ready for the owner, on the loop's thread: fd carries the
 * plaintext (the owner's, to keep or close); tcp_fd is the TCP socket
 * under it (also the owner's, for TCP_INFO), or -1 when fd is the socket
 * itself (--insecure).
 */
typedef void (*tlsaccept_fn)(void *opaque, int fd, int tcp_fd,
                             const char *peer);

/* ctx NULL: plaintext from loopback peers only.  0 or -errno + message. */
int tlsaccept_new(tlsaccept **out, struct event_base *base, tls_ctx *ctx,
                  uint64_t timeout_ns, tlsaccept_fn fn, void *opaque,
                  char *err, size_t errlen);
/* An accepted socket (now the gate's), on the loop's thread. */
void tlsaccept_add(tlsaccept *a, int fd, const char *peer);
/* Cancels the handshakes in progress and joins their threads. */
void tlsaccept_free(tlsaccept *a);

#endif
