/*
 * bytebuf: a growable byte buffer with a bound, appended at the end and
 * consumed from the front: the bytes one side of a comparison or a
 * return path has not yet had matched or sent (primary/colo.c,
 * secondary/svm.c).  Not thread-safe: its owner's lock guards it.
 */
#ifndef FTVM_DAEMON_BYTEBUF_H
#define FTVM_DAEMON_BYTEBUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct bytebuf {
    uint8_t *data;
    size_t len, cap;
} bytebuf;

/*
 * Appends n bytes unless the buffer would then hold more than max: true,
 * or false with nothing added (over max, or no memory).
 */
bool bytebuf_add(bytebuf *b, const void *data, size_t n, size_t max);
/* Drops the first n bytes (at most len). */
void bytebuf_drop(bytebuf *b, size_t n);
/* Frees the memory; the buffer is empty again. */
void bytebuf_free(bytebuf *b);

#endif
