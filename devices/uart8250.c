/* uart8250: see uart8250.h. */
#include "devices/uart8250.h"

#include <errno.h>
#include <string.h>

enum {
    REG_RBR_THR = 0, REG_IER = 1, REG_IIR_FCR = 2, REG_LCR = 3, REG_MCR = 4,
    REG_LSR = 5, REG_MSR = 6, REG_SCR = 7,
};

#define IER_RDI     0x01u
#define IER_THRI    0x02u
#define IER_MASK    0x0fu
#define IIR_NO_INT  0x01u
#define IIR_THRI    0x02u
#define IIR_RDI     0x04u
#define IIR_FIFO    0xc0u
#define FCR_ENABLE  0x01u
#define FCR_CLEAR_RX 0x02u
#define LCR_DLAB    0x80u
#define MCR_DTR     0x01u
#define MCR_RTS     0x02u
#define MCR_OUT1    0x04u
#define MCR_OUT2    0x08u
#define MCR_LOOP    0x10u
#define MCR_MASK    0x1fu
#define LSR_DR      0x01u
#define LSR_THRE    0x20u
#define LSR_TEMT    0x40u
#define MSR_CTS     0x10u
#define MSR_DSR     0x20u
#define MSR_RI      0x40u
#define MSR_DCD     0x80u

void uart8250_init(uart8250 *u, uart8250_out_fn out, void *out_opaque,
                   uart8250_irq_fn irq, void *irq_opaque)
{
    memset(u, 0, sizeof(*u));
    u->out = out;
    u->out_opaque = out_opaque;
    u->irq = irq;
    u->irq_opaque = irq_opaque;
    u->mcr = MCR_OUT2;
}

static uint8_t iir(const uart8250 *u)
{
    uint8_t fifo = u->fifo ? IIR_FIFO : 0;

    if ((u->ier & IER_RDI) && u->rx_len)
        return fifo | IIR_RDI;
    if ((u->ier & IER_THRI) && u->thri)
        return fifo | IIR_THRI;
    return fifo | IIR_NO_INT;
}

/* Drives the line after any change; only changes reach irq(). */
static void update_irq(uart8250 *u)
{
    bool level = !(iir(u) & IIR_NO_INT);

    if (level != u->level) {
        u->level = level;
        if (u->irq)
            u->irq(u->irq_opaque, level);
    }
}

static void rx_push(uart8250 *u, uint8_t b)
{
    if (u->rx_len == UART8250_RX_MAX) {
        u->rx_dropped++;
        return;
    }
    u->rx[(u->rx_head + u->rx_len) % UART8250_RX_MAX] = b;
    u->rx_len++;
}

static uint8_t rx_pop(uart8250 *u)
{
    if (!u->rx_len)
        return 0;
    uint8_t b = u->rx[u->rx_head];
    u->rx_head = (u->rx_head + 1) % UART8250_RX_MAX;
    u->rx_len--;
    return b;
}

static uint8_t msr(const uart8250 *u)
{
    if (!(u->mcr & MCR_LOOP))
        return MSR_DCD | MSR_DSR | MSR_CTS;
    uint8_t m = 0;
    if (u->mcr & MCR_DTR)
        m |= MSR_DSR;
    if (u->mcr & MCR_RTS)
        m |= MSR_CTS;
    if (u->mcr & MCR_OUT1)
        m |= MSR_RI;
    if (u->mcr & MCR_OUT2)
        m |= MSR_DCD;
    return m;
}

uint8_t uart8250_read(uart8250 *u, unsigned off)
{
    uint8_t v = 0xff;
    bool dlab = u->lcr & LCR_DLAB;

    switch (off) {
    case REG_RBR_THR:
        v = dlab ? u->dll : rx_pop(u);
        break;
    case REG_IER:
        v = dlab ? u->dlm : u->ier;
        break;
    case REG_IIR_FCR:
        v = iir(u);
        /* Reading IIR that shows THRE acknowledges it. */
        if ((v & 0x0f) == IIR_THRI)
            u->thri = false;
        break;
    case REG_LCR:
        v = u->lcr;
        break;
    case REG_MCR:
        v = u->mcr;
        break;
    case REG_LSR:
        v = LSR_THRE | LSR_TEMT | (u->rx_len ? LSR_DR : 0);
        break;
    case REG_MSR:
        v = msr(u);
        break;
    case REG_SCR:
        v = u->scr;
        break;
    }
    update_irq(u);
    return v;
}

