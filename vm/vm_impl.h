/*
 * vm_impl: the inside of struct vm, shared by vm.c (lifecycle, state,
 * event loop) and vm_cpu.c (the vCPU threads).  Not for other modules.
 *
 * Locking: lock guards the run state, the pause and stop requests and the
 * per-vCPU park flags; cond is broadcast whenever any of them changes and
 * when a network frame arrives (a vCPU in FTVM_HC_POLL waits on it).
 * vCPU threads touch KVM only outside the lock; the loop thread touches a
 * vCPU's KVM state only while that vCPU is parked.
 */
#ifndef FTVM_VM_VM_IMPL_H
#define FTVM_VM_VM_IMPL_H

#include <pthread.h>

#include "checkpoint/block.h"
#include "vm/conout.h"
#include "vm/gmem.h"
#include "vm/hc.h"
#include "vm/kvm.h"
#include "vm/pc.h"
#include "vm/vcpu.h"
#include "vm/vm.h"

typedef struct vm_cpu {
    struct vm *v;
    vcpu *c;
    pthread_t thread;
    bool started;
    bool runnable;          /* false: parked until an ABI starts it */
    bool parked;            /* out of KVM_RUN, state read, waiting */
    bool exited;
    bool ran;               /* has entered KVM_RUN at least once */
    uint64_t left_ns;       /* when KVM_RUN last returned */
} vm_cpu;

/*
 * The chain of checkpoint files (vm_disk.c): valid while the disk's last
 * take was the END of file last (in dir), committed; pending while a
 * file's save runs, which must see exactly one START and one END.
 */
typedef struct vm_disk_chain {
    bool valid;
    unsigned len;                   /* files in the chain, root included */
    char dir[4096];
    char last[VM_DISK_BASE_LEN];
    uint8_t last_id[VM_DISK_ID_LEN];
    bool pending;
    bool pending_in_dir;            /* a link of dir's chain (not save FILE) */
    char pending_dir[4096];
    char pending_name[VM_DISK_BASE_LEN];
    vm_disk_file plan;              /* the pending file's */
    unsigned setups, completes;
    bool spoiled;                   /* the chain broke while it ran */
    unsigned taken_slot;            /* its END's take: disk_recent[slot] */
} vm_disk_chain;

struct vm {
    vm_config cfg;
    kvm_vm kvm;
    gmem gm;
    vm_cpu cpus[VM_MAX_VCPUS];
    unsigned ncpus;
    hc_dev hc;
    pc *pc;                         /* VM_MACHINE_PC's devices, else NULL */
    conout *con;                    /* on cfg.console_fd, or NULL */
    net_dev *net;
    registry *reg;
    ram_saver *saver;
    ram_loader *loader;
    ram_save_stats ram_stats;
    bool booted;

    /* cfg.disk's "block" entry (vm_disk.c); all NULL without a disk. */
    block_loader *bloader;          /* NULL for a readonly disk too */
    uint8_t *disk_scratch;          /* one chunk, for the savers */
    unsigned long *disk_recent[VM_DISK_RECENT];  /* the last ENDs' takes */
    unsigned disk_recent_next;
    block_save_stats disk_stats;
    bool disk_hold;                 /* staged chunks wait for a commit */
    vm_disk_info disk_info;         /* "ftvm-disk" */
    vm_disk_chain chain;            /* checkpoint files as deltas */

    pthread_mutex_t lock;
    pthread_cond_t cond;            /* on CLOCK_MONOTONIC */
    vm_state state;
    bool pause_req;
    unsigned holds;                 /* vm_pause calls not yet resumed */
    bool stop_req;
    unsigned nstarted, nparked, nexited;
    vm_stop_info stop;
    uint64_t pause_t0;
    vm_pause_stats pstats;

    int notify_fd;                  /* eventfd: a vCPU stopped the VM */
    struct event_base *base;        /* vm_attach's, or NULL */
    /* ev_net: NULL while the NIC has no host side (net_fd() < 0). */
    struct event *ev_notify, *ev_net, *ev_con_in;
    void (*on_stop)(struct vm *v, void *arg);
    void *on_stop_arg;
    bool stop_reported;             /* on_stop has been called */
};

/* vm_state.c: registers RAM, vCPUs and devices in v->reg. */
int vm_register_state(struct vm *v, char *err, size_t errlen);

/* vm_disk.c: registers the disk's "block" entry (none without one). */
int vm_disk_register(struct vm *v, char *err, size_t errlen);
void vm_disk_free(struct vm *v);

/* vm_cpu.c */
int vm_cpu_start(struct vm *v, vm_cpu *vc, char *err, size_t errlen);
void vm_cpu_kick_all(struct vm *v);
/* Blocks a vCPU in FTVM_HC_POLL (hc_dev.wait). */
void vm_cpu_poll_wait(void *opaque, uint64_t deadline_ns);
/* Stops the VM for good, with lock held; the first reason wins. */
__attribute__((format(printf, 4, 5)))
void vm_stop_locked(struct vm *v, vm_stop_reason why, uint8_t status,
                    const char *fmt, ...);

#endif
