/* svm: see svm.h. */
#include "secondary/svm.h"

#include <errno.h>
#include <event2/event.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint/qfile.h"
#include "checkpoint/retpath.h"
#include "checkpoint/savevm.h"
#include "daemon/bytebuf.h"
#include "daemon/log.h"
#include "secondary/replica.h"
#include "secondary/svmnet.h"
#include "vm/pc.h"
#include "vm/mono.h"

/* A return path that had no room is tried again this soon. */
#define RETRY_NS 1000000ull

struct svm {
    svm_opts o;
    vm *v;
    bool live;              /* failed over: the VM is the caller's */
    bool started;
    struct event *ev_flush;
    svmnet *net;            /* its NIC's input and output */
    qfile *dev;             /* device state, cache to SVM (reused) */

    pthread_mutex_t lock;   /* the console's */
    uint64_t tag;           /* the checkpoint of the last reset */
    bool announce;          /* tell the primary it runs from tag */
    bytebuf pend;           /* written, not yet sent */
    /*
     * Sent, and not yet known to be released by the primary (its
     * ftvm-colo-rel): written again at failover.  kbase is the offset,
     * since the reset, of kept's first byte; answer: a COLO_RELEASED is
     * due.
     */
    bytebuf kept;
    uint64_t kbase;
    bool answer;
    uint64_t released_bytes;
    uint64_t console_bytes, sent_bytes, dropped_bytes;

    uint64_t resets, last_pages;
    sampler reset_ns, pages;
};

/* ---- the console (SVM vCPU threads) ---- */

static int svm_console(void *opaque, const void *buf, size_t len)
{
    svm *s = opaque;
    pthread_mutex_lock(&s->lock);
    s->console_bytes += len;
    if (s->live) {
        /* Under the lock: after what go_live handed over first. */
        s->o.live_console(s->o.live_opaque, buf, len);
        pthread_mutex_unlock(&s->lock);
        return 0;
    }
    if (!bytebuf_add(&s->pend, buf, len, SVM_MAX_PENDING))
        s->dropped_bytes += len;
    pthread_mutex_unlock(&s->lock);
    event_active(s->ev_flush, EV_READ, 0);
    return 0;
}

/* ---- the return path (loop) ---- */

static void on_flush(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    svm *s = arg;
    retpath_msg m;
    bool again = false;
    pthread_mutex_lock(&s->lock);
    if (!s->live && s->announce) {
        m = (retpath_msg){ .type = RETPATH_COLO_CONSOLE, .value64 = s->tag };
        int r = s->o.send(s->o.send_opaque, &m);
        if (r > 0)
            s->announce = false;
        again = r == 0;
    }
    if (!s->live && s->answer) {
        m = (retpath_msg){ .type = RETPATH_COLO_RELEASED, .value64 = s->tag,
                           .offset = s->kbase };
        int r = s->o.send(s->o.send_opaque, &m);
        if (r > 0)
            s->answer = false;
        again |= r == 0;
    }
    while (!s->live && !s->announce && s->pend.len) {
        size_t n = s->pend.len < RETPATH_COLO_DATA_MAX ? s->pend.len
                                                       : RETPATH_COLO_DATA_MAX;
        m = (retpath_msg){ .type = RETPATH_COLO_CONSOLE, .value64 = s->tag,
                           .len = (uint16_t)n };
        memcpy(m.text, s->pend.data, n);
        /*
         * Kept first: no room means the primary releases nothing of late
         * (a divergence: its checkpoint resets us), so wait for it.
         */
        if (!bytebuf_add(&s->kept, s->pend.data, n, SVM_MAX_PENDING))
            break;
        int r = s->o.send(s->o.send_opaque, &m);
        if (r <= 0) {
            s->kept.len -= n;
            again |= r == 0;    /* gone: kept for a failover */
            break;
        }
        bytebuf_drop(&s->pend, n);
        s->sent_bytes += n;
    }
    pthread_mutex_unlock(&s->lock);
    if (again) {
        struct timeval tv = mono_tv(RETRY_NS);
        event_add(s->ev_flush, &tv);
    }
}

/* ---- the reset (loop, cache held) ---- */

