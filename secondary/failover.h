/*
 * failover: the secondary's RAM cache becomes the running VM
 * (docs/replication.md, "Failover").
 *
 * By the time failover_start runs the receiver has stopped, so the VM's RAM,
 * vCPU and device state are those of the last checkpoint applied; nothing
 * is copied.  failover_start drops the frames that waited, unread, in the
 * network backend, puts the VM on the event loop (its network
 * backend starts receiving, and on_stop is called when the guest stops), sends
 * the first of QEMU's self-announce frames for the guest's MAC,
 * starts the vCPUs, and sends the other four from timers on the loop, 50,
 * 150, 250 and 350 ms apart, so that switches learn the MAC's new port.
 */
#ifndef FTVM_SECONDARY_FAILOVER_H
#define FTVM_SECONDARY_FAILOVER_H

#include <stddef.h>
#include <stdint.h>

#include "vm/vm.h"

struct event_base;

#define FAILOVER_ANNOUNCE_ROUNDS 5
#define FAILOVER_RARP_LEN 60 /* the frame, padded to Ethernet's minimum */

typedef struct failover failover;

/*
 * Attaches v to base, announces, starts it.  0, or -errno with a message;
 * on failure the VM may be attached but is not running.
 */
int failover_start(failover **out, vm *v, struct event_base *base,
                   const uint8_t mac[6], void (*on_stop)(vm *v, void *arg),
                   void *arg, char *err, size_t errlen);
/*
 * The announcements alone, for a VM that already runs on base with its
 * NIC (COLO's SVM at failover).  0, or -ENOMEM with a message.
 */
int failover_announce(failover **out, vm *v, struct event_base *base,
                      const uint8_t mac[6], char *err, size_t errlen);
/* Self-announce frames sent so far. */
unsigned failover_announced(const failover *f);
void failover_free(failover *f);

/*
 * QEMU's self-announce frame: a broadcast RARP reverse request
 * (ethertype 0x8035, opcode 3) whose sender and target hardware addresses
 * are mac and whose protocol addresses are 0.  Writes FAILOVER_RARP_LEN bytes.
 */
void failover_rarp_frame(uint8_t out[FAILOVER_RARP_LEN], const uint8_t mac[6]);

#endif
