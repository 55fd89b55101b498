/* replica: see replica.h. */
#include "secondary/replica.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "daemon/guest.h"

int replica_config(const vmshape *shape, const char *net, vm_config *cfg,
                   char *err, size_t errlen)
{
    if (shape->has_net && !net) {
        snprintf(err, errlen, "the primary's VM has a network device: "
                 "start the secondary with --net");
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
                   const replica_output *output, vm **out)
{
    vm_config cfg;
    char err[512];
    int r = replica_config(shape, net, &cfg, err, sizeof(err));
    if (r < 0)
        return qfile_fail(f, r, "%s", err);
    guest_config(&cfg);         /* read once it runs, not before */
    cfg.console_fn = output->console_fn;
    cfg.console_opaque = output->console_opaque;
    cfg.transmit_fn = output->transmit_fn;
    cfg.transmit_opaque = output->transmit_opaque;
    r = vm_create(out, &cfg, err, sizeof(err));
    if (r < 0)
        return qfile_fail(f, r, "creating the VM: %s", err);
    return 0;
}