void uart8250_write(uart8250 *u, unsigned off, uint8_t val)
{
    bool dlab = u->lcr & LCR_DLAB;

    switch (off) {
    case REG_RBR_THR:
        if (dlab) {
            u->dll = val;
            break;
        }
        if (u->mcr & MCR_LOOP) {
            rx_push(u, val);
        } else {
            u->tx_bytes++;
            if (u->out)
                u->out(u->out_opaque, &val, 1);
        }
        u->thri = true;         /* sent at once: THR is empty again */
        break;
    case REG_IER:
        if (dlab) {
            u->dlm = val;
            break;
        }
        /* Enabling THRI with THR empty interrupts at once, as a 16550 does. */
        if ((val & IER_THRI) && !(u->ier & IER_THRI))
            u->thri = true;
        u->ier = val & IER_MASK;
        break;
    case REG_IIR_FCR:
        u->fifo = val & FCR_ENABLE;
        if (val & FCR_CLEAR_RX)
            u->rx_head = u->rx_len = 0;
        break;
    case REG_LCR:
        u->lcr = val;
        break;
    case REG_MCR:
        u->mcr = val & MCR_MASK;
        break;
    case REG_SCR:
        u->scr = val;
        break;
    default:    /* LSR and MSR are read-only */
        break;
    }
    update_irq(u);
}

size_t uart8250_receive(uart8250 *u, const uint8_t *buf, size_t len)
{
    size_t n = 0;

    while (n < len && u->rx_len < UART8250_RX_MAX)
        rx_push(u, buf[n++]);
    update_irq(u);
    return n;
}

/* ---- state ---- */

static int state_check(qfile *f, const void *obj, uint32_t version)
{
    const uart8250 *u = obj;

    (void)version;
    if (u->rx_head >= UART8250_RX_MAX || u->rx_len > UART8250_RX_MAX)
        return qfile_fail(f, -EINVAL, "uart8250: receive FIFO head %u, "
                          "length %u; the ring holds %u", u->rx_head,
                          u->rx_len, UART8250_RX_MAX);
    if ((u->ier & ~IER_MASK) || (u->mcr & ~MCR_MASK))
        return qfile_fail(f, -EINVAL, "uart8250: IER 0x%02x or MCR 0x%02x "
                          "has reserved bits set", u->ier, u->mcr);
    return 0;
}

static const vmstate_field uart8250_fields[] = {
    {VMSTATE_SCALAR(uart8250, ier)},
    {VMSTATE_SCALAR(uart8250, lcr)},
    {VMSTATE_SCALAR(uart8250, mcr)},
    {VMSTATE_SCALAR(uart8250, scr)},
    {VMSTATE_SCALAR(uart8250, dll)},
    {VMSTATE_SCALAR(uart8250, dlm)},
    {VMSTATE_SCALAR(uart8250, fifo)},
    {VMSTATE_SCALAR(uart8250, thri)},
    {VMSTATE_SCALAR(uart8250, level)},
    {VMSTATE_SCALAR(uart8250, rx_head)},
    {VMSTATE_SCALAR(uart8250, rx_len)},
    {VMSTATE_BUFFER(uart8250, rx)},
    {VMSTATE_SCALAR(uart8250, tx_bytes)},
    {VMSTATE_SCALAR(uart8250, rx_dropped)},
    VMSTATE_END,
};

const vmstate_desc uart8250_desc = {
    .name = "uart8250", .version = 1, .minimum_version = 1,
    .size = sizeof(uart8250), .fields = uart8250_fields,
    .check = state_check,
};
