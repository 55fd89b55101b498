/*
 * vm: creating, booting, pausing, resuming and stopping the machine, and
 * its event-loop glue.  The vCPU threads are in vm_cpu.c, the registry
 * entries in vm_state.c.
 */
#include "vm/vm.h"

#include <errno.h>
#include <event2/event.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "vm/boot.h"
#include "vm/bzimage.h"
#include "vm/elfload.h"
#include "vm/mono.h"
#include "vm/vm_impl.h"

void vm_config_init(vm_config *c)
{
    static const uint8_t mac[6] = { 0x02, 0x46, 0x54, 0x56, 0x4d, 0x01 };

    memset(c, 0, sizeof(*c));
    c->mem_size = 256ull << 20;
    c->vcpus = 1;
    memcpy(c->mac, mac, 6);
    c->console_fd = STDOUT_FILENO;
    c->console_in_fd = -1;
}

/* ---- the console and the NIC's output, when nobody else takes them ---- */

static int transmit_to_backend(void *opaque, const void *frame, size_t len)
{
    return net_transmit(opaque, frame, len, true);
}

/* A Linux guest's NIC transmits on its vCPU thread: never wait there. */
static int transmit_now(void *opaque, const void *frame, size_t len)
{
    return net_transmit(opaque, frame, len, false);
}

static int console_discard(void *opaque, const void *buf, size_t len)
{
    (void)opaque;
    (void)buf;
    (void)len;
    return 0;
}

/* A Linux guest's UART output, counted as the hypercall console's is. */
static int pc_console(void *opaque, const void *buf, size_t len)
{
    vm *v = opaque;

    __atomic_add_fetch(&v->hc.st.console_bytes, len, __ATOMIC_RELAXED);
    return v->hc.console(v->hc.console_opaque, buf, len);
}

/* ---- creation ---- */

static void rx_notify(void *opaque)
{
    vm *v = opaque;

    if (v->pc)
        pc_net_rx(v->pc);
    pthread_mutex_lock(&v->lock);
    pthread_cond_broadcast(&v->cond);
    pthread_mutex_unlock(&v->lock);
}

static int init_sync(vm *v)
{
    pthread_condattr_t ca;

    if (pthread_mutex_init(&v->lock, NULL) != 0)
        return -ENOMEM;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    int rc = pthread_cond_init(&v->cond, &ca);
    pthread_condattr_destroy(&ca);
    return rc ? -rc : 0;
}

int vm_check_mem_size(uint64_t mem_size, char *err, size_t errlen)
{
    if (mem_size < BOOT_MIN_MEM || mem_size > BOOT_MAX_MEM ||
        mem_size % BOOT_MEM_ALIGN) {
        snprintf(err, errlen, "memory size %" PRIu64 " bytes: it must be a "
                 "multiple of 2 MiB from 4 MiB to 64 GiB", mem_size);
        return -EINVAL;
    }
    return 0;
}

static int check_config(const vm_config *cfg, char *err, size_t errlen)
{
    int rc = vm_check_mem_size(cfg->mem_size, err, errlen);

    if (rc < 0)
        return rc;
    if (cfg->vcpus < 1 || cfg->vcpus > VM_MAX_VCPUS) {
        snprintf(err, errlen, "%u vCPUs: 1 to %d are supported", cfg->vcpus,
                 VM_MAX_VCPUS);
        return -EINVAL;
    }
    if (cfg->machine == VM_MACHINE_PC && cfg->mem_size > BZIMAGE_MAX_MEM) {
        snprintf(err, errlen, "a Linux guest can have at most 3G of RAM "
                 "for now (none above the 32-bit hole)");
        return -EINVAL;
    }
    return 0;
}

