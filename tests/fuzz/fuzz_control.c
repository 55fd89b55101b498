/*
 * libFuzzer target: the control protocol's JSON lines.  One control
 * server (daemon/control.c) listens on a UNIX socket in a directory of
 * its own with a real command table: the VM commands of daemon/vmctl.c
 * (status, pause, resume, save, checkpoint, quit) over no VM yet, as a
 * secondary has them before its primary's "ftvm-vm", and help.  Each
 * input is written by a fresh client connection, as it is, as request
 * lines; the event loop runs until every line is answered.
 *
 * What must hold: the greeting first; then one reply per line (a line
 * ends at LF, a CR before it is dropped, and empty lines are skipped),
 * in order, each a JSON object with a boolean "ok", a "result" object
 * when ok and a non-empty "error" string when not, echoing the
 * request's "id" when the line was an object with one; no crash, leak
 * or hang.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <jansson.h>

#include "daemon/control.h"
#include "daemon/vmctl.h"
#include "tests/fuzz/fuzzcheck.h"
#include "tests/fuzz/inputs.h"

/* Below the server's 64 KiB line limit: what it answers does not depend
 * on how the kernel splits the bytes. */
#define MAX_INPUT (32 * 1024)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct event_base *base;
static control_server *ctl;
static vmctl *vmc;
static char dir[] = "/tmp/ftvm-fuzz-control-XXXXXX";
static char path[108];

/* The socket and its directory go with the process. */
static void clean_up(void)
{
    vmctl_free(vmc);
    control_server_free(ctl);
    event_base_free(base);
    rmdir(dir);
}

static void init_once(void)
{
    char err[512];
    if (!mkdtemp(dir))
        fuzzcheck_broken("fuzz_control: mkdtemp: %s", strerror(errno));
    snprintf(path, sizeof(path), "%s/ctl.sock", dir);
    base = event_base_new();
    if (!base || control_server_new(&ctl, base, path, "secondary", err,
                                    sizeof(err)) < 0)
        fuzzcheck_broken("fuzz_control: %s", err);
    vmctl_opts o = { .role = "secondary" };
    if (vmctl_new(&vmc, NULL, base, ctl, &o, err, sizeof(err)) < 0)
        fuzzcheck_broken("fuzz_control: %s", err);
    atexit(clean_up);
}

/* The replies the server must give: one per non-empty line. */
static size_t count_lines(const uint8_t *d, size_t n)
{
    size_t lines = 0, start = 0;
    for (size_t i = 0; i < n; i++) {
        if (d[i] != '\n')
            continue;
        size_t len = i - start;
        if (len && d[i - 1] == '\r')
            len--;
        lines += len > 0;
        start = i + 1;
    }
    return lines;
}

/* The request on the line that ends at the next LF, parsed as the server
 * parses it (NULL when it is not a JSON object); *at moves past it. */
static json_t *next_request(const uint8_t *d, size_t n, size_t *at)
{
    for (;;) {
        const uint8_t *lf = memchr(d + *at, '\n', n - *at);
        size_t len = (size_t)(lf - (d + *at));
        char *line = strndup((const char *)d + *at, len);
        *at += len + 1;
        size_t l = strlen(line);
        /* strndup stops at a NUL; the server's C string does too. */
        bool empty = len == 0 || (len == 1 && d[*at - 2] == '\r');
        if (l && line[l - 1] == '\r' && l == len)
            line[l - 1] = '\0';
        if (empty) {
            free(line);
            continue;
        }
        json_t *j = json_loads(line, 0, NULL);
        free(line);
        if (!json_is_object(j)) {
            json_decref(j);
            return NULL;
        }
        return j;
    }
}

