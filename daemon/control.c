/* control: see control.h. */
#include "daemon/control.h"

#include <errno.h>
#include <signal.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/listener.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#ifndef FTVM_VERSION
#define FTVM_VERSION "dev"
#endif

#define MAX_LINE (64 * 1024)
#define MAX_COMMANDS 64

typedef struct command {
    char name[32];
    char help[160];
    control_fn fn;
    void *opaque;
} command;

typedef struct conn conn;

struct control_req {
    conn *c;            /* NULL once the client has gone */
    json_t *id;
    char cmd[32];
    control_req *next;
};

struct conn {
    control_server *s;
    struct bufferevent *bev;
    control_req *pending;   /* deferred requests of this client */
    conn *next;
};

struct control_server {
    struct event_base *base;
    struct evconnlistener *listener;
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    char role[16];
    command cmds[MAX_COMMANDS];
    size_t ncmds;
    conn *conns;
};

static void send_json(conn *c, json_t *msg)
{
    char *s = json_dumps(msg, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (s && c) {
        struct evbuffer *out = bufferevent_get_output(c->bev);
        evbuffer_add(out, s, strlen(s));
        evbuffer_add(out, "\n", 1);
    }
    free(s);
    json_decref(msg);
}

static json_t *reply_base(json_t *id, bool ok)
{
    json_t *r = json_object();
    if (id)
        json_object_set(r, "id", id);
    json_object_set_new(r, "ok", json_boolean(ok));
    return r;
}

static void send_ok(conn *c, json_t *id, json_t *result)
{
    json_t *r = reply_base(id, true);
    json_object_set_new(r, "result", result ? result : json_object());
    send_json(c, r);
}

static void send_err(conn *c, json_t *id, const char *msg)
{
    json_t *r = reply_base(id, false);
    json_t *text = json_string(msg);
    if (!text) {
        /*
         * Not UTF-8: a message quoting the request's bytes (jansson's
         * "near '...'", a name cut in the middle of a character).  Every
         * refusal still says why, in ASCII.
         */
        char ascii[600];
        size_t i = 0;
        for (; msg[i] && i < sizeof(ascii) - 1; i++)
            ascii[i] = (unsigned char)msg[i] < 0x80 ? msg[i] : '?';
        ascii[i] = '\0';
        text = json_string(ascii);
    }
    json_object_set_new(r, "error", text);
    send_json(c, r);
}

static void unlink_req(control_req *req)
{
    if (!req->c)
        return;
    for (control_req **p = &req->c->pending; *p; p = &(*p)->next)
        if (*p == req) {
            *p = req->next;
            break;
        }
}

void control_reply(control_req *req, json_t *result)
{
    if (req->c)
        send_ok(req->c, req->id, result);
    else
        json_decref(result);
    unlink_req(req);
    json_decref(req->id);
    free(req);
}

void control_reply_error(control_req *req, int rc, const char *msg)
{
    char buf[512];
    snprintf(buf, sizeof(buf), "%s", msg && *msg ? msg : strerror(-rc));
    if (req->c)
        send_err(req->c, req->id, buf);
    unlink_req(req);
    json_decref(req->id);
    free(req);
}

static json_t *help_result(control_server *s)
{
    json_t *list = json_array();
    for (size_t i = 0; i < s->ncmds; i++)
        json_array_append_new(list, json_pack("{s:s, s:s}", "name",
                                              s->cmds[i].name, "help",
                                              s->cmds[i].help));
    return json_pack("{s:o}", "commands", list);
}

static void handle_line(conn *c, const char *line)
{
    control_server *s = c->s;
    json_error_t jerr;
    json_t *msg = json_loads(line, 0, &jerr);
    if (!json_is_object(msg)) {
        char buf[300];
        snprintf(buf, sizeof(buf), "not a JSON object: %s", msg ? "" :
                 jerr.text);
        send_err(c, NULL, buf);
        json_decref(msg);
        return;
    }
    json_t *id = json_object_get(msg, "id");
    const char *name = json_string_value(json_object_get(msg, "cmd"));
    json_t *args = json_object_get(msg, "args");
    if (!name) {
        send_err(c, id, "request has no \"cmd\" string");
    } else if (args && !json_is_object(args)) {
        send_err(c, id, "\"args\" must be an object");
    } else if (strcmp(name, "help") == 0) {
        send_ok(c, id, help_result(s));
    } else {
        command *cmd = NULL;
        for (size_t i = 0; i < s->ncmds && !cmd; i++)
            if (strcmp(s->cmds[i].name, name) == 0)
                cmd = &s->cmds[i];
        if (!cmd) {
            char buf[128];
            snprintf(buf, sizeof(buf), "unknown command '%.40s' (try help)",
                     name);
            send_err(c, id, buf);
        } else {
            control_req *req = calloc(1, sizeof(*req));
            json_t *empty = args ? NULL : json_object();
            json_t *result = NULL;
            int rc = 0;
            char err[512] = "";
            req->c = c;
            req->id = id ? json_incref(id) : NULL;
            snprintf(req->cmd, sizeof(req->cmd), "%s", name);
            req->next = c->pending;
            c->pending = req;
            control_outcome o = cmd->fn(cmd->opaque, req, args ? args : empty,
                                        &result, &rc, err, sizeof(err));
            json_decref(empty);
            if (o == CONTROL_DONE) {
                if (rc < 0)
                    control_reply_error(req, rc, err);
                else
                    control_reply(req, result);
            }
        }
    }
    json_decref(msg);
}

static void conn_free(conn *c)
{
    for (control_req *r = c->pending; r; r = r->next)
        r->c = NULL;
    for (conn **p = &c->s->conns; *p; p = &(*p)->next)
        if (*p == c) {
            *p = c->next;
            break;
        }
    bufferevent_free(c->bev);
    free(c);
}

static void on_read(struct bufferevent *bev, void *arg)
{
    conn *c = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    char *line;
    size_t n;
    while ((line = evbuffer_readln(in, &n, EVBUFFER_EOL_CRLF))) {
        if (n > 0)
            handle_line(c, line);
        free(line);
    }
    if (evbuffer_get_length(in) > MAX_LINE) {
        send_err(c, NULL, "request line over 64 KiB; closing");
        bufferevent_flush(bev, EV_WRITE, BEV_FLUSH);
        conn_free(c);
    }
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
    (void)bev;
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
        conn_free(arg);
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd,
                      struct sockaddr *sa, int salen, void *arg)
{
    (void)l;
    (void)sa;
    (void)salen;
    control_server *s = arg;
    conn *c = calloc(1, sizeof(*c));
    if (!c) {
        close(fd);
        return;
    }
    c->s = s;
    c->bev = bufferevent_socket_new(s->base, fd, BEV_OPT_CLOSE_ON_FREE);
    bufferevent_setcb(c->bev, on_read, NULL, on_event, c);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    c->next = s->conns;
    s->conns = c;
    json_t *names = json_array();
    json_array_append_new(names, json_string("help"));
    for (size_t i = 0; i < s->ncmds; i++)
        json_array_append_new(names, json_string(s->cmds[i].name));
    send_json(c, json_pack("{s:{s:s, s:s, s:o}}", "ftvm", "version",
                           FTVM_VERSION, "role", s->role, "commands",
                           names));
}

/* A socket file nobody listens on is left by a dead process: replace it. */
static int clear_stale(const char *path, char *err, size_t errlen)
{
    struct stat st;
    if (lstat(path, &st) < 0)
        return 0;
    if (!S_ISSOCK(st.st_mode)) {
        snprintf(err, errlen, "control socket %s: exists and is not a "
                 "socket", path);
        return -EEXIST;
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un sun = { .sun_family = AF_UNIX };
    snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", path);
    int live = fd >= 0 && connect(fd, (struct sockaddr *)&sun,
                                  sizeof(sun)) == 0;
    if (fd >= 0)
        close(fd);
    if (live) {
        snprintf(err, errlen, "control socket %s: another process is "
                 "listening on it", path);
        return -EADDRINUSE;
    }
    unlink(path);
    return 0;
}

/*
 * The socket's directory, when missing, is made 0700: one only the owner
 * can enter.  An existing directory is used as it is (its mode is the
 * operator's choice); the socket itself is 0600 either way.
 */
static int socket_dir(const char *path, char *err, size_t errlen)
{
    const char *slash = strrchr(path, '/');
    if (!slash || slash == path)
        return 0;
    char dir[sizeof(((struct sockaddr_un *)0)->sun_path)];
    snprintf(dir, sizeof(dir), "%.*s", (int)(slash - path), path);
    if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
        int e = errno;
        snprintf(err, errlen, "control socket %s: cannot create %s: %s",
                 path, dir, strerror(e));
        return -e;
    }
    return 0;
}

int control_server_new(control_server **out, struct event_base *base,
                       const char *path, const char *role, char *err,
                       size_t errlen)
{
    struct sockaddr_un sun = { .sun_family = AF_UNIX };
    if (strlen(path) >= sizeof(sun.sun_path)) {
        snprintf(err, errlen, "control socket path too long (max %zu): %s",
                 sizeof(sun.sun_path) - 1, path);
        return -ENAMETOOLONG;
    }
    int r = socket_dir(path, err, errlen);
    if (r == 0)
        r = clear_stale(path, err, errlen);
    if (r < 0)
        return r;
    /*
     * A client that hangs up before its reply would otherwise kill the
     * whole process (and its VM) with SIGPIPE on the write.
     */
    struct sigaction sa;
    if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL)
        signal(SIGPIPE, SIG_IGN);

    control_server *s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    s->base = base;
    snprintf(s->path, sizeof(s->path), "%s", path);
    snprintf(s->role, sizeof(s->role), "%s", role);
    snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", path);

    /* Created 0600 from the start: no window where others could connect. */
    mode_t old = umask(0177);
    s->listener = evconnlistener_new_bind(
        base, on_accept, s, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 8,
        (struct sockaddr *)&sun, sizeof(sun));
    int e = errno;
    umask(old);
    if (!s->listener) {
        snprintf(err, errlen, "control socket %s: %s", path, strerror(e));
        free(s);
        return -e;
    }
    *out = s;
    return 0;
}

