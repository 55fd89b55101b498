/*
 * primary_ctl: what `ftvm primary` adds to a VM process's control
 * commands (tools/vmctl.h): checkpoint (a replication checkpoint, answered
 * once acknowledged), set, stop-replication, attach-secondary, and the
 * replication figures in status; the same figures as metrics.
 */
#ifndef FTVM_TOOLS_PRIMARY_CTL_H
#define FTVM_TOOLS_PRIMARY_CTL_H

#include <jansson.h>
#include <stddef.h>

#include "primary/replicate.h"
#include "tools/control.h"
#include "tools/metrics.h"

/* Registers the commands on ctl (replacing vmctl's checkpoint). */
int pctl_register(ctl_server *ctl, pri *rep);

/* vmc hooks; opaque is the pri. */
void pctl_status(void *opaque, json_t *status);
int pctl_can_save(void *opaque, char *err, size_t errlen);

/* Names, types and help for the metrics of status's figures. */
extern const mtr_hint pctl_metric_hints[];

#endif
