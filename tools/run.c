/*
 * run: parse the command line, create and boot the VM, and drive it from
 * a libevent loop in the main thread (signals, network input, the VM's
 * stop) while the vCPU threads run the guest.
 */
#include "tools/run.h"

#include <errno.h>
#include <event2/event.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vm/net.h"
#include "vm/vm.h"

typedef struct run_opts {
    vm_config cfg;
    const char *image;
    char *cmdline;          /* the guest's arguments, space-separated */
} run_opts;

typedef struct run_ctx {
    vm *v;
    struct event_base *base;
    int signal;             /* the one that stopped us, or 0 */
} run_ctx;

static void usage(FILE *out)
{
    fputs("usage: ftvm run [OPTIONS] GUEST.elf [GUEST ARGS...]\n"
          "Runs a guest image in a KVM virtual machine, its console on\n"
          "stdout, and exits with the status the guest halts with.\n"
          "Options end at the image: what follows goes to the guest.\n"
          "\n"
          "options:\n"
          "  -m, --mem SIZE     guest RAM: bytes, or with K, M or G; a\n"
          "                     multiple of 2M from 4M to 64G (default 256M)\n"
          "      --vcpus N      vCPUs (default 1; vCPU 0 runs the guest)\n"
          "      --net SPEC     network backend: tap:IFNAME or\n"
          "                     dgram:LOCAL,REMOTE (see docs/network.md)\n"
          "      --mac MAC      the guest's MAC (default 02:46:54:56:4d:01)\n"
          "  -h, --help         this help\n"
          "\n"
          "exit status: the guest's halt status (0..255), or\n"
          "  2    bad command line\n"
          "  120  the VM could not be set up (no /dev/kvm, bad image, ...)\n"
          "  121  the guest was stopped: it broke the hypercall ABI or\n"
          "       crashed (stderr says how)\n"
          "  122  the monitor failed while running the guest\n"
          "  128+N  stopped by signal N (SIGINT, SIGTERM)\n", out);
}

/* The guest splits its command line on spaces: an argument cannot hold one. */
static int join_args(run_opts *o, int argc, char **argv)
{
    size_t len = 1;

    for (int i = 0; i < argc; i++) {
        if (argv[i][strcspn(argv[i], " \t\n")] != '\0' || !argv[i][0]) {
            fprintf(stderr, "ftvm run: guest argument '%s' is empty or holds "
                    "white space, which the guest would split\n", argv[i]);
            return -EINVAL;
        }
        len += strlen(argv[i]) + 1;
    }
    o->cmdline = calloc(1, len);
    if (!o->cmdline)
        return -ENOMEM;
    for (int i = 0; i < argc; i++) {
        if (i)
            strcat(o->cmdline, " ");
        strcat(o->cmdline, argv[i]);
    }
    return 0;
}

