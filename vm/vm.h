/*
 * vm: one KVM virtual machine running an ftvm guest (one per process).
 *
 * A VM is created with its RAM and vCPUs, then either booted from an ELF
 * image (vm_boot) or loaded from a checkpoint through its registry
 * (restore, failover), then started.  Each vCPU runs in a thread of its
 * own; everything else (pause, resume, stop, saving, network input) is
 * driven from one event-loop thread.
 *
 *     vm_create -> vm_boot | load into vm_registry -> vm_attach -> vm_start
 *     ... vm_pause -> save or load -> vm_resume ...
 *     on_stop -> vm_destroy
 *
 * Pausing takes every vCPU out of KVM_RUN (a signal and immediate_exit
 * kick one that is in the guest; one blocked in FTVM_HC_POLL is woken),
 * completes any port I/O the guest started, and reads each vCPU's state
 * into the registry's objects.  A paused VM can be saved with reg_save_*
 * and loaded with the registry as an sv_target; the next vm_resume (or
 * vm_start) pushes loaded vCPU state into KVM and carries the guest's
 * clock on from the checkpoint.
 *
 * The registry holds: "ram" (live, the RAM codec over vm_ram_blocks),
 * "cpu" instance i for vCPU i, "ftvm-dev" (console, clock, halt), for a
 * Linux VM "pc" (vm/pc.h) and, with a network, "ftvm-net" (MAC and
 * receive queue).  The "ram" entry's START
 * marks all RAM dirty (a full first copy); each PART or END section syncs
 * the dirty log and sends what changed.  Pages go out with qfile_put_iov: on
 * an fd channel, flush it before vm_resume.
 */
#ifndef FTVM_VM_VM_H
#define FTVM_VM_VM_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "checkpoint/block.h"
#include "checkpoint/disk.h"
#include "checkpoint/ram.h"
#include "devstate/registry.h"
#include "vm/conout.h"
#include "vm/hc.h"
#include "vm/net.h"

struct event_base;

#define VM_MAX_VCPUS 64
/* The signal that kicks a vCPU thread out of KVM_RUN. */
#define VM_KICK_SIGNAL SIGUSR1
/*
 * How long vm_pause waits for the vCPUs to leave the guest, which takes
 * microseconds; a vCPU held up in the monitor longer than this must not
 * hold the event loop that asked.
 */
#define VM_PAUSE_TIMEOUT_NS 2000000000ull

typedef struct vm vm;

/* What the guest is, fixed when the VM is created. */
typedef enum vm_machine {
    VM_MACHINE_FTVM,    /* a freestanding guest on the hypercall ABI */
    VM_MACHINE_PC,      /* a Linux kernel on a small PC (vm/pc.h) */
} vm_machine;

typedef struct vm_config {
    vm_machine machine;
    uint64_t mem_size;          /* bytes; a multiple of 2 MiB, 4 MiB..64 GiB */
    unsigned vcpus;             /* 1..VM_MAX_VCPUS; vCPU 0 runs the guest */
    const char *net;            /* backend spec (vm/net.h), NULL for none */
    uint8_t mac[6];             /* the guest's MAC */
    /*
     * The console's fd (-1: none), written through the VM's conout
     * (vm_console), which never makes a vCPU wait for its reader.
     */
    int console_fd;
    /*
     * A Linux guest's console input (its UART's receive FIFO), read from
     * the loop when readable (a pipe, socket or terminal; anything else is
     * no input); -1 (the default): none.  What the FIFO has no room for is
     * lost, as on a serial line.
     */
    int console_in_fd;
    /*
     * Takes console bytes instead, e.g. to hold them for output commit
     * and then hand them to vm_console.  NULL: straight to vm_console.
     */
    hc_console_fn console_fn;
    void *console_opaque;
    /*
     * Receives every frame the guest sends, e.g. to hold it for output
     * commit; NULL: frames go straight to the backend (net_transmit).
     */
    hc_transmit_fn transmit_fn;
    void *transmit_opaque;
    ram_save_opts ram_opts;     /* compression for the "ram" entry */
    /*
     * The guest's disk (checkpoint/disk.h, opened as VM_DISK_NAME), or
     * NULL: a virtio-blk device for a Linux guest, the block hypercalls
     * for a freestanding one, and the "block" entry that checkpoints and
     * replicates its writes.  The caller's: it must outlive the VM.
     */
    disk *disk;
    bool disk_owned;            /* vm_destroy (or a failed vm_create)
                                   closes disk */
} vm_config;

