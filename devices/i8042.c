/* i8042: see i8042.h. */
#include "devices/i8042.h"

#include <errno.h>
#include <string.h>

#define STATUS_OBF      0x01u   /* a byte waits at the data port */
#define STATUS_SYS      0x04u   /* self-test passed */
#define STATUS_UNLOCKED 0x10u   /* the keyboard is not locked */

enum {
    CMD_READ_CTR = 0x20, CMD_WRITE_CTR = 0x60, CMD_AUX_TEST = 0xa9,
    CMD_SELF_TEST = 0xaa, CMD_KBD_TEST = 0xab, CMD_READ_OUTPORT = 0xd0,
    CMD_WRITE_OUTPORT = 0xd1, CMD_PULSE_RESET = 0xfe,
};

void i8042_init(i8042 *k)
{
    memset(k, 0, sizeof(*k));
    k->ctr = 0x30;      /* both ports' clocks off, no interrupts */
    k->outport = 0x01;  /* the reset line not asserted */
}

static void push(i8042 *k, uint8_t b)
{
    if (k->out_len < sizeof(k->out))
        k->out[k->out_len++] = b;
}

uint8_t i8042_read(i8042 *k, uint16_t port)
{
    if (port == I8042_COMMAND_PORT)
        return STATUS_SYS | STATUS_UNLOCKED | (k->out_len ? STATUS_OBF : 0);
    if (!k->out_len)
        return 0;
    uint8_t b = k->out[0];
    memmove(k->out, k->out + 1, --k->out_len);
    return b;
}

bool i8042_write(i8042 *k, uint16_t port, uint8_t val)
{
    if (port == I8042_DATA_PORT) {
        uint8_t cmd = k->pending;
        k->pending = 0;
        if (cmd == CMD_WRITE_CTR)
            k->ctr = val;
        else if (cmd == CMD_WRITE_OUTPORT) {
            k->outport = val;
            return !(val & 0x01);   /* the reset line pulled low */
        }
        /* Bytes for a keyboard that is not there go nowhere. */
        return false;
    }
    switch (val) {
    case CMD_READ_CTR:
        push(k, k->ctr);
        break;
    case CMD_WRITE_CTR:
    case CMD_WRITE_OUTPORT:
        k->pending = val;
        break;
    case CMD_READ_OUTPORT:
        push(k, k->outport);
        break;
    case CMD_SELF_TEST:
        push(k, 0x55);
        break;
    case CMD_KBD_TEST:
    case CMD_AUX_TEST:
        push(k, 0x00);
        break;
    case CMD_PULSE_RESET:
        return true;
    default:
        break;
    }
    return false;
}

/* ---- state ---- */

static int state_check(qfile *f, const void *obj, uint32_t version)
{
    const i8042 *k = obj;

    (void)version;
    if (k->pending != 0 && k->pending != CMD_WRITE_CTR &&
        k->pending != CMD_WRITE_OUTPORT)
        return qfile_fail(f, -EINVAL, "i8042: waiting for the data byte of "
                          "command 0x%02x, which takes none", k->pending);
    return 0;
}

static const vmstate_field i8042_fields[] = {
    {VMSTATE_SCALAR(i8042, ctr)},
    {VMSTATE_SCALAR(i8042, outport)},
    {VMSTATE_SCALAR(i8042, pending)},
    {VMSTATE_SCALAR(i8042, out_len)},
    {VMSTATE_VBUFFER(i8042, out, out_len)},
    VMSTATE_END,
};

const vmstate_desc i8042_desc = {
    .name = "i8042", .version = 1, .minimum_version = 1,
    .size = sizeof(i8042), .fields = i8042_fields, .check = state_check,
};
