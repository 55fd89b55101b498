/*
 * guest: booting what an options_vm names, the same for `ftvm run` and
 * `ftvm primary`: a freestanding guest image with its arguments, or a
 * Linux kernel (--kernel, --initrd, --cmdline); and a Linux guest's
 * console input, stdin, wherever its VM is made.
 */
#ifndef FTVM_DAEMON_GUEST_H
#define FTVM_DAEMON_GUEST_H

#include <stddef.h>

#include "daemon/options.h"
#include "vm/vm.h"

/*
 * Before vm_create: a Linux guest (cfg->machine, set by --kernel, a
 * checkpoint or the primary's stream) reads its console from stdin.
 */
void guest_config(vm_config *cfg);

/*
 * Opens the image --disk named (when given) as the VM's disk, VM_DISK_NAME,
 * and puts it in o->cfg.disk.  0, or -errno with a message naming the
 * image (missing, in use, a bad size).  Close it with guest_close_disk
 * once the VM is gone.
 */
int guest_open_disk(options_vm *o, char *err, size_t errlen);
void guest_close_disk(options_vm *o);

/*
 * Boots the created VM: the kernel of o (with the default command line
 * when none was given), or image with guest_args.  0, or -errno with a
 * message.
 */
int guest_boot(vm *v, const options_vm *o, const char *image,
               const char *guest_args, char *err, size_t errlen);

#endif
