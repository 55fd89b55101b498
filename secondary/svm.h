/*
 * svm: the secondary's running VM in COLO mode (docs/colo.md).
 *
 * The VM the packages are applied to stays the RAM cache, never started:
 * the primary's state at the last checkpoint.  After checkpoint 1 a second
 * VM of the same shape, the SVM, is made from it and runs (2x the VM's
 * memory, as QEMU's COLO).  Its console bytes never reach the world while
 * the primary lives: they go back on the return path (COLO_CONSOLE),
 * tagged with the checkpoint it last reset to, for the primary to compare
 * with its own.  Each checkpoint applied resets it: pause, copy every page
 * dirtied since the last reset by either VM (the cache's dirty bits, which
 * the RAM loader sets for each page it stores, and the SVM's own KVM dirty
 * log), load the cache's device state, resume.  At failover it simply runs
 * on (svm_go_live): its console now goes to the world, beginning with
 * bytes it wrote that never reached the return path.
 *
 * Everything runs on the loop's thread, but for the console hook (the
 * SVM's vCPU threads).  svm_reset needs the cache still between packages
 * (receiver_hold).
 */
#ifndef FTVM_SECONDARY_SVM_H
#define FTVM_SECONDARY_SVM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "daemon/metrics.h"
#include "daemon/sampler.h"
#include "secondary/svmnet.h"
#include "vm/hc.h"
#include "vm/vm.h"
#include "vm/vmshape.h"

struct event_base;

/* Console bytes kept for the return path; more are dropped (counted). */
#define SVM_MAX_PENDING (1u << 20)

typedef struct svm svm;

typedef struct svm_opts {
    struct event_base *base;
    /*
     * Writes one return-path message without blocking: 1 sent, 0 not now
     * (tried again), < 0 the connection is gone (receiver_try_send).
     */
    int (*send)(void *opaque, const retpath_msg *m);
    void *send_opaque;
    /* Where console bytes go once it is the VM (svm_go_live). */
    hc_console_fn live_console;
    void *live_opaque;
    /* Where its frames go then (a VM with a NIC). */
    hc_transmit_fn live_transmit;
    void *live_transmit_opaque;
    /* The SVM stopped (vm_attach's on_stop). */
    void (*on_stop)(vm *v, void *arg);
    void *stop_arg;
} svm_opts;

typedef struct svm_stats {
    bool running;
    uint64_t reset_to;          /* the checkpoint it last reset to */
    uint64_t resets;
    uint64_t last_pages;        /* copied by the last reset */
    sampler_summary reset_ns, pages;
    uint64_t console_bytes;     /* written by the SVM */
    uint64_t sent_bytes;        /* on the return path */
    uint64_t dropped_bytes;     /* over SVM_MAX_PENDING */
    uint64_t released_bytes;    /* the primary said it releases */
    uint64_t kept_bytes;        /* sent, not yet said released: now */
    uint64_t mem_bytes;         /* its RAM (the cache's is as much) */
    svmnet_stats net;           /* its NIC's (a VM with one) */
} svm_stats;

int svm_new(svm **out, const svm_opts *o);
/* Stops and destroys the SVM (if it is not the caller's now). */
void svm_free(svm *s);

/*
 * Makes the SVM (not started) ahead of checkpoint 1, so that the first
 * reset is a copy.  0, or -errno with a message.
 */
int svm_prepare(svm *s, const vmshape *shape, char *err, size_t errlen);
/*
 * The cache (a VM of shape, held between packages) is at checkpoint id:
 * makes and starts the SVM from it the first time, resets it after.
 * 0, or -errno with a message (the SVM is then gone: no comparison).
 */
int svm_reset(svm *s, vm *cache, const vmshape *shape, uint64_t id,
              char *err, size_t errlen);
/* The SVM, or NULL before the first reset. */
vm *svm_vm(const svm *s);
/*
 * Failover: from now on its console goes to live_console, beginning with
 * what it wrote that was not sent to the primary; its NIC takes the
 * cache's host side (secondary/svmnet.h).  The VM stays the caller's to
 * stop (svm_free no longer destroys it).  0, or -errno with a message
 * (the NIC could not take over: the SVM runs without a network).
 */
int svm_go_live(svm *s, vm *cache, char *err, size_t errlen);
/*
 * A frame the primary's NIC received after checkpoint id (the stream's
 * ftvm-colo-in), for the SVM's NIC; on the receiver's thread.
 */
void svm_input(svm *s, uint64_t id, const void *frame, size_t len);
/*
 * The primary will release the first console bytes the guest wrote
 * after checkpoint id once it hears back (ftvm-colo-rel): they are no
 * longer the SVM's to write at failover; answered with COLO_RELEASED.
 * On the receiver's thread.
 */
void svm_release(svm *s, uint64_t id, uint64_t console);

void svm_get_stats(svm *s, svm_stats *out);
/* The secondary's status object "colo" (docs/colo.md lists its fields). */
json_t *svm_status(svm *s);
/* Its metrics (docs/colo.md). */
void svm_metrics(svm *s, metrics_writer *w);

#endif
