/* standby: see standby.h. */
#include "secondary/standby.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>

const char *standby_state_name(standby_state s, bool applied)
{
    switch (s) {
    case STANDBY_WAITING: return "waiting";
    case STANDBY_REPLICATING: return applied ? "active" : "setup";
    case STANDBY_CLAIMING: return "claiming";
    case STANDBY_FAILOVER: return "failover";
    case STANDBY_RUNNING: return "running";
    case STANDBY_STOPPED: return "stopped";
    case STANDBY_DROPPED: return "dropped";
    }
    return "?";
}

static standby_decision stop(standby_verdict verdict, int status)
{
    return (standby_decision){ .verdict = verdict, .next = STANDBY_STOPPED,
                               .exit = true, .status = status };
}

static standby_decision fail_over(standby_verdict verdict, const char *why)
{
    return (standby_decision){ .verdict = verdict, .next = STANDBY_FAILOVER,
                               .failover_reason = why };
}

standby_decision standby_on_end(const standby_end *e)
{
    if (!e->have_vm) {
        /* Not a primary; unless we were ending anyway, wait for one. */
        standby_decision d = { .verdict = STANDBY_NOT_A_PRIMARY,
                               .next = STANDBY_WAITING };
        if (e->request == STANDBY_REQUEST_EXIT) {
            d.exit = true;
            d.status = e->request_status;
        }
        return d;
    }
    if (e->request == STANDBY_REQUEST_EXIT)
        return stop(STANDBY_AS_REQUESTED, e->request_status);
    if (e->why == RECEIVER_END_DROPPED) {
        /*
         * The primary is alive and keeps the VM, and does not claim it
         * (it ended the link on purpose): going live now, even on an
         * operator's failover that won the witness's key, runs two.
         */
        standby_decision d = stop(STANDBY_DROPPED_BY_PRIMARY,
                                  STANDBY_EXIT_DROPPED);
        d.next = STANDBY_DROPPED;
        return d;
    }
    if (e->request == STANDBY_REQUEST_FAILOVER)
        return fail_over(STANDBY_AS_REQUESTED, "requested");
    switch (e->why) {
    case RECEIVER_END_DROPPED:      /* decided above */
    case RECEIVER_END_EOF:
        return stop(STANDBY_PRIMARY_STOPPED, 0);
    case RECEIVER_END_LOST:
    case RECEIVER_END_TIMEOUT:
        /* A failover resumes the last checkpoint applied: is there one? */
        if (!e->applied)
            return stop(STANDBY_NOTHING_APPLIED, STANDBY_EXIT_NOTHING);
        if (e->witness) {
            /* Silent or gone is not dead: only the witness may say go. */
            standby_decision d = fail_over(
                STANDBY_PRIMARY_LOST, e->why == RECEIVER_END_TIMEOUT
                                      ? "primary silent" : "primary lost");
            d.next = STANDBY_CLAIMING;
            return d;
        }
        return fail_over(STANDBY_PRIMARY_LOST,
                         e->why == RECEIVER_END_TIMEOUT ? "primary silent"
                                                        : "primary lost");
    case RECEIVER_END_PROTOCOL:
    case RECEIVER_END_LOCAL:
        break;
    }
    return stop(STANDBY_REFUSED, STANDBY_EXIT_REFUSED);
}

standby_claim_act standby_on_claim(bool requested, claim_state outcome)
{
    switch (outcome) {
    case CLAIM_WON:
        return STANDBY_CLAIM_FAIL_OVER;
    case CLAIM_LOST:
        return requested ? STANDBY_CLAIM_REFUSE : STANDBY_CLAIM_FENCED;
    case CLAIM_UNKNOWN:
        /* An operator is told at once; a lost primary is waited out. */
        return requested ? STANDBY_CLAIM_REFUSE : STANDBY_CLAIM_WAIT;
    case CLAIM_IDLE:
    case CLAIM_CLAIMING:
        break;
    }
    return STANDBY_CLAIM_NOTHING;
}

int standby_admit(uint64_t generation, uint64_t highest, char *err,
                  size_t errlen)
{
    if (generation > highest)
        return 0;
    snprintf(err, errlen, "primary of generation %" PRIu64 " is %s "
             "generation %" PRIu64 " decided by the witness", generation,
             generation < highest ? "older than" : "not newer than",
             highest);
    return -EPERM;
}

standby_stop standby_on_stop(standby_state s)
{
    switch (s) {
    case STANDBY_RUNNING:
        return STANDBY_STOP_VM;
    case STANDBY_REPLICATING:
        return STANDBY_STOP_REPLICATION;
    case STANDBY_FAILOVER:
        return STANDBY_STOP_IGNORED;
    case STANDBY_CLAIMING:      /* the VM never ran here */
    case STANDBY_WAITING:
    case STANDBY_STOPPED:
    case STANDBY_DROPPED:
        break;
    }
    return STANDBY_STOP_EXIT;
}

int standby_may_fail_over(standby_state s, bool applied,
                          standby_request request, char *err, size_t errlen)
{
    if (s != STANDBY_REPLICATING) {
        snprintf(err, errlen, "failover: the secondary is %s%s",
                 standby_state_name(s, applied), s == STANDBY_CLAIMING
                 ? " (waiting for the witness; failover --force goes live "
                   "without it)" : "");
        return -EINVAL;
    }
    if (request == STANDBY_REQUEST_CLAIM) {
        snprintf(err, errlen, "failover: already asking the witness");
        return -EAGAIN;
    }
    if (request != STANDBY_REQUEST_NONE) {
        snprintf(err, errlen, "failover: replication is already being "
                 "stopped");
        return -EAGAIN;
    }
    if (!applied) {
        snprintf(err, errlen, "failover: no checkpoint has been applied "
                 "yet: nothing to fail over to");
        return -EAGAIN;
    }
    return 0;
}

int standby_may_force(standby_state s, bool applied, standby_request request,
                      char *err, size_t errlen)
{
    if (s == STANDBY_CLAIMING)
        return 0;
    return standby_may_fail_over(s, applied, request == STANDBY_REQUEST_CLAIM
                                 ? STANDBY_REQUEST_NONE : request, err,
                                 errlen);
}

int standby_may_stop(standby_state s, bool applied, standby_request request,
                     char *err, size_t errlen)
{
    if (s == STANDBY_REPLICATING && request == STANDBY_REQUEST_NONE)
        return 0;
    snprintf(err, errlen, "stop-replication: the secondary is %s",
             standby_state_name(s, applied));
    return -EINVAL;
}

int standby_may_save(standby_state s, bool applied, char *err,
                     size_t errlen)
{
    if (s == STANDBY_RUNNING || (s == STANDBY_REPLICATING && applied))
        return 0;
    snprintf(err, errlen, "the secondary is %s: %s",
             standby_state_name(s, applied),
             s == STANDBY_REPLICATING || s == STANDBY_WAITING
             ? "no checkpoint has been applied yet" : "nothing to save");
    return -EAGAIN;
}
