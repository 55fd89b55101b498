/*
 * generations: the highest pairing generation the witness has decided
 * for a VM name, that is the highest G with a key /ftvm/NAME/G/owner
 * (docs/witness.md, "Generations").
 *
 * A primary with a witness starts its generations above it, so that a
 * pair restarted under the same name never reuses a decided generation;
 * a secondary with a witness refuses a primary whose generation is not
 * above it.  Generations are decimal, so key order is not number order:
 * the scan lists every key under /ftvm/NAME/ (keys only, ETCD_MAX_LIST a
 * page, every page at the first page's revision, so the pages are one
 * snapshot) and keeps the largest G of the keys that are exactly
 * /ftvm/NAME/G/owner.  Each page is one etcd request with the client's
 * deadline; a scan without an answer is asked again, whole, every
 * retry_ns, reporting each failure, until it is answered or cancelled.
 * Everything runs on the client's loop; nothing blocks it.
 */
#ifndef FTVM_WITNESS_GENERATIONS_H
#define FTVM_WITNESS_GENERATIONS_H

#include <stddef.h>
#include <stdint.h>

#include "witness/etcd.h"

typedef struct generations generations;

/*
 * rc 0: the scan is done, highest the answer (0: none decided); rc < 0: it
 * failed (err says why) and is asked again in retry_ns, unless the
 * callback cancels it.  Runs from the loop; it may free g.
 */
typedef void (*generations_cb)(void *opaque, int rc, uint64_t highest,
                               const char *err);

/* A scanner on client c (which must outlive it).  0 or -ENOMEM. */
int generations_new(generations **out, etcd *c, uint64_t retry_ns);
void generations_free(generations *g);
/*
 * Scans name's generations (name key-safe: checkpoint/pairing.h),
 * dropping a scan in flight.  0, or -errno with a message (no memory).
 */
int generations_scan(generations *g, const char *name, generations_cb cb,
                     void *opaque, char *err, size_t errlen);
/* Stops scanning; no callback. */
void generations_cancel(generations *g);

/* G of key when it is "/ftvm/NAME/G/owner" (G decimal, 1 or more, no
 * leading zero), else 0. */
uint64_t generations_of_key(const char *key, const char *name);

#endif
