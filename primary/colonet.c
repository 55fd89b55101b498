/* colonet: see colonet.h. */
#include "primary/colonet.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "net-compare/netcmp.h"
#ifdef FTVM_HAVE_PCAP
#include "net-compare/netcmp_pcap.h"
#endif
#include "vm/mono.h"

struct colonet {
    outqueue *q;
    pthread_mutex_t lock;
    netcmp *nc;
    uint64_t epoch;             /* 0: frames go straight to the queue */
    bool asked;                 /* a checkpoint was asked for this epoch */
    colonet_ask want;           /* found on a vCPU thread, for the tick */
    colonet_mirror_fn mirror;
    void *mirror_opaque;
#ifdef FTVM_HAVE_PCAP
    netcmp_pcap *log;
    bool log_dirty;             /* pairs written since the last flush */
#endif
    char *log_path;
    uint64_t ignored, mirrored, mirror_dropped, sent_failed;
    sampler latency;
};

int colonet_new(colonet **out, outqueue *q, uint64_t timeout_ns)
{
    colonet *n = calloc(1, sizeof(*n));
    if (!n)
        return -ENOMEM;
    if (netcmp_new(&n->nc, &(netcmp_opts){ .timeout_ns = timeout_ns }) < 0) {
        free(n);
        return -ENOMEM;
    }
    n->q = q;
    pthread_mutex_init(&n->lock, NULL);
    sampler_init(&n->latency, &sampler_ns);
    *out = n;
    return 0;
}

void colonet_free(colonet *n)
{
    if (!n)
        return;
#ifdef FTVM_HAVE_PCAP
    if (n->log)
        netcmp_pcap_close(n->log);
#endif
    free(n->log_path);
    netcmp_free(n->nc);
    pthread_mutex_destroy(&n->lock);
    free(n);
}

void colonet_set_timeout(colonet *n, uint64_t timeout_ns)
{
    pthread_mutex_lock(&n->lock);
    /* The comparator's timeout is fixed at its making: a new one (nothing
       is compared yet).  Its times are the SVM's (colonet_tick). */
    netcmp *nc;
    if (netcmp_new(&nc, &(netcmp_opts){ .timeout_ns = timeout_ns }) == 0) {
        netcmp_free(n->nc);
        n->nc = nc;
    }
    pthread_mutex_unlock(&n->lock);
}

