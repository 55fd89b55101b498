/*
 * The control socket end to end: a server on a real UNIX socket in one
 * thread, the real ftvmctl binary as the client.
 *
 * usage: test_control FTVMCTL
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <limits.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "daemon/control.h"

static const char *ftvmctl;
static char dir[40], sock[80];
static struct event_base *base;
static control_server *srv;
static pthread_t loop_thread;

static control_outcome do_echo(void *opaque, control_req *req, json_t *args,
                               json_t **result, int *rc, char *err,
                               size_t errlen)
{
    (void)opaque; (void)req; (void)rc; (void)err; (void)errlen;
    *result = json_pack("{s:O, s:{s:i}}", "args", args, "nested", "deep", 5);
    return CONTROL_DONE;
}

static control_outcome do_fail(void *opaque, control_req *req, json_t *args,
                               json_t **result, int *rc, char *err,
                               size_t errlen)
{
    (void)opaque; (void)req; (void)args; (void)result;
    *rc = -ENOSPC;
    snprintf(err, errlen, "save: /var/lib/x: No space left on device");
    return CONTROL_DONE;
}

static void later_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd; (void)what;
    control_reply(arg, json_pack("{s:s}", "done", "later"));
}

static control_outcome do_later(void *opaque, control_req *req, json_t *args,
                                json_t **result, int *rc, char *err,
                                size_t errlen)
{
    (void)opaque; (void)args; (void)result; (void)rc; (void)err; (void)errlen;
    struct timeval tv = { 0, 200000 };
    event_base_once(base, -1, EV_TIMEOUT, later_cb, req, &tv);
    return CONTROL_DEFERRED;
}

static void *loop_main(void *arg)
{
    (void)arg;
    event_base_loop(base, EVLOOP_NO_EXIT_ON_EMPTY);
    return NULL;
}

static int setup(void **state)
{
    (void)state;
    evthread_use_pthreads();
    snprintf(dir, sizeof(dir), "/tmp/ftvm-ctl-XXXXXX");
    if (!mkdtemp(dir))
        return -1;
    snprintf(sock, sizeof(sock), "%s/ctl.sock", dir);
    base = event_base_new();
    char err[256];
    if (control_server_new(&srv, base, sock, "test", err, sizeof(err)) < 0) {
        fprintf(stderr, "%s\n", err);
        return -1;
    }
    control_register(srv, "echo", "returns its arguments", do_echo, NULL);
    control_register(srv, "fail", "always fails", do_fail, NULL);
    control_register(srv, "later", "answers after 200 ms", do_later, NULL);
    control_register(srv, "save", "returns its arguments", do_echo, NULL);
    return pthread_create(&loop_thread, NULL, loop_main, NULL);
}

static int teardown(void **state)
{
    (void)state;
    event_base_loopexit(base, NULL);
    pthread_join(loop_thread, NULL);
    control_server_free(srv);
    event_base_free(base);
    rmdir(dir);
    return 0;
}

/* Runs ftvmctl with args; returns its exit status, output in out. */
static int run_ctl(char *out, size_t outlen, const char *fmt, ...)
{
    char args[512], cmd[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof(args), fmt, ap);
    va_end(ap);
    snprintf(cmd, sizeof(cmd), "%s %s 2>&1", ftvmctl, args);
    FILE *p = popen(cmd, "r");
    size_t n = fread(out, 1, outlen - 1, p);
    out[n] = '\0';
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void test_socket_mode(void **state)
{
    (void)state;
    struct stat st;
    assert_int_equal(stat(sock, &st), 0);
    assert_true(S_ISSOCK(st.st_mode));
    assert_int_equal(st.st_mode & 0777, 0600);
}

static void test_table_and_json(void **state)
{
    (void)state;
    char out[4096];
    assert_int_equal(run_ctl(out, sizeof(out), "-s %s echo a=1 b=word c=true",
                             sock), 0);
    assert_non_null(strstr(out, "args.a"));
    assert_non_null(strstr(out, "word"));
    assert_non_null(strstr(out, "nested.deep"));
    assert_int_equal(run_ctl(out, sizeof(out), "-s %s --json echo n=42",
                             sock), 0);
    json_t *j = json_loads(out, 0, NULL);
    assert_non_null(j);
    assert_int_equal(json_integer_value(json_object_get(
        json_object_get(j, "args"), "n")), 42);
    json_decref(j);
}

static void test_errors(void **state)
{
    (void)state;
    char out[4096];
    assert_int_equal(run_ctl(out, sizeof(out), "-s %s fail", sock), 1);
    assert_non_null(strstr(out, "No space left"));
    assert_int_equal(run_ctl(out, sizeof(out), "-s %s nosuch", sock), 1);
    assert_non_null(strstr(out, "unknown command 'nosuch'"));
    assert_int_equal(run_ctl(out, sizeof(out), "-s %s echo positional",
                             sock), 2);
    assert_non_null(strstr(out, "not KEY=VALUE"));
    assert_int_equal(run_ctl(out, sizeof(out), "-s %s/none status", dir), 2);
    assert_non_null(strstr(out, "cannot connect"));
    assert_int_equal(run_ctl(out, sizeof(out), "status"), 2);
}

static void test_deferred_and_help(void **state)
{
    (void)state;
    char out[4096];
    assert_int_equal(run_ctl(out, sizeof(out), "-s %s later", sock), 0);
    assert_non_null(strstr(out, "done"));
    assert_int_equal(run_ctl(out, sizeof(out), "-s %s help", sock), 0);
    assert_non_null(strstr(out, "answers after 200 ms"));
}

/* Raw protocol: greeting, malformed lines, ids echoed, pipelining. */
static void test_raw_protocol(void **state)
{
    (void)state;
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sun = { .sun_family = AF_UNIX };
    snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", sock);
    assert_int_equal(connect(fd, (struct sockaddr *)&sun, sizeof(sun)), 0);
    const char *reqs = "not json\n"
                       "[1,2]\n"
                       "{\"args\":{}}\n"
                       "{\"cmd\":\"echo\",\"args\":5,\"id\":\"x\"}\n"
                       "{\"cmd\":\"later\",\"id\":1}\n"
                       "{\"cmd\":\"echo\",\"id\":2}\n";
    assert_int_equal(write(fd, reqs, strlen(reqs)), (ssize_t)strlen(reqs));
    char buf[8192];
    size_t n = 0;
    int lines = 0;
    while (lines < 7 && n < sizeof(buf) - 1) {
        ssize_t r = read(fd, buf + n, sizeof(buf) - 1 - n);
        assert_true(r > 0);
        for (ssize_t i = 0; i < r; i++)
            lines += buf[n + (size_t)i] == '\n';
        n += (size_t)r;
    }
    buf[n] = '\0';
    close(fd);
    assert_non_null(strstr(buf, "\"role\":\"test\""));
    assert_non_null(strstr(buf, "not a JSON object"));
    assert_non_null(strstr(buf, "no \\\"cmd\\\" string"));
    assert_non_null(strstr(buf, "{\"id\":\"x\",\"ok\":false"));
    /* The deferred reply (id 1) comes after the quick one (id 2). */
    char *quick = strstr(buf, "{\"id\":2,\"ok\":true");
    char *slow = strstr(buf, "{\"id\":1,\"ok\":true");
    assert_non_null(quick);
    assert_non_null(slow);
    assert_true(quick < slow);
}

static void test_socket_in_use(void **state)
{
    (void)state;
    control_server *second;
    char err[256];
    struct event_base *b2 = event_base_new();
    assert_int_equal(
        control_server_new(&second, b2, sock, "x", err, sizeof(err)),
        -EADDRINUSE);
    assert_non_null(strstr(err, "another process"));
    /* A stale socket (nobody listening) is replaced. */
    char stale[80];
    snprintf(stale, sizeof(stale), "%s/stale.sock", dir);
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sun = { .sun_family = AF_UNIX };
    snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", stale);
    assert_int_equal(bind(fd, (struct sockaddr *)&sun, sizeof(sun)), 0);
    close(fd);
    assert_int_equal(
        control_server_new(&second, b2, stale, "x", err, sizeof(err)), 0);
    control_server_free(second);
    assert_int_equal(access(stale, F_OK), -1);
    event_base_free(b2);
}

/*
 * save FILE reaches the process as an absolute path, resolved where
 * ftvmctl runs: the process's own working directory means nothing to the
 * caller.  The directory must exist; the file need not.
 */
static void test_save_path_resolved(void **state)
{
    (void)state;
    char out[4096], real[PATH_MAX], want[PATH_MAX + 32];
    assert_non_null(realpath(dir, real));
    snprintf(want, sizeof(want), "\"file\": \"%s/x.ftvm\"", real);
    char cmd[1024];
    snprintf(cmd, sizeof(cmd), "cd %s && %s -s %s --json save x.ftvm 2>&1",
             dir, ftvmctl, sock);
    FILE *p = popen(cmd, "r");
    size_t n = fread(out, 1, sizeof(out) - 1, p);
    out[n] = '\0';
    assert_int_equal(pclose(p), 0);
    assert_non_null(strstr(out, want));
    snprintf(cmd, sizeof(cmd), "cd %s && %s -s %s --json save "
             "file=./x.ftvm 2>&1", dir, ftvmctl, sock);
    p = popen(cmd, "r");
    n = fread(out, 1, sizeof(out) - 1, p);
    out[n] = '\0';
    assert_int_equal(pclose(p), 0);
    assert_non_null(strstr(out, want));
    /* An absolute path through a missing directory: refused here. */
    assert_int_equal(run_ctl(out, sizeof(out), "-s %s save %s/none/x.ftvm",
                             sock, dir), 2);
    assert_non_null(strstr(out, "/none: No such file or directory"));
    assert_int_equal(run_ctl(out, sizeof(out), "-s %s save %s/", sock, dir),
                     2);
    assert_non_null(strstr(out, "names a directory"));
}

/* A socket directory ftvm makes is 0700; an existing one is left alone. */
static void test_socket_dir(void **state)
{
    (void)state;
    char sub[80], path[120], err[256];
    struct event_base *b2 = event_base_new();
    control_server *s2;
    snprintf(sub, sizeof(sub), "%s/made", dir);
    snprintf(path, sizeof(path), "%s/ctl.sock", sub);
    assert_int_equal(control_server_new(&s2, b2, path, "x", err,
                                        sizeof(err)), 0);
    struct stat st;
    assert_int_equal(stat(sub, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
    control_server_free(s2);
    assert_int_equal(chmod(sub, 0755), 0);
    assert_int_equal(control_server_new(&s2, b2, path, "x", err,
                                        sizeof(err)), 0);
    assert_int_equal(stat(sub, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0755);
    control_server_free(s2);
    assert_int_equal(rmdir(sub), 0);
    /* Only the last component is made. */
    snprintf(path, sizeof(path), "%s/a/b/ctl.sock", dir);
    assert_int_equal(control_server_new(&s2, b2, path, "x", err,
                                        sizeof(err)), -ENOENT);
    assert_non_null(strstr(err, "cannot create"));
    event_base_free(b2);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: test_control FTVMCTL\n");
        return 2;
    }
    /* Absolute, for the cases that run it in another directory. */
    static char exe[PATH_MAX];
    ftvmctl = realpath(argv[1], exe) ? exe : argv[1];
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_socket_mode),
        cmocka_unit_test(test_table_and_json),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_deferred_and_help),
        cmocka_unit_test(test_raw_protocol),
        cmocka_unit_test(test_socket_in_use),
        cmocka_unit_test(test_save_path_resolved),
        cmocka_unit_test(test_socket_dir),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
