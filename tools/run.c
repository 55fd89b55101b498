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

#include <event2/thread.h>

#include "daemon/control.h"
#include "vm/restore.h"
#include "daemon/vmctl.h"
#include "vm/net.h"
#include "vm/vm.h"

typedef enum run_mode {
    MODE_RUN,       /* boot a guest image */
    MODE_RESTORE,   /* carry on from a checkpoint file */
} run_mode;

typedef struct run_opts {
    run_mode mode;
    vm_config cfg;
    bool mem_given;
    const char *image;      /* MODE_RUN: the guest; MODE_RESTORE: the file */
    char *cmdline;          /* the guest's arguments, space-separated */
    const char *control;    /* control socket path, or NULL */
    vmctl_opts ck;
} run_opts;

typedef struct run_ctx {
    vm *v;
    struct event_base *base;
    int signal;             /* the one that stopped us, or 0 */
    const run_opts *o;
} run_ctx;

static void usage(FILE *out, run_mode mode)
{
    if (mode == MODE_RUN)
        fputs("usage: ftvm run [OPTIONS] GUEST.elf [GUEST ARGS...]\n"
              "Runs a guest image in a KVM virtual machine, its console on\n"
              "stdout, and exits with the status the guest halts with.\n"
              "Options end at the image: what follows goes to the guest.\n",
              out);
    else
        fputs("usage: ftvm restore [OPTIONS] CHECKPOINT\n"
              "Carries on a VM from a checkpoint file (ftvm run\n"
              "--checkpoint-dir, ftvmctl save): RAM size and vCPUs come\n"
              "from the file, which is checked in full before the VM runs.\n",
              out);
    fputs("\n"
          "options:\n"
          "  -m, --mem SIZE     guest RAM: bytes, or with K, M or G; a\n"
          "                     multiple of 2M from 4M to 64G (default 256M;\n"
          "                     restore: the file's, and it must match)\n"
          "      --vcpus N      vCPUs (default 1; vCPU 0 runs the guest)\n"
          "      --net SPEC     network backend: tap:IFNAME or\n"
          "                     dgram:LOCAL,REMOTE (see docs/network.md)\n"
          "      --mac MAC      the guest's MAC (default 02:46:54:56:4d:01)\n"
          "      --control PATH a control socket for ftvmctl (mode 0600)\n"
          "      --checkpoint-dir DIR\n"
          "                     where checkpoints go (ftvmctl checkpoint)\n"
          "      --checkpoint-every TIME\n"
          "                     write one every TIME (e.g. 5s, 500ms, 2m)\n"
          "      --keep N       keep the newest N checkpoints (default 3)\n"
          "      --compress N   zlib level 1-9 for checkpoint pages (0 off)\n"
          "  -h, --help         this help\n"
          "\n", out);
    fputs("exit status: the guest's halt status (0..255), or\n"
          "  2    bad command line\n"
          "  120  the VM could not be set up (no /dev/kvm, bad image, ...)\n"
          "  121  the guest was stopped: it broke the hypercall ABI or\n"
          "       crashed (stderr says how)\n"
          "  122  the monitor failed while running the guest\n"
          "  128+N  stopped by signal N (SIGINT, SIGTERM)\n", out);
}

int run_parse_duration(const char *s, uint64_t *ns)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || v <= 0)
        return -EINVAL;
    double mult = 1e9;
    if (strcmp(end, "ms") == 0)
        mult = 1e6;
    else if (strcmp(end, "m") == 0 || strcmp(end, "min") == 0)
        mult = 60e9;
    else if (strcmp(end, "h") == 0)
        mult = 3600e9;
    else if (*end && strcmp(end, "s") != 0)
        return -EINVAL;
    if (v * mult < 1e6 || v * mult > 1e18)
        return -ERANGE;
    *ns = (uint64_t)(v * mult);
    return 0;
}

char *run_join_args(int argc, char **argv, const char *cmd)
{
    size_t len = 1;

    for (int i = 0; i < argc; i++) {
        if (argv[i][strcspn(argv[i], " \t\n")] != '\0' || !argv[i][0]) {
            fprintf(stderr, "%s: guest argument '%s' is empty or holds "
                    "white space, which the guest would split\n", cmd,
                    argv[i]);
            return NULL;
        }
        len += strlen(argv[i]) + 1;
    }
    char *line = calloc(1, len);
    for (int i = 0; line && i < argc; i++) {
        if (i)
            strcat(line, " ");
        strcat(line, argv[i]);
    }
    return line;
}

