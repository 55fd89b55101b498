/*
 * ftvmctl: the client of an ftvm process's control socket.
 *
 *     ftvmctl -s SOCK [--json] COMMAND [ARGS...]
 *
 * Sends one request, waits for its reply, prints the result as a table
 * (or as JSON with --json) and exits 0, or prints the error and exits 1.
 * Connection and usage problems exit 2.
 */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define REPLY_TIMEOUT_MS (10 * 60 * 1000)   /* a save of a large VM */

/* Positional arguments of the commands that take some, by name. */
static const struct {
    const char *cmd;
    const char *names[3];
} positional[] = {
    { "save", { "file" } },
    { "set", { "key", "value" } },
    { "attach-secondary", { "address" } },
};

static void usage(FILE *out)
{
    fputs("usage: ftvmctl -s SOCKET [--json] COMMAND [ARGS...]\n"
          "\n"
          "Talks to a running ftvm (run, primary or secondary) over its\n"
          "--control socket.  `ftvmctl -s SOCK help` lists what that\n"
          "process accepts.  Common commands:\n"
          "  status                   state, counters and timings\n"
          "  pause | resume           stop or restart the guest's vCPUs\n"
          "  save FILE                write a complete checkpoint to FILE\n"
          "  quit                     stop the VM and the process\n"
          "Arguments of other commands go as KEY=VALUE.\n"
          "\n"
          "options:\n"
          "  -s, --socket PATH        the control socket (required)\n"
          "  -j, --json               print the raw JSON result\n"
          "  -h, --help               this help\n", out);
}

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
            fprintf(stderr, "ftvmctl: %s: argument '%s' is not KEY=VALUE\n",
                    cmd, argv[i]);
            json_decref(args);
            return NULL;
        }
    }
    return args;
}

static int connect_to(const char *path)
{
    struct sockaddr_un sun = { .sun_family = AF_UNIX };
    if (strlen(path) >= sizeof(sun.sun_path)) {
        fprintf(stderr, "ftvmctl: socket path too long: %s\n", path);
        return -1;
    }
    snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
        fprintf(stderr, "ftvmctl: cannot connect to %s: %s\n", path,
                strerror(errno));
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

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        { "socket", required_argument, NULL, 's' },
        { "json", no_argument, NULL, 'j' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *sock = getenv("FTVM_SOCKET");
    bool as_json = false;
    int c;
    while ((c = getopt_long(argc, argv, "+s:jh", opts, NULL)) != -1) {
        switch (c) {
        case 's':
            sock = optarg;
            break;
        case 'j':
            as_json = true;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (!sock || optind >= argc) {
        fputs(!sock ? "ftvmctl: no socket: give -s PATH (or FTVM_SOCKET)\n"
                    : "ftvmctl: no command; see ftvmctl --help\n", stderr);
        return 2;
    }
    const char *cmd = argv[optind];
    json_t *args = build_args(cmd, argc - optind - 1, argv + optind + 1);
    if (!args)
        return 2;
    int fd = connect_to(sock);
    if (fd < 0) {
        json_decref(args);
        return 2;
    }
    json_t *req = json_pack("{s:s, s:o, s:i}", "cmd", cmd, "args", args,
                            "id", 1);
    char *line = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    size_t n = strlen(line);
    line[n] = '\n';
    bool sent = write(fd, line, n + 1) == (ssize_t)(n + 1);
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
        fprintf(stderr, "ftvmctl: %s: no reply from %s\n", cmd, sock);
        json_decref(r);
        return 2;
    }
    int status = 0;
    if (json_is_true(json_object_get(r, "ok"))) {
        json_t *res = json_object_get(r, "result");
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
            print_table(res, "", key_width(res, 0));
        }
    } else {
        fprintf(stderr, "ftvmctl: %s: %s\n", cmd,
                json_string_value(json_object_get(r, "error")));
        status = 1;
    }
    json_decref(r);
    return status;
}
