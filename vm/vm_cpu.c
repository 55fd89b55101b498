/*
 * vm_cpu: the vCPU threads: KVM_RUN, exits, hypercall dispatch, parking.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "vm/boot.h"
#include "vm/vm_impl.h"

/* The hypercall ports: FTVM_HC_PORT_BASE + 0 .. + 0xff. */
#define HC_PORT_SPAN 0x100u

static __thread struct kvm_run *tls_run;
static pthread_once_t kick_once = PTHREAD_ONCE_INIT;

/*
 * Runs on the vCPU thread.  Set before KVM_RUN, the flag makes KVM return
 * at once; during KVM_RUN the signal itself makes it return.
 */
static void kick_handler(int sig)
{
    (void)sig;
    if (tls_run)
        __atomic_store_n(&tls_run->immediate_exit, 1, __ATOMIC_RELAXED);
}

static void kick_install(void)
{
    struct sigaction sa = { .sa_handler = kick_handler };

    sigemptyset(&sa.sa_mask);
    sigaction(VM_KICK_SIGNAL, &sa, NULL);
}

void vm_cpu_kick_all(struct vm *v)
{
    for (unsigned i = 0; i < v->ncpus; i++) {
        vm_cpu *vc = &v->cpus[i];
        if (vc->started && !vc->exited && !vc->parked)
            pthread_kill(vc->thread, VM_KICK_SIGNAL);
    }
}

void vm_stop_locked(struct vm *v, vm_stop_reason why, uint8_t status,
                    const char *fmt, ...)
{
    if (v->stop.reason == VM_STOP_NONE) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(v->stop.msg, sizeof(v->stop.msg), fmt, ap);
        va_end(ap);
        v->stop.reason = why;
        v->stop.status = status;
    }
    v->stop_req = true;
    v->state = VM_STOPPED;
    pthread_cond_broadcast(&v->cond);
    vm_cpu_kick_all(v);
    if (v->notify_fd >= 0) {
        uint64_t one = 1;
        ssize_t r = write(v->notify_fd, &one, sizeof(one));
        (void)r;    /* the counter only saturates; the loop reads it */
    }
}

static uint64_t guest_rip(vm_cpu *vc)
{
    struct kvm_regs r;

    return ioctl(vc->c->fd, KVM_GET_REGS, &r) == 0 ? r.rip : 0;
}

__attribute__((format(printf, 2, 3)))
static void guest_fault(vm_cpu *vc, const char *fmt, ...)
{
    char what[400];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    pthread_mutex_lock(&vc->v->lock);
    vm_stop_locked(vc->v, VM_STOP_FAULT, 0, "vm: guest stopped: %s", what);
    pthread_mutex_unlock(&vc->v->lock);
}

static void monitor_error(vm_cpu *vc, const char *what)
{
    pthread_mutex_lock(&vc->v->lock);
    vm_stop_locked(vc->v, VM_STOP_ERROR, 0, "vm: %s", what);
    pthread_mutex_unlock(&vc->v->lock);
}

void vm_cpu_poll_wait(void *opaque, uint64_t deadline_ns)
{
    struct vm *v = opaque;
    struct timespec ts = {
        .tv_sec = (time_t)(deadline_ns / 1000000000ull),
        .tv_nsec = (long)(deadline_ns % 1000000000ull),
    };

    pthread_mutex_lock(&v->lock);
    while (!v->pause_req && !v->stop_req &&
           !(v->net && net_rx_pending(v->net))) {
        if (deadline_ns == UINT64_MAX)
            pthread_cond_wait(&v->cond, &v->lock);
        else if (pthread_cond_timedwait(&v->cond, &v->lock, &ts) ==
                 ETIMEDOUT)
            break;
    }
    pthread_mutex_unlock(&v->lock);
}

/*
 * Before parking: an `out` the guest made completes (RIP moves past it)
 * only on the next KVM_RUN, so enter once with immediate_exit set, which
 * finishes it without running the guest; then the state is final.
 */
static int park_prepare(vm_cpu *vc)
{
    char err[256];
    struct kvm_run *run = vc->c->run;

    if (vc->ran) {
        __atomic_store_n(&run->immediate_exit, 1, __ATOMIC_RELAXED);
        int rc = ioctl(vc->c->fd, KVM_RUN, 0);
        int e = errno;
        __atomic_store_n(&run->immediate_exit, 0, __ATOMIC_RELAXED);
        if (rc == 0 || (e != EINTR && e != EAGAIN)) {
            snprintf(err, sizeof(err), "vCPU %u: completing its I/O before "
                     "a pause: %s", vc->c->index,
                     rc == 0 ? "KVM ran the guest" : strerror(e));
            monitor_error(vc, err);
            return -EIO;
        }
    }
    if (vcpu_state_fetch(vc->c, err, sizeof(err)) < 0) {
        monitor_error(vc, err);
        return -EIO;
    }
    return 0;
}

