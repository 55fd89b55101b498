/*
 * peer: what the secondary's unit tests share: a connection whose other
 * end (the primary's) is the test's, over a socketpair, and the clock
 * the connection reads, which only the test moves.
 */
#ifndef FTVM_TESTS_UNIT_PEER_H
#define FTVM_TESTS_UNIT_PEER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "checkpoint/retpath.h"
#include "secondary/connection.h"

#define PEER_NAME "test-primary"

typedef struct peer {
    int fd;                     /* the primary's end */
    int secondary_fd;           /* the other, conn's */
    struct event_base *base;    /* never dispatched: the test ticks */
    connection *conn;           /* the secondary's end */
    uint8_t buf[4 * RETPATH_MSG_MAX];
    size_t len;
} peer;

/* The injected clock, in ns. */
extern uint64_t peer_now_ns;
/* The setup timeout peer_open gives the connection (0, none, unless set). */
extern uint64_t peer_setup_timeout_ns;
/* peer_open makes a TCP pair over loopback instead of a socketpair. */
extern bool peer_tcp;
/* The pairing the tests' primary drew. */
extern const pairing peer_pair;
uint64_t peer_clock(void);

/*
 * Opens both ends (cmocka asserts on failure), the connection on clock,
 * or on peer_clock when NULL; peer_now_ns starts at 1 s.
 */
void peer_open(peer *p, uint64_t failure_timeout_ns, uint64_t heartbeat_ns,
               uint64_t (*clock)(void));
void peer_close(peer *p);

/*
 * The next message the secondary sent, without waiting: 1 with it in m,
 * 0 when none is there, -1 once the secondary shut the connection down.
 */
int peer_next(peer *p, retpath_msg *m);

#endif