int vm_create(vm **out, const vm_config *cfg, char *err, size_t errlen)
{
    int rc = check_config(cfg, err, errlen);
    vm *v = rc < 0 ? NULL : calloc(1, sizeof(*v));
    if (!v) {
        if (cfg->disk_owned)
            disk_close(cfg->disk);
        if (rc == 0)
            snprintf(err, errlen, "vm: no memory");
        return rc < 0 ? rc : -ENOMEM;
    }
    v->cfg = *cfg;
    v->cfg.net = NULL;
    v->notify_fd = -1;
    v->kvm.sys_fd = v->kvm.vm_fd = -1;
    if (init_sync(v) < 0) {
        if (cfg->disk_owned)
            disk_close(cfg->disk);
        free(v);
        snprintf(err, errlen, "vm: cannot create its lock");
        return -ENOMEM;
    }
    rc = kvm_open(&v->kvm, err, errlen);
    if (rc < 0)
        goto fail;
    gmem_init(&v->gm, &v->kvm);
    rc = gmem_add(&v->gm, "ram0", 0, cfg->mem_size, err, errlen);
    if (rc < 0)
        goto fail;
    /* The irqchip before the vCPUs: each gets its local APIC then. */
    if (cfg->machine == VM_MACHINE_PC &&
        (rc = pc_create(&v->pc, &v->kvm, pc_console, v, err, errlen)) < 0)
        goto fail;
    for (unsigned i = 0; i < cfg->vcpus; i++) {
        v->cpus[i].v = v;
        /* A PC's other vCPUs wait in KVM for the guest's startup IPI. */
        v->cpus[i].runnable = i == 0 || v->pc;
        rc = vcpu_create(&v->cpus[i].c, &v->kvm, i, err, errlen);
        if (rc < 0)
            goto fail;
        v->ncpus++;
        if (v->pc && (rc = pc_setup_vcpu(v->pc, v->cpus[i].c->fd, i,
                                         cfg->vcpus, err, errlen)) < 0)
            goto fail;
        if (v->pc)
            vcpu_enable_pc(v->cpus[i].c);
    }
    if (cfg->net) {
        rc = net_open(&v->net, cfg->net, err, errlen);
        if (rc < 0)
            goto fail;
        net_set_rx_notify(v->net, rx_notify, v);
        /* The same transmit hook as the hypercall NIC's, without waiting. */
        if (v->pc &&
            (rc = pc_add_net(v->pc, &v->gm, v->net, cfg->mac,
                             cfg->transmit_fn ? cfg->transmit_fn
                                              : transmit_now,
                             cfg->transmit_fn ? cfg->transmit_opaque
                                              : v->net, err, errlen)) < 0)
            goto fail;
    }
    if (v->pc && cfg->disk &&
        (rc = pc_add_blk(v->pc, &v->gm, cfg->disk, err, errlen)) < 0)
        goto fail;
    rc = hc_init(&v->hc, &v->gm, v->net, cfg->mac);
    if (rc < 0) {
        snprintf(err, errlen, "vm: no memory for the devices");
        goto fail;
    }
    if (cfg->console_fd >= 0 &&
        (rc = conout_new(&v->con, cfg->console_fd, 0)) < 0) {
        snprintf(err, errlen, "vm: the console's writer: %s", strerror(-rc));
        goto fail;
    }
    if (cfg->console_fn) {
        v->hc.console = cfg->console_fn;
        v->hc.console_opaque = cfg->console_opaque;
    } else {
        v->hc.console = v->con ? conout_console : console_discard;
        v->hc.console_opaque = v->con;
    }
    v->hc.transmit = cfg->transmit_fn ? cfg->transmit_fn
                                      : transmit_to_backend;
    v->hc.transmit_opaque = cfg->transmit_fn ? cfg->transmit_opaque
                                             : v->net;
    v->hc.wait = vm_cpu_poll_wait;
    v->hc.wait_opaque = v;
    v->hc.disk = cfg->disk;

    rc = ram_saver_new(&v->saver, v->gm.blocks, v->gm.n, &cfg->ram_opts);
    if (rc == 0)
        rc = ram_loader_new(&v->loader, v->gm.blocks, v->gm.n);
    if (rc < 0) {
        snprintf(err, errlen, "vm: RAM codec: %s", strerror(-rc));
        goto fail;
    }
    v->reg = registry_new();
    if (!v->reg) {
        rc = -ENOMEM;
        snprintf(err, errlen, "vm: no memory for the registry");
        goto fail;
    }
    rc = vm_register_state(v, err, errlen);
    if (rc < 0)
        goto fail;
    v->notify_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (v->notify_fd < 0) {
        rc = -errno;
        snprintf(err, errlen, "vm: eventfd: %s", strerror(-rc));
        goto fail;
    }
    v->state = VM_CREATED;
    *out = v;
    return 0;
fail:
    vm_destroy(v);
    return rc;
}

