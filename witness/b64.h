/*
 * b64: base64 (RFC 4648), as protobuf's JSON mapping carries bytes and so
 * as etcd's JSON gateway wants keys and values.
 */
#ifndef FTVM_WITNESS_B64_H
#define FTVM_WITNESS_B64_H

#include <stddef.h>
#include <stdint.h>

/* p[0..n) encoded, padded, NUL-terminated and malloc'd; NULL: no memory. */
char *b64_encode(const uint8_t *p, size_t n);
/*
 * s decoded (the standard alphabet, or the URL-safe one; padding
 * optional) into a malloc'd buffer of at most max bytes: 0, or -1 for bad
 * base64, more than max bytes, or no memory.
 */
int b64_decode(const char *s, size_t max, uint8_t **out, size_t *len);

#endif
