/*
 * colosec: COLO mode's sections (docs/colo.md, docs/stream-format.md),
 * each FULL, instance 0, version 1, written and read through a vmstate
 * table, which also gives its VM description entry.
 *
 * "ftvm-colo" says in the bring-up that the primary runs in COLO mode:
 * right after "ftvm-vm", body be32 mode (0 checkpoint, 1 COLO).  Only
 * COLO primaries send it; a stream without it is checkpoint mode.  Its
 * section id is the registry's count + 3 (after ftvm-vm, ftvm-pkg and
 * ftvm-ckpt), the same as "ftvm-drop"'s: both are FULL, which no PART or
 * END refers to by id, so neither ftvm's loader nor QEMU's rules mind.
 *
 * "ftvm-colo-in", the input mirror: one frame the primary's NIC received,
 * sent between packages (at the stream's top level) after checkpoint 1,
 * in the order received, for the secondary's running VM.  Body: be64
 * checkpoint (the last checkpoint taken before the frame arrived), be16
 * len (1..COLOSEC_INPUT_FRAME_MAX), then COLOSEC_INPUT_FRAME_MAX bytes:
 * the frame and zeros.  A fixed size, so that its description entry
 * describes every one exactly.  Section id: colosec_input_section_id.
 */
#ifndef FTVM_VM_COLOSEC_H
#define FTVM_VM_COLOSEC_H

#include <jansson.h>
#include <stdint.h>

#include "checkpoint/qfile.h"
#include "checkpoint/savevm.h"

#define COLOSEC_IDSTR "ftvm-colo"
#define COLOSEC_VERSION 1u
#define COLOSEC_MODE_COLO 1u

#define COLOSEC_INPUT_IDSTR "ftvm-colo-in"
#define COLOSEC_INPUT_VERSION 1u
/* A whole Ethernet frame without its FCS (vm/net.h's NET_FRAME_MAX). */
#define COLOSEC_INPUT_FRAME_MAX 1514u
#define COLOSEC_INPUT_BODY_LEN (8u + 2u + COLOSEC_INPUT_FRAME_MAX)
/*
 * The whole section as colosec_put_input writes it: type, section id,
 * counted id string, instance, version, body, footer (1555 bytes).
 */
#define COLOSEC_INPUT_SECTION_LEN                                          \
    (1u + 4u + 1u + (sizeof(COLOSEC_INPUT_IDSTR) - 1) + 4u + 4u +          \
     COLOSEC_INPUT_BODY_LEN + 5u)

void colosec_put(qfile *f, uint32_t section_id, uint32_t mode);
/* Reads and checks the body (mode 0 or 1).  0 or the error latched on f. */
int colosec_load(qfile *f, const savevm_section *sec, uint32_t *mode);

/*
 * The section id of "ftvm-colo-in", from the registry's count n (as
 * primary/package.c computes n): n + 4, after ftvm-vm n, ftvm-pkg n + 1,
 * ftvm-ckpt n + 2 and ftvm-colo / ftvm-drop n + 3.
 */
uint32_t colosec_input_section_id(uint32_t registry_count);
/*
 * Writes one whole "ftvm-colo-in" section (header, body, footer): frame
 * len bytes (1..COLOSEC_INPUT_FRAME_MAX) the NIC received after
 * checkpoint id.  Another len latches -EINVAL on f and writes nothing.
 */
void colosec_put_input(qfile *f, uint32_t section_id, uint64_t id,
                       const void *frame, size_t len);
/*
 * Reads and checks the body of an "ftvm-colo-in" section sec (FULL,
 * instance 0, version 1; len 1..COLOSEC_INPUT_FRAME_MAX; zeros past the
 * frame) into *id, frame (COLOSEC_INPUT_FRAME_MAX bytes) and *len.  0 or
 * the error latched on f, naming the section; nothing is stored then.
 */
int colosec_load_input(qfile *f, const savevm_section *sec, uint64_t *id,
                       void *frame, size_t *len);

/*
 * "ftvm-colo-rel", the exact release (docs/colo.md, "Failover"): the
 * primary is about to release the first `console` bytes the guest wrote
 * after checkpoint `checkpoint`, which the SVM wrote alike; the secondary
 * keeps that offset (its SVM writes only what follows it at failover) and
 * answers COLO_RELEASED, on which the primary releases them.  Between
 * packages, FULL, instance 0, version 1, section id n + 5; body be64
 * checkpoint, be64 console.
 */
#define COLOSEC_RELEASE_IDSTR "ftvm-colo-rel"
#define COLOSEC_RELEASE_VERSION 1u

uint32_t colosec_release_section_id(uint32_t registry_count);
void colosec_put_release(qfile *f, uint32_t section_id, uint64_t id,
                         uint64_t console);
/* Reads and checks it (checkpoint not 0).  0 or the error latched on f. */
int colosec_load_release(qfile *f, const savevm_section *sec, uint64_t *id,
                         uint64_t *console);

/*
 * Appends the entries of "ftvm-colo", "ftvm-colo-in" and "ftvm-colo-rel"
 * to a VM description's devices (vmshape_describe's).
 */
int colosec_describe(json_t *vmdesc_devices);

#endif