/* Parks while the VM is paused; false once it must stop. */
static bool wait_runnable(vm_cpu *vc)
{
    struct vm *v = vc->v;

    pthread_mutex_lock(&v->lock);
    if ((v->pause_req || !vc->runnable) && !v->stop_req) {
        pthread_mutex_unlock(&v->lock);
        int rc = park_prepare(vc);
        pthread_mutex_lock(&v->lock);
        if (rc == 0) {
            vc->parked = true;
            v->nparked++;
            pthread_cond_broadcast(&v->cond);
            while ((v->pause_req || !vc->runnable) && !v->stop_req)
                pthread_cond_wait(&v->cond, &v->lock);
            vc->parked = false;
            v->nparked--;
        }
    }
    bool go = !v->stop_req;
    pthread_mutex_unlock(&v->lock);
    return go;
}

static bool handle_exception(vm_cpu *vc)
{
    struct kvm_regs regs;
    struct kvm_sregs sregs;
    char what[300];

    if (ioctl(vc->c->fd, KVM_GET_REGS, &regs) < 0 ||
        ioctl(vc->c->fd, KVM_GET_SREGS, &sregs) < 0) {
        guest_fault(vc, "CPU exception (its state cannot be read)");
        return false;
    }
    boot_describe_exception(&vc->v->gm, &regs, &sregs, what, sizeof(what));
    guest_fault(vc, "%s", what);
    return false;
}

/* The guest reset a PC (Linux's reboot): the VM ends, as a halt with 0. */
static void pc_reset(vm_cpu *vc)
{
    pthread_mutex_lock(&vc->v->lock);
    vm_stop_locked(vc->v, VM_STOP_HALT, 0, "vm: the guest reset the machine "
                   "(vCPU %u)", vc->c->index);
    pthread_mutex_unlock(&vc->v->lock);
}

/* Port I/O on a PC: every exit goes to its devices; a rep string too. */
static bool handle_pc_io(vm_cpu *vc)
{
    struct kvm_run *run = vc->c->run;
    uint8_t *data = (uint8_t *)run + run->io.data_offset;
    bool out = run->io.direction == KVM_EXIT_IO_OUT;

    for (uint32_t i = 0; i < run->io.count; i++, data += run->io.size) {
        if (pc_io(vc->v->pc, run->io.port, out, data, run->io.size) ==
            PC_IO_RESET) {
            pc_reset(vc);
            return false;
        }
    }
    return true;
}

static bool handle_io(vm_cpu *vc)
{
    struct kvm_run *run = vc->c->run;
    uint16_t port = run->io.port;
    bool out = run->io.direction == KVM_EXIT_IO_OUT;

    if (port == BOOT_EXC_PORT && out) {
        struct kvm_sregs s;
        if (vcpu_get_sregs(vc->c, &s) == 0 && (s.cs.selector & 3) == 0)
            return handle_exception(vc);
    }
    if (port < FTVM_HC_PORT_BASE || port >= FTVM_HC_PORT_BASE + HC_PORT_SPAN) {
        guest_fault(vc, "%s of %u byte(s) at I/O port 0x%x, which is no "
                    "device, at rip 0x%" PRIx64, out ? "out" : "in",
                    run->io.size, port, guest_rip(vc));
        return false;
    }
    unsigned nr = port - FTVM_HC_PORT_BASE;
    if (!out) {
        guest_fault(vc, "in from hypercall port 0x%x at rip 0x%" PRIx64
                    "; hypercalls are outl", port, guest_rip(vc));
        return false;
    }
    if (run->io.size != 4 || run->io.count != 1) {
        guest_fault(vc, "%u-byte out (count %u) to hypercall port 0x%x at "
                    "rip 0x%" PRIx64 "; hypercalls are 4-byte outl",
                    run->io.size, run->io.count, port, guest_rip(vc));
        return false;
    }
    if (nr == 0 || nr >= FTVM_HC_MAX) {
        guest_fault(vc, "hypercall port 0x%x unknown at rip 0x%" PRIx64,
                    port, guest_rip(vc));
        return false;
    }

    uint32_t arg;
    memcpy(&arg, (uint8_t *)run + run->io.data_offset, sizeof(arg));
    char msg[300];
    switch (hc_call(&vc->v->hc, nr, arg, msg, sizeof(msg))) {
    case HC_DONE:
        return true;
    case HC_HALT:
        pthread_mutex_lock(&vc->v->lock);
        vm_stop_locked(vc->v, VM_STOP_HALT, vc->v->hc.st.halt_status,
                       "vm: guest halted with status %u",
                       vc->v->hc.st.halt_status);
        pthread_mutex_unlock(&vc->v->lock);
        return false;
    case HC_FAULT:
        guest_fault(vc, "%s, at rip 0x%" PRIx64, msg, guest_rip(vc));
        return false;
    }
    return false;
}

