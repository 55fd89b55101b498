/*
 * hc: the hypercall devices (console, clock, poll, network, halt, disk)
 * and their guest-visible state.
 *
 * hc_call runs on the vCPU thread that trapped the `outl`, with the port
 * already checked to be a hypercall port of the right size and direction.
 * It copies the argument struct out of guest RAM once (a guest cannot
 * change it under the monitor's feet), checks every address and length in
 * it, does the call and writes the results back.  Bad arguments are the
 * guest's error (FTVM_EFAULT, FTVM_EINVAL in `ret`); a struct the monitor
 * cannot even read stops the VM.
 *
 * State saved with the VM ("ftvm-dev"): console counters, the guest's
 * monotonic clock, the halt status.  With a network, "ftvm-net": the MAC
 * and the frames received but not yet read.  The block calls keep none:
 * each completes before the vCPU resumes, and the image's contents are
 * the disk's own (checkpoint/disk.h).
 */
#ifndef FTVM_VM_HC_H
#define FTVM_VM_HC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "checkpoint/disk.h"
#include "devstate/vmstate.h"
#include "vm/gmem.h"
#include "include/hypercall_abi.h"
#include "vm/net.h"

#define HC_CONSOLE_MAX (64u * 1024)

/* Where console bytes go: 0 or -errno (which the guest does not see). */
typedef int (*hc_console_fn)(void *opaque, const void *buf, size_t len);
/*
 * Where every frame the guest sends goes (len 1..NET_FRAME_MAX): 0 once
 * taken, -ENOSPC for "no room now, try again" (the guest sees
 * FTVM_ENOSPC), -EINVAL, or another -errno for a frame lost on the way
 * (the guest sees success, as on a wire).
 */
typedef int (*hc_transmit_fn)(void *opaque, const void *frame, size_t len);

typedef struct hc_state {
    uint64_t console_calls;
    uint64_t console_bytes;
    /* The guest's monotonic clock when the VM last paused (ns). */
    uint64_t clock_ns;
    bool halted;
    uint8_t halt_status;
} hc_state;

typedef struct hc_frame {
    uint32_t len;
    uint8_t data[NET_FRAME_MAX];
} hc_frame;

typedef struct hc_net_state {
    uint8_t mac[6];
    uint32_t rxq_count;
    hc_frame *rxq;                  /* room for NET_RXQ_MAX */
    struct hc_dev *owner;           /* not state */
} hc_net_state;

typedef struct hc_dev {
    hc_state st;
    hc_net_state net_st;
    gmem *gm;
    net_dev *net;                   /* NULL: no network device */
    disk *disk;                     /* NULL: no disk; not owned */
    hc_console_fn console;
    void *console_opaque;
    hc_transmit_fn transmit;        /* set when net is */
    void *transmit_opaque;
    /*
     * Blocks the calling vCPU until a frame is queued, the host's
     * CLOCK_MONOTONIC reaches deadline_ns, or the VM must pause or stop.
     */
    void (*wait)(void *opaque, uint64_t deadline_ns);
    void *wait_opaque;
    /* Guest monotonic = host CLOCK_MONOTONIC + offset.  Changes paused. */
    int64_t clock_offset;
    bool loaded;                    /* st was loaded: see hc_resume */
} hc_dev;

typedef enum hc_outcome {
    HC_DONE,        /* resume the guest */
    HC_HALT,        /* the guest halted; st.halt_status says how */
    HC_FAULT,       /* stop the VM; msg says why */
} hc_outcome;

extern const vmstate_desc hc_state_desc;
extern const vmstate_desc hc_net_state_desc;

/* Sets up h over g and net (may be NULL); the clock starts at 0. */
int hc_init(hc_dev *h, gmem *g, net_dev *net, const uint8_t mac[6]);
void hc_fini(hc_dev *h);

/* One hypercall: nr in 1..FTVM_HC_MAX-1, arg the struct's address. */
hc_outcome hc_call(hc_dev *h, unsigned nr, uint32_t arg, char *msg,
                   size_t msglen);

/* The guest's monotonic clock now. */
uint64_t hc_clock_now(const hc_dev *h);
/* Records the clock at a pause (what a checkpoint saves). */
void hc_clock_pause(hc_dev *h);
/* Before the guest runs again: after a load, the clock goes on from there. */
void hc_resume(hc_dev *h);

/* CLOCK_MONOTONIC in ns. */
uint64_t hc_host_ns(void);

#endif
