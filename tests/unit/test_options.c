/*
 * Unit tests for daemon/options: one GNU-style rule for every command,
 * the shared groups, and the messages a person sees.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "daemon/log.h"
#include "daemon/options.h"

/* What a command's parse saw and said. */
typedef struct parsed {
    int rc;
    options_found found;
    char said[4096];        /* stderr, or stdout for --help */
} parsed;

/* Everything fd got, then fd closed. */
static void drain(int fd, char *buf, size_t len)
{
    ssize_t n = pread(fd, buf, len - 1, 0);
    buf[n > 0 ? n : 0] = '\0';
    close(fd);
}

/* Runs options_parse on a NULL-terminated list, catching what it says. */
static parsed run(const options_command *c, const char *const *args)
{
    char *argv[32];
    int argc = 0;
    parsed p;

    for (; args[argc]; argc++)
        argv[argc] = (char *)args[argc];
    argv[argc] = NULL;
    int mem = memfd_create("said", MFD_CLOEXEC);
    assert_true(mem >= 0);
    fflush(stdout);
    fflush(stderr);
    int saved_out = dup(STDOUT_FILENO), saved_err = dup(STDERR_FILENO);
    dup2(mem, STDOUT_FILENO);
    dup2(mem, STDERR_FILENO);
    p.rc = options_parse(c, argc, argv, &p.found);
    fflush(stdout);
    fflush(stderr);
    dup2(saved_out, STDOUT_FILENO);
    dup2(saved_err, STDERR_FILENO);
    close(saved_out);
    close(saved_err);
    drain(mem, p.said, sizeof(p.said));
    return p;
}

/* A command shaped as ftvm run: the VM, the process, checkpoints. */
typedef struct run_like {
    options_vm vm;
    daemon_opts process;
    uint64_t interval_ns;
    const char *secondary;
    bool quiet;
    options_own own[4];
    options_command c;
} run_like;

static void run_like_init(run_like *r, options_operands operands)
{
    memset(r, 0, sizeof(*r));
    r->own[0] = (options_own){ "checkpoint-interval", 0, OPTIONS_DURATION,
                               &r->interval_ns };
    r->own[1] = (options_own){ "secondary", 0, OPTIONS_STRING,
                               &r->secondary };
    r->own[2] = (options_own){ "quiet", 'q', OPTIONS_FLAG, &r->quiet };
    r->c = (options_command){
        .help = "usage: test [OPTIONS] GUEST.elf [ARGS...]\n",
        .help_end = "the end\n",
        .operands = operands,
        .operand = "guest image",
        .own = r->own,
        .vm = &r->vm,
        .process = &r->process,
        .checkpoints = &r->process.vmctl,
    };
}

static void test_gnu_style(void **state)
{
    (void)state;
    run_like r;
    run_like_init(&r, OPTIONS_IMAGE_AND_ARGS);

    /* Options before, between and after the operands. */
    parsed p = run(&r.c, (const char *const[]){
        "run", "--mem", "64M", "g.elf", "a=1", "--vcpus", "2", "b", "-q",
        "--checkpoint-interval", "20ms", "--secondary=h:1", NULL });
    assert_int_equal(p.rc, 0);
    assert_string_equal(p.found.operand, "g.elf");
    assert_string_equal(p.found.guest_args, "a=1 b");
    assert_int_equal(r.vm.cfg.mem_size, 64ull << 20);
    assert_true(r.vm.mem_given);
    assert_int_equal(r.vm.cfg.vcpus, 2);
    assert_true(r.quiet);
    assert_int_equal(r.interval_ns, 20000000ull);
    assert_string_equal(r.secondary, "h:1");
    assert_string_equal(p.said, "");
    free(p.found.guest_args);

    /* After "--", everything is the guest's, even what looks optional. */
    r.quiet = false;    /* a command's own options are its to default */
    p = run(&r.c, (const char *const[]){
        "run", "-m", "32M", "--", "g.elf", "--vcpus", "-q", NULL });
    assert_int_equal(p.rc, 0);
    assert_string_equal(p.found.operand, "g.elf");
    assert_string_equal(p.found.guest_args, "--vcpus -q");
    assert_int_equal(r.vm.cfg.vcpus, 1);
    assert_false(r.quiet);
    free(p.found.guest_args);

    /* No guest arguments: an empty command line. */
    p = run(&r.c, (const char *const[]){ "run", "g.elf", NULL });
    assert_int_equal(p.rc, 0);
    assert_string_equal(p.found.guest_args, "");
    free(p.found.guest_args);
}

