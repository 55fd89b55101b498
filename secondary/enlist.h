/*
 * enlist: the secondary's place in the standby pool (`ftvm secondary
 * --register`, docs/witness.md "The standby pool"): which address it
 * offers to primaries, and when it is offered.  witness/pool.h keeps the
 * registration itself.
 */
#ifndef FTVM_SECONDARY_ENLIST_H
#define FTVM_SECONDARY_ENLIST_H

#include <stdbool.h>
#include <stddef.h>

#include "secondary/secondary.h"
#include "secondary/standby.h"
#include "witness/pool.h"

struct event_base;

/*
 * The address a primary dials: advertise if given, else listening (the
 * listener's "HOST:PORT"), refused when that is every address (0.0.0.0,
 * [::]): 0, or -EINVAL with a message.
 */
int enlist_address(char *out, size_t len, const char *advertise,
                   const char *listening, char *err, size_t errlen);
/* Offered only while waiting for a primary: each secondary serves one. */
bool enlist_offered(standby_state s);
/*
 * The registration of o (--register, --pool, --advertise, --pool-ttl,
 * --vm-name, the witness) for the secondary listening on listening; not
 * offered yet.  Its changes are logged.  0, or -errno with a message.
 */
int enlist_new(pool_standby **out, struct event_base *base,
               const secondary_opts *o, const char *listening, char *err,
               size_t errlen);

#endif
