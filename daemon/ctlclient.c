/* ctlclient: see ctlclient.h. */
#include "daemon/ctlclient.h"

#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "daemon/log.h"

#define REPLY_TIMEOUT_MS (10 * 60 * 1000)   /* a save of a large VM */

/* Positional arguments of the commands that take some, by name. */
static const struct {
    const char *cmd;
    const char *names[3];
} positional[] = {
    { "save", { "file" } },
    { "set", { "key", "value" } },
    { "attach-secondary", { "address" } },
    { "protect", { "address" } },
};

/* "123" stays a number, "true"/"false" booleans, anything else a string. */
static json_t *arg_value(const char *v)
{
    char *end;
    errno = 0;
    long long n = strtoll(v, &end, 10);
    if (*v && !*end && !errno)
        return json_integer(n);
    if (strcmp(v, "true") == 0 || strcmp(v, "false") == 0)
        return json_boolean(v[0] == 't');
    return json_string(v);
}

static json_t *build_args(const char *cmd, int argc, char **argv)
{
    json_t *args = json_object();
    const char *const *names = NULL;
    for (size_t i = 0; i < sizeof(positional) / sizeof(positional[0]); i++)
        if (strcmp(positional[i].cmd, cmd) == 0)
            names = positional[i].names;
    for (int i = 0; i < argc; i++) {
        const char *eq = strchr(argv[i], '=');
        if (names && i < 3 && names[i] && !eq) {
            json_object_set_new(args, names[i], json_string(argv[i]));
        } else if (eq && eq != argv[i]) {
            char key[64];
            snprintf(key, sizeof(key), "%.*s", (int)(eq - argv[i]), argv[i]);
            json_object_set_new(args, key, arg_value(eq + 1));
        } else {
            log_msg("%s: argument '%s' is not KEY=VALUE", cmd, argv[i]);
            json_decref(args);
            return NULL;
        }
    }
    return args;
}

/*
 * save's file, made absolute here: the process resolves nothing in its own
 * working directory (which is not the caller's) and refuses relative
 * paths.  The directory must exist; the file need not.
 */
static int absolute_file(json_t *args)
{
    const char *file = json_string_value(json_object_get(args, "file"));
    if (!file || !*file)
        return 0;   /* the process says what is missing */
    const char *slash = strrchr(file, '/');
    const char *base = slash ? slash + 1 : file;
    char dir[PATH_MAX], real[PATH_MAX];
    if (!slash)
        snprintf(dir, sizeof(dir), ".");
    else
        snprintf(dir, sizeof(dir), "%.*s",
                 slash == file ? 1 : (int)(slash - file), file);
    if (!*base || strcmp(base, ".") == 0 || strcmp(base, "..") == 0) {
        log_msg("save: '%s' names a directory, not a file", file);
        return -1;
    }
    if (!realpath(dir, real)) {
        log_msg("save: %s: directory %s: %s", file, dir, strerror(errno));
        return -1;
    }
    char abs[PATH_MAX + NAME_MAX + 2];
    snprintf(abs, sizeof(abs), "%s%s%s", real,
             strcmp(real, "/") == 0 ? "" : "/", base);
    json_object_set_new(args, "file", json_string(abs));
    return 0;
}

