/*
 * How fuzz_netcmp reads its input, shared with its seeds' writer
 * (netcmp_seeds.c, run by gen_corpus): a list of events, each an op
 * byte (taken modulo NC_OP_COUNT, so every byte is some event) and its
 * arguments:
 *
 *   NC_OP_PUT side len16 bytes   a frame from the primary (side even) or
 *                                the secondary (odd), len16 a be16 taken
 *                                modulo NC_LEN_MOD (0 and 1515 are the
 *                                refused lengths)
 *   NC_OP_ECHO at16 xor          the last frame the primary put, to the
 *                                secondary, its byte at16 (modulo its
 *                                length) xored with xor (0: the same)
 *   NC_OP_TICK ms                ms pass; timeouts are looked for
 *   NC_OP_RESET mode             a checkpoint: reset, releasing (mode
 *                                even) or keeping the primary's frames
 *   NC_OP_OFFSET off32           the last primary frame's flow gets a
 *                                TCP offset (be32)
 *   NC_OP_REWRITE                the last primary frame, rewritten as
 *                                an inbound frame for the secondary
 *   NC_OP_SPLIT cut delta32      the last primary frame, if TCP, to the
 *                                secondary as another stack would send
 *                                it: its sequence number plus delta32
 *                                (be32) and its payload cut in two
 *                                segments after cut bytes (modulo its
 *                                length + 1; 0: one segment)
 */
#ifndef FTVM_TESTS_FUZZ_NETCMP_INPUTS_H
#define FTVM_TESTS_FUZZ_NETCMP_INPUTS_H

enum {
    NC_OP_PUT,
    NC_OP_ECHO,
    NC_OP_TICK,
    NC_OP_RESET,
    NC_OP_OFFSET,
    NC_OP_REWRITE,
    NC_OP_SPLIT,
    NC_OP_COUNT,
};

#define NC_LEN_MOD 1516

/* Writes fuzz_netcmp's seeds into dir: 0 or -1 (with a message). */
int netcmp_seeds_write(const char *dir);

#endif