/* Whether the host's CPUID offers NX (CPUID 0x80000001 EDX bit 20). */
static bool cpuid_has_nx(const kvm_vm *k)
{
    for (uint32_t i = 0; i < k->cpuid->nent; i++)
        if (k->cpuid->entries[i].function == 0x80000001)
            return k->cpuid->entries[i].edx & (1u << 20);
    return false;
}

int vm_boot(vm *v, const char *image, const char *cmdline, char *err,
            size_t errlen)
{
    elfload_image img;
    struct kvm_regs regs;
    struct kvm_sregs sregs;
    uint64_t mem = v->cfg.mem_size;

    if (v->state != VM_CREATED) {
        snprintf(err, errlen, "vm: can only boot a VM not yet started");
        return -EBUSY;
    }
    if (v->pc) {
        snprintf(err, errlen, "vm: a Linux VM boots a kernel, not a guest "
                 "image");
        return -EINVAL;
    }
    int rc = elfload_load(image, &v->gm, BOOT_IMAGE_BASE,
                          boot_stack_top(mem) - BOOT_STACK_RESERVE, &img, err,
                          errlen);
    if (rc < 0)
        return rc;
    rc = vcpu_get_sregs(v->cpus[0].c, &sregs);
    if (rc < 0) {
        snprintf(err, errlen, "vCPU 0: KVM_GET_SREGS: %s", strerror(-rc));
        return rc;
    }
    rc = boot_setup(&v->gm, mem, &img, cmdline ? cmdline : "",
                    cpuid_has_nx(&v->kvm), &regs, &sregs, err, errlen);
    if (rc < 0)
        return rc;
    rc = vcpu_set_boot(v->cpus[0].c, &regs, &sregs, err, errlen);
    /* So that a VM saved before it ever ran holds its entry state. */
    for (unsigned i = 0; rc == 0 && i < v->ncpus; i++)
        rc = vcpu_state_fetch(v->cpus[i].c, err, errlen);
    if (rc < 0)
        return rc;
    v->booted = true;
    return 0;
}

int vm_boot_kernel(vm *v, const char *kernel, const char *initrd,
                   const char *cmdline, char *err, size_t errlen)
{
    struct kvm_regs regs;
    struct kvm_sregs sregs;
    bzimage_boot b = { .kernel = kernel, .initrd = initrd,
                       .cmdline = cmdline };

    if (v->state != VM_CREATED || !v->pc) {
        snprintf(err, errlen, "vm: %s", v->pc ? "can only boot a VM not yet "
                 "started" : "only a Linux VM boots a kernel");
        return v->pc ? -EBUSY : -EINVAL;
    }
    int rc = vcpu_get_sregs(v->cpus[0].c, &sregs);
    if (rc < 0) {
        snprintf(err, errlen, "vCPU 0: KVM_GET_SREGS: %s", strerror(-rc));
        return rc;
    }
    rc = bzimage_load(&v->gm, v->cfg.mem_size, &b, &regs, &sregs, err,
                      errlen);
    if (rc == 0)
        rc = pc_write_tables(v->pc, &v->gm, v->ncpus, err, errlen);
    if (rc == 0)
        rc = vcpu_set_boot(v->cpus[0].c, &regs, &sregs, err, errlen);
    for (unsigned i = 0; rc == 0 && i < v->ncpus; i++)
        rc = vcpu_state_fetch(v->cpus[i].c, err, errlen);
    /* So that a VM saved before it ever ran holds its entry state. */
    if (rc == 0)
        rc = pc_state_fetch(v->pc, v->cpus[0].c->fd, 0, err, errlen);
    if (rc < 0)
        return rc;
    v->booted = true;
    return 0;
}

int vm_check_savable(vm *v, char *err, size_t errlen)
{
    (void)v;
    (void)err;
    (void)errlen;
    return 0;
}

