/*
 * vm_state: what a VM saves, as registry entries: the RAM (a live entry
 * driving the RAM codec over the dirty log), each vCPU, the devices, and
 * for a Linux VM its PC ("pc": irqchip, PIT, clock, UART, ...).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "vm/pcpci.h"
#include "vm/vm_impl.h"

/* Pages one "ram" PART section sends at most (64 MiB). */
#define VM_RAM_ITER_PAGES 16384u

/* ---- "ram": the live entry ---- */

static int ram_setup(qfile *f, void *opaque)
{
    vm *v = opaque;
    int rc = gmem_sync_dirty(&v->gm);

    if (rc < 0)
        return qfile_fail(f, rc, "vm: fetching the dirty log: %s",
                          strerror(-rc));
    /* A new receiver has nothing: everything goes, and no stale deltas. */
    gmem_mark_allocated_dirty(&v->gm);
    ram_saver_drop_cache(v->saver);
    return ram_save_setup(v->saver, f);
}

static int64_t ram_send(vm *v, qfile *f, uint64_t max_pages)
{
    int rc = gmem_sync_dirty(&v->gm);

    if (rc < 0)
        return qfile_fail(f, rc, "vm: fetching the dirty log: %s",
                          strerror(-rc));
    return ram_save_dirty(v->saver, f, max_pages, &v->ram_stats);
}

static int ram_iterate(qfile *f, void *opaque)
{
    vm *v = opaque;
    int64_t n = ram_send(v, f, VM_RAM_ITER_PAGES);

    return n < 0 ? (int)n : v->ram_stats.remaining == 0;
}

static int ram_complete(qfile *f, void *opaque)
{
    int64_t n = ram_send(opaque, f, 0);

    return n < 0 ? (int)n : 0;
}

static int ram_load_section(qfile *f, void *opaque, uint32_t version,
                            savevm_pass pass)
{
    vm *v = opaque;

    if (pass == SAVEVM_PASS_APPLY && vm_get_state(v) == VM_RUNNING)
        return qfile_fail(f, -EBUSY,
                          "vm: RAM cannot be loaded into a running "
                          "VM; pause it first");
    return ram_load(v->loader, f, version, pass);
}

static void ram_begin_validate(void *opaque)
{
    vm *v = opaque;

    ram_loader_begin_validate(v->loader);
}

static const registry_live_ops ram_ops = {
    .version = RAM_SECTION_VERSION,
    .minimum_version = RAM_SECTION_VERSION,
    .save_setup = ram_setup,
    .save_iterate = ram_iterate,
    .save_complete = ram_complete,
    .load = ram_load_section,
    .load_begin_validate = ram_begin_validate,
};

int vm_register_state(vm *v, char *err, size_t errlen)
{
    char why[256];
    int rc = registry_add_live(v->reg, RAM_SECTION_IDSTR, 0, REGISTRY_PRIO_RAM,
                               &ram_ops, v);

    for (unsigned i = 0; rc >= 0 && i < v->ncpus; i++)
        rc = registry_add_device(v->reg, "cpu", i, REGISTRY_PRIO_DEFAULT,
                                 &vcpu_state_desc, &v->cpus[i].c->state);
    if (rc >= 0)
        rc = registry_add_device(v->reg, "ftvm-dev", 0, REGISTRY_PRIO_DEFAULT,
                                 &hc_state_desc, &v->hc.st);
    if (rc >= 0 && v->pc)
        rc = registry_add_device(v->reg, "pc", 0, REGISTRY_PRIO_DEFAULT,
                                 &pc_state_desc, pc_state_obj(v->pc));
    if (rc >= 0 && v->pc && pc_has_pci(v->pc))
        rc = registry_add_device(v->reg, "pci", 0, REGISTRY_PRIO_DEFAULT,
                                 &pcpci_state_desc, pc_pci_state_obj(v->pc));
    if (rc >= 0 && v->net)
        rc = registry_add_device(v->reg, "ftvm-net", 0, REGISTRY_PRIO_DEFAULT,
                                 &hc_net_state_desc, &v->hc.net_st);
    if (rc >= 0 && v->cfg.disk)
        return vm_disk_register(v, err, errlen);
    if (rc < 0) {
        const vmstate_desc *all[] = {&vcpu_state_desc, &hc_state_desc,
                                     &hc_net_state_desc, &pc_state_desc,
                                     &pcpci_state_desc};
        snprintf(err, errlen, "vm: registering device state: %s",
                 strerror(-rc));
        for (size_t i = 0; i < 5; i++)
            if (vmstate_desc_verify(all[i], why, sizeof(why)) < 0)
                snprintf(err, errlen, "vm: state description '%s': %s",
                         all[i]->name, why);
    }
    return rc < 0 ? rc : 0;
}