void control_server_free(control_server *s)
{
    if (!s)
        return;
    /*
     * Replies already made (quit's, stop-replication's) go out first.  The
     * bufferevent keeps its output frozen for draining, so copy it out.
     */
    for (conn *c = s->conns; c; c = c->next) {
        struct evbuffer *out = bufferevent_get_output(c->bev);
        size_t n = evbuffer_get_length(out);
        const unsigned char *p = n ? evbuffer_pullup(out, -1) : NULL;
        ssize_t w = p ? write(bufferevent_getfd(c->bev), p, n) : 0;
        (void)w;    /* best effort: the process is on its way out */
    }
    while (s->conns)
        conn_free(s->conns);
    evconnlistener_free(s->listener);
    unlink(s->path);
    free(s);
}

int control_register(control_server *s, const char *name, const char *help,
                     control_fn fn, void *opaque)
{
    if (strlen(name) >= sizeof(s->cmds[0].name))
        return -EINVAL;
    command *c = NULL;
    for (size_t i = 0; i < s->ncmds && !c; i++)
        if (strcmp(s->cmds[i].name, name) == 0)
            c = &s->cmds[i];
    if (!c && s->ncmds == MAX_COMMANDS)
        return -EINVAL;
    if (!c)
        c = &s->cmds[s->ncmds++];
    snprintf(c->name, sizeof(c->name), "%s", name);
    snprintf(c->help, sizeof(c->help), "%s", help);
    c->fn = fn;
    c->opaque = opaque;
    return 0;
}
