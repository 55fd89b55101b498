/*
 * dial: connecting to a secondary's HOST:PORT, for the primary.
 *
 * A name or numeric address (IPv6 in brackets), each address getaddrinfo
 * gives tried in turn within the timeout; the socket comes back blocking,
 * with TCP_NODELAY (acknowledgements are small and latency-bound).
 */
#ifndef FTVM_PRIMARY_DIAL_H
#define FTVM_PRIMARY_DIAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>

/*
 * 0 and the fd, or -errno with a message naming addr.  When stop is
 * given, *stop (read under lock) is looked at every few milliseconds and
 * ends the attempt with -ECANCELED, so another thread can call it off.
 */
int dial_connect(const char *addr, int timeout_ms, const bool *stop,
                 pthread_mutex_t *lock, int *fd, char *err, size_t errlen);

#endif
