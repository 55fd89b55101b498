/*
 * The freestanding runtime of ftvm guests.
 *
 * Guests run at privilege level 3 with no kernel: everything a program needs
 * beyond the CPU is a hypercall (see include/hypercall_abi.h).  This header is
 * the whole API: hypercall wrappers, a few libc functions under their usual
 * names (gcc may emit calls to the mem* ones), printf to the console,
 * clocks and sleeping, CRC32, a PRNG, argument parsing and a page allocator.
 *
 * Startup (runtime/start.S, runtime/crt.c): the stack is aligned, .bss
 * cleared, the command line split on spaces into argv with argv[0] the
 * program name, main(argc, argv) called, and its return value becomes the
 * VM's exit status through FTVM_HC_HALT.
 */
#ifndef FTVM_GUEST_RUNTIME_H
#define FTVM_GUEST_RUNTIME_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "include/hypercall_abi.h"

#define FTVM_PAGE_SIZE 4096u
#define FTVM_NS_PER_SEC 1000000000ull

#define FTVM_NORETURN __attribute__((noreturn))
#define FTVM_PRINTF(fmt, args) __attribute__((format(printf, fmt, args)))
#define FTVM_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* ---- hypercalls ---- */

/*
 * The one primitive: the struct's address goes out as 32 bits, so argument
 * structs must lie below 4 GiB (all of RAM, for the RAM sizes ftvm uses).
 * The memory clobber makes gcc store the struct before the exit and reload
 * it afterwards, since the monitor reads and writes it behind our back.
 */
static inline void ftvm_hypercall_port(uint16_t port, uint32_t arg)
{
    __asm__ volatile("outl %0, %1" : : "a"(arg), "Nd"(port) : "memory");
}

static inline void ftvm_hypercall(enum ftvm_hc_nr nr, void *arg)
{
    ftvm_hypercall_port((uint16_t)(FTVM_HC_PORT_BASE + nr),
                        (uint32_t)(uintptr_t)arg);
}

int64_t ftvm_console_write(const void *data, uint64_t len);
void ftvm_clock(uint64_t *monotonic_ns, uint64_t *wall_ns);
int32_t ftvm_poll(uint64_t deadline_ns, uint32_t *events);
int32_t ftvm_net_info(uint8_t mac[6], uint32_t *mtu);
int64_t ftvm_net_write(const void *frame, uint64_t len);
/* *len: in, the buffer size; out, the frame's length. */
int64_t ftvm_net_read(void *buf, uint64_t *len);
FTVM_NORETURN void ftvm_halt(uint64_t status);
/*
 * The disk: ftvm_blk_info fills *sectors and *readonly (0 and false
 * without a disk, which is FTVM_ENODEV).  Read and write move count
 * sectors of 512 bytes (at most FTVM_BLK_MAX_SECTORS a call) between the
 * disk at sector and buf; flush makes every completed write durable.
 */
int32_t ftvm_blk_info(uint64_t *sectors, bool *readonly);
int64_t ftvm_blk_read(uint64_t sector, void *buf, uint64_t count);
int64_t ftvm_blk_write(uint64_t sector, const void *buf, uint64_t count);
int64_t ftvm_blk_flush(void);

/* "EFAULT" for FTVM_EFAULT and so on; "OK" for 0, "?" for anything else. */
const char *ftvm_strerror(int64_t ret);

/* ---- clocks and waiting ---- */

uint64_t ftvm_monotonic_ns(void);
uint64_t ftvm_wall_ns(void);

/*
 * Sleeps until the monotonic clock reaches deadline_ns.  For guests that
 * do not serve the network: frames that arrive meanwhile are read and
 * dropped, otherwise a waiting frame would make every poll return at once
 * and the sleep would become a busy loop.
 */
void ftvm_sleep_until(uint64_t deadline_ns);

/*
 * A rate schedule (runtime/pace.c): rate events per second (not 0), times
 * in ns since the workload's start.  ftvm_pace_target says how many
 * events should be done by now, done being how many are (it starts the
 * schedule again, at done, when more than a second's worth behind);
 * ftvm_pace_next when the event after done is due, at least min_ns from
 * now.
 */
struct ftvm_pace {
    uint64_t rate, start_ns, start_count;
};
void ftvm_pace_init(struct ftvm_pace *p, uint64_t rate);
uint64_t ftvm_pace_target(struct ftvm_pace *p, uint64_t now, uint64_t done);
uint64_t ftvm_pace_next(const struct ftvm_pace *p, uint64_t now,
                        uint64_t done, uint64_t min_ns);