/* Whether the vCPU goes on running. */
static bool handle_exit(vm_cpu *vc)
{
    struct kvm_run *run = vc->c->run;

    switch (run->exit_reason) {
    case KVM_EXIT_IO:
        return vc->v->pc ? handle_pc_io(vc) : handle_io(vc);
    case KVM_EXIT_INTR:
        return true;
    case KVM_EXIT_MMIO:
        if (vc->v->pc) {
            pc_mmio(vc->v->pc, run->mmio.phys_addr, run->mmio.is_write,
                    run->mmio.data, run->mmio.len);
            return true;
        }
        guest_fault(vc, "%s of %u bytes at 0x%" PRIx64 ", outside RAM, at "
                    "rip 0x%" PRIx64, run->mmio.is_write ? "write" : "read",
                    run->mmio.len, (uint64_t)run->mmio.phys_addr,
                    guest_rip(vc));
        return false;
    case KVM_EXIT_SHUTDOWN:
        guest_fault(vc, "triple fault (an exception it could not handle, "
                    "e.g. with its own tables broken) at rip 0x%" PRIx64,
                    guest_rip(vc));
        return false;
    case KVM_EXIT_HLT:
        guest_fault(vc, "hlt at rip 0x%" PRIx64 "; use FTVM_HC_HALT",
                    guest_rip(vc));
        return false;
    case KVM_EXIT_INTERNAL_ERROR:
        guest_fault(vc, "KVM internal error (suberror %u, e.g. an "
                    "instruction it cannot emulate) at rip 0x%" PRIx64,
                    run->internal.suberror, guest_rip(vc));
        return false;
    case KVM_EXIT_FAIL_ENTRY:
        guest_fault(vc, "KVM could not enter the guest (hardware reason "
                    "0x%" PRIx64 ") at rip 0x%" PRIx64,
                    (uint64_t)run->fail_entry.hardware_entry_failure_reason,
                    guest_rip(vc));
        return false;
    default:
        guest_fault(vc, "unexpected KVM exit %u at rip 0x%" PRIx64,
                    run->exit_reason, guest_rip(vc));
        return false;
    }
}

static void *cpu_main(void *arg)
{
    vm_cpu *vc = arg;
    struct vm *v = vc->v;
    struct kvm_run *run = vc->c->run;

    tls_run = run;
    while (wait_runnable(vc)) {
        vc->ran = true;
        int rc = ioctl(vc->c->fd, KVM_RUN, 0);
        int e = errno;
        __atomic_store_n(&vc->left_ns, hc_host_ns(), __ATOMIC_RELAXED);
        __atomic_store_n(&run->immediate_exit, 0, __ATOMIC_RELAXED);
        if (rc < 0) {
            if (e == EINTR || e == EAGAIN)
                continue;
            char err[128];
            snprintf(err, sizeof(err), "vCPU %u: KVM_RUN: %s", vc->c->index,
                     strerror(e));
            monitor_error(vc, err);
            break;
        }
        if (!handle_exit(vc))
            break;
    }
    tls_run = NULL;
    pthread_mutex_lock(&v->lock);
    vc->exited = true;
    v->nexited++;
    pthread_cond_broadcast(&v->cond);
    pthread_mutex_unlock(&v->lock);
    return NULL;
}

int vm_cpu_start(struct vm *v, vm_cpu *vc, char *err, size_t errlen)
{
    sigset_t all, old;

    pthread_once(&kick_once, kick_install);
    /* The thread takes the kick and faults; other signals are the loop's. */
    sigfillset(&all);
    sigdelset(&all, VM_KICK_SIGNAL);
    sigdelset(&all, SIGSEGV);
    sigdelset(&all, SIGBUS);
    sigdelset(&all, SIGFPE);
    sigdelset(&all, SIGILL);
    sigdelset(&all, SIGABRT);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(&vc->thread, NULL, cpu_main, vc);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        snprintf(err, errlen, "vCPU %u: cannot start its thread: %s",
                 vc->c->index, strerror(rc));
        return -rc;
    }
    vc->started = true;
    v->nstarted++;
    return 0;
}