/* The name a VM's disk has in the "block" section and in "ftvm-vm". */
#define VM_DISK_NAME "disk0"

/* Defaults: 256 MiB, one vCPU, no network, MAC 02:46:54:56:4d:01, stdout. */
void vm_config_init(vm_config *c);
/* Whether a VM can have mem_size bytes of RAM; -EINVAL with why if not. */
int vm_check_mem_size(uint64_t mem_size, char *err, size_t errlen);

typedef enum vm_state {
    VM_CREATED,     /* not started */
    VM_RUNNING,
    VM_PAUSED,
    VM_STOPPED,     /* for good: see vm_stop_info */
} vm_state;

typedef enum vm_stop_reason {
    VM_STOP_NONE,
    VM_STOP_HALT,       /* the guest called FTVM_HC_HALT, or (status 0)
                           a Linux guest reset the machine */
    VM_STOP_FAULT,      /* the guest broke the ABI or crashed */
    VM_STOP_ERROR,      /* the monitor failed (a KVM call) */
    VM_STOP_REQUESTED,  /* vm_stop */
} vm_stop_reason;

typedef struct vm_stop_info {
    vm_stop_reason reason;
    uint8_t status;     /* the guest's, for VM_STOP_HALT */
    char msg[512];      /* for a person: "vm: guest stopped: ..." */
} vm_stop_info;

typedef struct vm_pause_stats {
    uint64_t pauses;
    /* From the request until the last vCPU was out of KVM_RUN. */
    uint64_t last_exit_ns, max_exit_ns;
    /* Until every vCPU was parked with its state read. */
    uint64_t last_total_ns, max_total_ns;
} vm_pause_stats;

/*
 * Creates the VM: RAM (one block, "ram0", at address 0), vCPUs, the
 * network backend, the registry.  0, or -errno with a message.
 */
int vm_create(vm **out, const vm_config *cfg, char *err, size_t errlen);
/*
 * Loads image into RAM and sets vCPU 0 up to enter it with cmdline (the
 * guest's arguments, space-separated).  0, or -errno with a message.
 */
int vm_boot(vm *v, const char *image, const char *cmdline, char *err,
            size_t errlen);
/*
 * Loads a Linux kernel (and initrd) into a VM_MACHINE_PC VM, writes its
 * firmware tables and sets vCPU 0 up to enter the kernel; the other
 * vCPUs wait for the guest's startup IPIs.  0, or -errno with a message.
 */
int vm_boot_kernel(vm *v, const char *kernel, const char *initrd,
                   const char *cmdline, char *err, size_t errlen);
/*
 * Whether the VM's state can be saved: 0 (every VM can, a Linux VM
 * too), or -ENOTSUP with the reason.
 */
int vm_check_savable(vm *v, char *err, size_t errlen);

/*
 * Puts the VM's events on base: network input, and on_stop(v, arg) once
 * the VM has stopped (the guest halted or faulted, or vm_stop).
 */
int vm_attach(vm *v, struct event_base *base,
              void (*on_stop)(vm *v, void *arg), void *arg);