/* Device state: saved from the cache, loaded into the SVM. */
static int copy_devices(svm *s, vm *cache, char *err, size_t errlen)
{
    qfile_mem_reset(s->dev);
    savevm_put_header(s->dev);
    registry_save_devices(vm_registry(cache), s->dev, NULL);
    savevm_put_eof(s->dev);
    if (qfile_error(s->dev)) {
        snprintf(err, errlen, "saving the cache's devices: %s",
                 qfile_errmsg(s->dev));
        return qfile_error(s->dev);
    }
    size_t len;
    const uint8_t *d = qfile_mem_data(s->dev, &len);
    qfile *f = qfile_open_view(d, len, "svm-devices");
    savevm_loader *l = f ? savevm_loader_new(&registry_target_ops,
                                             vm_registry(s->v), NULL)
                         : NULL;
    int r = l ? savevm_load_checked(l, f) : -ENOMEM;
    if (r < 0)
        snprintf(err, errlen, "loading the SVM's devices: %s",
                 f ? qfile_errmsg(f) : "out of memory");
    savevm_loader_free(l);
    qfile_close(f);
    return r;
}

/*
 * Copies the pages either VM dirtied and clears both bitmaps.  The first
 * time (first: into an SVM that never ran) the cache's bits are every
 * page the bring-up and the packages stored, which is every page not
 * zero; its zero pages are not copied either, since fresh memory reads
 * as zero already.  Touching the rest would fault in every page of both
 * VMs (shared memory has no zero page): 400 ms for 64 MiB here.  The
 * pages copied.
 */
static uint64_t copy_pages(vm *cache, vm *svmv, bool first)
{
    size_t nc, ns;
    ram_block *cb = vm_ram_blocks(cache, &nc);
    ram_block *sb = vm_ram_blocks(svmv, &ns);
    uint64_t pages = 0;
    for (size_t i = 0; i < nc && i < ns; i++) {
        uint64_t npages = cb[i].length / RAM_PAGE_SIZE;
        size_t words = ram_bitmap_longs(cb[i].length);
        for (size_t w = 0; w < words; w++) {
            unsigned long bits =
                __atomic_exchange_n(&cb[i].dirty[w], 0, __ATOMIC_ACQ_REL) |
                __atomic_exchange_n(&sb[i].dirty[w], 0, __ATOMIC_ACQ_REL);
            while (bits) {
                unsigned b = (unsigned)__builtin_ctzl(bits);
                bits &= bits - 1;
                uint64_t pg = (uint64_t)w * (8 * sizeof(long)) + b;
                if (pg >= npages)
                    break;
                if (first &&
                    ram_page_is_zero(cb[i].host + pg * RAM_PAGE_SIZE))
                    continue;
                memcpy(sb[i].host + pg * RAM_PAGE_SIZE,
                       cb[i].host + pg * RAM_PAGE_SIZE, RAM_PAGE_SIZE);
                pages++;
            }
        }
    }
    return pages;
}

static void set_tag(svm *s, uint64_t id)
{
    pthread_mutex_lock(&s->lock);
    s->tag = id;
    /* The old checkpoint's: the primary is past them. */
    s->pend.len = s->kept.len = 0;
    s->kbase = 0;
    s->answer = false;
    s->announce = true;
    pthread_mutex_unlock(&s->lock);
    event_active(s->ev_flush, EV_READ, 0);
}

int svm_prepare(svm *s, const vmshape *shape, char *err, size_t errlen)
{
    vm_config cfg;
    if (shape->machine == VM_MACHINE_PC) {
        snprintf(err, errlen, "%s", PC_NO_COLO);
        return -ENOTSUP;
    }
    if (shape->disk_size) {
        snprintf(err, errlen, "%s", VM_DISK_NO_COLO);
        return -ENOTSUP;
    }
    /* A NIC without a host side until failover (svmnet.h). */
    int r = replica_config(shape, "none", NULL, &cfg, err, errlen);
    if (r < 0)
        return r;
    if (shape->has_net) {
        cfg.transmit_fn = svmnet_transmit;
        cfg.transmit_opaque = s->net;
    }
    cfg.console_fn = svm_console;
    cfg.console_opaque = s;
    r = vm_create(&s->v, &cfg, err, errlen);
    if (r < 0)
        s->v = NULL;
    return r;
}

