/*
 * secondary: parse the command line, listen for a primary, and drive the
 * receiver (secondary/receiver.h), failover (secondary/failover.h), the
 * control socket and the checkpoints to disk (daemon/vmctl.h) from one
 * libevent loop in the main thread.
 *
 * One primary at a time: a connection that ends before it has sent the
 * VM's shape was not a primary, and the secondary waits for another; once
 * the VM exists the process serves that primary to the end, which is a
 * failover (the process then runs the VM like `ftvm run`), a clean stop
 * (exit 0), the primary's loss before its first checkpoint (exit 3) or a
 * refused stream (exit 4).
 */
#include "tools/secondary.h"

#include <errno.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <event2/thread.h>
#include <getopt.h>
#include <inttypes.h>
#include <netdb.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "secondary/failover.h"
#include "secondary/receiver.h"
#include "daemon/control.h"
#include "daemon/metrics.h"
#include "tools/run.h"
#include "daemon/vmctl.h"
#include "vm/mono.h"

#define WHO "ftvm secondary"

typedef enum sd_state {
    SD_WAITING,
    SD_REPLICATING,     /* setup or active: see state_name */
    SD_FAILOVER,
    SD_RUNNING,
    SD_STOPPED,
} sd_state;

/* What to do once the receiver has stopped at our request. */
typedef enum sd_after {
    AFTER_NOTHING,
    AFTER_FAILOVER,
    AFTER_EXIT,
} sd_after;

typedef struct sd_opts {
    const char *listen;
    const char *control;
    const char *net;
    uint64_t failure_ns, heartbeat_ns;
    vmctl_opts ck;
    const char *metrics;
} sd_opts;

typedef struct sd {
    sd_opts o;
    struct event_base *base;
    struct evconnlistener *lis;
    char listen_addr[96];
    control_server *ctl;
    vmctl *vc;
    receiver *rx;
    vm *v;
    failover *fo;
    sd_state state;
    sd_after after;
    int after_status;
    int signal;
    int status;
    control_req *fo_req;        /* a failover command waiting for its answer */
    uint64_t fo_t0;         /* detection, or the command */
    double failover_ms;
    uint64_t continued_from;
    char fo_reason[640];
} sd;

