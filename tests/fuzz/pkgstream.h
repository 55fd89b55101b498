/*
 * pkgstream: what the fixture's primary writes on a replication link, as
 * primary/package.c writes it for a real VM: the bring-up (header,
 * commands, the VM's shape, the RAM) and checkpoint packages ("ftvm-pkg",
 * the RAM END section, every device, the "ftvm-ckpt" trailer, EOF) with
 * the product's own writers, so that the apply fuzzer's prefix and its
 * seeds follow any change to the package format.
 */
#ifndef FTVM_TESTS_FUZZ_PKGSTREAM_H
#define FTVM_TESTS_FUZZ_PKGSTREAM_H

#include "tests/fuzz/fixture.h"
#include "vm/vmshape.h"

/* The shape the fixture's primary announces (no NIC: no --net needed). */
extern const vmshape pkgstream_shape;

/* The guest ran: some pages, the vCPUs and the console change (dirty). */
void pkgstream_touch(fixture *fx, unsigned t);
/* Header, OPEN_RETURN_PATH, ENABLE_COLO, "ftvm-vm", RAM until all sent. */
int pkgstream_bringup(fixture *fx, qfile *q);
/*
 * Checkpoint id on base (0: full), as primary/package.c's package_build
 * and package_seal write it, into q (an empty memory channel: the sum
 * covers it from its first byte).
 */
int pkgstream_package_body(fixture *fx, qfile *q, uint64_t id,
                           uint64_t base);
/* The same as a PACKAGED command into out. */
int pkgstream_package(fixture *fx, qfile *out, uint64_t id, uint64_t base);
/*
 * The apply fuzzer's prefix: a primary filled as gen_corpus fills it,
 * brought up, then checkpoint 1 in full.  fx is the primary afterwards
 * (seeds go on from there with checkpoint 2).
 */
int pkgstream_start(fixture *fx, qfile *q);

#endif