static int create(svm *s, vm *cache, const vmshape *shape, uint64_t id,
                  char *err, size_t errlen)
{
    int r = 0;
    if (!s->v)
        r = svm_prepare(s, shape, err, errlen);
    if (r < 0)
        return r;
    s->last_pages = copy_pages(cache, s->v, true);
    r = copy_devices(s, cache, err, errlen);
    svmnet_end_reset(s->net, s->v, id);
    if (r == 0)
        r = vm_attach(s->v, s->o.base, s->o.on_stop, s->o.stop_arg);
    set_tag(s, id);
    if (r == 0)
        r = vm_start(s->v, err, errlen);
    s->started = r == 0;
    if (r < 0) {
        vm_destroy(s->v);
        s->v = NULL;
    }
    return r;
}

int svm_reset(svm *s, vm *cache, const vmshape *shape, uint64_t id,
              char *err, size_t errlen)
{
    if (s->live)
        return 0;
    uint64_t t0 = mono_ns();
    int r;
    if (!s->started) {
        r = create(s, cache, shape, id, err, errlen);
    } else {
        svmnet_begin_reset(s->net);
        r = vm_pause(s->v, err, errlen);
        if (r < 0) {
            svmnet_end_reset(s->net, s->v, s->tag);
            return r;
        }
        vm_sync_dirty(s->v);
        s->last_pages = copy_pages(cache, s->v, false);
        r = copy_devices(s, cache, err, errlen);
        svmnet_end_reset(s->net, s->v, id);
        set_tag(s, id);
        char rerr[256];
        if (vm_resume(s->v, rerr, sizeof(rerr)) < 0 && r == 0) {
            snprintf(err, errlen, "resuming the SVM: %s", rerr);
            r = -EIO;
        }
    }
    if (r < 0)
        return r;
    s->resets++;
    sampler_add(&s->reset_ns, mono_ns() - t0);
    sampler_add(&s->pages, s->last_pages);
    return 0;
}

vm *svm_vm(const svm *s)
{
    return s->started ? s->v : NULL;
}

int svm_go_live(svm *s, vm *cache, char *err, size_t errlen)
{
    pthread_mutex_lock(&s->lock);
    s->live = true;
    /* What the primary may not have released, then what it never had. */
    bytebuf *both[] = { &s->kept, &s->pend };
    for (size_t i = 0; i < 2; i++) {
        if (both[i]->len)
            s->o.live_console(s->o.live_opaque, both[i]->data, both[i]->len);
        both[i]->len = 0;
    }
    pthread_mutex_unlock(&s->lock);
    return vm_net(s->v) ? svmnet_go_live(s->net, s->v, cache, err, errlen)
                        : 0;
}

void svm_release(svm *s, uint64_t id, uint64_t console)
{
    pthread_mutex_lock(&s->lock);
    bool ours = !s->live && id == s->tag && s->tag;
    if (ours && console > s->kbase && console <= s->kbase + s->kept.len) {
        size_t n = (size_t)(console - s->kbase);
        bytebuf_drop(&s->kept, n);
        s->kbase = console;
        s->released_bytes += n;
    }
    /* Answered with what is known (a repeat gets the same answer). */
    if (ours && console <= s->kbase)
        s->answer = true;
    pthread_mutex_unlock(&s->lock);
    if (ours)
        event_active(s->ev_flush, EV_READ, 0);
}

void svm_input(svm *s, uint64_t id, const void *frame, size_t len)
{
    svmnet_input(s->net, id, frame, len);
}

void svm_get_stats(svm *s, svm_stats *out)
{
    memset(out, 0, sizeof(*out));
    pthread_mutex_lock(&s->lock);
    out->reset_to = s->tag;
    out->console_bytes = s->console_bytes;
    out->sent_bytes = s->sent_bytes;
    out->dropped_bytes = s->dropped_bytes;
    out->released_bytes = s->released_bytes;
    out->kept_bytes = s->kept.len;
    pthread_mutex_unlock(&s->lock);
    svmnet_get_stats(s->net, &out->net);
    out->running = s->v && vm_get_state(s->v) == VM_RUNNING;
    out->resets = s->resets;
    out->last_pages = s->last_pages;
    sampler_summarize(&s->reset_ns, &out->reset_ns);
    sampler_summarize(&s->pages, &out->pages);
    if (s->v) {
        size_t n;
        ram_block *b = vm_ram_blocks(s->v, &n);
        for (size_t i = 0; i < n; i++)
            out->mem_bytes += b[i].length;
    }
}