static int connect_to(const char *path)
{
    struct sockaddr_un sun = { .sun_family = AF_UNIX };
    if (strlen(path) >= sizeof(sun.sun_path)) {
        log_msg("socket path too long: %s", path);
        return -1;
    }
    snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
        log_msg("cannot connect to %s: %s", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return fd;
}

/* Reads one line (without its newline) into a malloc'd string. */
static char *read_line(int fd, char **buf, size_t *len, size_t *cap)
{
    for (;;) {
        char *nl = *len ? memchr(*buf, '\n', *len) : NULL;
        if (nl) {
            size_t n = (size_t)(nl - *buf);
            char *line = strndup(*buf, n);
            memmove(*buf, nl + 1, *len - n - 1);
            *len -= n + 1;
            return line;
        }
        struct pollfd p = { .fd = fd, .events = POLLIN };
        if (poll(&p, 1, REPLY_TIMEOUT_MS) <= 0)
            return NULL;
        if (*len + 4096 > *cap) {
            *cap = (*cap + 4096) * 2;
            char *nb = realloc(*buf, *cap);
            if (!nb)
                return NULL;
            *buf = nb;
        }
        ssize_t r = read(fd, *buf + *len, *cap - *len);
        if (r <= 0)
            return NULL;
        *len += (size_t)r;
    }
}

/* The longest dotted key of a result, for aligning the table. */
static int key_width(json_t *v, int prefix_len)
{
    int w = 0;
    const char *k;
    json_t *x;
    json_object_foreach(v, k, x) {
        int len = prefix_len + (prefix_len ? 1 : 0) + (int)strlen(k);
        int sub = json_is_object(x) && json_object_size(x) > 0
                      ? key_width(x, len) : len;
        if (sub > w)
            w = sub;
    }
    return w;
}

static void print_table(json_t *v, const char *prefix, int width)
{
    const char *k;
    json_t *x;
    json_object_foreach(v, k, x) {
        char key[256];
        snprintf(key, sizeof(key), "%s%s%s", prefix, *prefix ? "." : "", k);
        if (json_is_object(x) && json_object_size(x) > 0) {
            print_table(x, key, width);
            continue;
        }
        char *s = NULL;
        if (json_is_string(x)) {
            s = strdup(json_string_value(x));
        } else if (json_is_real(x)) {
            /* Timings for people: six significant digits are plenty. */
            if (asprintf(&s, "%.6g", json_real_value(x)) < 0)
                s = NULL;
        } else {
            s = json_dumps(x, JSON_ENCODE_ANY | JSON_COMPACT);
        }
        printf("%-*s %s\n", width, key, s ? s : "?");
        free(s);
    }
}

/* Sends one request and reads its reply: the reply, or NULL. */
static json_t *request(const char *sock, const char *cmd, json_t *args)
{
    int fd = connect_to(sock);
    if (fd < 0) {
        json_decref(args);
        return NULL;
    }
    json_t *req = json_pack("{s:s, s:o, s:i}", "cmd", cmd, "args", args,
                            "id", 1);
    char *line = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    bool sent = false;
    if (line) {
        size_t n = strlen(line);
        line[n] = '\n';     /* the request's line end, for the write */
        sent = write(fd, line, n + 1) == (ssize_t)(n + 1);
    }
    free(line);

    char *buf = NULL, *greeting = NULL, *reply = NULL;
    size_t len = 0, cap = 0;
    if (sent) {
        greeting = read_line(fd, &buf, &len, &cap);
        reply = greeting ? read_line(fd, &buf, &len, &cap) : NULL;
    }
    close(fd);
    free(greeting);
    free(buf);
    json_t *r = reply ? json_loads(reply, 0, NULL) : NULL;
    free(reply);
    if (!json_is_object(r)) {
        log_msg("%s: no reply from %s", cmd, sock);
        json_decref(r);
        return NULL;
    }
    return r;
}

/*
 * status's "witness" (docs/witness.md) in one line: "none: WARNING", or
 * "STATE KEY" with the owner (lost) or the last error (unknown).
 */
static json_t *witness_line(json_t *w)
{
    const char *state = json_string_value(json_object_get(w, "state"));
    const char *key = json_string_value(json_object_get(w, "key"));
    const char *owner = json_string_value(json_object_get(w, "owner"));
    const char *err = json_string_value(json_object_get(w, "error"));
    const char *warning = json_string_value(json_object_get(w, "warning"));
    if (!state)
        return NULL;
    if (strcmp(state, "none") == 0)
        return json_sprintf("none: %s", warning ? warning : "no witness");
    if (owner)
        return json_sprintf("%s %s (owner: %s)", state, key ? key : "",
                            owner);
    if (err && strcmp(state, "unknown") == 0)
        return json_sprintf("%s %s (cannot reach the witness: %s)", state,
                            key ? key : "", err);
    return json_sprintf("%s %s", state, key ? key : "(no pairing yet)");
}

/* o's "witness", if it is an object, as witness_line says. */
static void one_line_witness(json_t *o)
{
    json_t *w = json_object_get(o, "witness");
    json_t *line = json_is_object(w) ? witness_line(w) : NULL;
    if (line)
        json_object_set_new(o, "witness", line);
}

static void print_result(const char *cmd, json_t *res, bool as_json)
{
    if (as_json) {
        json_dumpf(res, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        putchar('\n');
    } else if (strcmp(cmd, "help") == 0) {
        size_t i;
        json_t *e;
        json_array_foreach(json_object_get(res, "commands"), i, e)
            printf("  %-20s %s\n",
                   json_string_value(json_object_get(e, "name")),
                   json_string_value(json_object_get(e, "help")));
    } else {
        json_t *copy = strcmp(cmd, "status") == 0 ? json_deep_copy(res)
                                                  : NULL;
        if (copy) {
            /* Its own, and a survivor's new pairing's (docs/witness.md). */
            one_line_witness(copy);
            one_line_witness(json_object_get(copy, "protection"));
            res = copy;
        }
        print_table(res, "", key_width(res, 0));
        json_decref(copy);
    }
}

int ctlclient_run(const char *sock, const char *cmd, int argc, char **argv,
                  bool as_json)
{
    json_t *args = build_args(cmd, argc, argv);
    if (args && strcmp(cmd, "save") == 0 && absolute_file(args) < 0) {
        json_decref(args);
        args = NULL;
    }
    json_t *r = args ? request(sock, cmd, args) : NULL;
    if (!r)
        return CTLCLIENT_FAILED;
    int status = CTLCLIENT_OK;
    if (json_is_true(json_object_get(r, "ok"))) {
        print_result(cmd, json_object_get(r, "result"), as_json);
    } else {
        log_msg("%s: %s", cmd,
                json_string_value(json_object_get(r, "error")));
        status = CTLCLIENT_REFUSED;
    }
    json_decref(r);
    return status;
}
