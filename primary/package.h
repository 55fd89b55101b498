/*
 * package: what the primary writes into the stream, on top of the VM's
 * registry: the bring-up (header, commands, the VM's shape, the RAM block
 * list and passes over the RAM while the guest runs) and each checkpoint
 * package (docs/replication.md, "A checkpoint").
 *
 * Section ids: the registry's entries have 0..n-1; "ftvm-vm" is n,
 * "ftvm-pkg" n+1, "ftvm-ckpt" n+2 and "ftvm-drop" n+3.
 */
#ifndef FTVM_PRIMARY_PACKAGE_H
#define FTVM_PRIMARY_PACKAGE_H

#include <stdbool.h>
#include <stdint.h>

#include "checkpoint/qfile.h"
#include "primary/channel.h"
#include "vm/vm.h"
#include "vm/vmshape.h"

typedef struct package_bringup_stats {
    uint64_t passes;        /* RAM PART sections (precopy_stats) */
    uint64_t pages;         /* dirty pages they took */
    uint64_t bytes;         /* the whole bring-up */
    uint64_t ns;
} package_bringup_stats;

/*
 * Writes the bring-up to l (on l's thread): the header, the commands, the
 * VM's shape, then the RAM while the guest runs, until vm/precopy.h's end
 * rule says what is left is small.  Nothing else may save v meanwhile.
 * 0, or -errno with a message.
 */
/* colo: "ftvm-colo" follows "ftvm-vm" (vm/colosec.h). */
int package_bringup(vm *v, const vmshape *shape, bool colo, channel *l,
                    package_bringup_stats *st, char *err, size_t errlen);

typedef struct package_stats {
    uint64_t pages;         /* dirty pages in the package */
    uint64_t bytes;         /* the package */
} package_stats;

/*
 * Builds checkpoint id into q (an empty memory channel), v paused: the
 * package header (id, base, the secondary's pairing), the RAM END
 * section, every device.  full
 * sends every page and forgets the XBZRLE cache first.  0, or the error
 * latched on q; after an error the next package must be full.
 */
int package_build(vm *v, qfile *q, const pairing *pair, uint64_t id,
                  uint64_t base, bool full, package_stats *st);
/*
 * Seals what package_build left in q with the trailer (the CRC-32 of the
 * package) and EOF.  The copy in q is the package's own, so this runs
 * after the guest resumed: summing megabytes need not pause it.
 */
int package_seal(vm *v, qfile *q, uint64_t id, package_stats *st);

/*
 * The drop notice that ends a live secondary's stream before EOF
 * (devstate/dropnotice.h): pair's, with reason and text (cut to fit),
 * into q (an empty memory channel).  0 or the error latched on q.
 */
int package_drop(vm *v, qfile *q, const pairing *pair, uint32_t reason,
                 const char *text);

#endif