int run_vm_option(int opt, const char *arg, vm_config *cfg, const char *cmd)
{
    char *end;
    long n;
    switch (opt) {
    case 'm': {
        char why[160];
        if (vm_parse_size(arg, &cfg->mem_size) < 0) {
            fprintf(stderr, "%s: --mem '%s': expected a size such as 256M "
                    "or 4G\n", cmd, arg);
            return RUN_EXIT_USAGE;
        }
        if (vm_check_mem_size(cfg->mem_size, why, sizeof(why)) < 0) {
            fprintf(stderr, "%s: --mem '%s': %s\n", cmd, arg, why);
            return RUN_EXIT_USAGE;
        }
        return 0;
    }
    case RUN_OPT_COMPRESS:
        n = strtol(arg, &end, 10);
        if (*end || end == arg || n < 0 || n > 9) {
            fprintf(stderr, "%s: --compress '%s': expected a zlib level 0 "
                    "to 9\n", cmd, arg);
            return RUN_EXIT_USAGE;
        }
        cfg->ram_opts.compress_level = (int)n;
        return 0;
    case RUN_OPT_VCPUS:
        n = strtol(arg, &end, 10);
        if (*end || end == arg || n < 1 || n > VM_MAX_VCPUS) {
            fprintf(stderr, "%s: --vcpus '%s': expected 1 to %d\n", cmd,
                    arg, VM_MAX_VCPUS);
            return RUN_EXIT_USAGE;
        }
        cfg->vcpus = (unsigned)n;
        return 0;
    case RUN_OPT_NET:
        cfg->net = arg;
        return 0;
    case RUN_OPT_MAC:
        if (net_parse_mac(arg, cfg->mac) < 0) {
            fprintf(stderr, "%s: --mac '%s': expected six hex bytes such as "
                    "02:00:00:00:00:01\n", cmd, arg);
            return RUN_EXIT_USAGE;
        }
        return 0;
    default:
        return 1;
    }
}

