/*
 * primary: parse the command line, create and boot the VM with its
 * console through output commit, connect to the secondary, and drive it
 * all from one libevent loop (signals, network input, the control socket,
 * metrics, replication) while the vCPU threads run the guest.
 */
#include "tools/primary.h"

#include <errno.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "primary/outbuf.h"
#include "primary/replicator.h"
#include "daemon/control.h"
#include "daemon/metrics.h"
#include "tools/primary_ctl.h"
#include "tools/run.h"
#include "daemon/vmctl.h"

#define CMD "ftvm primary"

typedef struct prim_opts {
    vm_config cfg;
    const char *image;
    char *cmdline;
    const char *control;
    const char *metrics;
    replicator_opts rep;
} prim_opts;

typedef struct prim {
    prim_opts o;
    vm *v;
    outbuf *out;
    replicator *rep;
    vmctl *vc;
    struct event_base *base;
    int signal;
} prim;

static void usage(FILE *out)
{
    fputs("usage: ftvm primary GUEST.elf [GUEST ARGS...] --secondary "
          "HOST:PORT [OPTIONS]\n"
          "Runs a guest image in a KVM virtual machine and replicates it to\n"
          "a secondary (ftvm secondary --listen), checkpointing it many\n"
          "times a second; console and network output leave only once the\n"
          "checkpoint that produced them is safe on the secondary.  Options\n"
          "may come before or after the image; after `--` everything goes\n"
          "to the guest.\n"
          "\n"
          "replication:\n"
          "      --secondary HOST:PORT   the secondary (required)\n"
          "      --checkpoint-interval TIME\n"
          "                     between checkpoints (default 50ms)\n"
          "      --heartbeat TIME   PING when idle this long (default 50ms)\n"
          "      --failure-timeout TIME\n"
          "                     nothing heard for this long: the secondary\n"
          "                     is dead (default 300ms)\n"
          "      --reconnect TIME   start, and keep running, unprotected\n"
          "                     when the secondary is unreachable, and try\n"
          "                     it again every TIME (default: fail at start;\n"
          "                     later, wait for ftvmctl attach-secondary)\n"
          "      --stall-timeout TIME\n"
          "                     a package unacknowledged, or a write stuck,\n"
          "                     this long: the secondary is dead (default "
          "10s)\n"
          "      --metrics ADDR:PORT  Prometheus metrics at /metrics\n"
          "      --control PATH a control socket for ftvmctl (mode 0600)\n"
          "\n"
          "the VM:\n"
          "  -m, --mem SIZE     guest RAM: a multiple of 2M from 4M to 64G\n"
          "                     (default 256M)\n"
          "      --vcpus N      vCPUs (default 1)\n"
          "      --net SPEC     tap:IFNAME or dgram:LOCAL,REMOTE\n"
          "      --mac MAC      the guest's MAC (default 02:46:54:56:4d:01)\n"
          "      --compress N   zlib level 1-9 for pages sent (0 off)\n"
          "  -h, --help         this help\n"
          "\n"
          "TIME is e.g. 50ms, 2s, 1m.  Exit status as ftvm run's: the\n"
          "guest's halt status, 2 bad command line, 120 setup failed (the\n"
          "secondary unreachable without --reconnect), 121 the guest broke\n"
          "the ABI, 122 the monitor failed, 128+N signal N.\n", out);
}

static int duration_opt(const char *name, const char *arg, uint64_t *ns)
{
    if (run_parse_duration(arg, ns) == 0)
        return 0;
    fprintf(stderr, CMD ": --%s '%s': expected a time from 1ms up, such "
            "as 50ms or 2s\n", name, arg);
    return RUN_EXIT_USAGE;
}

/*
 * The guest's arguments are the non-options after the image, wherever
 * they are, and everything after "--".
 */
