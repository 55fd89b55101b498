/*
 * virtq: the device side of a VIRTIO 1.0 split virtqueue (the spec's
 * 2.6): the descriptor table, the driver's (avail) ring and the device's
 * (used) ring, all in guest memory the driver chose.
 *
 * A guest is hostile: every address goes through the memory accessor
 * (virtq_mem.ptr, which refuses anything not wholly inside guest RAM),
 * every descriptor index is checked against the queue's size, a chain is
 * at most size descriptors long (no loops), and the driver's index may
 * run at most size ahead of the device's.  A queue that breaks a rule is
 * reported with -EPROTO and a reason; the device then stops using it
 * (virtio's DEVICE_NEEDS_RESET).  Indirect descriptors and event indices
 * are not offered, so a descriptor asking for either is a broken queue.
 *
 * What the monitor writes into guest RAM (received data, the used ring)
 * is reported through virtq_mem.dirty, so checkpoints and replication
 * carry it (the guest's own writes are in KVM's dirty log).
 *
 * State (virtq_desc, "virtq" v1): size, enabled, the three ring
 * addresses, the next avail index to read and the used index to write;
 * checked by virtq_check_state.
 */
#ifndef FTVM_DEVICES_VIRTQ_H
#define FTVM_DEVICES_VIRTQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "devstate/vmstate.h"

#define VIRTQ_MAX_SIZE 256u

/* Guest memory as the device sees it. */
typedef struct virtq_mem {
    /* Host address of [gpa, gpa + len), or NULL unless all in RAM. */
    void *(*ptr)(void *opaque, uint64_t gpa, uint64_t len);
    /* The device wrote [gpa, gpa + len). */
    void (*dirty)(void *opaque, uint64_t gpa, uint64_t len);
    void *opaque;
} virtq_mem;

typedef struct virtq {
    uint16_t size;                  /* a power of two, <= VIRTQ_MAX_SIZE */
    bool enabled;
    uint64_t desc, avail, used;     /* guest-physical */
    uint16_t last_avail;            /* next avail ring entry to take */
    uint16_t used_idx;              /* the used ring's idx as last written */
} virtq;

typedef struct virtq_seg {
    uint64_t gpa;
    uint32_t len;
    bool write;                     /* device-writable */
} virtq_seg;

/* One descriptor chain the driver made available. */
typedef struct virtq_chain {
    uint16_t head;
    unsigned nseg;
    virtq_seg seg[VIRTQ_MAX_SIZE];
    uint64_t readable, writable;    /* bytes of each kind */
} virtq_chain;

extern const vmstate_desc virtq_desc;

/*
 * Whether loaded state is a queue's: size a power of two up to the
 * maximum, an enabled queue's rings aligned, no more buffers taken than
 * entries.  0 or -EINVAL with why filled; the transport calls it (and
 * names its device) from its own check.
 */
int virtq_check_state(const virtq *q, char *why, size_t whylen);
/* Puts q back to its reset state, with size max. */
void virtq_reset(virtq *q, uint16_t max);
/*
 * Whether the queue's rings lie in guest memory; 0 or -EPROTO with why
 * filled (the driver enabled a queue it placed outside RAM).
 */
int virtq_check_rings(const virtq *q, const virtq_mem *m, char *why,
                      size_t whylen);
/*
 * Takes the next available chain: 1 and *c filled, 0 if none, -EPROTO
 * (why filled) when the queue is broken.
 */
int virtq_pop(virtq *q, const virtq_mem *m, virtq_chain *c, char *why,
              size_t whylen);
/* Gives back the chain virtq_pop took last (not used after all). */
void virtq_unpop(virtq *q);
/*
 * Returns chain head to the driver with len bytes written: 0 or -EPROTO
 * (the used ring is no longer in RAM).
 */
int virtq_push(virtq *q, const virtq_mem *m, uint16_t head, uint32_t len);
/* Whether the driver wants an interrupt for used buffers now. */
bool virtq_wants_interrupt(const virtq *q, const virtq_mem *m);
/*
 * Copies up to cap readable bytes of c, from byte skip on, into buf;
 * returns how many.
 */
size_t virtq_read(const virtq_mem *m, const virtq_chain *c, uint64_t skip,
                  void *buf, size_t cap);
/*
 * Copies len bytes into c's writable segments from byte skip on (marked
 * dirty); returns how many fitted.
 */
size_t virtq_write(const virtq_mem *m, const virtq_chain *c, uint64_t skip,
                   const void *buf, size_t len);

#endif
