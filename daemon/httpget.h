/*
 * httpget: a small HTTP/1.x server that answers GET of one path, for the
 * metrics endpoint, on the owner's event loop.
 *
 * It is small so that every resource it holds has a bound a caller can
 * name: at most HTTPGET_MAX_CONNS connections (one more is closed as soon
 * as it is accepted), HTTPGET_MAX_HEADERS bytes of request line and
 * headers (more is answered 431), HTTPGET_IDLE_S seconds without a byte
 * from the client, or for the whole request to arrive, before its
 * connection is closed, and one request per
 * connection: the answer carries "Connection: close", a request body is
 * never read, and after the answer whatever the client still sends is
 * read and dropped for a short while (HTTPGET_LINGER_S, at most
 * HTTPGET_LINGER_BYTES) so that closing does not reset the connection
 * under an answer the client has not read yet.
 *
 *     GET PATH[?query]   200, the body the owner's function makes
 *     another path       404
 *     another method     405 with Allow: GET
 */
#ifndef FTVM_DAEMON_HTTPGET_H
#define FTVM_DAEMON_HTTPGET_H

#include <stddef.h>
#include <stdint.h>

struct event_base;

#define HTTPGET_MAX_CONNS 16
#define HTTPGET_MAX_HEADERS 8192
#define HTTPGET_IDLE_S 10
#define HTTPGET_LINGER_S 2
#define HTTPGET_LINGER_BYTES (256 * 1024)

/*
 * The body for a GET of the path: 0 and a malloc'd *body of *len bytes,
 * or -errno (answered 500, with err logged by the owner).
 */
typedef int (*httpget_fn)(void *opaque, char **body, size_t *len);

typedef struct httpget httpget;

/*
 * Listens on host:port (a numeric address or a name; "" is 127.0.0.1)
 * and answers GET path with fn's body as content_type.  0, or -errno with
 * a message in err.
 */
int httpget_new(httpget **out, struct event_base *base, const char *host,
                uint16_t port, const char *path, const char *content_type,
                httpget_fn fn, void *opaque, char *err, size_t errlen);
/* Closes the listener and every connection. */
void httpget_free(httpget *s);

#endif