static int parse_args(prim_opts *o, int argc, char **argv, char **args,
                      int *nargs, bool *done)
{
    enum { OPT_SECONDARY = RUN_OPT_NEXT, OPT_INTERVAL, OPT_HEARTBEAT,
           OPT_FAILURE, OPT_RECONNECT, OPT_STALL, OPT_CONTROL,
           OPT_METRICS };
    static const struct option opts[] = {
        RUN_VM_LONGOPTS,
        { "secondary", required_argument, NULL, OPT_SECONDARY },
        { "checkpoint-interval", required_argument, NULL, OPT_INTERVAL },
        { "heartbeat", required_argument, NULL, OPT_HEARTBEAT },
        { "failure-timeout", required_argument, NULL, OPT_FAILURE },
        { "reconnect", required_argument, NULL, OPT_RECONNECT },
        { "stall-timeout", required_argument, NULL, OPT_STALL },
        { "control", required_argument, NULL, OPT_CONTROL },
        { "metrics", required_argument, NULL, OPT_METRICS },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    int c;

    optind = 0;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "-m:h", opts, NULL)) != -1) {
        int r = run_vm_option(c, optarg, &o->cfg, CMD);
        if (r != 1) {
            if (r)
                return r;
            continue;
        }
        r = 0;
        switch (c) {
        case 1:
            if (o->image)
                args[(*nargs)++] = optarg;
            else
                o->image = optarg;
            break;
        case OPT_SECONDARY:
            o->rep.secondary = optarg;
            break;
        case OPT_INTERVAL:
            r = duration_opt("checkpoint-interval", optarg,
                             &o->rep.interval_ns);
            break;
        case OPT_HEARTBEAT:
            r = duration_opt("heartbeat", optarg, &o->rep.heartbeat_ns);
            break;
        case OPT_FAILURE:
            r = duration_opt("failure-timeout", optarg, &o->rep.failure_ns);
            break;
        case OPT_RECONNECT:
            r = duration_opt("reconnect", optarg, &o->rep.reconnect_ns);
            break;
        case OPT_STALL:
            r = duration_opt("stall-timeout", optarg, &o->rep.stall_ns);
            break;
        case OPT_CONTROL:
            o->control = optarg;
            break;
        case OPT_METRICS:
            o->metrics = optarg;
            break;
        case 'h':
            usage(stdout);
            *done = true;
            return 0;
        default:
            fprintf(stderr, CMD ": unknown option, or one without its "
                    "value: '%s'; see " CMD " --help\n", argv[optind - 1]);
            return RUN_EXIT_USAGE;
        }
        if (r)
            return r;
    }
    while (optind < argc) {
        if (o->image)
            args[(*nargs)++] = argv[optind++];
        else
            o->image = argv[optind++];
    }
    return 0;
}

/* 0 to go on, or the exit status (0 after --help, with *done). */
static int parse(prim_opts *o, int argc, char **argv, bool *done)
{
    *done = false;
    vm_config_init(&o->cfg);
    int n = 0;
    char **args = calloc((size_t)argc + 1, sizeof(*args));
    if (!args)
        return RUN_EXIT_SETUP;
    int r = parse_args(o, argc, argv, args, &n, done);
    if (r == 0 && !*done && !o->image) {
        fputs(CMD ": no guest image given; see " CMD " --help\n", stderr);
        r = RUN_EXIT_USAGE;
    } else if (r == 0 && !*done && !o->rep.secondary) {
        fputs(CMD ": no --secondary HOST:PORT given; see " CMD " --help\n",
              stderr);
        r = RUN_EXIT_USAGE;
    }
    if (r == 0 && !*done) {
        o->cmdline = run_join_args(n, args, CMD);
        if (!o->cmdline)
            r = RUN_EXIT_USAGE;
    }
    free(args);
    return r;
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    (void)what;
    prim *pm = arg;
    if (!pm->signal)
        pm->signal = (int)sig;
    vm_stop(pm->v);
}

static void on_replication_ended(void *opaque)
{
    prim *pm = opaque;
    event_base_loopexit(pm->base, NULL);
}

static void on_stop(vm *v, void *arg)
{
    prim *pm = arg;
    vm_stop_info si;
    vm_get_stop_info(v, &si);
    /*
     * The guest ending (halt, fault) or an operator stopping it ends
     * replication with EOF; the monitor failing is this host's failure,
     * which the secondary is there to take over.
     */
    replicator_vm_stopped(pm->rep, si.reason == VM_STOP_ERROR,
                          on_replication_ended, pm);
}

static bool may_protect(void *opaque, char *err, size_t errlen)
{
    prim *pm = opaque;
    if (!pm->vc || !vmctl_busy(pm->vc))
        return true;
    snprintf(err, errlen, "a checkpoint to disk is being written; try "
             "again when it is done");
    return false;
}

static json_t *metrics_source(void *opaque)
{
    return vmctl_status(opaque);
}

