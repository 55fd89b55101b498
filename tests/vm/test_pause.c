/*
 * test_pause: pause, resume, save and restore a running guest.
 *
 *   test_pause COUNTER.elf MEMTOUCH.elf
 *
 * 1. memtouch (a guest that rarely exits) is paused and resumed 200 times
 *    while it dirties memory; each pause must leave every vCPU out of
 *    KVM_RUN with its state read.  The latencies are printed (measured,
 *    not asserted: timing on shared machines is not a behaviour).
 * 2. counter runs; after some ticks it is paused, its whole state (vCPU,
 *    devices, RAM) saved with registry_save_stream into a memory qfile, and
 *    resumed.  A second VM is created, loaded from the stream with
 *    savevm_load_checked and started.  The first VM's output up to the pause
 *    followed by the second's must equal an uninterrupted run's, and so
 *    must the first VM's whole output; the restored guest's clock must
 *    start where the checkpoint left it.
 * 3. The same checkpoint, written to a file, is restored by a second
 *    process (this program with --restore FILE), whose console output
 *    must be the rest of the uninterrupted run.
 * 4. Incremental packages (all RAM once, then dirty pages) loaded in turn
 *    into a second VM bring it to the same point.
 *
 * Exits 77 (skipped) without /dev/kvm; 1 if FTVM_REQUIRE_KVM=1 says it must
 * be there.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "checkpoint/qfile.h"
#include "checkpoint/savevm.h"
#include "devstate/registry.h"
#include "vm/vm.h"

#define COUNTER_ARGS "rate=100 count=40 area-kib=512 pages-per-tick=8"
#define PAUSE_AT_TICK 12
#define MEMTOUCH_PAUSES 200

static int failures;

#define CHECK(cond, ...) do {                                           \
        if (!(cond)) {                                                  \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);        \
            fprintf(stderr, __VA_ARGS__);                               \
            fputc('\n', stderr);                                        \
            failures++;                                                 \
        }                                                               \
    } while (0)

/* A console that collects what the guest prints. */
typedef struct capture {
    pthread_mutex_t lock;
    char *buf;
    size_t len, cap;
} capture;

static int capture_write(void *opaque, const void *data, size_t len)
{
    capture *c = opaque;

    pthread_mutex_lock(&c->lock);
    if (c->len + len + 1 > c->cap) {
        size_t cap = (c->len + len + 1) * 2;
        char *nb = realloc(c->buf, cap);
        if (!nb) {
            pthread_mutex_unlock(&c->lock);
            return -ENOMEM;
        }
        c->buf = nb;
        c->cap = cap;
    }
    memcpy(c->buf + c->len, data, len);
    c->len += len;
    c->buf[c->len] = '\0';
    pthread_mutex_unlock(&c->lock);
    return 0;
}

static void capture_init(capture *c)
{
    memset(c, 0, sizeof(*c));
    pthread_mutex_init(&c->lock, NULL);
}

/* A copy of what was printed so far. */
static char *capture_copy(capture *c)
{
    pthread_mutex_lock(&c->lock);
    char *s = strdup(c->buf ? c->buf : "");
    pthread_mutex_unlock(&c->lock);
    return s;
}

static bool capture_has(capture *c, const char *needle)
{
    pthread_mutex_lock(&c->lock);
    bool r = c->buf && strstr(c->buf, needle);
    pthread_mutex_unlock(&c->lock);
    return r;
}

static char *concat(const char *a, const char *b)
{
    size_t la = strlen(a), lb = b ? strlen(b) : 0;
    char *s = malloc(la + lb + 1);

    memcpy(s, a, la);
    memcpy(s + la, b ? b : "", lb + 1);
    return s;
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000 };
    nanosleep(&ts, NULL);
}

/* Waits up to seconds for the VM to print needle, or to stop. */
static bool wait_for(vm *v, capture *c, const char *needle, int seconds)
{
    for (int i = 0; i < seconds * 1000; i++) {
        if (capture_has(c, needle))
            return true;
        if (vm_get_state(v) == VM_STOPPED)
            return capture_has(c, needle);
        sleep_ms(1);
    }
    return false;
}

static vm *make_vm(capture *c, const char *image, const char *args)
{
    vm_config cfg;
    vm *v = NULL;
    char err[512];

    vm_config_init(&cfg);
    cfg.mem_size = 64ull << 20;
    cfg.console_fn = capture_write;
    cfg.console_fd = -1;
    cfg.console_opaque = c;
    if (vm_create(&v, &cfg, err, sizeof(err)) < 0) {
        fprintf(stderr, "vm_create: %s\n", err);
        exit(1);
    }
    if (image && vm_boot(v, image, args, err, sizeof(err)) < 0) {
        fprintf(stderr, "vm_boot: %s\n", err);
        exit(1);
    }
    return v;
}

