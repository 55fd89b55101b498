/*
 * pairing: what binds a replication stream to one primary and one
 * secondary (docs/replication.md, "The pair").
 *
 * A VM has a name (--vm-name, also what etcd keys will be made of, so
 * key-safe: [A-Za-z0-9._-], 1 to 63 characters), and each bring-up of a
 * secondary has a random 128-bit pairing id the primary draws.  Both are
 * in "ftvm-vm", in every package's "ftvm-pkg" and in every ACK and NACK,
 * so that a package or an answer from another pairing (a stale
 * connection, a replayed capture, an impostor) is a protocol error
 * rather than a checkpoint.  On the wire: the id as 16 bytes, the name
 * as 64 bytes, NUL-padded, the generation as a big-endian u64.
 *
 * The generation numbers the pairings of one VM (docs/witness.md): the
 * primary starts at 1 and takes the next for each bring-up; a secondary
 * that takes over continues from its pairing's.  The witness's key of a
 * pairing, /ftvm/NAME/G/owner, is made of it, so that each pairing's
 * failure is decided once and a later pairing starts undecided.
 */
#ifndef FTVM_CHECKPOINT_PAIRING_H
#define FTVM_CHECKPOINT_PAIRING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PAIRING_ID_LEN 16
#define PAIRING_NAME_MAX 63
#define PAIRING_DEFAULT_NAME "ftvm"

typedef struct pairing {
    uint8_t id[PAIRING_ID_LEN];
    char name[PAIRING_NAME_MAX + 1];    /* NUL-padded */
    uint64_t generation;                /* 1, 2, ...; 0 on the wire: bad */
} pairing;

/* 0 when name is key-safe; else -EINVAL with the reason in err. */
int pairing_check_name(const char *name, char *err, size_t errlen);
/*
 * A fresh id from getrandom(2), a copy of name (which must pass
 * pairing_check_name) and generation.  0 or -errno.
 */
int pairing_draw(pairing *p, const char *name, uint64_t generation);
/*
 * The default name of a VM run from image: the file's name without
 * directory or extension, every character a name may not have made '-',
 * at most PAIRING_NAME_MAX; PAIRING_DEFAULT_NAME if nothing is left.
 */
void pairing_default_name(const char *image, char out[PAIRING_NAME_MAX + 1]);
/*
 * A pairing read from the wire: its name NUL-terminated and key-safe, its
 * generation not 0.
 */
int pairing_check(const pairing *p, char *err, size_t errlen);
bool pairing_equal(const pairing *a, const pairing *b);
/* "NAME/0123abcd…/gG" (the name, the id's first 8 hex digits and the
 * generation), for logs. */
const char *pairing_str(const pairing *p, char *buf, size_t len);

#endif
