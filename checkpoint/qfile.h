/*
 * qfile: a buffered byte channel for checkpoint streams.
 *
 * One type serves every place a stream lives: a file descriptor (file or
 * socket), a growable memory buffer being written, and a read-only view of
 * bytes already in memory (a received package, a mapped file).  All integers
 * are big-endian on the wire.
 *
 * Errors latch: the first failure is recorded with its byte offset and a
 * message for a person; every later call is a no-op (reads return zeros) and
 * qfile_error() keeps returning that first error.  Callers can therefore emit
 * or parse a whole record and check once.
 */
#ifndef FTVM_CHECKPOINT_QFILE_H
#define FTVM_CHECKPOINT_QFILE_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct qfile qfile;

typedef enum qfile_dir {
    QFILE_READ,
    QFILE_WRITE,
} qfile_dir;

/*
 * Opens a channel on fd.  The fd stays the caller's: qfile_close() does not
 * close it.  name appears in error messages (a path or a peer address).
 */
qfile *qfile_open_fd(int fd, qfile_dir dir, const char *name);
/* A growable in-memory buffer for writing (a checkpoint package). */
qfile *qfile_open_mem(const char *name);
/* A read-only view of len bytes at buf; the bytes must outlive the qfile. */
qfile *qfile_open_view(const void *buf, size_t len, const char *name);

/* Flushes pending writes and frees f.  Returns the first error, or 0. */
int qfile_close(qfile *f);

/* ---- writing ---- */
void qfile_put_u8(qfile *f, uint8_t v);
void qfile_put_be16(qfile *f, uint16_t v);
void qfile_put_be32(qfile *f, uint32_t v);
void qfile_put_be64(qfile *f, uint64_t v);
void qfile_put_buf(qfile *f, const void *buf, size_t len);
/* A counted string: one length byte, then the bytes (no NUL); max 255. */
void qfile_put_str(qfile *f, const char *s);
/*
 * Queues len bytes at buf without copying them when the backend allows it
 * (fd channels gather them into one writev).  The caller keeps the bytes
 * valid and unchanged until the next qfile_flush() or qfile_close().  Memory
 * channels copy, so their caller may reuse buf at once.
 */
void qfile_put_iov(qfile *f, const void *buf, size_t len);
/* Writes everything queued.  Returns the first error, or 0. */
int qfile_flush(qfile *f);

/* Bytes of a memory channel so far (NULL for other kinds). */
const uint8_t *qfile_mem_data(const qfile *f, size_t *len);
/*
 * Empties a memory channel for reuse, keeping its allocation and name;
 * a running CRC stops (qfile_crc_start again for a new one).
 */
void qfile_mem_reset(qfile *f);

/* ---- reading ---- */
uint8_t qfile_get_u8(qfile *f);
uint16_t qfile_get_be16(qfile *f);
uint32_t qfile_get_be32(qfile *f);
uint64_t qfile_get_be64(qfile *f);
/* Reads exactly len bytes; a short stream latches -ENODATA. */
void qfile_get_buf(qfile *f, void *buf, size_t len);
/* Reads a counted string into out (NUL-terminated); returns its length. */
size_t qfile_get_str(qfile *f, char out[256]);
/*
 * Zero-copy read: returns a pointer to the next len bytes and consumes them,
 * or NULL (with the error latched) when they are not there.  The pointer is
 * valid until the next call on f.  fd channels refuse len > QFILE_BUF_SIZE.
 */
const uint8_t *qfile_get_ptr(qfile *f, size_t len);
/* The next byte without consuming it, or -1 at the end of the stream. */
int qfile_peek_u8(qfile *f);
/* True when a read channel has no more bytes (it never latches an error). */
bool qfile_at_eof(qfile *f);
void qfile_skip(qfile *f, size_t len);
/*
 * Bytes left in a view, or -1 when unknown (fd channels).  Lets a parser
 * refuse a length that cannot be there before it allocates for it, and
 * take any length zero-copy from a view.
 */
int64_t qfile_remaining(const qfile *f);
/*
 * Back to the first byte of a read channel.  Views always can; fd channels
 * only on seekable files (-ESPIPE otherwise).  Clears nothing else: a
 * latched error stays latched.
 */
int qfile_rewind(qfile *f);

/*
 * A running CRC-32 (zlib's) of every byte put or consumed from now on; a
 * rewind restarts it.  While it runs, qfile_put_iov copies, so that the sum
 * covers the bytes as they are written even if the caller's memory (a
 * running guest's page) changes before the flush.
 */
void qfile_crc_start(qfile *f);
/*
 * On a memory channel being written: starts the running CRC as though
 * qfile_crc_start had been called at its first byte, summing what it holds.
 * Lets a writer seal what it built (a replication package, taken with
 * the guest paused) after the fact, outside the pause.
 */
void qfile_crc_start_mem(qfile *f);
/* Stops the running CRC (a pass that has nothing left to check). */
void qfile_crc_stop(qfile *f);
uint32_t qfile_crc(const qfile *f);

/* ---- position and errors ---- */

/* Bytes consumed (reading) or produced (writing) since open or rewind. */
uint64_t qfile_tell(const qfile *f);
/*
 * Offset of this channel's first byte inside an enclosing stream, so that a
 * nested package's errors name the byte in the outer file.
 */
void qfile_set_base(qfile *f, uint64_t base);
uint64_t qfile_base(const qfile *f);
const char *qfile_name(const qfile *f);

/* 0, or the first negative errno latched. */
int qfile_error(const qfile *f);
/*
 * "NAME: byte OFFSET: message" for the first error, or "" when none.
 * OFFSET is absolute (base + position at the failure).
 */
const char *qfile_errmsg(const qfile *f);
/* Absolute byte offset at which the first error was latched. */
uint64_t qfile_error_offset(const qfile *f);
/*
 * Latches err (negative errno) with a message, unless an error is already
 * latched.  Returns the latched error, so parsers can `return
 * qfile_fail(...)`.
 */
int qfile_fail(qfile *f, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int qfile_vfail(qfile *f, int err, const char *fmt, va_list ap);
/* The same, naming an earlier offset of this channel (where a field began). */
int qfile_fail_at(qfile *f, uint64_t offset, int err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/*
 * Latches src's error (code, offset and message as they are) on dst, so an
 * error inside a nested view surfaces unchanged on the enclosing channel.
 */
int qfile_take_error(qfile *dst, const qfile *src);

#define QFILE_BUF_SIZE (256 * 1024)

#endif