__attribute__((format(printf, 1, 2)))
static void say(const char *fmt, ...)
{
    char line[1200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    fprintf(stderr, WHO ": %s\n", line);
}

static void usage(FILE *out)
{
    fputs("usage: ftvm secondary --listen ADDR:PORT [OPTIONS]\n"
          "Waits for a primary (ftvm primary --secondary ADDR:PORT), keeps\n"
          "its VM as a RAM cache, applying and acknowledging every\n"
          "checkpoint, and fails over when the primary dies or on\n"
          "`ftvmctl failover`: the VM then runs here, its console on\n"
          "stdout, as with ftvm run.\n"
          "\n"
          "options:\n"
          "      --listen ADDR:PORT   where the primary connects (port 0:\n"
          "                           any; the log says which)\n"
          "      --control PATH       a control socket for ftvmctl\n"
          "      --net SPEC           the VM's network backend after\n"
          "                           failover: tap:IFNAME or\n"
          "                           dgram:LOCAL,REMOTE (docs/network.md);\n"
          "                           required if the VM has a NIC\n"
          "      --failure-timeout TIME\n"
          "                           silence after which the primary is\n"
          "                           dead (default 300ms)\n"
          "      --heartbeat TIME     HEARTBEAT when idle this long\n"
          "                           (default 50ms)\n"
          "      --checkpoint-dir DIR where checkpoints of the cache (and\n"
          "                           after failover, of the VM) go\n"
          "      --checkpoint-every TIME\n"
          "                           write one every TIME\n"
          "      --keep N             keep the newest N (default 3)\n"
          "      --metrics ADDR:PORT  Prometheus metrics at /metrics\n"
          "  -h, --help               this help\n"
          "\n"
          "exit status before a failover:\n"
          "  0    replication stopped cleanly (the primary's or our\n"
          "       stop-replication, quit)\n"
          "  2    bad command line\n"
          "  3    the primary was lost before its first checkpoint\n"
          "  4    the primary's stream was refused (SHUT 1 sent)\n"
          "  120  setup failed (listening, control socket)\n"
          "  128+N  stopped by signal N\n"
          "after a failover, ftvm run's: the guest's halt status, 121, 122,\n"
          "128+N.\n", out);
}

static int parse_time(const char *opt, const char *arg, uint64_t *ns)
{
    if (run_parse_duration(arg, ns) == 0)
        return 0;
    fprintf(stderr, WHO ": --%s '%s': expected a time from 1ms up, such as "
            "300ms or 2s\n", opt, arg);
    return -EINVAL;
}

/* 0 to go on, or the exit status (0 after --help, with *done). */
static int parse(sd_opts *o, int argc, char **argv, bool *done)
{
    enum { OPT_LISTEN = 256, OPT_CONTROL, OPT_NET, OPT_FAILURE, OPT_HB,
           OPT_CKDIR, OPT_CKEVERY, OPT_KEEP, OPT_METRICS };
    static const struct option opts[] = {
        { "listen", required_argument, NULL, OPT_LISTEN },
        { "control", required_argument, NULL, OPT_CONTROL },
        { "net", required_argument, NULL, OPT_NET },
        { "failure-timeout", required_argument, NULL, OPT_FAILURE },
        { "heartbeat", required_argument, NULL, OPT_HB },
        { "checkpoint-dir", required_argument, NULL, OPT_CKDIR },
        { "checkpoint-every", required_argument, NULL, OPT_CKEVERY },
        { "keep", required_argument, NULL, OPT_KEEP },
        { "metrics", required_argument, NULL, OPT_METRICS },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    int c;

    *done = false;
    o->failure_ns = 300000000u;
    o->heartbeat_ns = 50000000u;
    o->ck.keep = 3;
    o->ck.role = "secondary";
    optind = 0;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "+h", opts, NULL)) != -1) {
        switch (c) {
        case OPT_LISTEN:
            o->listen = optarg;
            break;
        case OPT_CONTROL:
            o->control = optarg;
            break;
        case OPT_NET:
            o->net = optarg;
            break;
        case OPT_FAILURE:
            if (parse_time("failure-timeout", optarg, &o->failure_ns) < 0)
                return SEC_EXIT_USAGE;
            break;
        case OPT_HB:
            if (parse_time("heartbeat", optarg, &o->heartbeat_ns) < 0)
                return SEC_EXIT_USAGE;
            break;
        case OPT_CKDIR:
            o->ck.checkpoint_dir = optarg;
            break;
        case OPT_CKEVERY:
            if (parse_time("checkpoint-every", optarg,
                           &o->ck.checkpoint_every_ns) < 0)
                return SEC_EXIT_USAGE;
            break;
        case OPT_KEEP: {
            char *end;
            long n = strtol(optarg, &end, 10);
            if (*end || end == optarg || n < 1 || n > 100000) {
                fprintf(stderr, WHO ": --keep '%s': expected a count from "
                        "1\n", optarg);
                return SEC_EXIT_USAGE;
            }
            o->ck.keep = (unsigned)n;
            break;
        }
        case OPT_METRICS:
            o->metrics = optarg;
            break;
        case 'h':
            usage(stdout);
            *done = true;
            return 0;
        default:
            fprintf(stderr, WHO ": unknown option, or one without its "
                    "value: '%s'; see ftvm secondary --help\n",
                    argv[optind - 1]);
            return SEC_EXIT_USAGE;
        }
    }
    if (optind < argc) {
        fprintf(stderr, WHO ": unexpected argument '%s'; see ftvm secondary "
                "--help\n", argv[optind]);
        return SEC_EXIT_USAGE;
    }
    if (!o->listen) {
        fprintf(stderr, WHO ": --listen ADDR:PORT is required\n");
        return SEC_EXIT_USAGE;
    }
    if (o->heartbeat_ns >= o->failure_ns) {
        fprintf(stderr, WHO ": --heartbeat must be shorter than "
                "--failure-timeout\n");
        return SEC_EXIT_USAGE;
    }
    if (o->ck.checkpoint_every_ns && !o->ck.checkpoint_dir) {
        fprintf(stderr, WHO ": --checkpoint-every needs --checkpoint-dir\n");
        return SEC_EXIT_USAGE;
    }
    return 0;
}

