/*
 * replica: the secondary's VM, made from the primary's "ftvm-vm" section
 * (docs/replication.md, "The secondary process"): of the primary VM's
 * shape, created and never started here, so that its RAM is the RAM
 * cache the packages are applied to, until a failover starts it.
 */
#ifndef FTVM_SECONDARY_REPLICA_H
#define FTVM_SECONDARY_REPLICA_H

#include <stddef.h>

#include "checkpoint/qfile.h"
#include "checkpoint/savevm.h"
#include "vm/hc.h"
#include "vm/vm.h"
#include "vm/vmshape.h"

/*
 * The configuration of a VM of that shape, its network device on the
 * backend net (--net), which a VM with a NIC requires, as one with a
 * disk requires disk_path (--disk: this secondary's copy of the image).
 * Nothing is opened.  0, or -EINVAL with a message.
 */
int replica_config(const vmshape *shape, const char *net,
                   const char *disk_path, vm_config *cfg, char *err,
                   size_t errlen);

/*
 * Where the VM's console bytes and the frames it sends go once it runs
 * (vm_config's hooks; NULL: straight to its console and backend): output
 * commit, so that a VM that went live can be protected again
 * (secondary/survivor.h).
 */
typedef struct replica_output {
    hc_console_fn console_fn;
    void *console_opaque;
    hc_transmit_fn transmit_fn;
    void *transmit_opaque;
} replica_output;

/*
 * Creates the VM of the shape "ftvm-vm" gave, not started, its output
 * through output's hooks.  With a disk, disk_path is made the size of
 * the primary's (created if missing: the bring-up overwrites it all),
 * opened (locked) and owned by the VM, which holds what each package
 * stages until the receiver commits it (vm_disk_hold).  0, or the error
 * latched on f.
 */
int replica_create(qfile *f, const vmshape *shape, const char *net,
                   const char *disk_path, const replica_output *output,
                   vm **out);

#endif