static void test_defaults(void **state)
{
    (void)state;
    run_like r;
    run_like_init(&r, OPTIONS_IMAGE_AND_ARGS);
    /* Values of an earlier parse do not leak into the next. */
    r.vm.cfg.vcpus = 9;
    r.vm.mem_given = true;
    r.process.vmctl.keep = 99;
    parsed p = run(&r.c, (const char *const[]){ "run", "g.elf", NULL });
    assert_int_equal(p.rc, 0);
    assert_int_equal(r.vm.cfg.mem_size, 256ull << 20);
    assert_int_equal(r.vm.cfg.vcpus, 1);
    assert_false(r.vm.mem_given);
    assert_int_equal(r.process.vmctl.keep, 3);
    assert_null(r.process.control);
    free(p.found.guest_args);

    p = run(&r.c, (const char *const[]){
        "run", "--control", "/run/x.sock", "--metrics", ":9100",
        "--checkpoint-dir", "/d", "--checkpoint-every", "5s", "--keep", "7",
        "--net", "tap:t0", "--mac", "02:00:00:00:00:07", "--compress", "6",
        "g.elf", NULL });
    assert_int_equal(p.rc, 0);
    assert_string_equal(r.process.control, "/run/x.sock");
    assert_string_equal(r.process.metrics, ":9100");
    assert_string_equal(r.process.vmctl.checkpoint_dir, "/d");
    assert_int_equal(r.process.vmctl.checkpoint_every_ns, 5000000000ull);
    assert_int_equal(r.process.vmctl.keep, 7);
    assert_string_equal(r.vm.cfg.net, "tap:t0");
    assert_int_equal(r.vm.cfg.mac[5], 7);
    assert_int_equal(r.vm.cfg.ram_opts.compress_level, 6);
    free(p.found.guest_args);
}

static void test_errors(void **state)
{
    (void)state;
    run_like r;
    run_like_init(&r, OPTIONS_IMAGE_AND_ARGS);
    log_init("ftvm test");
    static const struct {
        const char *args[6];
        const char *says;
    } cases[] = {
        { { "run", "--bogus", "g.elf" },
          "ftvm test: unknown option, or one without its value: '--bogus'; "
          "see ftvm test --help\n" },
        { { "run", "g.elf", "--mem" },
          "ftvm test: unknown option, or one without its value: '--mem'" },
        { { "run", "--keep", "x", "g.elf" },
          "ftvm test: --keep 'x': expected a count from 1 to 100000\n" },
        { { "run", "--keep", "0", "g.elf" }, "--keep '0': expected a count" },
        { { "run", "--mem", "lots", "g.elf" },
          "ftvm test: --mem 'lots': expected a size such as 256M or 4G\n" },
        { { "run", "--mem", "3M", "g.elf" }, "multiple of 2 MiB" },
        { { "run", "--vcpus", "0", "g.elf" }, "--vcpus '0': expected" },
        { { "run", "--mac", "02:00", "g.elf" }, "--mac '02:00': expected" },
        { { "run", "--compress", "10", "g.elf" }, "--compress '10'" },
        { { "run", "--checkpoint-interval", "fast", "g.elf" },
          "ftvm test: --checkpoint-interval 'fast': expected a time from "
          "1ms up, such as 50ms or 2s\n" },
        { { "run", "--checkpoint-every", "5s", "g.elf" },
          "ftvm test: --checkpoint-every needs --checkpoint-dir\n" },
        { { "run" },
          "ftvm test: no guest image given; see ftvm test --help\n" },
        { { "run", "g.elf", "two words" }, "'two words' is empty or holds "
          "white space" },
        { { "run", "g.elf", "" }, "is empty or holds white space" },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        parsed p = run(&r.c, cases[i].args);
        if (p.rc != -EINVAL || !strstr(p.said, cases[i].says))
            fail_msg("case %zu: rc %d, said '%s'", i, p.rc, p.said);
        assert_null(p.found.guest_args);
    }
    log_init("ftvm");
}

