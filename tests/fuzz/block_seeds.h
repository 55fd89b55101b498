/*
 * block_seeds: writes fuzz_block's seeds into DIR (gen_corpus --targets
 * gives it DIR/block).
 */
#ifndef FTVM_TESTS_FUZZ_BLOCK_SEEDS_H
#define FTVM_TESTS_FUZZ_BLOCK_SEEDS_H

/* 0, or 1 after a message on stderr. */
int block_seeds_write(const char *dir);

#endif