/* "HOST:PORT" of a socket address, "[HOST]:PORT" for IPv6. */
static void addr_name(const struct sockaddr *sa, socklen_t len, char *out,
                      size_t outlen)
{
    char host[NI_MAXHOST], port[NI_MAXSERV];
    if (getnameinfo(sa, len, host, sizeof(host), port, sizeof(port),
                    NI_NUMERICHOST | NI_NUMERICSERV) != 0) {
        snprintf(out, outlen, "?");
        return;
    }
    snprintf(out, outlen, sa->sa_family == AF_INET6 ? "[%s]:%s" : "%s:%s",
             host, port);
}

static const char *state_name(sd *d)
{
    switch (d->state) {
    case SD_WAITING: return "waiting";
    case SD_REPLICATING: {
        receiver_stats st;
        receiver_get_stats(d->rx, &st);
        return st.applied ? "active" : "setup";
    }
    case SD_FAILOVER: return "failover";
    case SD_RUNNING: return "running";
    case SD_STOPPED: return "stopped";
    }
    return "?";
}

static uint64_t applied(sd *d)
{
    receiver_stats st;
    if (!d->rx)
        return 0;
    receiver_get_stats(d->rx, &st);
    return st.applied;
}

static void finish(sd *d, int status)
{
    d->status = status;
    event_base_loopexit(d->base, NULL);
}

/* ---- failover ---- */

static void on_vm_stop(vm *v, void *arg)
{
    sd *d = arg;
    d->status = run_exit_status(v, d->signal, WHO);
    event_base_loopexit(d->base, NULL);
}

static void answer_failover(sd *d, int rc, const char *err)
{
    if (!d->fo_req)
        return;
    if (rc < 0)
        control_reply_error(d->fo_req, rc, err);
    else
        control_reply(d->fo_req, json_pack("{s:f, s:I}", "failover_ms",
                                           d->failover_ms, "continued_from",
                                           (json_int_t)d->continued_from));
    d->fo_req = NULL;
}

static void fail_over(sd *d, const char *reason)
{
    char err[512];
    receiver_stats st;
    receiver_get_stats(d->rx, &st);
    d->state = SD_FAILOVER;
    snprintf(d->fo_reason, sizeof(d->fo_reason), "%s", reason);
    /* Keeps a checkpoint of the cache being written out of the start. */
    receiver_hold(d->rx);
    int rc = failover_start(&d->fo, d->v, d->base, receiver_shape(d->rx)->mac,
                            on_vm_stop, d, err, sizeof(err));
    receiver_release(d->rx);
    if (rc < 0) {
        say("failover failed: %s", err);
        answer_failover(d, rc, err);
        finish(d, RUN_EXIT_ERROR);
        return;
    }
    d->failover_ms = (mono_ns() - d->fo_t0) / 1e6;
    d->continued_from = st.last_id;
    d->state = SD_RUNNING;
    say("failover (%s): the VM runs here from checkpoint %" PRIu64 ", "
        "%.1f ms after %s", reason, st.last_id, d->failover_ms,
        d->fo_req ? "the command" : "detection");
    answer_failover(d, 0, NULL);
}

/* ---- the receiver's reports ---- */

static void on_vm(void *opaque, vm *v)
{
    sd *d = opaque;
    d->v = v;
    vmctl_set_vm(d->vc, v);
}