/* 0 to go on, or the exit status (0 after --help). */
static int parse(run_opts *o, int argc, char **argv, bool *done)
{
    enum { OPT_CONTROL = RUN_OPT_NEXT, OPT_CKDIR, OPT_CKEVERY, OPT_KEEP };
    static const struct option opts[] = {
        RUN_VM_LONGOPTS,
        { "control", required_argument, NULL, OPT_CONTROL },
        { "checkpoint-dir", required_argument, NULL, OPT_CKDIR },
        { "checkpoint-every", required_argument, NULL, OPT_CKEVERY },
        { "keep", required_argument, NULL, OPT_KEEP },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *cmd = o->mode == MODE_RUN ? "ftvm run" : "ftvm restore";
    int c;

    *done = false;
    vm_config_init(&o->cfg);
    o->ck.keep = 3;
    optind = 0;     /* a fresh scan, whoever parsed before */
    opterr = 0;
    while ((c = getopt_long(argc, argv, "+m:h", opts, NULL)) != -1) {
        int r = run_vm_option(c, optarg, &o->cfg, cmd);
        if (r == 0 && c == 'm')
            o->mem_given = true;
        if (r == 0)
            continue;
        if (r != 1)
            return r;
        switch (c) {
        case OPT_CONTROL:
            o->control = optarg;
            break;
        case OPT_CKDIR:
            o->ck.checkpoint_dir = optarg;
            break;
        case OPT_CKEVERY:
            if (run_parse_duration(optarg, &o->ck.checkpoint_every_ns) < 0) {
                fprintf(stderr, "%s: --checkpoint-every '%s': expected a "
                        "time from 1ms up, such as 5s or 500ms\n", cmd,
                        optarg);
                return RUN_EXIT_USAGE;
            }
            break;
        case OPT_KEEP: {
            char *end;
            long n = strtol(optarg, &end, 10);
            if (*end || end == optarg || n < 1 || n > 100000) {
                fprintf(stderr, "%s: --keep '%s': expected a count from 1\n",
                        cmd, optarg);
                return RUN_EXIT_USAGE;
            }
            o->ck.keep = (unsigned)n;
            break;
        }
        case 'h':
            usage(stdout, o->mode);
            *done = true;
            return 0;
        default:
            fprintf(stderr, "ftvm run: unknown option, or one without its "
                    "value: '%s'; see ftvm run --help\n", argv[optind - 1]);
            return RUN_EXIT_USAGE;
        }
    }
    if (o->ck.checkpoint_every_ns && !o->ck.checkpoint_dir) {
        fprintf(stderr, "%s: --checkpoint-every needs --checkpoint-dir\n",
                cmd);
        return RUN_EXIT_USAGE;
    }
    if (optind >= argc) {
        fprintf(stderr, "%s: no %s given; see %s --help\n", cmd,
                o->mode == MODE_RUN ? "guest image" : "checkpoint file", cmd);
        return RUN_EXIT_USAGE;
    }
    o->image = argv[optind];
    if (o->mode == MODE_RESTORE) {
        if (optind + 1 < argc) {
            fprintf(stderr, "%s: one checkpoint file only; '%s' is extra\n",
                    cmd, argv[optind + 1]);
            return RUN_EXIT_USAGE;
        }
        return 0;
    }
    o->cmdline = run_join_args(argc - optind - 1, argv + optind + 1, cmd);
    if (!o->cmdline)
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

int run_exit_status(vm *v, int signal, const char *who)
{
    vm_stop_info si;

    vm_get_stop_info(v, &si);
    if (signal) {
        fprintf(stderr, "%s: stopped by %s\n", who, strsignal(signal));
        return RUN_EXIT_SIGNAL + signal;
    }
    switch (si.reason) {
    case VM_STOP_HALT:
        return si.status;
    case VM_STOP_REQUESTED:     /* ftvmctl quit */
        return 0;
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
    control_server *ctl = NULL;
    vmctl *vc = NULL;

    /* Checkpoints are written on a thread that wakes the loop when done. */
    evthread_use_pthreads();
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
    if (ctx->o->control &&
        control_server_new(&ctl, ctx->base, ctx->o->control,
                           ctx->o->mode == MODE_RUN ? "run" : "restore", err,
                           sizeof(err)) < 0) {
        fprintf(stderr, "ftvm: %s\n", err);
        status = RUN_EXIT_SETUP;
        goto out;
    }
    if (vmctl_new(&vc, ctx->v, ctx->base, ctl, &ctx->o->ck, err, sizeof(err)) <
        0) {
        fprintf(stderr, "ftvm: %s\n", err);
        status = RUN_EXIT_SETUP;
        goto out;
    }
    if (vm_start(ctx->v, err, sizeof(err)) < 0) {
        fprintf(stderr, "ftvm run: %s\n", err);
        status = RUN_EXIT_SETUP;
        goto out;
    }
    event_base_dispatch(ctx->base);
    /* A checkpoint being written ends (and fails) before the VM goes. */
    while (vmctl_busy(vc))
        event_base_loop(ctx->base, EVLOOP_ONCE);
    status = run_exit_status(ctx->v, ctx->signal,
                             ctx->o->mode == MODE_RUN ? "ftvm run"
                                                      : "ftvm restore");
out:
    control_server_free(ctl);
    vmctl_free(vc);
    /* The VM's events live on the base: free the VM first. */
    vm_destroy(ctx->v);
    ctx->v = NULL;
    for (int i = 0; i < 2; i++)
        if (sigs[i])
            event_free(sigs[i]);
    event_base_free(ctx->base);
    return status;
}

static char *fmt_size(uint64_t b, char *buf, size_t len)
{
    if (b % (1ull << 30) == 0)
        snprintf(buf, len, "%lluG", (unsigned long long)(b >> 30));
    else
        snprintf(buf, len, "%lluM", (unsigned long long)(b >> 20));
    return buf;
}

/* Shapes the VM after the checkpoint, creates it and loads it. */
static int restore_vm(run_opts *o, run_ctx *ctx, char *err, size_t errlen)
{
    restore_info info;
    int r = restore_probe(o->image, &info, err, errlen);
    if (r < 0)
        return r;
    char a[32], b[32];
    if (o->mem_given && o->cfg.mem_size != info.mem_size) {
        snprintf(err, errlen, "%s was saved from a VM with %s of RAM; "
                 "--mem %s differs", o->image,
                 fmt_size(info.mem_size, a, sizeof(a)),
                 fmt_size(o->cfg.mem_size, b, sizeof(b)));
        return -EINVAL;
    }
    if (info.has_net && !o->cfg.net) {
        snprintf(err, errlen, "%s holds a VM with a network device: give "
                 "--net (a TAP device or datagram socket to attach)",
                 o->image);
        return -EINVAL;
    }
    o->cfg.mem_size = info.mem_size;
    o->cfg.vcpus = info.vcpus;
    r = vm_create(&ctx->v, &o->cfg, err, errlen);
    if (r == 0)
        r = restore_load(ctx->v, o->image, err, errlen);
    return r;
}

static int main_common(run_mode mode, int argc, char **argv)
{
    run_opts o = { .mode = mode };
    run_ctx ctx = { .v = NULL, .o = &o };
    char err[1024];
    bool done;

    int status = parse(&o, argc, argv, &done);
    if (status || done) {
        free(o.cmdline);
        return status;
    }
    /* A console reader that goes away must not kill the monitor. */
    signal(SIGPIPE, SIG_IGN);

    int r;
    if (mode == MODE_RUN) {
        r = vm_create(&ctx.v, &o.cfg, err, sizeof(err));
        if (r == 0)
            r = vm_boot(ctx.v, o.image, o.cmdline, err, sizeof(err));
    } else {
        r = restore_vm(&o, &ctx, err, sizeof(err));
    }
    free(o.cmdline);
    if (r < 0) {
        fprintf(stderr, "%s: %s\n", mode == MODE_RUN ? "ftvm run"
                                                     : "ftvm restore", err);
        vm_destroy(ctx.v);
        return RUN_EXIT_SETUP;
    }
    return run_loop(&ctx);
}

int run_main(int argc, char **argv)
{
    return main_common(MODE_RUN, argc, argv);
}

int restore_main(int argc, char **argv)
{
    return main_common(MODE_RESTORE, argc, argv);
}
