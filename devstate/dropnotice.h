/*
 * dropnotice: "ftvm-drop", the record a primary writes last, just before
 * the stream's EOF, when it ends a link on purpose while the secondary
 * may be alive (stop-replication, the VM stopping, giving up on a
 * secondary that refuses or answers nonsense).  A bare EOF, or a closed
 * connection, cannot tell "you are dropped, I keep the VM" from a
 * primary's end; the notice says it, with the pairing it is about, so
 * that a secondary stops without claiming or failing over
 * (docs/replication.md, "Dropped").
 *
 * It is a FULL section of QEMU's format, instance 0, version 1, written
 * and read through a vmstate table that also gives its VM description
 * entry, like "ftvm-vm" and "ftvm-pkg": a reader following QEMU's rules
 * reads it field by field (docs/stream-format.md, "ftvm's own
 * sections").  Body, big-endian: u32 reason, 16 bytes pairing id, 64
 * bytes VM name (NUL-padded), u64 generation, 128 bytes text
 * (NUL-padded, NUL-terminated: at most 127 bytes of it).
 */
#ifndef FTVM_DEVSTATE_DROPNOTICE_H
#define FTVM_DEVSTATE_DROPNOTICE_H

#include <jansson.h>
#include <stdint.h>

#include "checkpoint/pairing.h"
#include "checkpoint/qfile.h"
#include "checkpoint/savevm.h"

#define DROPNOTICE_IDSTR "ftvm-drop"
#define DROPNOTICE_VERSION 1u
#define DROPNOTICE_TEXT_MAX 127     /* bytes of text, without its NUL */

/*
 * Why.  A reader takes any other value as a reason it does not know and
 * acts the same: it is dropped either way.
 */
typedef enum dropnotice_reason {
    DROPNOTICE_STOPPED = 1,     /* stop-replication on the primary */
    DROPNOTICE_VM_STOPPED = 2,  /* the VM stopped (halt, quit, a signal) */
    DROPNOTICE_GAVE_UP = 3,     /* the primary gave up on this secondary:
                                   its answers, refusals, or a package
                                   that cannot be built */
} dropnotice_reason;

typedef struct dropnotice {
    uint32_t reason;
    pairing pair;               /* the bring-up it ends */
    char text[DROPNOTICE_TEXT_MAX + 1];
} dropnotice;

/* A notice of pair with reason and text (cut to DROPNOTICE_TEXT_MAX). */
void dropnotice_make(dropnotice *d, const pairing *pair, uint32_t reason,
                     const char *text);
void dropnotice_put(qfile *f, uint32_t section_id, const dropnotice *d);
/*
 * Reads the body (the loader has read the section's header) and checks
 * it: a FULL section of instance 0, the pairing's name and generation
 * (pairing_check), a reason above 0, text NUL-terminated within its 128
 * bytes.  Control characters in the text become '?' (it goes to logs).
 * Whether the pairing is the right one is the caller's to judge.  0, or
 * -errno latched on f with a message.
 */
int dropnotice_load(qfile *f, const savevm_section *sec, dropnotice *out);
/* Appends the entry of "ftvm-drop" to vmdesc_devices.  0 or -ENOMEM. */
int dropnotice_describe(json_t *vmdesc_devices);
/* "stop-replication", "the VM stopped", "gave up", or "reason N". */
const char *dropnotice_reason_name(uint32_t reason, char *buf, size_t len);

#endif
