/* httpget: see httpget.h. */
#include "daemon/httpget.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <netdb.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

typedef enum conn_state {
    CONN_READING,       /* the request line and headers */
    CONN_ANSWERING,     /* the answer is being written */
    CONN_LINGERING,     /* answered; dropping what the client still sends */
} conn_state;

typedef struct conn {
    httpget *s;
    struct bufferevent *bev;
    conn_state state;
    uint64_t accepted_ns;
    size_t dropped;
    struct conn *prev, *next;
} conn;

struct httpget {
    struct evconnlistener *listener;
    char path[256];
    char content_type[128];
    httpget_fn fn;
    void *opaque;
    conn *conns;
    unsigned nconns;
};

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void conn_free(conn *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        c->s->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->s->nconns--;
    bufferevent_free(c->bev);
    free(c);
}

static void answer(conn *c, int code, const char *reason, const char *ctype,
                   const char *body, size_t len, const char *extra)
{
    struct evbuffer *out = bufferevent_get_output(c->bev);
    evbuffer_add_printf(out, "HTTP/1.1 %d %s\r\nContent-Type: %s\r\n"
                        "Content-Length: %zu\r\nConnection: close\r\n%s\r\n",
                        code, reason, ctype, len, extra ? extra : "");
    evbuffer_add(out, body, len);
    c->state = CONN_ANSWERING;
    /* Nothing more is parsed: reading only drops bytes from here on. */
    bufferevent_setwatermark(c->bev, EV_READ, 0, 0);
    bufferevent_enable(c->bev, EV_WRITE);
}

static void answer_text(conn *c, int code, const char *reason,
                        const char *text, const char *extra)
{
    answer(c, code, reason, "text/plain; charset=utf-8", text, strlen(text),
           extra);
}

/* The end of the headers in p[0..n): just past the blank line, or 0. */
static size_t headers_end(const char *p, size_t n)
{
    for (size_t i = 0; i + 1 < n; i++) {
        if (p[i] != '\n')
            continue;
        if (p[i + 1] == '\n')
            return i + 2;
        if (i + 2 < n && p[i + 1] == '\r' && p[i + 2] == '\n')
            return i + 3;
    }
    return 0;
}

static void handle(conn *c, const char *req, size_t n)
{
    const char *eol = memchr(req, '\n', n);
    size_t linelen = (size_t)(eol - req);
    if (linelen && req[linelen - 1] == '\r')
        linelen--;
    char line[HTTPGET_MAX_HEADERS + 1], *save = NULL;
    memcpy(line, req, linelen);
    line[linelen] = '\0';
    const char *method = strtok_r(line, " ", &save);
    char *target = strtok_r(NULL, " ", &save);
    const char *version = strtok_r(NULL, " ", &save);
    if (!method || !target || !version || strtok_r(NULL, " ", &save) ||
        strncmp(version, "HTTP/1.", 7) != 0) {
        answer_text(c, 400, "Bad Request", "not an HTTP/1.x request\n", NULL);
        return;
    }
    target[strcspn(target, "?#")] = '\0';
    httpget *s = c->s;
    char text[512];
    if (strcmp(target, s->path) != 0) {
        snprintf(text, sizeof(text), "only GET %s is served here\n", s->path);
        answer_text(c, 404, "Not Found", text, NULL);
        return;
    }
    if (strcmp(method, "GET") != 0) {
        answer_text(c, 405, "Method Not Allowed", "only GET\n",
                    "Allow: GET\r\n");
        return;
    }
    char *body = NULL;
    size_t len = 0;
    if (s->fn(s->opaque, &body, &len) < 0) {
        answer_text(c, 500, "Internal Server Error",
                    "cannot produce the answer; see the process's log\n",
                    NULL);
    } else {
        answer(c, 200, "OK", s->content_type, body, len, NULL);
    }
    free(body);
}

static void on_read(struct bufferevent *bev, void *arg)
{
    conn *c = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    size_t n = evbuffer_get_length(in);
    if (c->state != CONN_READING) {
        evbuffer_drain(in, n);
        c->dropped += n;
        if (c->dropped > HTTPGET_LINGER_BYTES)
            conn_free(c);
        return;
    }
    size_t look = n < HTTPGET_MAX_HEADERS ? n : HTTPGET_MAX_HEADERS;
    const char *p = (const char *)evbuffer_pullup(in, (ssize_t)look);
    size_t end = p ? headers_end(p, look) : 0;
    if (end) {
        handle(c, p, end);
        evbuffer_drain(in, n);
    } else if (n >= HTTPGET_MAX_HEADERS) {
        evbuffer_drain(in, n);
        answer_text(c, 431, "Request Header Fields Too Large",
                    "request line and headers over 8192 bytes\n", NULL);
    } else if (now_ns() - c->accepted_ns >
               HTTPGET_IDLE_S * 1000000000ull) {
        /* A byte now and then must not hold a connection for hours. */
        conn_free(c);
    }
}

