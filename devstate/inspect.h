/*
 * inspect: what a checkpoint stream holds, for people and for scripts.
 *
 * The stream is walked by the same loader that restores it (checkpoint/
 * savevm.c), with a target that stores nothing: RAM sections are counted by
 * the RAM codec in inspect mode, device sections are decoded through the VM
 * description found after the stream's EOF.  A damaged stream is shown up
 * to the damage, then the error with its offset.
 */
#ifndef FTVM_DEVSTATE_INSPECT_H
#define FTVM_DEVSTATE_INSPECT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef enum inspect_format {
    INSPECT_TEXT,
    INSPECT_JSON,
} inspect_format;

typedef struct inspect_opts {
    inspect_format format;
    /*
     * Another complete stream of the same VM whose VM description decodes
     * this one's devices: a replication stream or a bare package carries
     * none of its own.  NULL to use the stream's own.
     */
    const uint8_t *desc_from;
    size_t desc_from_len;
    /* When set, the RAM as the stream leaves it goes to DIR/BLOCK.bin. */
    const char *extract_dir;
} inspect_opts;

/*
 * Shows the stream in data[0..len) on out.  name labels it (a path, or
 * "stdin").  Returns 0 when the whole stream read cleanly, 1 when it is
 * damaged (what could be read is shown, then the error), 2 when out of
 * memory, desc_from has no description, or extraction failed.
 */
int inspect_show(const uint8_t *data, size_t len, const char *name,
                 const inspect_opts *opts, FILE *out);
/*
 * The same for the stream in the file at path ("-": stdin), mapped when
 * it is a file and read whole when it is a pipe; desc_path, if not NULL,
 * names the stream whose VM description decodes it (opts' desc_from is
 * then ignored).  Returns as inspect_show, and 2 with err set when a file
 * cannot be read.
 */
int inspect_file(const char *path, const char *desc_path,
                 const inspect_opts *opts, FILE *out, char *err,
                 size_t errlen);

#endif
