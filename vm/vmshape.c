/* vmshape: see vmshape.h. */
#include "vm/vmshape.h"

#include <errno.h>
#include <inttypes.h>
#include <stddef.h>

#include "checkpoint/disk.h"
#include "checkpoint/ram.h"
#include "devstate/vmstate.h"
#include "vm/bzimage.h"
#include "vm/vm.h"

static const vmstate_field vmshape_fields[] = {
    { VMSTATE_SCALAR(vmshape, mem_size) },
    { VMSTATE_SCALAR(vmshape, vcpus) },
    { VMSTATE_SCALAR(vmshape, has_net) },
    { VMSTATE_BUFFER(vmshape, mac) },
    { .name = "pairing", .type = VMSTATE_T_BUFFER,
      .offset = offsetof(vmshape, pair.id), .size = PAIRING_ID_LEN },
    { .name = "name", .type = VMSTATE_T_BUFFER,
      .offset = offsetof(vmshape, pair.name), .size = PAIRING_NAME_MAX + 1 },
    { .name = "generation", .type = VMSTATE_T_U64,
      .offset = offsetof(vmshape, pair.generation), .size = 8 },
    { VMSTATE_SCALAR(vmshape, machine) },
    { VMSTATE_SCALAR(vmshape, disk_size) },
    VMSTATE_END,
};

static const vmstate_desc vmshape_desc = {
    .name = VMSHAPE_IDSTR, .version = VMSHAPE_VERSION,
    .minimum_version = VMSHAPE_VERSION, .size = sizeof(vmshape),
    .fields = vmshape_fields,
};

void vmshape_put(qfile *f, uint32_t section_id, const vmshape *s)
{
    vmstate_save_section(f, section_id, VMSHAPE_IDSTR, 0, &vmshape_desc, s,
                         NULL);
}

int vmshape_describe(json_t *vmdesc_devices)
{
    const vmshape any = { .vcpus = 1, .pair.name = PAIRING_DEFAULT_NAME,
                          .pair.generation = 1 };

    return vmstate_describe_section(vmdesc_devices, VMSHAPE_IDSTR, 0,
                                    &vmshape_desc, &any);
}

/* Per page: header, block name, encoding, length, zlib's worst case. */
#define PAGE_RECORD_MAX (RAM_PAGE_SIZE + 512u)
#define VCPU_STATE_MAX (1u << 20)
#define DEVICES_STATE_MAX (4u << 20)
/* A block record's be64 header, name length and a name at most. */
#define CHUNK_RECORD_HEADER (8u + 1u + 255u)

uint64_t vmshape_package_bound(const vmshape *s)
{
    uint64_t chunks = (s->disk_size + DISK_CHUNK_SIZE - 1) / DISK_CHUNK_SIZE;
    return s->mem_size / RAM_PAGE_SIZE * PAGE_RECORD_MAX +
           (uint64_t)s->vcpus * VCPU_STATE_MAX + DEVICES_STATE_MAX +
           chunks * (DISK_CHUNK_SIZE + CHUNK_RECORD_HEADER);
}

int vmshape_load(qfile *f, const savevm_section *sec, vmshape *out)
{
    if (sec->type != SAVEVM_SECTION_FULL || sec->instance_id != 0)
        return qfile_fail(f, -EINVAL, "section '%s': expected a FULL "
                          "section of instance 0, found %s instance %" PRIu32,
                          VMSHAPE_IDSTR, savevm_type_name(sec->type),
                          sec->instance_id);
    /* Into the caller's struct, which no VM uses yet: apply is safe. */
    if (vmstate_load(f, &vmshape_desc, out, sec->version_id,
                     SAVEVM_PASS_APPLY) < 0)
        return qfile_error(f);
    char why[160];
    if (vm_check_mem_size(out->mem_size, why, sizeof(why)) < 0)
        return qfile_fail(f, -EINVAL, "VM shape: RAM of %" PRIu64 " bytes: %s",
                          out->mem_size, why);
    if (out->machine != VM_MACHINE_FTVM && out->machine != VM_MACHINE_PC)
        return qfile_fail(f, -EINVAL, "VM shape: machine %u (0 a "
                          "freestanding guest, 1 a Linux guest's PC)",
                          out->machine);
    if (out->machine == VM_MACHINE_PC && out->mem_size > BZIMAGE_MAX_MEM)
        return qfile_fail(f, -EINVAL, "VM shape: a Linux guest with %" PRIu64
                          " MiB of RAM (at most %llu)", out->mem_size >> 20,
                          BZIMAGE_MAX_MEM >> 20);
    if (out->vcpus < 1 || out->vcpus > VM_MAX_VCPUS)
        return qfile_fail(f, -EINVAL, "VM shape: %" PRIu32 " vCPUs",
                          out->vcpus);
    if (out->disk_size % DISK_SECTOR_SIZE || out->disk_size > DISK_MAX_SIZE)
        return qfile_fail(f, -EINVAL, "VM shape: a disk of %" PRIu64
                          " bytes (a multiple of 512 up to 1 TiB)",
                          out->disk_size);
    if (pairing_check(&out->pair, why, sizeof(why)) < 0)
        return qfile_fail(f, -EINVAL, "VM shape: %s", why);
    return 0;
}