static void test_operands(void **state)
{
    (void)state;
    /* One file, as restore and inspect take: '-' is an operand. */
    bool json = false;
    const options_own own[] = {
        { "json", 'j', OPTIONS_FLAG, &json },
        { NULL, 0, OPTIONS_FLAG, NULL },
    };
    options_command c = {
        .help = "usage: inspect FILE\n",
        .operands = OPTIONS_ONE_OPERAND,
        .operand = "FILE (or - for stdin)",
        .own = own,
    };
    parsed p = run(&c, (const char *const[]){ "inspect", "-", "-j", NULL });
    assert_int_equal(p.rc, 0);
    assert_string_equal(p.found.operand, "-");
    assert_true(json);
    assert_null(p.found.guest_args);
    p = run(&c, (const char *const[]){ "inspect", NULL });
    assert_int_equal(p.rc, -EINVAL);
    assert_non_null(strstr(p.said, "expected one FILE (or - for stdin), "
                                   "none given"));
    p = run(&c, (const char *const[]){ "inspect", "a", "b", NULL });
    assert_int_equal(p.rc, -EINVAL);
    assert_non_null(strstr(p.said, "'b' is extra"));
    /* A group the command does not take is an unknown option. */
    p = run(&c, (const char *const[]){ "inspect", "--mem", "64M", "a",
                                       NULL });
    assert_int_equal(p.rc, -EINVAL);
    assert_non_null(strstr(p.said, "unknown option"));

    /* None, as the secondary takes. */
    c.operands = OPTIONS_NO_OPERANDS;
    p = run(&c, (const char *const[]){ "secondary", "-j", "x", NULL });
    assert_int_equal(p.rc, -EINVAL);
    assert_non_null(strstr(p.said, "unexpected argument 'x'"));
    p = run(&c, (const char *const[]){ "secondary", NULL });
    assert_int_equal(p.rc, 0);
}

static void test_help(void **state)
{
    (void)state;
    run_like r;
    run_like_init(&r, OPTIONS_IMAGE_AND_ARGS);
    /* --help wins wherever it is, and says the rule and every group. */
    parsed p = run(&r.c, (const char *const[]){ "run", "g.elf", "--help",
                                                "--bogus", NULL });
    assert_int_equal(p.rc, 0);
    assert_true(p.found.help);
    assert_null(p.found.guest_args);
    static const char *const says[] = {
        "usage: test [OPTIONS]", "--mem SIZE", "--control PATH",
        "--checkpoint-dir DIR", "--keep N", "-h, --help",
        "Options may come anywhere", "the guest image", "`--`", "the end\n",
    };
    for (size_t i = 0; i < sizeof(says) / sizeof(says[0]); i++)
        if (!strstr(p.said, says[i]))
            fail_msg("--help lacks '%s':\n%s", says[i], p.said);
    /* A group a command does not take is not in its help. */
    r.c.checkpoints = NULL;
    p = run(&r.c, (const char *const[]){ "run", "-h", NULL });
    assert_true(p.found.help);
    assert_null(strstr(p.said, "--checkpoint-dir"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gnu_style),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_operands),
        cmocka_unit_test(test_help),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