void ftvm_sleep_ns(uint64_t ns);

/*
 * Waits until one of the events in mask is ready or the deadline passes;
 * returns the ready events (0 at the deadline).  Unlike a bare poll it
 * hides the early returns the monitor is allowed to make.
 */
uint32_t ftvm_wait_events(uint32_t mask, uint64_t deadline_ns);

/* ---- process ---- */

/* A copy of the boot info, taken before main. */
extern struct ftvm_boot_info ftvm_boot;

/* Flushes the console and halts with status. */
FTVM_NORETURN void ftvm_exit(int status);

/*
 * Page-aligned, zeroed memory between the end of the image and the stack
 * (the top 256 KiB of RAM below the initial stack pointer stay the stack's).
 * Nothing is ever freed; NULL when it does not fit.
 */
void *ftvm_alloc_pages(uint64_t bytes);
uint64_t ftvm_heap_available(void);

/* ---- console output ---- */

/*
 * printf gathers output in a line buffer and makes one console hypercall
 * per line (or per full buffer), so lines reach the host whole.
 * Conversions: d i u x X o c s p %, flags - 0 + space #, width and
 * precision (numbers or *), length modifiers hh h l ll z j t.
 */
int printf(const char *fmt, ...) FTVM_PRINTF(1, 2);
int vprintf(const char *fmt, va_list ap) FTVM_PRINTF(1, 0);
int snprintf(char *buf, size_t size, const char *fmt, ...) FTVM_PRINTF(3, 4);
int vsnprintf(char *buf, size_t size, const char *fmt, va_list ap)
    FTVM_PRINTF(3, 0);
int puts(const char *s);
void ftvm_console_flush(void);

/* ---- libc subset ---- */

void *memcpy(void *restrict dst, const void *restrict src, size_t n);
void *memmove(void *dst, const void *src, size_t n);
void *memset(void *dst, int c, size_t n);
int memcmp(const void *a, const void *b, size_t n);
void *memchr(const void *s, int c, size_t n);
size_t strlen(const char *s);
size_t strnlen(const char *s, size_t max);
int strcmp(const char *a, const char *b);
int strncmp(const char *a, const char *b, size_t n);
char *strchr(const char *s, int c);

/* ---- parsing ---- */

/*
 * Like strtoull: base 0 accepts 0x for hex and otherwise decimal (no octal
 * surprise for "010").  Stops at the first character that is not a digit;
 * *end (if end) points there.  Saturates at UINT64_MAX and sets *overflow.
 */
uint64_t ftvm_strtou64(const char *s, const char **end, int base,
                       bool *overflow);
/* The whole string must be a number: 0, or -1 for junk or overflow. */
int ftvm_parse_u64(const char *s, uint64_t *out);
int ftvm_parse_i64(const char *s, int64_t *out);
int atoi(const char *s);

/*
 * Arguments are key=value words.  ftvm_arg returns the value of the last
 * argument named key, or NULL.  ftvm_arg_u64 stores it in *out (def when
 * absent) and prints an error naming the argument when it is not a number
 * in [min, max].  ftvm_args_check prints an error for any argument whose
 * key is not in the NULL-terminated list known.  Both return 0 or -1.
 */
const char *ftvm_arg(int argc, char **argv, const char *key);
int ftvm_arg_u64(int argc, char **argv, const char *key, uint64_t def,
                 uint64_t min, uint64_t max, uint64_t *out);
int ftvm_args_check(int argc, char **argv, const char *const *known);

/* ---- checksums and randomness ---- */

/*
 * CRC-32 as in zlib and Ethernet (reflected polynomial 0xEDB88320): start
 * with crc = 0 and feed the data in as many pieces as you like.
 */
uint32_t ftvm_crc32(uint32_t crc, const void *data, size_t len);

/* xorshift64*: not cryptographic, only fast and reproducible. */
struct ftvm_rng {
    uint64_t state;
};
void ftvm_rng_seed(struct ftvm_rng *rng, uint64_t seed);
uint64_t ftvm_rng_next(struct ftvm_rng *rng);
/* splitmix64's finaliser: every input bit reaches every output bit. */
uint64_t ftvm_mix64(uint64_t x);
/* The time stamp counter: differs between any two runs, and two VMs. */
uint64_t ftvm_rdtsc(void);

#endif