static void start(vm *v)
{
    char err[512];

    if (vm_start(v, err, sizeof(err)) < 0) {
        fprintf(stderr, "vm_start: %s\n", err);
        exit(1);
    }
}

static void resume(vm *v)
{
    char err[512];
    vm_stop_info si;
    int rc = vm_resume(v, err, sizeof(err));
    vm_get_stop_info(v, &si);
    CHECK(rc == 0, "vm_resume: %s (%s)", err, si.msg);
}

static void wait_stopped(vm *v, int seconds)
{
    for (int i = 0; i < seconds * 1000 && vm_get_state(v) != VM_STOPPED; i++)
        sleep_ms(1);
    CHECK(vm_get_state(v) == VM_STOPPED, "the guest did not finish");
}

static void test_pause_latency(const char *memtouch)
{
    capture out;
    capture_init(&out);
    vm *v = make_vm(&out, memtouch, "working-set-mib=8 report-every=0");
    char err[512];
    start(v);
    sleep_ms(100);

    uint64_t sum_exit = 0, sum_total = 0;
    for (int i = 0; i < MEMTOUCH_PAUSES; i++) {
        CHECK(vm_pause(v, err, sizeof(err)) == 0, "vm_pause: %s", err);
        CHECK(vm_get_state(v) == VM_PAUSED, "state after pause is %d",
              vm_get_state(v));
        vm_pause_stats ps;
        vm_get_pause_stats(v, &ps);
        sum_exit += ps.last_exit_ns;
        sum_total += ps.last_total_ns;
        CHECK(vm_sync_dirty(v) == 0, "vm_sync_dirty");
        resume(v);
        sleep_ms(2);
    }
    vm_pause_stats ps;
    vm_get_pause_stats(v, &ps);
    CHECK(ps.pauses == MEMTOUCH_PAUSES, "%" PRIu64 " pauses counted",
          ps.pauses);
    printf("pause latency over %d pauses of a busy guest: out of KVM_RUN "
           "avg %.1f us max %.1f us; parked with state read avg %.1f us "
           "max %.1f us\n", MEMTOUCH_PAUSES,
           sum_exit / 1e3 / MEMTOUCH_PAUSES, ps.max_exit_ns / 1e3,
           sum_total / 1e3 / MEMTOUCH_PAUSES, ps.max_total_ns / 1e3);
    vm_stop_info si;
    vm_get_stop_info(v, &si);
    CHECK(vm_get_state(v) == VM_RUNNING, "memtouch stopped: %s", si.msg);

    /* Pauses are held: an operator's pause outlives a checkpoint's. */
    CHECK(vm_pause(v, err, sizeof(err)) == 0 &&
          vm_pause(v, err, sizeof(err)) == 0, "nested vm_pause: %s", err);
    resume(v);
    CHECK(vm_get_state(v) == VM_PAUSED, "one resume of two pauses ran it");
    resume(v);
    CHECK(vm_get_state(v) == VM_RUNNING, "the last resume left it paused");
    CHECK(vm_resume(v, err, sizeof(err)) == -EINVAL,
          "a resume without a pause was accepted");
    vm_destroy(v);
    free(out.buf);
}

/* --restore FILE: a fresh process loads the checkpoint and runs it. */
static int restore_main(const char *path)
{
    FILE *fp = fopen(path, "rb");
    if (!fp || fseek(fp, 0, SEEK_END) < 0) {
        perror(path);
        return 1;
    }
    long size = ftell(fp);
    uint8_t *buf = size > 0 ? malloc((size_t)size) : NULL;
    rewind(fp);
    size_t len = buf ? fread(buf, 1, (size_t)size, fp) : 0;
    fclose(fp);

    vm_config cfg;
    vm *v = NULL;
    char err[512];
    vm_config_init(&cfg);
    cfg.mem_size = 64ull << 20;
    if (vm_create(&v, &cfg, err, sizeof(err)) < 0) {
        fprintf(stderr, "vm_create: %s\n", err);
        return 1;
    }
    qfile *in = qfile_open_view(buf, len, path);
    savevm_loader *l =
        savevm_loader_new(&registry_target_ops, vm_registry(v), NULL);
    if (savevm_load_checked(l, in) < 0) {
        fprintf(stderr, "savevm_load_checked: %s\n", qfile_errmsg(in));
        return 1;
    }
    savevm_loader_free(l);
    qfile_close(in);
    start(v);
    wait_stopped(v, 60);
    vm_stop_info si;
    vm_get_stop_info(v, &si);
    vm_destroy(v);
    free(buf);
    return si.reason == VM_STOP_HALT ? si.status : 1;
}

