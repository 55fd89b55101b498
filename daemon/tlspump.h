/*
 * tlspump: carries a TLS connection's plaintext over a local socket pair,
 * so that the roles' threads keep using a plain file descriptor.
 *
 * An SSL object must not be used by several threads at once, and the
 * replication socket is used by several (the primary's sender thread, its
 * heartbeat thread and its loop; the secondary's receiver thread and its
 * loop).  So one thread, the pump, alone owns the SSL object once the
 * handshake is done: it reads plaintext from its end of a
 * socketpair(AF_UNIX, SOCK_STREAM) and writes it as TLS records to the TCP
 * socket, and decrypts what arrives onto the socket pair, both directions
 * in one poll loop with bounded buffers, never blocking one direction
 * while the other waits.  The role holds the other end and does what it
 * did on the TCP socket: blocking or MSG_DONTWAIT reads and writes,
 * shutdown.
 *
 * Ends: the role's shutdown(SHUT_WR) (or close) becomes close_notify and
 * the TCP socket's shutdown(SHUT_WR); the peer's close_notify (or the TCP
 * socket's EOF) becomes shutdown(SHUT_WR) of the pair.  An error on either
 * side shuts both down; a TLS error (an alert from the peer, a bad record)
 * is logged with who.  Once both directions are over the thread closes
 * its ends and frees the session: it needs no joining.
 */
#ifndef FTVM_DAEMON_TLSPUMP_H
#define FTVM_DAEMON_TLSPUMP_H

#include <stddef.h>

#include "daemon/tls.h"

/*
 * Starts the pump over s (handshaken on tcp_fd); both become the pump's.
 * *plain_fd gets the role's end of the pair (blocking).  0, or -errno
 * with a message (s and tcp_fd are then closed).
 */
int tlspump_start(tls_session *s, int tcp_fd, const char *who,
                  int *plain_fd, char *err, size_t errlen);

#endif
