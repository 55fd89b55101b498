/*
 * primary_ctl: what the primary adds to a VM process's control commands
 * (daemon/vmctl.h): checkpoint (a replication checkpoint, answered once
 * acknowledged), set, stop-replication, protect (attach-secondary is
 * its older name), and the replication figures in status and as metrics.
 */
#ifndef FTVM_PRIMARY_PRIMARY_CTL_H
#define FTVM_PRIMARY_PRIMARY_CTL_H

#include <jansson.h>
#include <stddef.h>

#include "daemon/control.h"
#include "daemon/metrics.h"
#include "primary/replicator.h"

/* Registers the commands on ctl (replacing vmctl's checkpoint). */
int primary_ctl_register(control_server *ctl, replicator *rep);

/*
 * protect's work, for every process that hosts a replicator: args'
 * "address" (HOST:PORT) brought up as the new secondary
 * (replicator_attach).  0 or -errno with a message naming cmd.
 */
int primary_ctl_protect(replicator *rep, const char *cmd, json_t *args,
                        char *err, size_t errlen);

/*
 * set's work: args' "key" and "value" (a time; reconnect also 0 or off)
 * given to replicator_set.  0 or -errno with a message.
 */
int primary_ctl_set(replicator *rep, json_t *args, char *err,
                    size_t errlen);

/* For vmctl's status hook: status's replication fields. */
void primary_ctl_status(replicator *rep, json_t *status);

/* Replication's metric families (docs/metrics.md); rep may be NULL. */
void primary_ctl_metrics(replicator *rep, metrics_writer *w);

#endif
