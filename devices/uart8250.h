/*
 * uart8250: a 16550A-compatible serial port as the Linux guest's console
 * (ttyS0: I/O ports base..base+7, one ISA interrupt line).
 *
 * Transmission is instant: a byte written to THR goes to the out function
 * at once (the VM's console writer, which never waits for its reader), so
 * THR is always empty again and LSR always says so.  The interrupt line
 * follows IIR: a byte received while IER asks for it, or THR emptied
 * after a write (or after IER's THRI was set) until IIR is read.  The
 * line is driven on every change through irq(), which for an edge-
 * triggered ISA line gives the guest a fresh edge per event.
 *
 * The registers: RBR/THR, IER, IIR/FCR, LCR, MCR, LSR, MSR, SCR, and DLL
 * and DLM behind LCR's DLAB.  Loopback (MCR bit 4) sends THR to the
 * receive FIFO and reflects MCR in MSR, as the 8250 driver's probe
 * checks.  Input: uart8250_receive, up to UART8250_RX_MAX bytes queued.
 *
 * State (uart8250_desc, "uart8250" version 1): the registers, the
 * receive FIFO as its ring (head, length, the 256 bytes), the interrupt
 * line's level (what KVM's irqchip was last told, so a loaded UART does
 * not raise the line twice), the counters.  A load refuses a head or
 * length out of the ring and reserved IER or MCR bits.
 *
 * Not thread-safe: the caller serialises every call (vm/pc.c's lock).
 */
#ifndef FTVM_DEVICES_UART8250_H
#define FTVM_DEVICES_UART8250_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "devstate/vmstate.h"

#define UART8250_COM1_BASE 0x3f8u
#define UART8250_COM1_IRQ  4u
#define UART8250_PORTS     8u
#define UART8250_RX_MAX    256u

typedef int (*uart8250_out_fn)(void *opaque, const void *buf, size_t len);
typedef void (*uart8250_irq_fn)(void *opaque, bool level);

typedef struct uart8250 {
    uint8_t ier, lcr, mcr, scr, dll, dlm;
    bool fifo;                  /* FCR bit 0: FIFOs on (IIR bits 7:6) */
    bool thri;                  /* THR-empty interrupt pending */
    bool level;                 /* what irq() was last told */
    uint8_t rx[UART8250_RX_MAX];
    uint32_t rx_head, rx_len;
    uint64_t tx_bytes, rx_dropped;
    uart8250_out_fn out;
    void *out_opaque;
    uart8250_irq_fn irq;
    void *irq_opaque;
} uart8250;

extern const vmstate_desc uart8250_desc;

void uart8250_init(uart8250 *u, uart8250_out_fn out, void *out_opaque,
                   uart8250_irq_fn irq, void *irq_opaque);
/* A guest's inb from base + off (off < UART8250_PORTS). */
uint8_t uart8250_read(uart8250 *u, unsigned off);
/* A guest's outb to base + off. */
void uart8250_write(uart8250 *u, unsigned off, uint8_t val);
/* Queues input for the guest; returns how many bytes fitted. */
size_t uart8250_receive(uart8250 *u, const uint8_t *buf, size_t len);

#endif