static void on_write(struct bufferevent *bev, void *arg)
{
    conn *c = arg;
    if (c->state != CONN_ANSWERING)
        return;
    /*
     * The answer is out: say so with a FIN, and close once the client has
     * hung up too, or a moment later.  Closing at once with its bytes
     * unread would reset the connection, and the client could lose the
     * answer it has not read yet.
     */
    c->state = CONN_LINGERING;
    shutdown(bufferevent_getfd(bev), SHUT_WR);
    struct timeval linger = { .tv_sec = HTTPGET_LINGER_S };
    bufferevent_set_timeouts(bev, &linger, NULL);
    bufferevent_enable(bev, EV_READ);
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
    (void)bev;
    conn *c = arg;
    /*
     * A client that half-closes after its request still gets the answer;
     * any other EOF, an error or a timeout ends the connection.
     */
    if (c->state == CONN_ANSWERING && (what & BEV_EVENT_EOF) &&
        (what & BEV_EVENT_READING))
        return;
    conn_free(c);
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd,
                      struct sockaddr *sa, int salen, void *arg)
{
    (void)l; (void)sa; (void)salen;
    httpget *s = arg;
    if (s->nconns >= HTTPGET_MAX_CONNS) {
        close(fd);
        return;
    }
    conn *c = calloc(1, sizeof(*c));
    struct bufferevent *bev = c ? bufferevent_socket_new(
        evconnlistener_get_base(s->listener), fd, BEV_OPT_CLOSE_ON_FREE)
                                : NULL;
    if (!bev) {
        free(c);
        close(fd);
        return;
    }
    c->s = s;
    c->bev = bev;
    c->accepted_ns = now_ns();
    c->next = s->conns;
    if (c->next)
        c->next->prev = c;
    s->conns = c;
    s->nconns++;
    struct timeval idle = { .tv_sec = HTTPGET_IDLE_S };
    bufferevent_set_timeouts(bev, &idle, &idle);
    bufferevent_setwatermark(bev, EV_READ, 0, HTTPGET_MAX_HEADERS);
    bufferevent_setcb(bev, on_read, on_write, on_event, c);
    bufferevent_enable(bev, EV_READ);
}

int httpget_new(httpget **out, struct event_base *base, const char *host,
                uint16_t port, const char *path, const char *content_type,
                httpget_fn fn, void *opaque, char *err, size_t errlen)
{
    char service[8];
    snprintf(service, sizeof(service), "%u", port);
    struct addrinfo hints = { .ai_family = AF_UNSPEC,
                              .ai_socktype = SOCK_STREAM,
                              .ai_flags = AI_PASSIVE }, *ai = NULL;
    int g = getaddrinfo(host && *host ? host : "127.0.0.1", service, &hints,
                        &ai);
    if (g != 0) {
        snprintf(err, errlen, "cannot listen: %s", gai_strerror(g));
        return -EADDRNOTAVAIL;
    }
    httpget *s = calloc(1, sizeof(*s));
    if (!s) {
        freeaddrinfo(ai);
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    snprintf(s->path, sizeof(s->path), "%s", path);
    snprintf(s->content_type, sizeof(s->content_type), "%s", content_type);
    s->fn = fn;
    s->opaque = opaque;
    errno = 0;
    s->listener = evconnlistener_new_bind(
        base, on_accept, s,
        LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC | LEV_OPT_REUSEABLE,
        HTTPGET_MAX_CONNS, ai->ai_addr, (int)ai->ai_addrlen);
    int e = errno ? errno : EADDRNOTAVAIL;
    freeaddrinfo(ai);
    if (!s->listener) {
        snprintf(err, errlen, "cannot listen: %s", strerror(e));
        free(s);
        return -e;
    }
    *out = s;
    return 0;
}

void httpget_free(httpget *s)
{
    if (!s)
        return;
    while (s->conns)
        conn_free(s->conns);
    evconnlistener_free(s->listener);
    free(s);
}
