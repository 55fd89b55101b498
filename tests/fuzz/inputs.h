/*
 * inputs: how the fuzz targets that drive a sequence of events read their
 * input, shared with gen_corpus, which writes their seeds.
 *
 * fuzz_retpath: a list of events, each an op byte and its arguments:
 *   RP_OP_CHECKPOINT            the primary takes (and sends) a checkpoint
 *                               if protection says so
 *   RP_OP_RECV n, n bytes       n bytes arrive on the return path
 *   RP_OP_TICK ms               ms pass; the liveness check runs
 *   RP_OP_WAIT                  an operator's checkpoint request waits
 *   RP_OP_LINK what             the link fails, a secondary is attached
 *                               again, replication is stopped, or a build
 *                               fails (RP_LINK_*)
 *   RP_OP_VM_STOP takeover      the VM ends
 * An op byte is taken modulo RP_OP_COUNT, so every byte is some event.
 *
 * fuzz_apply: after a fixed bring-up and checkpoint 1, a list of chunks,
 * each a kind byte, a be32 length and the bytes: APPLY_CHUNK_PACKAGE
 * sends them as a PACKAGED command of that length, APPLY_CHUNK_RAW as
 * they are (top-level records: PING, PACKAGED with any length, EOF,
 * sections).  The kind is taken modulo 2.
 *
 * fuzz_control: request lines.  In a seed, a request whose "id" is
 * CONTROL_EXPECT_ERROR must be refused, and every other one answered ok.
 */
#ifndef FTVM_TESTS_FUZZ_INPUTS_H
#define FTVM_TESTS_FUZZ_INPUTS_H

#include "checkpoint/pairing.h"

/*
 * fuzz_retpath's secondary: the pairing the primary drew for it, which
 * its seeds' ACKs and NACKs carry (others end the link).
 */
static const pairing rp_pair = {
    .id = { 0xf0, 0x22, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14 },
    .name = "fuzz-vm",
    .generation = 1,
};

enum {
    RP_OP_CHECKPOINT,
    RP_OP_RECV,
    RP_OP_TICK,
    RP_OP_WAIT,
    RP_OP_LINK,
    RP_OP_VM_STOP,
    RP_OP_COUNT,
};

enum {
    RP_LINK_DOWN,
    RP_LINK_ATTACH,
    RP_LINK_STOP,
    RP_LINK_BUILD_FAILED,
    RP_LINK_COUNT,
};

#define CONTROL_EXPECT_ERROR "expect-error"

enum {
    APPLY_CHUNK_PACKAGE,
    APPLY_CHUNK_RAW,
};

#endif