/* Runs --restore in another process; returns its output (or NULL). */
static char *restore_elsewhere(const char *self, const uint8_t *stream,
                               size_t len)
{
    char path[] = "/tmp/ftvm-test-pause-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0, "mkstemp: %s", strerror(errno));
    if (fd < 0)
        return NULL;
    CHECK(write(fd, stream, len) == (ssize_t)len, "writing the checkpoint");
    close(fd);

    char cmd[512];
    snprintf(cmd, sizeof(cmd), "'%s' --restore '%s'", self, path);
    FILE *p = popen(cmd, "r");
    capture out;
    capture_init(&out);
    char chunk[4096];
    size_t n;
    while (p && (n = fread(chunk, 1, sizeof(chunk), p)) > 0)
        capture_write(&out, chunk, n);
    int status = p ? pclose(p) : -1;
    unlink(path);
    CHECK(status == 0, "the restoring process exited with %d", status);
    return out.buf ? out.buf : strdup("");
}

static void test_save_restore(const char *self, const char *counter)
{
    char err[512];
    capture ref, a, b;
    capture_init(&ref);
    capture_init(&a);
    capture_init(&b);

    /* The uninterrupted run. */
    vm *vr = make_vm(&ref, counter, COUNTER_ARGS);
    start(vr);
    wait_stopped(vr, 60);
    vm_destroy(vr);
    CHECK(strstr(ref.buf, "counter done ticks=40"), "reference run: %s",
          ref.buf);

    /* The checkpointed run. */
    vm *va = make_vm(&a, counter, COUNTER_ARGS);
    start(va);
    char tick[32];
    snprintf(tick, sizeof(tick), "tick %d ", PAUSE_AT_TICK);
    CHECK(wait_for(va, &a, tick, 30), "no '%s' from the guest", tick);
    CHECK(vm_pause(va, err, sizeof(err)) == 0, "vm_pause: %s", err);
    char *before = capture_copy(&a);
    uint64_t clock_at_pause = vm_guest_clock(va);

    qfile *f = qfile_open_mem("checkpoint");
    int rc = registry_save_stream(vm_registry(va), f);
    CHECK(rc == 0, "registry_save_stream: %s", qfile_errmsg(f));
    size_t len;
    const uint8_t *stream = qfile_mem_data(f, &len);
    printf("checkpoint at tick %d: %zu bytes\n", PAUSE_AT_TICK, len);
    resume(va);

    /* The restored VM: same memory, no image. */
    vm *vb = make_vm(&b, NULL, NULL);
    qfile *in = qfile_open_view(stream, len, "checkpoint");
    savevm_loader *l =
        savevm_loader_new(&registry_target_ops, vm_registry(vb), NULL);
    rc = savevm_load_checked(l, in);
    CHECK(rc == 0, "savevm_load_checked: %s", qfile_errmsg(in));
    savevm_loader_free(l);
    qfile_close(in);
    start(vb);
    uint64_t clock_at_start = vm_guest_clock(vb);
    CHECK(clock_at_start >= clock_at_pause &&
          clock_at_start - clock_at_pause < 1000000000ull,
          "restored clock %" PRIu64 " vs %" PRIu64 " at the checkpoint",
          clock_at_start, clock_at_pause);

    char *other = restore_elsewhere(self, stream, len);

    wait_stopped(va, 60);
    wait_stopped(vb, 60);
    vm_stop_info si;
    vm_get_stop_info(vb, &si);
    CHECK(si.reason == VM_STOP_HALT && si.status == 0,
          "restored guest stopped with %d: %s", si.reason, si.msg);

    CHECK(strcmp(a.buf, ref.buf) == 0,
          "paused and resumed run differs:\n%s\n---\n%s", a.buf, ref.buf);
    char *joined = concat(before, b.buf);
    CHECK(strcmp(joined, ref.buf) == 0,
          "restored run differs:\n%s\n---\n%s", joined, ref.buf);
    char next[32];
    snprintf(next, sizeof(next), "tick %d ", PAUSE_AT_TICK + 1);
    CHECK(b.buf && strncmp(b.buf, next, strlen(next)) == 0,
          "the restored guest began with '%.20s', not '%s'",
          b.buf ? b.buf : "", next);

    free(joined);
    joined = concat(before, other);
    CHECK(strcmp(joined, ref.buf) == 0,
          "restored in another process, the run differs:\n%s\n---\n%s",
          joined, ref.buf);

    free(other);
    qfile_close(f);
    vm_destroy(va);
    vm_destroy(vb);
    free(before);
    free(joined);
    free(ref.buf);
    free(a.buf);
    free(b.buf);
}