/* Starts the vCPU threads of a booted or loaded VM. */
int vm_start(vm *v, char *err, size_t errlen);
/*
 * Pauses are held: each vm_pause takes a hold (pausing the vCPUs if they
 * run) and each vm_resume releases one; the vCPUs run again only when the
 * last hold goes.  So a checkpoint's short pause never undoes an
 * operator's pause, and the other way round.  Every vm_pause that
 * returns 0 must be paired with a vm_resume.  Synchronous, within
 * VM_PAUSE_TIMEOUT_NS: when a vCPU does not stop by then, the hold is
 * given back, the VM runs on as before, and -ETIMEDOUT is returned with
 * a message naming the vCPUs.  0 or -errno + msg.
 */
int vm_pause(vm *v, char *err, size_t errlen);
/*
 * Releases a hold; at the last one, pushes loaded state and resumes a
 * paused VM (a created, never started VM stays as it is).  -EINVAL when
 * no hold is held.  0 or -errno + msg.
 */
int vm_resume(vm *v, char *err, size_t errlen);
/* Asks the VM to stop for good (from the loop thread); does not wait. */
void vm_stop(vm *v);
/* Stops the threads, frees everything. */
void vm_destroy(vm *v);

vm_state vm_get_state(vm *v);
vm_machine vm_get_machine(vm *v);
void vm_get_stop_info(vm *v, vm_stop_info *out);
void vm_get_pause_stats(vm *v, vm_pause_stats *out);

registry *vm_registry(vm *v);
/* The RAM blocks, for the RAM codec and the secondary's cache. */
ram_block *vm_ram_blocks(vm *v, size_t *n);
/* Moves pages written since the last sync into the blocks' dirty bitmaps. */
int vm_sync_dirty(vm *v);
/* What the last "ram" PART or END section sent. */
void vm_get_ram_stats(vm *v, ram_save_stats *out);
ram_saver *vm_ram_saver(vm *v);

/*
 * The disk's "block" entry (vm/vm_disk.c).  A secondary holds what a load
 * stages (vm_disk_hold, before any load) and writes it into its image
 * with vm_disk_commit once the package's RAM is applied: 0, or -errno
 * with the reason (naming the image and chunk) in err, the stage kept.
 * Without a hold each section's chunks are written as it loads
 * (restore).
 * vm_disk_resend marks again the chunks of the last VM_DISK_RECENT
 * checkpoints (a full package: docs/disk-format.md).  All no-ops without
 * a disk.
 */
#define VM_DISK_RECENT 8u
/* Why COLO mode refuses a VM with a disk (its secondary's copy runs). */
#define VM_DISK_NO_COLO                                                     \
    "COLO mode does not replicate a disk yet (the secondary's VM runs and " \
    "would write its own copy); use checkpoint mode"
/* The VM's disk (its config's), or NULL. */
disk *vm_disk(vm *v);
void vm_disk_hold(vm *v);
int vm_disk_commit(vm *v, char *err, size_t errlen);
void vm_disk_resend(vm *v);
/*
 * "ftvm-disk" (FULL, instance 0, version 2; 1 still loads): which disk
 * the "block" section's chunks belong to.  Body: 32 bytes name
 * (NUL-padded), be64 size in bytes; from version 2, the checkpoint
 * file's 16-byte random id, its base file's id (all zero: the file holds
 * the whole image) and the base's file name (64 bytes, NUL-padded, in
 * the same directory; empty for a whole image).  A load refuses another
 * name or size than the VM's disk, before any chunk is written.  Outside
 * checkpoint files (a replication package) the ids are zero.
 */
#define VM_DISK_INFO_IDSTR "ftvm-disk"
#define VM_DISK_ID_LEN 16
#define VM_DISK_BASE_LEN 64
typedef struct vm_disk_info {
    char name[32];
    uint64_t size;
    uint8_t id[VM_DISK_ID_LEN];
    uint8_t base_id[VM_DISK_ID_LEN];
    char base[VM_DISK_BASE_LEN];
    uint64_t expect_size;       /* not on the wire: the VM's, for check */
} vm_disk_info;
extern const vmstate_desc vm_disk_info_desc;
/*
 * The chain fields' rules (a base name that is a plain file name, NUL
 * inside, given exactly when base_id is): 0, or -EINVAL latched on f.
 */