json_t *svm_status(svm *s)
{
    svm_stats vs;
    svm_get_stats(s, &vs);
    return json_pack(
        "{s:b, s:I, s:I, s:I, s:{s:f, s:f, s:f}, s:{s:I, s:I}, s:I, s:I, "
        "s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}",
        "svm_running", vs.running, "reset_to", (json_int_t)vs.reset_to,
        "resets", (json_int_t)vs.resets,
        "last_reset_pages", (json_int_t)vs.last_pages,
        "reset_ms", "last", vs.reset_ns.last / 1e6,
        "p50", vs.reset_ns.p50 / 1e6, "p99", vs.reset_ns.p99 / 1e6,
        "reset_pages", "p50", (json_int_t)vs.pages.p50,
        "p99", (json_int_t)vs.pages.p99,
        "svm_mem_bytes", (json_int_t)vs.mem_bytes,
        "console_bytes", (json_int_t)vs.console_bytes,
        "sent_bytes", (json_int_t)vs.sent_bytes,
        "dropped_bytes", (json_int_t)vs.dropped_bytes,
        "released_bytes", (json_int_t)vs.released_bytes,
        "unreleased_bytes", (json_int_t)vs.kept_bytes,
        "input_frames", (json_int_t)vs.net.input_frames,
        "input_delivered", (json_int_t)vs.net.input_delivered,
        "input_dropped", (json_int_t)vs.net.input_dropped,
        "output_frames", (json_int_t)vs.net.output_frames,
        "sent_frames", (json_int_t)vs.net.sent_frames,
        "dropped_frames", (json_int_t)vs.net.dropped_frames,
        "live_frames", (json_int_t)vs.net.live_frames,
        "stale_discarded", (json_int_t)vs.net.stale_discarded);
}

void svm_metrics(svm *s, metrics_writer *w)
{
    svm_stats vs;
    svm_get_stats(s, &vs);
    metrics_counter(w, "ftvm_secondary_colo_resets_total",
                    "resets of the SVM to a checkpoint (COLO)", vs.resets);
    metrics_histogram(w, "ftvm_secondary_colo_reset_seconds",
                      "pause, copy, device load and resume of the SVM",
                      &vs.reset_ns);
    metrics_gauge(w, "ftvm_secondary_colo_reset_pages",
                  "pages the last reset copied", vs.last_pages);
    metrics_counter(w, "ftvm_secondary_colo_console_dropped_bytes_total",
                    "SVM console bytes over the return path's bound",
                    vs.dropped_bytes);
    metrics_counter(w, "ftvm_secondary_colo_input_frames_total",
                    "frames the primary mirrored to the SVM",
                    vs.net.input_frames);
    metrics_counter(w, "ftvm_secondary_colo_input_dropped_total",
                    "mirrored frames the SVM did not get (stale, bounds, "
                    "a full NIC)", vs.net.input_dropped);
    metrics_counter(w, "ftvm_secondary_colo_sent_frames_total",
                    "SVM frames sent to the primary for comparison",
                    vs.net.sent_frames);
    metrics_counter(w, "ftvm_secondary_colo_dropped_frames_total",
                    "SVM frames over the return path's bound or stale",
                    vs.net.dropped_frames);
}

int svm_new(svm **out, const svm_opts *o)
{
    svm *s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    s->o = *o;
    pthread_mutex_init(&s->lock, NULL);
    sampler_init(&s->reset_ns, &sampler_ns);
    sampler_init(&s->pages, &sampler_pages);
    s->ev_flush = event_new(o->base, -1, 0, on_flush, s);
    s->dev = qfile_open_mem("svm-devices");
    if (!s->ev_flush || !s->dev ||
        svmnet_new(&s->net, o->base, o->send, o->send_opaque,
                   o->live_transmit, o->live_transmit_opaque) < 0) {
        svm_free(s);
        return -ENOMEM;
    }
    *out = s;
    return 0;
}

void svm_free(svm *s)
{
    if (!s)
        return;
    if (s->v && !s->live)
        vm_destroy(s->v);
    if (s->ev_flush)
        event_free(s->ev_flush);
    /* After the VM: its vCPUs call into it. */
    svmnet_free(s->net);
    qfile_close(s->dev);
    bytebuf_free(&s->pend);
    bytebuf_free(&s->kept);
    pthread_mutex_destroy(&s->lock);
    free(s);
}
