/* vmshape: see vmshape.h. */
#include "vm/vmshape.h"

#include <errno.h>
#include <inttypes.h>

#include "vm/vm.h"

void vmshape_put(qfile *f, uint32_t section_id, const vmshape *s)
{
    savevm_put_section_start(f, SAVEVM_SECTION_FULL, section_id, VMSHAPE_IDSTR,
                             0, VMSHAPE_VERSION);
    qfile_put_be64(f, s->mem_size);
    qfile_put_be32(f, s->vcpus);
    qfile_put_u8(f, s->has_net);
    qfile_put_buf(f, s->mac, 6);
    savevm_put_footer(f, section_id);
}

int vmshape_load(qfile *f, const savevm_section *sec, vmshape *out)
{
    if (sec->type != SAVEVM_SECTION_FULL ||
        sec->version_id != VMSHAPE_VERSION || sec->instance_id != 0)
        return qfile_fail(f, -EINVAL,
                          "section '%s': expected a FULL section, "
                          "instance 0, version %u",
                          VMSHAPE_IDSTR, VMSHAPE_VERSION);
    out->mem_size = qfile_get_be64(f);
    out->vcpus = qfile_get_be32(f);
    uint8_t net = qfile_get_u8(f);
    qfile_get_buf(f, out->mac, 6);
    if (qfile_error(f))
        return qfile_error(f);
    char why[160];
    if (vm_check_mem_size(out->mem_size, why, sizeof(why)) < 0)
        return qfile_fail(f, -EINVAL, "VM shape: RAM of %" PRIu64 " bytes: %s",
                          out->mem_size, why);
    if (out->vcpus < 1 || out->vcpus > VM_MAX_VCPUS || net > 1)
        return qfile_fail(f, -EINVAL,
                          "VM shape: %" PRIu32 " vCPUs, network "
                          "flag %u",
                          out->vcpus, net);
    out->has_net = net;
    return 0;
}
