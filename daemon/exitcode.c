/* exitcode: see exitcode.h. */
#include "daemon/exitcode.h"

#include <string.h>

#include "daemon/log.h"

int exitcode_vm(vm *v, int signal)
{
    vm_stop_info si;

    vm_get_stop_info(v, &si);
    if (signal) {
        log_msg("stopped by %s", strsignal(signal));
        return EXITCODE_SIGNAL + signal;
    }
    switch (si.reason) {
    case VM_STOP_HALT:
        return si.status;
    case VM_STOP_REQUESTED:     /* ftvmctl quit */
        return EXITCODE_OK;
    case VM_STOP_FAULT:
        log_msg("%s", si.msg);
        return EXITCODE_FAULT;
    default:
        log_msg("%s", si.msg[0] ? si.msg : "vm: stopped");
        return EXITCODE_ERROR;
    }
}
