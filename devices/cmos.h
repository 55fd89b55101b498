/*
 * cmos: the PC's real-time clock and CMOS RAM (ports 0x70 index, 0x71
 * data), read-only, so that a Linux guest reads the host's UTC time at
 * boot instead of spinning on a port with nothing behind it.
 *
 * Time registers are computed from the host's clock at each read, in BCD
 * and 24-hour mode; status register A never shows an update in progress.
 * Writes are ignored (a guest setting the clock does not set the host's).
 * No periodic or alarm interrupt.  Not thread-safe: the caller serialises.
 *
 * State (cmos_desc, "cmos" version 1): the index register (0..0x7f); the
 * time is the host's at every read, so it is not state.
 */
#ifndef FTVM_DEVICES_CMOS_H
#define FTVM_DEVICES_CMOS_H

#include <stdint.h>

#include "devstate/vmstate.h"

#define CMOS_INDEX_PORT 0x70u
#define CMOS_DATA_PORT  0x71u

typedef struct cmos {
    uint8_t index;
} cmos;

extern const vmstate_desc cmos_desc;

uint8_t cmos_read(cmos *c, uint16_t port);
void cmos_write(cmos *c, uint16_t port, uint8_t val);

#endif