static void on_end(void *opaque, receiver_end why, const char *msg)
{
    sd *d = opaque;
    const char *peer = receiver_peer(d->rx);
    if (!d->v) {
        say("%s: %s; not a primary, waiting for one", peer, msg);
        d->state = SD_WAITING;
        if (d->after == AFTER_EXIT)
            finish(d, d->after_status);
        return;
    }
    if (d->after == AFTER_FAILOVER) {
        fail_over(d, "requested");
        return;
    }
    if (d->after == AFTER_EXIT) {
        d->state = SD_STOPPED;
        finish(d, d->after_status);
        return;
    }
    switch (why) {
    case RECEIVER_END_EOF:
        d->state = SD_STOPPED;
        say("%s: no failover", msg);
        finish(d, SEC_EXIT_CLEAN);
        return;
    case RECEIVER_END_LOST:
    case RECEIVER_END_TIMEOUT:
        if (applied(d)) {
            d->fo_t0 = receiver_end_ns(d->rx);
            say("the primary is lost: %s", msg);
            fail_over(d, why == RECEIVER_END_TIMEOUT ? "primary silent"
                                                     : "primary lost");
            return;
        }
        d->state = SD_STOPPED;
        say("the primary is lost before its first checkpoint (%s): nothing "
            "to fail over to", msg);
        finish(d, SEC_EXIT_NOTHING);
        return;
    case RECEIVER_END_PROTOCOL:
    case RECEIVER_END_LOCAL:
        d->state = SD_STOPPED;
        say("replication from %s refused: %s", peer, msg);
        finish(d, SEC_EXIT_REFUSED);
        return;
    }
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd,
                      struct sockaddr *sa, int len, void *arg)
{
    (void)l;
    sd *d = arg;
    char peer[96], err[512];
    addr_name(sa, (socklen_t)len, peer, sizeof(peer));
    if (d->state != SD_WAITING) {
        say("refusing a connection from %s: %s", peer,
            d->state == SD_REPLICATING ? "already replicating"
                                       : "replication is over here");
        close(fd);
        return;
    }
    /* One that ended before the bring-up; its thread is joined. */
    receiver_free(d->rx);
    d->rx = NULL;
    receiver_opts o = {
        .failure_timeout_ns = d->o.failure_ns,
        .heartbeat_ns = d->o.heartbeat_ns,
        .net = d->o.net,
        .on_vm = on_vm,
        .on_end = on_end,
        .opaque = d,
    };
    if (receiver_start(&d->rx, d->base, fd, peer, &o, err, sizeof(err)) < 0) {
        say("%s", err);
        return;
    }
    d->state = SD_REPLICATING;
    say("connection from %s", peer);
}

static void on_accept_error(struct evconnlistener *l, void *arg)
{
    (void)l;
    (void)arg;
    say("accepting a connection: %s", strerror(errno));
}

/* ---- ending it from here ---- */

/* Stops replication; then `after` happens (see on_end). */
static void stop_replication(sd *d, sd_after after, int status, int code)
{
    d->after = after;
    d->after_status = status;
    receiver_stop(d->rx, RECEIVER_END_LOCAL, code);
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    (void)what;
    sd *d = arg;
    if (!d->signal)
        d->signal = (int)sig;
    if (d->state == SD_RUNNING) {
        vm_stop(d->v);
    } else if (d->state == SD_REPLICATING) {
        say("stopped by %s", strsignal((int)sig));
        stop_replication(d, AFTER_EXIT, RUN_EXIT_SIGNAL + (int)sig,
                         RECEIVER_SHUT_LEAVING);
    } else if (d->state != SD_FAILOVER) {
        say("stopped by %s", strsignal((int)sig));
        finish(d, RUN_EXIT_SIGNAL + (int)sig);
    }
}

/* ---- control: what vmctl offers, plus the secondary's own ---- */