int vm_disk_info_check_chain(qfile *f, const vm_disk_info *i);
/* Whether an id is all zero (a whole image; no id). */
bool vm_disk_id_zero(const uint8_t id[VM_DISK_ID_LEN]);

/*
 * Checkpoint files as a chain (docs/checkpoints.md, "Disks").  The disk
 * has one dirty bitmap, and a file's END take holds exactly what was
 * written since the take before it; when that take was the previous
 * file's (of the same directory), the file needs only those chunks.
 * Before a save to a file starts (its "block" START not yet sent) the
 * saver calls vm_disk_file_begin: dir NULL for a file that is no chain's
 * link (save FILE: whole, and it breaks the chain), name the file's base
 * name, max_files the most files a chain may have (its root included;
 * once reached, the file is whole and starts a new one).  out says what
 * the file will be: a delta on out->base, or whole (base_id zero).  After
 * the save, vm_disk_file_end says whether the file is in place: only
 * then can the next file be a delta on it.  A save that failed after its
 * take gives the chunks back and makes the next file whole; so does any
 * take that was not a file's (a replication package, a bring-up) or a
 * load into the disk.  0, or -errno (no random id) with nothing begun.
 * No-ops without a disk (out zeroed).
 */
/* The most files a chain has (restore refuses longer ones). */
#define VM_DISK_CHAIN_MAX 64u
typedef struct vm_disk_file {
    uint8_t id[VM_DISK_ID_LEN];         /* this file's */
    uint8_t base_id[VM_DISK_ID_LEN];    /* zero: the whole image */
    char base[VM_DISK_BASE_LEN];
} vm_disk_file;
int vm_disk_file_begin(vm *v, const char *dir, const char *name,
                       unsigned max_files, vm_disk_file *out);
void vm_disk_file_end(vm *v, bool committed);
/* Chunks the disk's sections sent so far, and how many are dirty now. */
void vm_get_disk_stats(vm *v, block_save_stats *out);
/* The network device, or NULL. */
net_dev *vm_net(vm *v);
/*
 * Moves src's NIC backend to dst's (net_take_backend; dst's must be
 * "none": -EBUSY otherwise) and, if dst is attached to an event loop,
 * watches the fd for dst from then on; src's watcher goes first, src is
 * left with "none".  COLO's failover: the secondary VM takes the host side
 * its RAM-cache VM opened.  Call it on the loop thread of both VMs, with
 * both paused or with no vCPU able to send (the backend changes under
 * net_transmit).  0, -ENODEV (either has no NIC), -EBUSY, -EINVAL
 * (dst == src), -ENOMEM (no event: nothing moved; or the watch could not
 * be added: moved, not watched), with a message.
 */
int vm_net_take_backend(vm *dst, vm *src, char *err, size_t errlen);
/*
 * Puts a frame into the guest NIC's receive queue as if the backend had
 * received it and wakes a vCPU waiting for input (FTVM_HC_POLL), as a pump
 * does.  Any thread, the VM running or paused.  0, -ENODEV (no NIC),
 * -EINVAL (empty or over NET_FRAME_MAX), -ENOSPC (queue full; counted in
 * rx_dropped).
 */
int vm_net_deliver(vm *v, const void *frame, size_t len);
/* The console's writer (on vm_config.console_fd), or NULL without one. */
conout *vm_console(vm *v);
/* The guest's monotonic clock (ns). */
uint64_t vm_guest_clock(vm *v);
/*
 * Console bytes the guest has written since it booted: part of its state,
 * so a VM loaded from a checkpoint counts what had been written by then.
 */
uint64_t vm_console_bytes(vm *v);

#endif
