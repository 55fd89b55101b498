/* guest: see guest.h. */
#include "daemon/guest.h"

#include <unistd.h>

#include "vm/pc.h"

void guest_config(vm_config *cfg)
{
    if (cfg->machine == VM_MACHINE_PC)
        cfg->console_in_fd = STDIN_FILENO;
}

int guest_open_disk(options_vm *o, char *err, size_t errlen)
{
    if (!o->has_disk || o->cfg.disk)
        return 0;
    return disk_open(&o->cfg.disk, o->disk.path, o->disk.readonly,
                     VM_DISK_NAME, err, errlen);
}

void guest_close_disk(options_vm *o)
{
    disk_close(o->cfg.disk);
    o->cfg.disk = NULL;
}

int guest_boot(vm *v, const options_vm *o, const char *image,
               const char *guest_args, char *err, size_t errlen)
{
    if (o->kernel)
        return vm_boot_kernel(v, o->kernel, o->initrd,
                              o->cmdline ? o->cmdline : PC_DEFAULT_CMDLINE,
                              err, errlen);
    return vm_boot(v, image, guest_args, err, errlen);
}
