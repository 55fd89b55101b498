/*
 * elfload: loading a guest image, a static x86-64 ELF executable.
 *
 * The file is untrusted: every header field is checked against the file's
 * size and the room in guest RAM before anything is copied, and images the
 * monitor cannot run as they are (dynamic, position-independent, needing an
 * interpreter, with overlapping segments) are refused with a message that
 * names the file and the field.
 */
#ifndef FTVM_VM_ELFLOAD_H
#define FTVM_VM_ELFLOAD_H

#include <stddef.h>
#include <stdint.h>

#include "vm/gmem.h"

typedef struct elfload_image {
    uint64_t entry;
    uint64_t start;     /* lowest guest-physical byte loaded */
    uint64_t end;       /* just past the highest, rounded up to a page */
} elfload_image;

/*
 * Copies the PT_LOAD segments of the image at path into g (zeroing each
 * segment's tail past its file bytes).  Segments must lie in [lo, hi).
 * 0, or -errno with a message.
 */
int elfload_load(const char *path, gmem *g, uint64_t lo, uint64_t hi,
                 elfload_image *out, char *err, size_t errlen);

#endif
