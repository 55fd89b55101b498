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
#include "vm/vm.h"
#include "vm/vmshape.h"

/*
 * The configuration of a VM of that shape, its network device on the
 * backend net (--net), which a VM with a NIC requires.  0, or -EINVAL
 * with a message.
 */
int replica_config(const vmshape *shape, const char *net, vm_config *cfg,
                   char *err, size_t errlen);

/*
 * Creates the VM of the shape "ftvm-vm" gave, not started.  0, or the
 * error latched on f.
 */
int replica_create(qfile *f, const vmshape *shape, const char *net,
                   vm **out);

#endif
