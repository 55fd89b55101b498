/*
 * diskimg: real image files for the disk tests, in a temporary directory
 * of their own that diskimg_cleanup removes.
 */
#ifndef FTVM_TESTS_UNIT_DISKIMG_H
#define FTVM_TESTS_UNIT_DISKIMG_H

#include <stddef.h>
#include <stdint.h>

/* Makes the directory (under TMPDIR or /tmp); 0 or -1. */
int diskimg_setup(void);
/* Removes every file made in it and the directory. */
void diskimg_cleanup(void);
/* diskimg_setup and diskimg_cleanup as a cmocka group's setup and teardown. */
int diskimg_group_setup(void **state);
int diskimg_group_teardown(void **state);
/* The directory, for files a test makes itself. */
const char *diskimg_dir(void);

/*
 * Creates DIR/name of size bytes: zeros (a sparse file) when seed is 0,
 * else bytes of a pseudo-random stream drawn from seed.  Returns the
 * path (static storage, one of a few rotating buffers).
 */
const char *diskimg_make(const char *name, uint64_t size, uint32_t seed);
/* The whole file at path, malloc'd; its length in *len. */
uint8_t *diskimg_slurp(const char *path, size_t *len);
/* Fills buf with the stream of seed (the bytes diskimg_make writes). */
void diskimg_fill(void *buf, size_t len, uint32_t seed);

#endif
