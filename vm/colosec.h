/*
 * colosec: the "ftvm-colo" section, which says in the bring-up that the
 * primary runs in COLO mode (docs/colo.md): right after "ftvm-vm", FULL,
 * instance 0, version 1, body be32 mode (0 checkpoint, 1 COLO).  Only
 * COLO primaries send it; a stream without it is checkpoint mode.  Its
 * section id is the registry's count + 3 (after ftvm-vm, ftvm-pkg and
 * ftvm-ckpt: docs/stream-format.md).  Written and read through a vmstate
 * table, which also gives its VM description entry.
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

void colosec_put(qfile *f, uint32_t section_id, uint32_t mode);
/* Reads and checks the body (mode 0 or 1).  0 or the error latched on f. */
int colosec_load(qfile *f, const savevm_section *sec, uint32_t *mode);
/* Appends its entry to a VM description's devices (vmshape_describe's). */
int colosec_describe(json_t *vmdesc_devices);

#endif
