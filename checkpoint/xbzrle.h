/*
 * xbzrle: the delta encoding QEMU uses for pages it sent before.
 *
 * An encoding turns an old copy of a buffer into the new one.  It is a
 * sequence of pairs, each
 *
 *     uleb128 skip    bytes where old and new agree (kept as they are)
 *     uleb128 count   bytes where they differ, count >= 1
 *     count bytes     the new values of those bytes
 *
 * with the agreeing run after the last difference left out.  Only the first
 * skip may be 0.  Lengths are at most two uleb128 bytes (14 bits), which
 * bounds a buffer to XBZRLE_MAX_LEN bytes.  Runs are maximal, so the encoding
 * of a pair of buffers is unique and matches QEMU byte for byte.
 * docs/ram-format.md has a worked example.
 */
#ifndef FTVM_CHECKPOINT_XBZRLE_H
#define FTVM_CHECKPOINT_XBZRLE_H

#include <stddef.h>
#include <stdint.h>

#define XBZRLE_MAX_LEN 0x3fff

/*
 * Encodes the change from old to new (len bytes each) into out.  Returns
 * the encoded length (0 when the buffers are equal), or -1 when it would
 * not fit in out_max bytes or len exceeds XBZRLE_MAX_LEN.  The fit test is
 * QEMU's (it keeps two bytes of headroom per run header), so both
 * sides agree on which pages go out as deltas.
 */
int xbzrle_encode(const uint8_t *old, const uint8_t *new, size_t len,
                  uint8_t *out, size_t out_max);

/*
 * Applies an encoding of in_len bytes to page (page_len bytes) in place.
 * Returns 0, or -EINVAL for an encoding that is malformed or reaches past
 * the page or its own end.  Never writes outside page, but may have
 * written part of it when it fails: use xbzrle_check() first when that
 * matters.
 */
int xbzrle_decode(const uint8_t *in, size_t in_len, uint8_t *page,
                  size_t page_len);

/* The checks of xbzrle_decode() without a page to write: 0 or -EINVAL. */
int xbzrle_check(const uint8_t *in, size_t in_len, size_t page_len);

#endif