/* ---- the event loop ---- */

static void on_notify(evutil_socket_t fd, short what, void *arg)
{
    vm *v = arg;
    uint64_t n;

    (void)what;
    if (read(fd, &n, sizeof(n)) < 0 || v->stop_reported)
        return;
    if (vm_get_state(v) == VM_STOPPED && v->on_stop) {
        v->stop_reported = true;
        v->on_stop(v, v->on_stop_arg);
    }
}

static void on_net(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    net_rx_pump(arg);
}

/* A PC's console input: what is there now, into the UART. */
static void on_console_in(evutil_socket_t fd, short what, void *arg)
{
    vm *v = arg;
    uint8_t buf[256];

    (void)what;
    ssize_t n = read(fd, buf, sizeof(buf));
    if (n > 0)
        pc_console_input(v->pc, buf, (size_t)n);
    else if (n == 0 || (errno != EINTR && errno != EAGAIN))
        event_del(v->ev_con_in);    /* end of input, or it failed */
}

/*
 * Whether fd is input the loop can wait for: a pipe, a socket or a
 * terminal.  A file or /dev/null cannot be polled (epoll refuses them), so
 * a guest run with one as stdin simply has no console input.
 */
static bool pollable(int fd)
{
    struct stat st;

    if (fd < 0 || fstat(fd, &st) < 0)
        return false;
    return S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode) || isatty(fd);
}

int vm_attach(vm *v, struct event_base *base,
              void (*on_stop)(vm *v, void *arg), void *arg)
{
    v->on_stop = on_stop;
    v->on_stop_arg = arg;
    v->base = base;
    v->ev_notify = event_new(base, v->notify_fd, EV_READ | EV_PERSIST,
                             on_notify, v);
    if (!v->ev_notify || event_add(v->ev_notify, NULL) < 0)
        return -ENOMEM;
    if (v->net && net_fd(v->net) >= 0) {
        v->ev_net = event_new(base, net_fd(v->net), EV_READ | EV_PERSIST,
                              on_net, v->net);
        if (!v->ev_net || event_add(v->ev_net, NULL) < 0)
            return -ENOMEM;
    }
    if (v->pc && pollable(v->cfg.console_in_fd)) {
        v->ev_con_in = event_new(base, v->cfg.console_in_fd,
                                 EV_READ | EV_PERSIST, on_console_in, v);
        if (!v->ev_con_in || event_add(v->ev_con_in, NULL) < 0)
            return -ENOMEM;
    }
    return 0;
}

/* ---- the NIC's host side ---- */

int vm_net_take_backend(vm *dst, vm *src, char *err, size_t errlen)
{
    if (!dst->net || !src->net) {
        snprintf(err, errlen, "vm: take the network backend: the %s VM has "
                 "no network device", dst->net ? "source" : "destination");
        return -ENODEV;
    }
    if (dst == src || net_fd(dst->net) >= 0) {
        snprintf(err, errlen, "vm: take the network backend: the "
                 "destination VM has one already");
        return dst == src ? -EINVAL : -EBUSY;
    }
    /* Everything that can fail before anything moves: the fd keeps its
     * number across the move. */
    int fd = net_fd(src->net);
    struct event *ev = NULL;
    if (dst->base && fd >= 0) {
        ev = event_new(dst->base, fd, EV_READ | EV_PERSIST, on_net,
                       dst->net);
        if (!ev) {
            snprintf(err, errlen, "vm: take the network backend: no memory "
                     "for its event");
            return -ENOMEM;
        }
    }
    if (src->ev_net) {
        event_free(src->ev_net);
        src->ev_net = NULL;
    }
    int rc = net_take_backend(dst->net, src->net);
    if (rc < 0) {               /* checked above; cannot happen */
        if (ev)
            event_free(ev);
        snprintf(err, errlen, "vm: take the network backend: %s",
                 strerror(-rc));
        return rc;
    }
    if (ev) {
        dst->ev_net = ev;
        if (event_add(ev, NULL) < 0) {
            snprintf(err, errlen, "vm: take the network backend: cannot "
                     "watch its fd %d (the backend moved; input waits)", fd);
            return -ENOMEM;
        }
    }
    return 0;
}

