/* replica: see replica.h. */
#include "secondary/replica.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "daemon/guest.h"

int replica_config(const vmshape *shape, const char *net,
                   const char *disk_path, vm_config *cfg, char *err,
                   size_t errlen)
{
    if (shape->has_net && !net) {
        snprintf(err, errlen, "the primary's VM has a network device: "
                 "start the secondary with --net");
        return -EINVAL;
    }
    if (shape->disk_size && !disk_path) {
        snprintf(err, errlen, "the primary's VM has a disk of %" PRIu64
                 " bytes: start the secondary with --disk FILE (its copy)",
                 shape->disk_size);
        return -EINVAL;
    }
    if (!shape->disk_size && disk_path) {
        snprintf(err, errlen, "the primary's VM has no disk, and this "
                 "secondary was given --disk %s", disk_path);
        return -EINVAL;
    }
    vm_config_init(cfg);
    cfg->machine = (vm_machine)shape->machine;
    cfg->mem_size = shape->mem_size;
    cfg->vcpus = shape->vcpus;
    memcpy(cfg->mac, shape->mac, 6);
    cfg->net = shape->has_net ? net : NULL;
    return 0;
}

int replica_create(qfile *f, const vmshape *shape, const char *net,
                   const char *disk_path, const replica_output *output,
                   vm **out)
{
    vm_config cfg;
    char err[512];
    int r = replica_config(shape, net, disk_path, &cfg, err, sizeof(err));
    if (r < 0)
        return qfile_fail(f, r, "%s", err);
    if (shape->disk_size) {
        r = disk_open_resized(&cfg.disk, disk_path, shape->disk_size,
                              VM_DISK_NAME, err, sizeof(err));
        if (r < 0)
            return qfile_fail(f, r, "%s", err);
        cfg.disk_owned = true;
    }
    guest_config(&cfg);         /* read once it runs, not before */
    cfg.console_fn = output->console_fn;
    cfg.console_opaque = output->console_opaque;
    cfg.transmit_fn = output->transmit_fn;
    cfg.transmit_opaque = output->transmit_opaque;
    r = vm_create(out, &cfg, err, sizeof(err));
    if (r < 0)
        return qfile_fail(f, r, "creating the VM: %s", err);
    vm_disk_hold(*out);
    return 0;
}
