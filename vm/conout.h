/*
 * conout: the guest console's way out to a file descriptor (stdout),
 * written so that no vCPU and no event loop ever waits for its reader.
 *
 * conout_write gives the fd what it takes at once (when nothing is
 * buffered, and only as much as poll says it has room for), copies the
 * rest into a bounded buffer and returns; a drain thread of the conout's
 * own writes the buffer out, and is the only one that ever waits for the
 * fd.  A reader that does not keep
 * up (a pipe nobody drains, a stopped terminal) fills the buffer; then a
 * write that does not fit whole is dropped whole and counted, as a serial
 * line with nobody listening loses it (the guest writes a line per call:
 * a reader that catches up sees a gap between whole lines), and the
 * warning function hears of it at most once per CONOUT_WARN_NS.  An fd that fails (a reader that went away) drops
 * everything from then on, counted, with one warning.  Bytes reach the
 * fd in the order they were written, each at most once.
 *
 * The fd's file description is left as it is (no O_NONBLOCK, which a
 * terminal shares with every process on it): the drain thread waits in
 * poll() until the fd is writable and then writes at most PIPE_BUF bytes,
 * which a pipe with room takes without blocking.  (A terminal stopped with
 * ^S can still hold the thread in write(); then only it waits, and
 * conout_free, at exit, waits for the terminal.)
 *
 * Threads: conout_write and conout_get_stats from any thread;
 * conout_set_warn before the first write; conout_free once writers are
 * gone.
 */
#ifndef FTVM_VM_CONOUT_H
#define FTVM_VM_CONOUT_H

#include <stddef.h>
#include <stdint.h>

/* What is buffered at most: a few seconds of a chatty guest. */
#define CONOUT_BUFFER_BYTES (1u << 20)
/* At most one warning about dropped bytes this often. */
#define CONOUT_WARN_NS 10000000000ull
/* conout_free waits for the reader while it takes bytes at least this often. */
#define CONOUT_STALL_NS 1000000000ull

typedef struct conout conout;

typedef struct conout_stats {
    uint64_t written_bytes;     /* reached the fd */
    uint64_t dropped_bytes;     /* the buffer was full, or the fd failed */
    uint64_t buffered_bytes;    /* waiting for the fd now */
} conout_stats;

/* Told, on the drain thread, what a person should know (one line). */
typedef void (*conout_warn_fn)(void *opaque, const char *msg);

/*
 * A writer to fd buffering at most cap bytes (0: CONOUT_BUFFER_BYTES),
 * with its drain thread started.  0 or -errno.
 */
int conout_new(conout **out, int fd, size_t cap);
void conout_set_warn(conout *c, conout_warn_fn fn, void *opaque);
/* Takes buf if it fits whole, else drops it and counts it.  Never waits. */
void conout_write(conout *c, const void *buf, size_t len);
/* The hc_console_fn (vm/hc.h) for a conout: always 0. */
int conout_console(void *opaque, const void *buf, size_t len);
void conout_get_stats(conout *c, conout_stats *out);
/*
 * Writes out what is buffered while the reader takes some of it at least
 * every CONOUT_STALL_NS (what it will not take is dropped), stops the
 * thread, frees c.
 */
void conout_free(conout *c);

#endif