int vm_net_deliver(vm *v, const void *frame, size_t len)
{
    if (!v->net)
        return -ENODEV;
    int rc = net_rx_deliver(v->net, frame, len);
    if (rc == 0)
        rx_notify(v);
    return rc;
}

/* ---- running ---- */

/*
 * Loaded state into KVM and the devices, with the lock held.  A PC's
 * machine state goes first (its irqchip before any LAPIC), its clock
 * last, as of vCPU 0's TSC (pc_state_push_clock).
 */
static int push_loaded(vm *v, char *err, size_t errlen)
{
    bool pc_loaded = v->pc && pc_state_loaded(v->pc);
    bool any = false;
    for (unsigned i = 0; i < v->ncpus; i++)
        any |= v->cpus[i].c->loaded;
    if (v->pc && any && !pc_state_loaded(v->pc)) {
        snprintf(err, errlen, "vm: the checkpoint has the vCPUs of a Linux "
                 "VM but no 'pc' section (its irqchip, PIT, clock, UART)");
        return -EINVAL;
    }
    if (pc_loaded) {
        int rc = pc_state_push(v->pc, err, errlen);
        if (rc < 0)
            return rc;
    }
    for (unsigned i = 0; i < v->ncpus; i++) {
        vcpu *c = v->cpus[i].c;
        if (!c->loaded)
            continue;
        int rc = vcpu_state_push(c, err, errlen);
        if (rc < 0)
            return rc;
        c->loaded = false;
        v->booted = true;
    }
    if (pc_loaded) {
        int fds[VM_MAX_VCPUS];
        for (unsigned i = 0; i < v->ncpus; i++)
            fds[i] = v->cpus[i].c->fd;
        uint64_t t = v->cpus[0].c->tsc_pushed_ns, now = mono_ns();
        int rc = pc_state_push_clock(v->pc, fds, v->ncpus,
                                     t && t < now ? now - t : 0, err, errlen);
        if (rc < 0)
            return rc;
    }
    hc_resume(&v->hc);
    return 0;
}

int vm_start(vm *v, char *err, size_t errlen)
{
    int rc = 0;

    pthread_mutex_lock(&v->lock);
    if (v->state != VM_CREATED) {
        snprintf(err, errlen, "vm: already started");
        rc = -EBUSY;
        goto out;
    }
    rc = push_loaded(v, err, errlen);
    if (rc < 0)
        goto out;
    if (!v->booted) {
        snprintf(err, errlen, "vm: nothing to run: boot an image or load a "
                 "checkpoint first");
        rc = -EINVAL;
        goto out;
    }
    v->state = VM_RUNNING;
    if (v->pc)
        pc_resume(v->pc);
    if (v->hc.st.halted) {
        /* A checkpoint of a guest that had halted: it stays halted. */
        vm_stop_locked(v, VM_STOP_HALT, v->hc.st.halt_status,
                       "vm: guest halted with status %u (restored)",
                       v->hc.st.halt_status);
        goto out;
    }
    for (unsigned i = 0; i < v->ncpus && rc == 0; i++)
        rc = vm_cpu_start(v, &v->cpus[i], err, errlen);
    if (rc < 0)
        vm_stop_locked(v, VM_STOP_ERROR, 0, "vm: %s", err);
out:
    pthread_mutex_unlock(&v->lock);
    return rc;
}

/*
 * Waits, with lock held, until every started vCPU is parked (or, with
 * exited_only, has exited), until deadline_ns.  Whether they all were.
 */
static bool wait_cpus(vm *v, bool exited_only, uint64_t deadline_ns)
{
    struct timespec ts = {
        .tv_sec = (time_t)(deadline_ns / 1000000000ull),
        .tv_nsec = (long)(deadline_ns % 1000000000ull),
    };
    for (;;) {
        unsigned done = v->nexited + (exited_only ? 0 : v->nparked);
        if (done >= v->nstarted)
            return true;
        if (pthread_cond_timedwait(&v->cond, &v->lock, &ts) == ETIMEDOUT) {
            done = v->nexited + (exited_only ? 0 : v->nparked);
            return done >= v->nstarted;
        }
    }
}