static control_outcome cmd_failover(void *opaque, control_req *req,
                                    json_t *args, json_t **result, int *rc,
                                    char *err, size_t errlen)
{
    (void)args; (void)result;
    sd *d = opaque;
    if (d->state != SD_REPLICATING) {
        *rc = -EINVAL;
        snprintf(err, errlen, "failover: the secondary is %s",
                 state_name(d));
        return CONTROL_DONE;
    }
    if (!applied(d) || d->after != AFTER_NOTHING) {
        *rc = -EAGAIN;
        snprintf(err, errlen, "failover: %s", d->after != AFTER_NOTHING
                 ? "replication is already being stopped"
                 : "no checkpoint has been applied yet: nothing to fail "
                   "over to");
        return CONTROL_DONE;
    }
    say("failover requested");
    d->fo_t0 = mono_ns();
    d->fo_req = req;
    stop_replication(d, AFTER_FAILOVER, 0, -1);
    return CONTROL_DEFERRED;
}

static control_outcome cmd_stop(void *opaque, control_req *req, json_t *args,
                                json_t **result, int *rc, char *err,
                                size_t errlen)
{
    (void)req; (void)args; (void)result;
    sd *d = opaque;
    if (d->state != SD_REPLICATING || d->after != AFTER_NOTHING) {
        *rc = -EINVAL;
        snprintf(err, errlen, "stop-replication: the secondary is %s",
                 state_name(d));
        return CONTROL_DONE;
    }
    say("stop-replication requested: no failover");
    stop_replication(d, AFTER_EXIT, SEC_EXIT_CLEAN, RECEIVER_SHUT_CLEAN);
    return CONTROL_DONE;
}

static void hook_quit(void *opaque)
{
    sd *d = opaque;
    if (d->state == SD_RUNNING)
        vm_stop(d->v);
    else if (d->state == SD_REPLICATING)
        stop_replication(d, AFTER_EXIT, SEC_EXIT_CLEAN, RECEIVER_SHUT_LEAVING);
    else if (d->state != SD_FAILOVER)
        finish(d, SEC_EXIT_CLEAN);
}

static json_t *replication_json(sd *d)
{
    receiver_stats st;
    receiver_get_stats(d->rx, &st);
    json_t *r = json_pack(
        "{s:I, s:I, s:I, s:{s:f, s:f, s:f}, s:{s:I, s:I}, s:I, s:I}",
        "applied", (json_int_t)st.applied,
        "last_id", (json_int_t)st.last_id,
        "refused", (json_int_t)st.refused,
        "apply_ms", "last", st.apply_last_ms, "p50", st.apply_p50_ms,
        "p99", st.apply_p99_ms,
        "package_bytes", "last", (json_int_t)st.package_bytes_last,
        "total", (json_int_t)st.package_bytes_total,
        "pings", (json_int_t)st.pings,
        "heartbeats_sent", (json_int_t)st.heartbeats);
    if (st.last_refusal[0])
        json_object_set_new(r, "last_refusal",
                            json_string(st.last_refusal));
    if (st.since_heard_ms >= 0)
        json_object_set_new(r, "last_heard_ms",
                            json_integer(st.since_heard_ms));
    return r;
}

static void hook_status(void *opaque, json_t *r)
{
    sd *d = opaque;
    json_t *vs = json_object_get(r, "state");
    if (vs)
        json_object_set(r, "vm_state", vs);
    json_object_set_new(r, "state", json_string(state_name(d)));
    /* The cache's clock is the checkpoint's until the VM runs here. */
    if (d->state != SD_RUNNING)
        json_object_del(r, "guest_clock_s");
    json_object_set_new(r, "listen", json_string(d->listen_addr));
    if (d->rx) {
        json_object_set_new(r, "primary", json_string(receiver_peer(d->rx)));
        json_object_set_new(r, "replication", replication_json(d));
    }
    if (d->state == SD_RUNNING)
        json_object_set_new(r, "failover",
                            json_pack("{s:f, s:I, s:s, s:i}", "ms",
                                      d->failover_ms, "continued_from",
                                      (json_int_t)d->continued_from, "reason",
                                      d->fo_reason, "announced",
                                      (int)failover_announced(d->fo)));
}