static void check_reply(const char *line, json_t *req, size_t k)
{
    json_error_t jerr;
    json_t *rep = json_loads(line, 0, &jerr);
    if (!json_is_object(rep))
        fuzzcheck_broken("fuzz_control: reply %zu is not a JSON object: "
                         "%.200s", k, line);
    json_t *ok = json_object_get(rep, "ok");
    if (!json_is_boolean(ok))
        fuzzcheck_broken("fuzz_control: reply %zu has no boolean \"ok\": "
                         "%.200s", k, line);
    if (json_is_true(ok) && !json_is_object(json_object_get(rep, "result")))
        fuzzcheck_broken("fuzz_control: reply %zu is ok without a result "
                         "object: %.200s", k, line);
    const char *e = json_string_value(json_object_get(rep, "error"));
    if (json_is_false(ok) && (!e || !e[0]))
        fuzzcheck_broken("fuzz_control: reply %zu refuses without a "
                         "message: %.200s", k, line);
    json_t *want = req ? json_object_get(req, "id") : NULL;
    json_t *got = json_object_get(rep, "id");
    if (want ? !got || !json_equal(want, got) : got != NULL)
        fuzzcheck_broken("fuzz_control: reply %zu has the wrong id: %.200s",
                         k, line);
    /* A seed says which of its requests must fail: those with this id. */
    bool expected = json_is_string(want) &&
                    strcmp(json_string_value(want), CONTROL_EXPECT_ERROR) == 0;
    if (json_is_false(ok) != expected)
        fuzzcheck_refused("fuzz_control: request %zu %s: %s", k,
                          expected ? "did not fail" : "failed",
                          e ? e : line);
    json_decref(rep);
}

static uint64_t now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000 + (uint64_t)t.tv_nsec / 1000000;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!ctl)
        init_once();
    if (size > MAX_INPUT)
        size = MAX_INPUT;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    struct sockaddr_un sun = { .sun_family = AF_UNIX };
    snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", path);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0)
        fuzzcheck_broken("fuzz_control: connect: %s", strerror(errno));

    size_t want = count_lines(data, size) + 1;  /* and the greeting */
    size_t sent = 0, got = 0, at = 0, rlen = 0, rcap = 65536;
    char *rbuf = malloc(rcap);
    uint64_t deadline = now_ms() + 30000;
    while (got < want) {
        if (now_ms() > deadline)
            fuzzcheck_broken("fuzz_control: %zu of %zu replies after 30 s",
                             got, want);
        if (sent < size) {
            ssize_t w = send(fd, data + sent, size - sent, MSG_NOSIGNAL);
            if (w > 0)
                sent += (size_t)w;
        }
        event_base_loop(base, EVLOOP_NONBLOCK);
        if (rlen == rcap && !(rbuf = realloc(rbuf, rcap *= 2)))
            fuzzcheck_broken("fuzz_control: out of memory");
        ssize_t r = recv(fd, rbuf + rlen, rcap - rlen, 0);
        if (r == 0)
            fuzzcheck_broken("fuzz_control: the server hung up after %zu of "
                             "%zu replies", got, want);
        if (r < 0) {
            poll(&(struct pollfd){ .fd = fd, .events = POLLIN }, 1, 1);
            continue;
        }
        rlen += (size_t)r;
        char *nl;
        while (got < want && (nl = memchr(rbuf, '\n', rlen))) {
            *nl = '\0';
            if (got == 0) {
                json_t *g = json_loads(rbuf, 0, NULL);
                if (!json_is_object(json_object_get(g, "ftvm")))
                    fuzzcheck_broken("fuzz_control: no greeting: %.200s",
                                     rbuf);
                json_decref(g);
            } else {
                json_t *req = next_request(data, size, &at);
                check_reply(rbuf, req, got);
                json_decref(req);
            }
            got++;
            size_t used = (size_t)(nl + 1 - rbuf);
            memmove(rbuf, nl + 1, rlen - used);
            rlen -= used;
        }
    }
    /* Nothing more: an extra reply would be one too many. */
    event_base_loop(base, EVLOOP_NONBLOCK);
    ssize_t extra = recv(fd, rbuf + rlen, rcap - rlen, 0);
    if (rlen > 0 || extra > 0)
        fuzzcheck_broken("fuzz_control: more than one reply per line");
    free(rbuf);
    close(fd);
    event_base_loop(base, EVLOOP_NONBLOCK);    /* the server's end goes */
    return 0;
}