/* With lock held: gives the hold back and says which vCPUs are late. */
static int pause_timed_out(vm *v, char *err, size_t errlen)
{
    char late[256] = "";
    size_t k = 0;
    for (unsigned i = 0; i < v->ncpus && k < sizeof(late) - 8; i++) {
        const vm_cpu *vc = &v->cpus[i];
        if (vc->started && !vc->exited && !vc->parked)
            k += (size_t)snprintf(late + k, sizeof(late) - k, "%s%u",
                                  k ? ", " : "", i);
    }
    if (--v->holds == 0 && v->state == VM_RUNNING) {
        v->pause_req = false;
        pthread_cond_broadcast(&v->cond);
    }
    snprintf(err, errlen, "vm: vCPU %s did not stop within %llu ms (held up "
             "in the monitor); the pause was given up%s", late,
             VM_PAUSE_TIMEOUT_NS / 1000000,
             v->state == VM_RUNNING ? " and the VM runs on" : "");
    return -ETIMEDOUT;
}

int vm_pause(vm *v, char *err, size_t errlen)
{
    int rc = 0;

    pthread_mutex_lock(&v->lock);
    v->holds++;
    uint64_t t0 = hc_host_ns();
    uint64_t deadline = t0 + VM_PAUSE_TIMEOUT_NS;
    if (v->state != VM_RUNNING) {
        /* A stopping VM's threads may still be on their way out. */
        if (v->state == VM_STOPPED && !wait_cpus(v, true, deadline))
            rc = pause_timed_out(v, err, errlen);
        pthread_mutex_unlock(&v->lock);
        return rc;
    }
    v->pause_req = true;
    v->pause_t0 = t0;
    pthread_cond_broadcast(&v->cond);
    vm_cpu_kick_all(v);
    if (!wait_cpus(v, false, deadline)) {
        rc = pause_timed_out(v, err, errlen);
        pthread_mutex_unlock(&v->lock);
        return rc;
    }
    uint64_t t1 = hc_host_ns(), exit_ns = 0;
    for (unsigned i = 0; i < v->ncpus; i++) {
        uint64_t left = __atomic_load_n(&v->cpus[i].left_ns,
                                        __ATOMIC_RELAXED);
        if (left > t0 && left - t0 > exit_ns)
            exit_ns = left - t0;
    }
    vm_pause_stats *s = &v->pstats;
    s->pauses++;
    s->last_exit_ns = exit_ns;
    s->last_total_ns = t1 - t0;
    if (exit_ns > s->max_exit_ns)
        s->max_exit_ns = exit_ns;
    if (t1 - t0 > s->max_total_ns)
        s->max_total_ns = t1 - t0;
    if (v->state == VM_RUNNING)
        v->state = VM_PAUSED;
    hc_clock_pause(&v->hc);
    /*
     * Every vCPU is out of KVM: what the others changed under each as it
     * parked is read again, the TSCs with it, vCPU 0's last, then the
     * PC's state and clock, as of one moment (pc_state_fetch).  A failure
     * makes the next save fail (pc_state_desc's pre_save).
     */
    if (v->pc) {
        char why[256];
        bool ok = true;
        for (unsigned i = v->ncpus; i-- > 0;)
            ok = vcpu_state_refresh(v->cpus[i].c, why, sizeof(why)) == 0 &&
                 ok;
        if (ok)
            pc_state_fetch(v->pc, v->cpus[0].c->fd,
                           v->cpus[0].c->tsc_read_ns, why, sizeof(why));
        else
            pc_state_fail(v->pc, -EIO);
    }
    pthread_mutex_unlock(&v->lock);
    return 0;
}