static int hook_can_save(void *opaque, char *err, size_t errlen)
{
    sd *d = opaque;
    if (d->state == SD_RUNNING || (d->state == SD_REPLICATING && applied(d)))
        return 0;
    snprintf(err, errlen, "the secondary is %s: %s", state_name(d),
             d->state == SD_REPLICATING || d->state == SD_WAITING
             ? "no checkpoint has been applied yet" : "nothing to save");
    return -EAGAIN;
}

/* The final phase of a checkpoint sees the cache between two packages. */
static int gate_close(void *opaque, char *err, size_t errlen)
{
    (void)err;
    (void)errlen;
    receiver_hold(((sd *)opaque)->rx);
    return 0;
}

static void gate_open(void *opaque)
{
    receiver_release(((sd *)opaque)->rx);
}

static const metrics_hint metric_hints[] = {
    {"replication.applied", "checkpoints_applied_total", METRICS_COUNTER, 0,
     "checkpoints applied to the RAM cache and acknowledged"},
    {"replication.refused", "checkpoints_refused_total", METRICS_COUNTER, 0,
     "packages refused (NACK): nothing of them applied"},
    {"replication.last_id", "last_checkpoint", METRICS_GAUGE, 0,
     "the last checkpoint applied"},
    {"replication.apply_ms.p99", NULL, METRICS_GAUGE, 0,
     "99th percentile validate-and-apply time per package, recent, ms"},
    {"replication.package_bytes.total", "package_bytes_total", METRICS_COUNTER,
     0, "bytes of checkpoint packages applied"},
    {"replication.pings", "pings_total", METRICS_COUNTER, 0, "PINGs answered"},
    {"replication.heartbeats_sent", "heartbeats_sent_total", METRICS_COUNTER,
     0, "HEARTBEATs sent to the primary"},
    {"replication.last_heard_ms", NULL, METRICS_GAUGE, 0,
     "ms since data last arrived from the primary"},
    {"failover.ms", NULL, METRICS_GAUGE, 0,
     "detection (or command) to vCPUs running, ms"},
    {"state", NULL, METRICS_GAUGE, 0,
     "waiting, setup, active, failover, "
     "running or stopped"},
    {NULL, NULL, METRICS_GAUGE, 0, NULL},
};

static json_t *metrics_source(void *opaque)
{
    return vmctl_status(opaque);
}

/* ---- the process ---- */

static int start_listening(sd *d, char *err, size_t errlen)
{
    char host[256];
    const char *colon = strrchr(d->o.listen, ':');
    if (!colon || colon == d->o.listen || !colon[1]) {
        snprintf(err, errlen, "--listen '%s': expected ADDR:PORT",
                 d->o.listen);
        return -EINVAL;
    }
    snprintf(host, sizeof(host), "%.*s", (int)(colon - d->o.listen),
             d->o.listen);
    if (host[0] == '[' && host[strlen(host) - 1] == ']') {
        memmove(host, host + 1, strlen(host));
        host[strlen(host) - 1] = '\0';
    }
    struct addrinfo hints = { .ai_family = AF_UNSPEC,
                              .ai_socktype = SOCK_STREAM,
                              .ai_flags = AI_PASSIVE | AI_NUMERICSERV },
                    *ai;
    int r = getaddrinfo(host, colon + 1, &hints, &ai);
    if (r != 0) {
        snprintf(err, errlen, "--listen '%s': %s", d->o.listen,
                 gai_strerror(r));
        return -EINVAL;
    }
    d->lis = evconnlistener_new_bind(d->base, on_accept, d,
                                     LEV_OPT_CLOSE_ON_FREE |
                                     LEV_OPT_CLOSE_ON_EXEC |
                                     LEV_OPT_REUSEABLE, 4, ai->ai_addr,
                                     (int)ai->ai_addrlen);
    int e = errno;
    freeaddrinfo(ai);
    if (!d->lis) {
        snprintf(err, errlen, "--listen '%s': %s", d->o.listen, strerror(e));
        return -e;
    }
    evconnlistener_set_error_cb(d->lis, on_accept_error);
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    getsockname(evconnlistener_get_fd(d->lis), (struct sockaddr *)&ss, &len);
    addr_name((struct sockaddr *)&ss, len, d->listen_addr,
              sizeof(d->listen_addr));
    return 0;
}