/*
 * Checkpoints as a primary takes them: the first holds all RAM, later ones
 * only the pages written since (the guest's, from KVM's dirty log, and the
 * monitor's, from hypercall results).  A VM loading them in turn must run
 * on exactly as the original did.
 */
static void test_incremental(const char *counter)
{
    char err[512];
    static const int ticks[] = { 5, 10, 20, 30 };
    capture ref, a, b;
    capture_init(&ref);
    capture_init(&a);
    capture_init(&b);

    vm *vr = make_vm(&ref, counter, COUNTER_ARGS);
    start(vr);
    wait_stopped(vr, 60);
    vm_destroy(vr);

    vm *va = make_vm(&a, counter, COUNTER_ARGS);
    vm *vb = make_vm(&b, NULL, NULL);
    registry *reg = vm_registry(va);
    savevm_loader *l =
        savevm_loader_new(&registry_target_ops, vm_registry(vb), NULL);
    qfile *f = qfile_open_mem("package");
    char *before = NULL;
    start(va);
    for (size_t i = 0; i < sizeof(ticks) / sizeof(ticks[0]); i++) {
        char tick[32];
        snprintf(tick, sizeof(tick), "tick %d ", ticks[i]);
        CHECK(wait_for(va, &a, tick, 30), "no '%s' from the guest", tick);
        CHECK(vm_pause(va, err, sizeof(err)) == 0, "vm_pause: %s", err);
        free(before);
        before = capture_copy(&a);

        qfile_mem_reset(f);
        savevm_put_header(f);
        if (i == 0)
            registry_save_setup(reg, f);
        registry_save_complete(reg, f);
        registry_save_devices(reg, f, NULL);
        savevm_put_eof(f);
        CHECK(qfile_error(f) == 0, "saving package %zu: %s", i,
              qfile_errmsg(f));

        size_t len;
        const uint8_t *pkg = qfile_mem_data(f, &len);
        ram_save_stats rs;
        vm_get_ram_stats(va, &rs);
        printf("package %zu at tick %d: %zu bytes, %" PRIu64 " pages sent\n",
               i, ticks[i], len, rs.normal_pages + rs.zero_pages +
               rs.compressed_pages + rs.xbzrle_pages);
        /* Loaded with the guest paused, so slow builds keep up with it. */
        qfile *in = qfile_open_view(pkg, len, "package");
        CHECK(savevm_load_checked(l, in) == 0, "loading package %zu: %s", i,
              qfile_errmsg(in));
        qfile_close(in);
        resume(va);
    }
    start(vb);
    wait_stopped(va, 60);
    wait_stopped(vb, 60);
    char *joined = concat(before, b.buf);
    CHECK(strcmp(joined, ref.buf) == 0,
          "restored from incremental packages, the run differs:\n%s\n---\n"
          "%s", joined, ref.buf);

    savevm_loader_free(l);
    qfile_close(f);
    vm_destroy(va);
    vm_destroy(vb);
    free(joined);
    free(before);
    free(ref.buf);
    free(a.buf);
    free(b.buf);
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--restore") == 0)
        return restore_main(argv[2]);
    if (argc != 3) {
        fprintf(stderr, "usage: test_pause COUNTER.elf MEMTOUCH.elf\n");
        return 2;
    }
    if (access("/dev/kvm", R_OK | W_OK) != 0) {
        const char *require = getenv("FTVM_REQUIRE_KVM");
        if (require && strcmp(require, "1") == 0) {
            printf("FAIL: /dev/kvm is not usable here (%s), and "
                   "FTVM_REQUIRE_KVM=1 says this run has KVM\n",
                   strerror(errno));
            return 1;
        }
        printf("SKIP: /dev/kvm is not usable here (%s); the VM tests need "
               "KVM\n", strerror(errno));
        return 77;
    }
    setvbuf(stdout, NULL, _IONBF, 0);
    test_pause_latency(argv[2]);
    test_save_restore(argv[0], argv[1]);
    test_incremental(argv[1]);
    if (failures) {
        fprintf(stderr, "%d check(s) failed\n", failures);
        return 1;
    }
    printf("ok\n");
    return 0;
}