static int run_loop(prim *pm)
{
    char err[1024];
    struct event *sigs[2] = { NULL, NULL };
    const int signos[2] = { SIGINT, SIGTERM };
    int status = RUN_EXIT_SETUP;
    control_server *ctl = NULL;
    metrics *metrics = NULL;

    /* The link's thread wakes the loop. */
    evthread_use_pthreads();
    /* Checkpoint intervals of a few ms need a timer finer than 1 ms. */
    struct event_config *ecfg = event_config_new();
    if (ecfg)
        event_config_set_flag(ecfg, EVENT_BASE_FLAG_PRECISE_TIMER);
    pm->base = ecfg ? event_base_new_with_config(ecfg) : NULL;
    event_config_free(ecfg);
    if (!pm->base) {
        fputs(CMD ": cannot create the event loop\n", stderr);
        return RUN_EXIT_SETUP;
    }
    for (int i = 0; i < 2; i++) {
        sigs[i] = evsignal_new(pm->base, signos[i], on_signal, pm);
        if (!sigs[i] || evsignal_add(sigs[i], NULL) < 0) {
            fputs(CMD ": cannot watch for signals\n", stderr);
            goto out;
        }
    }
    if (vm_attach(pm->v, pm->base, on_stop, pm) < 0) {
        fputs(CMD ": cannot put the VM on the event loop\n", stderr);
        goto out;
    }
    pm->o.rep.may_protect = may_protect;
    pm->o.rep.opaque = pm;
    if (replicator_new(&pm->rep, pm->v, pm->base, pm->out, &pm->o.rep, err,
                       sizeof(err)) < 0) {
        fprintf(stderr, CMD ": %s\n", err);
        goto out;
    }
    if (pm->o.control && control_server_new(&ctl, pm->base, pm->o.control,
                                            "primary", err, sizeof(err)) < 0) {
        fprintf(stderr, CMD ": %s\n", err);
        goto out;
    }
    vmctl_hooks hooks = {.opaque = pm->rep,
                         .status = primary_ctl_status,
                         .can_save = primary_ctl_can_save};
    vmctl_opts vo = {.keep = 1, .role = "primary", .hooks = &hooks};
    if (vmctl_new(&pm->vc, pm->v, pm->base, ctl, &vo, err, sizeof(err)) < 0 ||
        (ctl && primary_ctl_register(ctl, pm->rep) < 0)) {
        fprintf(stderr, CMD ": %s\n", err);
        goto out;
    }
    if (pm->o.metrics &&
        metrics_new(&metrics, pm->base, pm->o.metrics, "ftvm_primary",
                    primary_ctl_metric_hints, metrics_source, pm->vc, err,
                    sizeof(err)) < 0) {
        fprintf(stderr, CMD ": %s\n", err);
        goto out;
    }
    if (replicator_start(pm->rep, err, sizeof(err)) < 0) {
        fprintf(stderr, CMD ": %s (start the secondary first, or give "
                "--reconnect TIME to start unprotected and keep trying)\n",
                err);
        goto out;
    }
    if (vm_start(pm->v, err, sizeof(err)) < 0) {
        fprintf(stderr, CMD ": %s\n", err);
        goto out;
    }
    event_base_dispatch(pm->base);
    /* A checkpoint to disk being written ends before the VM goes. */
    while (vmctl_busy(pm->vc))
        event_base_loop(pm->base, EVLOOP_ONCE);
    status = run_exit_status(pm->v, pm->signal, CMD);
out:
    metrics_free(metrics);
    replicator_free(pm->rep);
    pm->rep = NULL;
    control_server_free(ctl);
    vmctl_free(pm->vc);
    pm->vc = NULL;
    /* The VM's events live on the base: free the VM first. */
    vm_destroy(pm->v);
    pm->v = NULL;
    for (int i = 0; i < 2; i++)
        if (sigs[i])
            event_free(sigs[i]);
    event_base_free(pm->base);
    return status;
}

/*
 * TEST ONLY: FTVM_TEST_CORRUPT_PACKAGE=N[,M...] damages the Nth (Mth...)
 * package after its checksum, for the end-to-end tests of refusals.
 */
static int test_hooks(prim_opts *o)
{
    const char *s = getenv("FTVM_TEST_CORRUPT_PACKAGE");
    if (!s || !*s)
        return 0;
    const char *p = s;
    for (size_t i = 0; *p; i++) {
        char *end;
        unsigned long long n = strtoull(p, &end, 10);
        if (i == REPLICATOR_CORRUPT_MAX || end == p || n == 0 ||
            (*end && *end != ',')) {
            fprintf(stderr,
                    CMD ": FTVM_TEST_CORRUPT_PACKAGE='%s': "
                        "expected up to %d package numbers from 1, separated "
                        "by commas\n",
                    s, REPLICATOR_CORRUPT_MAX);
            return RUN_EXIT_USAGE;
        }
        o->rep.corrupt[i] = n;
        p = *end ? end + 1 : end;
    }
    fprintf(stderr, CMD ": TEST: package(s) %s will be damaged in flight\n",
            s);
    return 0;
}

int primary_main(int argc, char **argv)
{
    prim pm = { 0 };
    char err[1024];
    bool done;

    int status = parse(&pm.o, argc, argv, &done);
    if (!status && !done)
        status = test_hooks(&pm.o);
    if (status || done) {
        free(pm.o.cmdline);
        return status;
    }
    /* A console reader or a secondary going away must not kill us. */
    signal(SIGPIPE, SIG_IGN);
    if (outbuf_new(&pm.out, STDOUT_FILENO) < 0) {
        fputs(CMD ": out of memory\n", stderr);
        free(pm.o.cmdline);
        return RUN_EXIT_SETUP;
    }
    pm.o.cfg.console_fn = outbuf_console;
    pm.o.cfg.console_opaque = pm.out;
    int r = vm_create(&pm.v, &pm.o.cfg, err, sizeof(err));
    if (r == 0)
        r = vm_boot(pm.v, pm.o.image, pm.o.cmdline, err, sizeof(err));
    free(pm.o.cmdline);
    if (r < 0) {
        fprintf(stderr, CMD ": %s\n", err);
        vm_destroy(pm.v);
        outbuf_free(pm.out);
        return RUN_EXIT_SETUP;
    }
    pm.o.rep.shape = (vmshape){ .mem_size = pm.o.cfg.mem_size,
                                .vcpus = pm.o.cfg.vcpus,
                                .has_net = vm_net(pm.v) != NULL };
    memcpy(pm.o.rep.shape.mac, pm.o.cfg.mac, 6);
    status = run_loop(&pm);
    outbuf_free(pm.out);
    return status;
}