static int serve(sd *d)
{
    char err[512];
    struct event *sigs[2] = { NULL, NULL };
    const int signos[2] = { SIGINT, SIGTERM };
    int status = RUN_EXIT_SETUP;
    metrics *metrics = NULL;
    vmctl_hooks hooks = {
        .opaque = d,
        .status = hook_status,
        .can_save = hook_can_save,
        .quit = hook_quit,
        .gate = {.close = gate_close, .open = gate_open, .opaque = d},
    };
    d->o.ck.hooks = &hooks;

    /* The receiver and checkpoint threads wake the loop. */
    evthread_use_pthreads();
    d->base = event_base_new();
    if (!d->base) {
        say("cannot create the event loop");
        return RUN_EXIT_SETUP;
    }
    for (int i = 0; i < 2; i++) {
        sigs[i] = evsignal_new(d->base, signos[i], on_signal, d);
        if (!sigs[i] || evsignal_add(sigs[i], NULL) < 0) {
            say("cannot watch for signals");
            goto out;
        }
    }
    if (d->o.control &&
        control_server_new(&d->ctl, d->base, d->o.control, "secondary", err,
                           sizeof(err)) < 0) {
        say("%s", err);
        goto out;
    }
    if (vmctl_new(&d->vc, NULL, d->base, d->ctl, &d->o.ck, err, sizeof(err)) <
        0) {
        say("%s", err);
        goto out;
    }
    if (d->ctl) {
        control_register(d->ctl, "failover",
                         "run the VM here now, from the "
                         "last checkpoint applied",
                         cmd_failover, d);
        control_register(d->ctl, "stop-replication",
                         "end replication without "
                         "failing over (SHUT 0) and exit",
                         cmd_stop, d);
    }
    if (d->o.metrics &&
        metrics_new(&metrics, d->base, d->o.metrics, "ftvm_secondary",
                    metric_hints, metrics_source, d->vc, err,
                    sizeof(err)) < 0) {
        say("%s", err);
        goto out;
    }
    if (start_listening(d, err, sizeof(err)) < 0) {
        say("%s", err);
        goto out;
    }
    say("listening on %s", d->listen_addr);
    event_base_dispatch(d->base);
    /* A checkpoint being written ends before its VM goes. */
    while (vmctl_busy(d->vc))
        event_base_loop(d->base, EVLOOP_ONCE);
    status = d->status;
out:
    answer_failover(d, -ECANCELED, "the secondary is exiting");
    if (d->lis)
        evconnlistener_free(d->lis);
    metrics_free(metrics);
    control_server_free(d->ctl);
    vmctl_free(d->vc);
    receiver_free(d->rx);
    failover_free(d->fo);
    /* The VM's events live on the base: free the VM first. */
    vm_destroy(d->v);
    for (int i = 0; i < 2; i++)
        if (sigs[i])
            event_free(sigs[i]);
    event_base_free(d->base);
    return status;
}

int secondary_main(int argc, char **argv)
{
    sd d = { .state = SD_WAITING };
    bool done;
    int status = parse(&d.o, argc, argv, &done);
    if (status || done)
        return status;
    /* A primary or console reader that goes away must not kill us. */
    signal(SIGPIPE, SIG_IGN);
    return serve(&d);
}