int colonet_set_log(colonet *n, const char *path, char *err, size_t errlen)
{
#ifdef FTVM_HAVE_PCAP
    netcmp_pcap *pc;
    int r = netcmp_pcap_open(&pc, path, 0, err, errlen);
    if (r < 0)
        return r;
    char *p = strdup(path);
    if (!p) {
        netcmp_pcap_close(pc);
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    pthread_mutex_lock(&n->lock);
    if (n->log)
        netcmp_pcap_close(n->log);
    free(n->log_path);
    n->log = pc;
    n->log_path = p;
    pthread_mutex_unlock(&n->lock);
    return 0;
#else
    (void)n;
    snprintf(err, errlen, "--compare-log %s: ftvm was built without libpcap "
             "(scripts/bootstrap.sh installs libpcap-dev)", path);
    return -ENOTSUP;
#endif
}

void colonet_set_mirror(colonet *n, colonet_mirror_fn fn, void *opaque)
{
    pthread_mutex_lock(&n->lock);
    n->mirror = fn;
    n->mirror_opaque = opaque;
    pthread_mutex_unlock(&n->lock);
}

/* ---- with the lock held ---- */

/* The monotonic clock to the realtime clock, for the capture's stamps. */
static int64_t clock_offset(void)
{
    struct timespec rt;
    clock_gettime(CLOCK_REALTIME, &rt);
    return (int64_t)rt.tv_sec * 1000000000 + rt.tv_nsec - (int64_t)mono_ns();
}

static colonet_ask ask(colonet *n, colonet_ask a)
{
    if (n->asked)
        return COLONET_OK;
    n->asked = true;
    return a;
}

/*
 * Acts on every verdict: releases go out now, divergence asks (once per
 * epoch).  At a checkpoint (hold_id) releases are the epoch's leftovers,
 * held for the next ACK instead.
 */
static colonet_ask drain(colonet *n, bool at_checkpoint, uint64_t hold_id)
{
    colonet_ask a = COLONET_OK, r;
    netcmp_verdict v;
    while (netcmp_next(n->nc, &v)) {
        r = COLONET_OK;
        switch (v.kind) {
        case NETCMP_RELEASE:
            if (at_checkpoint) {
                outqueue_hold_frame(n->q, hold_id, v.frame->data,
                                    v.frame->len, v.frame->t_ns);
                break;
            }
            if (v.why == NETCMP_MATCHED)
                sampler_add(&n->latency, v.delay_ns);
            if (outqueue_send_frame(n->q, v.frame->data, v.frame->len,
                                    v.frame->t_ns) < 0)
                n->sent_failed++;
            break;
        case NETCMP_MISMATCH:
#ifdef FTVM_HAVE_PCAP
            if (n->log) {
                netcmp_pcap_write(n->log, &v, clock_offset());
                n->log_dirty = true;
            }
#endif
            r = ask(n, COLONET_MISMATCH);
            break;
        case NETCMP_TIMEOUT:
            r = ask(n, COLONET_TIMEOUT);
            break;
        case NETCMP_LIMIT:
            r = ask(n, COLONET_LIMIT);
            break;
        }
        if (a == COLONET_OK)
            a = r;
        netcmp_verdict_done(&v);
    }
    return a;
}

/* ---- the primary's frames (vCPU threads) ---- */

int colonet_transmit(void *opaque, const void *frame, size_t len)
{
    colonet *n = opaque;
    uint64_t now = mono_ns();
    pthread_mutex_lock(&n->lock);
    if (!n->epoch) {
        pthread_mutex_unlock(&n->lock);
        return outqueue_transmit(n->q, frame, len);
    }
    int rc = netcmp_put(n->nc, NETCMP_PRIMARY, frame, len, now);
    colonet_ask a = drain(n, false, 0);
    if (a != COLONET_OK && n->want == COLONET_OK)
        n->want = a;
    pthread_mutex_unlock(&n->lock);
    /* -ENOSPC: the guest sees FTVM_ENOSPC and sends again later. */
    return rc == -ENOMEM ? -ENOSPC : rc;
}

/* ---- the loop's ---- */

void colonet_input(void *opaque, const void *frame, size_t len)
{
    colonet *n = opaque;
    pthread_mutex_lock(&n->lock);
    if (n->epoch && n->mirror) {
        if (n->mirror(n->mirror_opaque, n->epoch, frame, len) == 0)
            n->mirrored++;
        else
            n->mirror_dropped++;
    }
    pthread_mutex_unlock(&n->lock);
}

void colonet_checkpoint(colonet *n, uint64_t id)
{
    uint64_t now = mono_ns();
    pthread_mutex_lock(&n->lock);
    netcmp_reset(n->nc, NETCMP_RESET_RELEASE, now);
    drain(n, true, n->epoch);
    n->epoch = id;
    n->asked = false;
    n->want = COLONET_OK;
    pthread_mutex_unlock(&n->lock);
}

colonet_ask colonet_secondary(colonet *n, uint64_t id, const void *frame,
                              size_t len, uint64_t now)
{
    colonet_ask a = COLONET_OK;
    pthread_mutex_lock(&n->lock);
    if (!n->epoch || id != n->epoch) {
        n->ignored++;
    } else {
        netcmp_put(n->nc, NETCMP_SECONDARY, frame, len, now);
        a = drain(n, false, 0);
    }
    pthread_mutex_unlock(&n->lock);
    return a;
}

colonet_ask colonet_tick(colonet *n, uint64_t now, uint64_t lag,
                         bool svm_known)
{
    colonet_ask a = COLONET_OK;
    pthread_mutex_lock(&n->lock);
#ifdef FTVM_HAVE_PCAP
    /* Here, not in the checkpoint's pause: a file write. */
    if (n->log_dirty) {
        netcmp_pcap_flush(n->log);
        n->log_dirty = false;
    }
#endif
    if (n->want != COLONET_OK) {
        a = n->want;
        n->want = COLONET_OK;
    } else if (n->epoch && svm_known && now > lag) {
        /* A frame put at t is late at t + lag + timeout: the SVM sends it
           lag after the primary did. */
        netcmp_tick(n->nc, now - lag);
        a = drain(n, false, 0);
    }
    pthread_mutex_unlock(&n->lock);
    return a;
}

void colonet_get_stats(colonet *n, colonet_stats *out)
{
    netcmp_stats s;
    pthread_mutex_lock(&n->lock);
    netcmp_get_stats(n->nc, &s);
    *out = (colonet_stats){
        .epoch = n->epoch,
        .frames = { s.frames[0], s.frames[1] },
        .compared = s.compared, .matched = s.matched,
        .mismatched = s.mismatched, .timeouts = s.timeouts,
        .limits = s.limits,
        .released_uncompared = s.released_uncompared,
        .released_at_checkpoint = s.released_at_reset,
        .held_frames = { s.held_frames[0], s.held_frames[1] },
        .flows = s.flows,
        .ignored_frames = n->ignored,
        .mirrored_frames = n->mirrored,
        .mirror_dropped = n->mirror_dropped,
        .sent_failed = n->sent_failed,
    };
    sampler_summarize(&n->latency, &out->latency_ns);
    pthread_mutex_unlock(&n->lock);
}

/* The longest queues, for status. */
typedef struct top {
    netcmp_flow_info f[COLONET_STATUS_FLOWS];
    size_t n;
} top;

static uint32_t held(const netcmp_flow_info *fi)
{
    return fi->held[0] + fi->held[1];
}

static void keep_top(void *opaque, const netcmp_flow_info *fi)
{
    top *t = opaque;
    size_t i;
    if (held(fi) == 0 && !fi->diverged)
        return;
    if (t->n < COLONET_STATUS_FLOWS)
        i = t->n++;
    else if (held(&t->f[t->n - 1]) >= held(fi))
        return;
    else
        i = t->n - 1;
    t->f[i] = *fi;
    for (; i > 0 && held(&t->f[i - 1]) < held(&t->f[i]); i--) {
        netcmp_flow_info x = t->f[i - 1];
        t->f[i - 1] = t->f[i];
        t->f[i] = x;
    }
}

json_t *colonet_status(colonet *n)
{
    colonet_stats s;
    colonet_get_stats(n, &s);
    top t = { .n = 0 };
    json_t *log = json_null();
    pthread_mutex_lock(&n->lock);
    netcmp_flows(n->nc, keep_top, &t);
#ifdef FTVM_HAVE_PCAP
    if (n->log) {
        netcmp_pcap_stats ps;
        netcmp_pcap_get_stats(n->log, &ps);
        log = json_pack("{s:s, s:I, s:I}", "path", n->log_path,
                        "pairs", (json_int_t)ps.pairs,
                        "dropped", (json_int_t)ps.dropped);
    }
#endif
    pthread_mutex_unlock(&n->lock);
    json_t *flows = json_array();
    for (size_t i = 0; i < t.n; i++) {
        char name[160];
        netcmp_key_format(&t.f[i].key, name, sizeof(name));
        json_array_append_new(flows, json_pack(
            "{s:s, s:I, s:I, s:b}", "flow", name,
            "primary", (json_int_t)t.f[i].held[0],
            "secondary", (json_int_t)t.f[i].held[1],
            "diverged", t.f[i].diverged));
    }
    return json_pack(
        "{s:{s:I, s:I}, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:{s:I, s:I}, "
        "s:I, s:{s:f, s:f, s:f}, s:o, s:I, s:I, s:I, s:I, s:o}",
        "frames", "primary", (json_int_t)s.frames[0],
        "secondary", (json_int_t)s.frames[1],
        "compared", (json_int_t)s.compared,
        "matched", (json_int_t)s.matched,
        "mismatched", (json_int_t)s.mismatched,
        "timeouts", (json_int_t)s.timeouts,
        "limits", (json_int_t)s.limits,
        "released_uncompared", (json_int_t)s.released_uncompared,
        "released_at_checkpoint", (json_int_t)s.released_at_checkpoint,
        "held_frames", "primary", (json_int_t)s.held_frames[0],
        "secondary", (json_int_t)s.held_frames[1],
        "flows", (json_int_t)s.flows,
        "latency_ms", "p50", s.latency_ns.p50 / 1e6,
        "p99", s.latency_ns.p99 / 1e6, "max", s.latency_ns.max / 1e6,
        "flow_queues", flows,
        "ignored_frames", (json_int_t)s.ignored_frames,
        "mirrored_frames", (json_int_t)s.mirrored_frames,
        "mirror_dropped", (json_int_t)s.mirror_dropped,
        "send_failed", (json_int_t)s.sent_failed,
        "compare_log", log);
}

void colonet_metrics(colonet *n, metrics_writer *w)
{
    colonet_stats s;
    colonet_get_stats(n, &s);
    metrics_counter(w, "ftvm_primary_colo_frames_compared_total",
                    "primary frames compared with the SVM's (COLO)",
                    s.compared);
    metrics_counter(w, "ftvm_primary_colo_frames_matched_total",
                    "primary frames released by a match (COLO)", s.matched);
    metrics_counter(w, "ftvm_primary_colo_frames_mismatched_total",
                    "primary frames that differed from the SVM's (COLO)",
                    s.mismatched);
    metrics_counter(w, "ftvm_primary_colo_frame_timeouts_total",
                    "flows the SVM did not match in time (COLO)", s.timeouts);
    metrics_counter(w, "ftvm_primary_colo_mirrored_frames_total",
                    "received frames mirrored to the SVM (COLO)",
                    s.mirrored_frames);
    metrics_counter(w, "ftvm_primary_colo_mirror_dropped_total",
                    "received frames the mirror could not queue (COLO)",
                    s.mirror_dropped);
    metrics_gauge(w, "ftvm_primary_colo_held_frames",
                  "primary frames waiting for the SVM's (COLO)",
                  s.held_frames[0]);
    metrics_histogram(w, "ftvm_primary_colo_compare_delay_seconds",
                      "what comparison added to a matched frame's way out",
                      &s.latency_ns);
}