/* 0 to go on, or the exit status (0 after --help). */
static int parse(run_opts *o, int argc, char **argv, bool *done)
{
    enum { OPT_VCPUS = 256, OPT_NET, OPT_MAC };
    static const struct option opts[] = {
        { "mem", required_argument, NULL, 'm' },
        { "vcpus", required_argument, NULL, OPT_VCPUS },
        { "net", required_argument, NULL, OPT_NET },
        { "mac", required_argument, NULL, OPT_MAC },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    int c;

    *done = false;
    vm_config_init(&o->cfg);
    optind = 0;     /* a fresh scan, whoever parsed before */
    opterr = 0;
    while ((c = getopt_long(argc, argv, "+m:h", opts, NULL)) != -1) {
        switch (c) {
        case 'm': {
            char why[160];
            if (vm_parse_size(optarg, &o->cfg.mem_size) < 0) {
                fprintf(stderr, "ftvm run: --mem '%s': expected a size such "
                        "as 256M or 4G\n", optarg);
                return RUN_EXIT_USAGE;
            }
            if (vm_check_mem_size(o->cfg.mem_size, why, sizeof(why)) < 0) {
                fprintf(stderr, "ftvm run: --mem '%s': %s\n", optarg, why);
                return RUN_EXIT_USAGE;
            }
            break;
        }
        case OPT_VCPUS: {
            char *end;
            long n = strtol(optarg, &end, 10);
            if (*end || end == optarg || n < 1 || n > VM_MAX_VCPUS) {
                fprintf(stderr, "ftvm run: --vcpus '%s': expected 1 to %d\n",
                        optarg, VM_MAX_VCPUS);
                return RUN_EXIT_USAGE;
            }
            o->cfg.vcpus = (unsigned)n;
            break;
        }
        case OPT_NET:
            o->cfg.net = optarg;
            break;
        case OPT_MAC:
            if (net_parse_mac(optarg, o->cfg.mac) < 0) {
                fprintf(stderr, "ftvm run: --mac '%s': expected six hex "
                        "bytes such as 02:00:00:00:00:01\n", optarg);
                return RUN_EXIT_USAGE;
            }
            break;
        case 'h':
            usage(stdout);
            *done = true;
            return 0;
        default:
            fprintf(stderr, "ftvm run: unknown option, or one without its "
                    "value: '%s'; see ftvm run --help\n", argv[optind - 1]);
            return RUN_EXIT_USAGE;
        }
    }
    if (optind >= argc) {
        fputs("ftvm run: no guest image given; see ftvm run --help\n",
              stderr);
        return RUN_EXIT_USAGE;
    }
    o->image = argv[optind];
    if (join_args(o, argc - optind - 1, argv + optind + 1) < 0)
        return RUN_EXIT_USAGE;
    return 0;
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    run_ctx *ctx = arg;

    (void)what;
    if (!ctx->signal)
        ctx->signal = (int)sig;
    vm_stop(ctx->v);
}

static void on_stop(vm *v, void *arg)
{
    run_ctx *ctx = arg;

    (void)v;
    event_base_loopexit(ctx->base, NULL);
}

static int exit_status(run_ctx *ctx)
{
    vm_stop_info si;

    vm_get_stop_info(ctx->v, &si);
    if (ctx->signal) {
        fprintf(stderr, "ftvm run: stopped by %s\n", strsignal(ctx->signal));
        return RUN_EXIT_SIGNAL + ctx->signal;
    }
    switch (si.reason) {
    case VM_STOP_HALT:
        return si.status;
    case VM_STOP_FAULT:
        fprintf(stderr, "%s\n", si.msg);
        return RUN_EXIT_FAULT;
    default:
        fprintf(stderr, "%s\n", si.msg[0] ? si.msg : "vm: stopped");
        return RUN_EXIT_ERROR;
    }
}

static int run_loop(run_ctx *ctx)
{
    char err[512];
    struct event *sigs[2] = { NULL, NULL };
    const int signos[2] = { SIGINT, SIGTERM };
    int status = RUN_EXIT_ERROR;

    ctx->base = event_base_new();
    if (!ctx->base) {
        fputs("ftvm run: cannot create the event loop\n", stderr);
        return RUN_EXIT_SETUP;
    }
    for (int i = 0; i < 2; i++) {
        sigs[i] = evsignal_new(ctx->base, signos[i], on_signal, ctx);
        if (!sigs[i] || evsignal_add(sigs[i], NULL) < 0) {
            fputs("ftvm run: cannot watch for signals\n", stderr);
            status = RUN_EXIT_SETUP;
            goto out;
        }
    }
    if (vm_attach(ctx->v, ctx->base, on_stop, ctx) < 0) {
        fputs("ftvm run: cannot put the VM on the event loop\n", stderr);
        status = RUN_EXIT_SETUP;
        goto out;
    }
    if (vm_start(ctx->v, err, sizeof(err)) < 0) {
        fprintf(stderr, "ftvm run: %s\n", err);
        status = RUN_EXIT_SETUP;
        goto out;
    }
    event_base_dispatch(ctx->base);
    status = exit_status(ctx);
out:
    /* The VM's events live on the base: free the VM first. */
    vm_destroy(ctx->v);
    ctx->v = NULL;
    for (int i = 0; i < 2; i++)
        if (sigs[i])
            event_free(sigs[i]);
    event_base_free(ctx->base);
    return status;
}

int run_main(int argc, char **argv)
{
    run_opts o = { .cmdline = NULL };
    run_ctx ctx = { .v = NULL };
    char err[512];
    bool done;

    int status = parse(&o, argc, argv, &done);
    if (status || done) {
        free(o.cmdline);
        return status;
    }
    /* A console reader that goes away must not kill the monitor. */
    signal(SIGPIPE, SIG_IGN);

    if (vm_create(&ctx.v, &o.cfg, err, sizeof(err)) < 0 ||
        vm_boot(ctx.v, o.image, o.cmdline, err, sizeof(err)) < 0) {
        fprintf(stderr, "ftvm run: %s\n", err);
        vm_destroy(ctx.v);
        free(o.cmdline);
        return RUN_EXIT_SETUP;
    }
    free(o.cmdline);
    return run_loop(&ctx);
}