int vm_resume(vm *v, char *err, size_t errlen)
{
    int rc = 0;

    pthread_mutex_lock(&v->lock);
    if (v->holds == 0) {
        snprintf(err, errlen, "vm: not paused");
        rc = v->state == VM_STOPPED ? -ESHUTDOWN : -EINVAL;
        goto out;
    }
    /* Another holder (a checkpoint, an operator) keeps it paused. */
    if (--v->holds > 0 || v->state != VM_PAUSED)
        goto out;
    rc = push_loaded(v, err, errlen);
    if (rc < 0)
        goto out;
    if (v->hc.st.halted) {
        vm_stop_locked(v, VM_STOP_HALT, v->hc.st.halt_status,
                       "vm: guest halted with status %u (restored)",
                       v->hc.st.halt_status);
        goto out;
    }
    v->pause_req = false;
    v->state = VM_RUNNING;
    if (v->pc)
        pc_resume(v->pc);
    pthread_cond_broadcast(&v->cond);
out:
    pthread_mutex_unlock(&v->lock);
    return rc;
}

void vm_stop(vm *v)
{
    pthread_mutex_lock(&v->lock);
    vm_stop_locked(v, VM_STOP_REQUESTED, 0, "vm: stopped on request");
    pthread_mutex_unlock(&v->lock);
}

void vm_destroy(vm *v)
{
    if (!v)
        return;
    pthread_mutex_lock(&v->lock);
    if (v->nstarted)
        vm_stop_locked(v, VM_STOP_REQUESTED, 0, "vm: stopped on request");
    pthread_mutex_unlock(&v->lock);
    for (unsigned i = 0; i < v->ncpus; i++)
        if (v->cpus[i].started)
            pthread_join(v->cpus[i].thread, NULL);
    if (v->ev_notify)
        event_free(v->ev_notify);
    if (v->ev_net)
        event_free(v->ev_net);
    if (v->ev_con_in)
        event_free(v->ev_con_in);
    if (v->notify_fd >= 0)
        close(v->notify_fd);
    /* After the vCPUs: nothing writes to the console any more. */
    conout_free(v->con);
    registry_free(v->reg);
    ram_saver_free(v->saver);
    ram_loader_free(v->loader);
    vm_disk_free(v);
    if (v->cfg.disk_owned)
        disk_close(v->cfg.disk);
    hc_fini(&v->hc);
    if (v->net)
        net_close(v->net);
    for (unsigned i = 0; i < v->ncpus; i++)
        vcpu_destroy(v->cpus[i].c);
    pc_free(v->pc);
    gmem_free(&v->gm);
    if (v->kvm.vm_fd >= 0 || v->kvm.sys_fd >= 0)
        kvm_close(&v->kvm);
    pthread_cond_destroy(&v->cond);
    pthread_mutex_destroy(&v->lock);
    free(v);
}

/* ---- accessors ---- */

vm_state vm_get_state(vm *v)
{
    pthread_mutex_lock(&v->lock);
    vm_state s = v->state;
    pthread_mutex_unlock(&v->lock);
    return s;
}

vm_machine vm_get_machine(vm *v)
{
    return v->cfg.machine;
}

void vm_get_stop_info(vm *v, vm_stop_info *out)
{
    pthread_mutex_lock(&v->lock);
    *out = v->stop;
    pthread_mutex_unlock(&v->lock);
}

void vm_get_pause_stats(vm *v, vm_pause_stats *out)
{
    pthread_mutex_lock(&v->lock);
    *out = v->pstats;
    pthread_mutex_unlock(&v->lock);
}

registry *vm_registry(vm *v)
{
    return v->reg;
}

ram_block *vm_ram_blocks(vm *v, size_t *n)
{
    *n = v->gm.n;
    return v->gm.blocks;
}

int vm_sync_dirty(vm *v)
{
    return gmem_sync_dirty(&v->gm);
}

void vm_get_ram_stats(vm *v, ram_save_stats *out)
{
    *out = v->ram_stats;
}

ram_saver *vm_ram_saver(vm *v)
{
    return v->saver;
}

net_dev *vm_net(vm *v)
{
    return v->net;
}

uint64_t vm_guest_clock(vm *v)
{
    return hc_clock_now(&v->hc);
}

conout *vm_console(vm *v)
{
    return v->con;
}

uint64_t vm_console_bytes(vm *v)
{
    return __atomic_load_n(&v->hc.st.console_bytes, __ATOMIC_RELAXED);
}
