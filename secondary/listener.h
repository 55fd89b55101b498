/*
 * listener: where the secondary waits for its primary: a TCP socket on
 * --listen's address, each accepted connection handed to the owner with
 * its peer's address for the messages.
 */
#ifndef FTVM_SECONDARY_LISTENER_H
#define FTVM_SECONDARY_LISTENER_H

#include <stddef.h>

struct event_base;

typedef struct listener listener;

/* A connection: fd is the owner's (to keep, or to close). */
typedef void (*listener_fn)(void *opaque, int fd, const char *peer);

/*
 * Listens on addr: "HOST:PORT", "[IPV6]:PORT", ":PORT" for every address;
 * port 0 for any free one (listener_address says which).  0, or -errno
 * with a message naming addr.
 */
int listener_new(listener **out, struct event_base *base, const char *addr,
                 listener_fn fn, void *opaque, char *err, size_t errlen);
/* The address listened on, "HOST:PORT" ("[HOST]:PORT" for IPv6). */
const char *listener_address(const listener *l);
void listener_free(listener *l);

#endif
