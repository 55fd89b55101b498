/*
 * i8042: as much of the PC keyboard controller as a Linux guest needs to
 * find no keyboard and to reset the machine (ports 0x60 and 0x64).
 *
 * Linux reboots by pulsing the CPU reset line through the controller
 * (command 0xfe on port 0x64, `reboot=k`); i8042_write says when the
 * guest did.  The controller answers the commands Linux's driver sends
 * while probing (read and write the command byte, the output port, the
 * self-tests) so that it neither spins on a dead port nor times out; no
 * keyboard or mouse is behind it (boot Linux with i8042.nokbd or
 * i8042.dumbkbd, i8042.noaux, i8042.nomux).
 *
 * State (i8042_desc, "i8042" version 1): the command byte, the output
 * port, the command waiting for its data byte, the bytes waiting for the
 * guest.  A load refuses a waiting command the controller never waits
 * in and more than 4 bytes.
 *
 * Not thread-safe: the caller serialises every call.
 */
#ifndef FTVM_DEVICES_I8042_H
#define FTVM_DEVICES_I8042_H

#include <stdbool.h>
#include <stdint.h>

#include "devstate/vmstate.h"

#define I8042_DATA_PORT    0x60u
#define I8042_COMMAND_PORT 0x64u

typedef struct i8042 {
    uint8_t ctr;                /* the command byte */
    uint8_t outport;
    uint8_t pending;            /* a command waiting for its data byte */
    uint8_t out[4];             /* bytes for the guest to read */
    uint32_t out_len;
} i8042;

extern const vmstate_desc i8042_desc;

void i8042_init(i8042 *k);
uint8_t i8042_read(i8042 *k, uint16_t port);
/* Whether the guest asked for a reset. */
bool i8042_write(i8042 *k, uint16_t port, uint8_t val);

#endif
