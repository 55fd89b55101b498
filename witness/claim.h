/*
 * claim: one side's claim, through the witness (witness/etcd.h), to a
 * pairing generation's VM, the one mechanism both roles use
 * (docs/witness.md).
 *
 * A process has one claim object: its etcd client, its value ("primary
 * <16 hex>" or "secondary <16 hex>", drawn once per process, so that a
 * retry recognises its own earlier write and no two writers share one)
 * and the state of its latest claim.  claim_start(G) tries to create
 * /ftvm/NAME/G/owner with that value:
 *   WON      the key holds our value: this side carries on;
 *   LOST     it holds another (claim_owner): the other side has the VM;
 *   UNKNOWN  no definite answer within --witness-timeout: neither may be
 *            assumed.  The claim is asked again, with the same value,
 *            every --witness-timeout until WON or LOST (or claim_cancel).
 * The callback runs from the loop on every change of state (CLAIMING ->
 * UNKNOWN, UNKNOWN -> WON or LOST, CLAIMING -> WON or LOST), never from
 * inside claim_start.  Nothing here blocks the loop.
 */
#ifndef FTVM_WITNESS_CLAIM_H
#define FTVM_WITNESS_CLAIM_H

#include <stddef.h>
#include <stdint.h>

struct event_base;
struct json_t;

#define CLAIM_DEFAULT_TIMEOUT_NS 1000000000ull     /* --witness-timeout */
#define CLAIM_KEY_MAX 128

typedef enum claim_state {
    CLAIM_IDLE,         /* a witness, nothing claimed (or cancelled) */
    CLAIM_CLAIMING,     /* the first attempt is in flight */
    CLAIM_WON,
    CLAIM_LOST,
    CLAIM_UNKNOWN,      /* no answer yet; asking again */
} claim_state;

typedef struct claim claim;

typedef void (*claim_cb)(void *opaque, claim_state state);

/*
 * A claim object for role ("primary" or "secondary") with the witness at
 * endpoints (etcd client URLs, comma-separated; https:// ones with the
 * TLS credentials in tls_dir, witness/etcdtls.h, else tls_dir NULL); each
 * attempt's deadline timeout_ns (0: the default).  0, or -errno with a
 * message (a bad endpoint says which).
 */
int claim_new(claim **out, struct event_base *base, const char *endpoints,
              const char *tls_dir, const char *role, uint64_t timeout_ns,
              char *err, size_t errlen);
void claim_free(claim *c);

/*
 * Claims VM name's generation's key (name key-safe: checkpoint/pairing.h);
 * an earlier claim in flight is dropped first.  cb runs on each change of
 * state.  0 or -errno (no memory) with a message.
 */
int claim_start(claim *c, const char *name, uint64_t generation, claim_cb cb,
                void *opaque, char *err, size_t errlen);
/* Stops asking; the state is IDLE again; no callback. */
void claim_cancel(claim *c);

claim_state claim_get_state(const claim *c);
const char *claim_state_name(claim_state s);
/* The value another side holds the key with (LOST), or NULL. */
const char *claim_owner(const claim *c);
/* Our own value. */
const char *claim_value(const claim *c);
/* The key of the latest claim ("" before any). */
const char *claim_key(const claim *c);
/* The last attempt's error (UNKNOWN), or NULL. */
const char *claim_error(const claim *c);
uint64_t claim_generation(const claim *c);
/* Requests the latest claim has made (1 + its retries). */
uint64_t claim_attempts(const claim *c);

/* The etcd client (witness/etcd.h), for the role's other requests. */
struct etcd *claim_client(const claim *c);

/* "/ftvm/NAME/G/owner" into buf. */
void claim_key_of(char *buf, size_t len, const char *name,
                  uint64_t generation);

/*
 * The status object "witness" (docs/witness.md): c's, or with c NULL the
 * state "none" of a role without --witness; name and generation those of
 * the pairing served (NULL, 0: none yet), unless a claim was made.
 */
struct json_t *claim_status(const claim *c, const char *name,
                            uint64_t generation);

/* What start-up logs and status say when there is no witness. */
#define CLAIM_NO_WITNESS "no witness: a stall or a partition can leave " \
                         "both copies running (docs/witness.md)"

#endif
