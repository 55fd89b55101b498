/*
 * Unit tests for secondary/connection: the primary's liveness and the
 * return path, on a socketpair whose other end is the test's, with a
 * clock only the test moves.  The timers are never dispatched; the tests
 * run the checks they would run.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <linux/sockios.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include "tests/unit/peer.h"

#define MS 1000000u
#define TIMEOUT (300 * MS)
#define HEARTBEAT (50 * MS)

static void open_peer(peer *p)
{
    peer_open(p, TIMEOUT, HEARTBEAT, NULL);
}

static connection_state state(peer *p, char *msg, size_t len)
{
    return connection_get_state(p->conn, NULL, msg, len);
}

/* Silence for the failure timeout ends the connection, and says so. */
static void test_silence_times_out(void **unused)
{
    (void)unused;
    peer p;
    char msg[256];
    retpath_msg m;
    open_peer(&p);

    peer_now_ns += TIMEOUT - 1;
    assert_false(connection_check_silence(p.conn));
    assert_int_equal(state(&p, msg, sizeof(msg)), CONNECTION_OPEN);
    assert_string_equal(msg, "");

    peer_now_ns += 1;
    assert_true(connection_check_silence(p.conn));
    uint64_t when;
    assert_int_equal(connection_get_state(p.conn, &when, msg, sizeof(msg)),
                     CONNECTION_SILENT);
    assert_int_equal(when, peer_now_ns);
    assert_non_null(strstr(msg, "nothing from " PEER_NAME " for 300 ms"));
    /* The socket is shut down, which unblocks the receiver thread. */
    assert_int_equal(peer_next(&p, &m), -1);
    /* Ended once: neither a later check nor a close counts. */
    peer_now_ns += TIMEOUT;
    assert_false(connection_check_silence(p.conn));
    assert_false(connection_close(p.conn, 0));
    assert_int_equal(state(&p, NULL, 0), CONNECTION_SILENT);
    peer_close(&p);
}

/*
 * The next check falls when the timeout would pass, not a period later
 * (detection within 1 ms of the timeout, not within a tenth of it), and
 * never further off than a tenth of the timeout.
 */
static void test_next_check_at_the_deadline(void **unused)
{
    (void)unused;
    peer p;
    open_peer(&p);
    assert_int_equal(connection_next_check(p.conn), TIMEOUT / 10);
    peer_now_ns += TIMEOUT - 12 * MS;
    assert_int_equal(connection_next_check(p.conn), 12 * MS);
    peer_now_ns += 11 * MS + MS / 2;
    assert_int_equal(connection_next_check(p.conn), MS);    /* the least */
    assert_false(connection_check_silence(p.conn));
    /* Progress moves the deadline. */
    connection_progress(p.conn);
    assert_int_equal(connection_next_check(p.conn), TIMEOUT / 10);
    /* Busy: the receiver is not reading, nothing to time; the period. */
    peer_now_ns += TIMEOUT - 2 * MS;
    connection_set_busy(p.conn, true);
    assert_int_equal(connection_next_check(p.conn), TIMEOUT / 10);
    connection_set_busy(p.conn, false);
    assert_int_equal(connection_next_check(p.conn), TIMEOUT / 10);
    /* Past the timeout: at once (1 ms), and once ended, never. */
    peer_now_ns += TIMEOUT + 5 * MS;
    assert_int_equal(connection_next_check(p.conn), MS);
    assert_true(connection_check_silence(p.conn));
    assert_int_equal(connection_next_check(p.conn), 0);
    peer_close(&p);
}

/* A short timeout's period is 5 ms at least, a long one's 50 ms at most. */
static void test_next_check_period_bounds(void **unused)
{
    (void)unused;
    peer p;
    peer_open(&p, 20 * MS, HEARTBEAT, NULL);
    assert_int_equal(connection_next_check(p.conn), 5 * MS);
    peer_close(&p);
    peer_open(&p, 2000 * MS, HEARTBEAT, NULL);
    assert_int_equal(connection_next_check(p.conn), 50 * MS);
    peer_now_ns += 1990 * MS;
    assert_int_equal(connection_next_check(p.conn), 10 * MS);
    peer_close(&p);
}

/*
 * Until checkpoint 1, PINGs keep a peer alive but do not hold the slot:
 * more than PINGs must come every setup timeout (finding 2 of issue 8).
 */
static void test_setup_needs_more_than_pings(void **unused)
{
    (void)unused;
    peer p;
    char msg[256];
    retpath_msg m;
    peer_setup_timeout_ns = 10 * TIMEOUT;
    open_peer(&p);
    peer_setup_timeout_ns = 0;
    connection_open_return_path(p.conn);

    /* PINGs (progress, nothing useful) well past the setup timeout... */
    for (int i = 0; i < 9; i++) {
        peer_now_ns += TIMEOUT - MS;
        connection_progress(p.conn);
        assert_false(connection_check_silence(p.conn));
    }
    /* ... but a record more than a PING starts the deadline again. */
    connection_useful(p.conn);
    for (int i = 0; i < 10; i++) {
        peer_now_ns += TIMEOUT - MS;
        connection_progress(p.conn);
        assert_false(connection_check_silence(p.conn));
    }
    /* Time busy (creating the VM) is not the peer's. */
    connection_set_busy(p.conn, true);
    peer_now_ns += 20 * TIMEOUT;
    assert_false(connection_check_silence(p.conn));
    connection_set_busy(p.conn, false);
    for (int i = 0; i < 10; i++) {
        peer_now_ns += TIMEOUT - MS;
        connection_progress(p.conn);
        assert_false(connection_check_silence(p.conn));
    }
    peer_now_ns += 10 * MS;
    connection_progress(p.conn);
    assert_true(connection_check_silence(p.conn));
    assert_int_equal(state(&p, msg, sizeof(msg)), CONNECTION_IDLE);
    assert_non_null(strstr(msg, PEER_NAME " sent nothing but PINGs for "
                                "3000 ms before its first checkpoint"));
    /* It is told why (SHUT 1: refused), then the socket goes down. */
    assert_int_equal(peer_next(&p, &m), 1);
    assert_int_equal(m.type, RETPATH_SHUT);
    assert_int_equal(m.value32, 1);
    assert_int_equal(peer_next(&p, &m), -1);
    peer_close(&p);

    /* Once a checkpoint is applied, PINGs alone are enough. */
    peer_setup_timeout_ns = 10 * TIMEOUT;
    open_peer(&p);
    peer_setup_timeout_ns = 0;
    connection_established(p.conn);
    for (int i = 0; i < 30; i++) {
        peer_now_ns += TIMEOUT - MS;
        connection_progress(p.conn);
        assert_false(connection_check_silence(p.conn));
    }
    assert_int_equal(state(&p, NULL, 0), CONNECTION_OPEN);
    peer_close(&p);
}

/* A record read is life. */
static void test_progress_is_life(void **unused)
{
    (void)unused;
    peer p;
    open_peer(&p);

    peer_now_ns += TIMEOUT - MS;
    connection_progress(p.conn);
    peer_now_ns += TIMEOUT - MS;
    assert_false(connection_check_silence(p.conn));
    peer_now_ns += MS;
    assert_true(connection_check_silence(p.conn));
    peer_close(&p);
}

/* While the receiver thread is busy (applying), silence does not count. */
static void test_busy_is_not_silence(void **unused)
{
    (void)unused;
    peer p;
    open_peer(&p);

    peer_now_ns += TIMEOUT / 2;
    connection_set_busy(p.conn, true);
    peer_now_ns += 10 * TIMEOUT;
    assert_false(connection_check_silence(p.conn));
    assert_int_equal(state(&p, NULL, 0), CONNECTION_OPEN);
    /* Silence counts again from the end of the busy stretch. */
    connection_set_busy(p.conn, false);
    peer_now_ns += TIMEOUT - 1;
    assert_false(connection_check_silence(p.conn));
    peer_now_ns += 1;
    assert_true(connection_check_silence(p.conn));
    peer_close(&p);
}

/*
 * The receiver thread stores a progress while the loop's check reads the
 * clock: a progress later than the check's "now" must not wrap the
 * silence around to a false timeout.
 */
static peer *racing;

static uint64_t racing_clock(void)
{
    if (racing) {
        peer *p = racing;
        racing = NULL;
        /* The other thread, a moment later: the clock it reads is ahead. */
        peer_now_ns += MS;
        connection_progress(p->conn);
        peer_now_ns -= MS;
    }
    return peer_now_ns;
}

static void test_progress_during_check(void **unused)
{
    (void)unused;
    peer p;
    peer_open(&p, TIMEOUT, HEARTBEAT, racing_clock);
    peer_now_ns += TIMEOUT / 2;
    racing = &p;
    assert_false(connection_check_silence(p.conn));
    assert_null(racing);
    assert_int_equal(state(&p, NULL, 0), CONNECTION_OPEN);
    peer_close(&p);
}

/* HEARTBEAT goes out when nothing else did for the interval. */
static void test_heartbeat_when_idle(void **unused)
{
    (void)unused;
    peer p;
    retpath_msg m;
    open_peer(&p);

    /* Not before OPEN_RETURN_PATH: the primary could not read it. */
    peer_now_ns += 2 * HEARTBEAT;
    assert_int_equal(connection_heartbeat(p.conn), HEARTBEAT);
    assert_int_equal(peer_next(&p, &m), 0);

    connection_open_return_path(p.conn);
    assert_int_equal(connection_heartbeat(p.conn), HEARTBEAT);
    assert_int_equal(peer_next(&p, &m), 1);
    assert_int_equal(m.type, RETPATH_HEARTBEAT);
    assert_int_equal(m.value64, 1);
    assert_int_equal(connection_heartbeats(p.conn), 1);

    /* Not again within the interval: the timer is told when. */
    peer_now_ns += 20 * MS;
    assert_int_equal(connection_heartbeat(p.conn), HEARTBEAT - 20 * MS);
    assert_int_equal(peer_next(&p, &m), 0);

    /* An ACK is traffic: the next heartbeat is an interval after it. */
    connection_send_ack(p.conn, 7, &peer_pair);
    assert_int_equal(peer_next(&p, &m), 1);
    assert_int_equal(m.type, RETPATH_ACK);
    assert_int_equal(m.value64, 7);
    peer_now_ns += HEARTBEAT - 20 * MS;
    assert_int_equal(connection_heartbeat(p.conn), 20 * MS);
    assert_int_equal(peer_next(&p, &m), 0);
    peer_now_ns += 20 * MS;
    assert_int_equal(connection_heartbeat(p.conn), HEARTBEAT);
    assert_int_equal(peer_next(&p, &m), 1);
    assert_int_equal(m.type, RETPATH_HEARTBEAT);
    assert_int_equal(m.value64, 2);

    /* Once ended, the timer stops. */
    connection_close(p.conn, -1);
    peer_now_ns += HEARTBEAT;
    assert_int_equal(connection_heartbeat(p.conn), 0);
    assert_int_equal(peer_next(&p, &m), -1);
    assert_int_equal(connection_heartbeats(p.conn), 2);
    peer_close(&p);
}

/* What the secondary sends is no sign of life from the primary. */
static void test_heartbeats_are_not_life(void **unused)
{
    (void)unused;
    peer p;
    open_peer(&p);
    connection_open_return_path(p.conn);
    for (int i = 0; i < 5; i++) {
        peer_now_ns += HEARTBEAT;
        connection_heartbeat(p.conn);
        assert_false(connection_check_silence(p.conn));
    }
    peer_now_ns += HEARTBEAT;
    assert_true(connection_check_silence(p.conn));
    assert_int_equal(connection_heartbeats(p.conn), 5);
    peer_close(&p);
}

/* A primary that leaves the return path unread is refused. */
static void test_unread_return_path(void **unused)
{
    (void)unused;
    peer p;
    char msg[256];
    static uint8_t junk[64 * 1024];
    open_peer(&p);
    connection_open_return_path(p.conn);
    /* What the primary does not read stays in the secondary's queue. */
    int big = 1 << 20;
    setsockopt(p.secondary_fd, SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
    while (send(p.secondary_fd, junk, sizeof(junk), MSG_DONTWAIT) > 0)
        ;
    int outq = 0;
    assert_int_equal(ioctl(p.secondary_fd, SIOCOUTQ, &outq), 0);
    assert_true(outq > 256 * 1024);

    peer_now_ns += HEARTBEAT;
    assert_int_equal(connection_heartbeat(p.conn), 0);
    assert_int_equal(state(&p, msg, sizeof(msg)), CONNECTION_UNREAD);
    assert_string_equal(msg, PEER_NAME " does not read its return path");
    assert_int_equal(connection_heartbeats(p.conn), 0);
    peer_close(&p);
}

/*
 * COLO's frames fill the return path to the brim: whole messages in
 * order, then the receiver thread's answer.  Whether the kernel ever
 * takes part of a message is its choice (over TCP it can, past a few MiB
 * queued); when it does, the rest is kept and goes first.
 */
static void test_full_return_path_keeps_framing(void **unused)
{
    (void)unused;
    peer p;
    retpath_msg m;
    peer_tcp = true;            /* a socketpair never splits a message */
    open_peer(&p);
    peer_tcp = false;
    connection_open_return_path(p.conn);
    int small = 4096;
    setsockopt(p.secondary_fd, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
    uint64_t sent = 0;
    for (int tries = 0; tries < 10000; tries++) {
        m = (retpath_msg){ .type = RETPATH_COLO_FRAME, .value64 = sent,
                           .len = RETPATH_COLO_FRAME_MAX };
        memset(m.text, (int)(sent & 0xff), RETPATH_COLO_FRAME_MAX);
        int r = connection_try_send(p.conn, &m);
        assert_true(r >= 0);
        if (r == 0)
            break;
        sent++;
    }
    assert_true(sent > 0);
    /* What the primary reads: whole messages in order, never a torn one;
       the receiver thread's answer, once the primary read what it could,
       writes what a partial send left before it. */
    uint64_t got = 0;
    bool acked = false, ack_sent = false;
    for (int round = 0; round < 100000 && !acked; round++) {
        int r;
        while ((r = peer_next(&p, &m)) == 1) {
            if (m.type == RETPATH_ACK) {
                assert_int_equal(m.value64, 7);
                acked = true;
                break;
            }
            assert_int_equal(m.type, RETPATH_COLO_FRAME);
            assert_int_equal(m.value64, got);
            assert_int_equal(m.len, RETPATH_COLO_FRAME_MAX);
            assert_int_equal((uint8_t)m.text[RETPATH_COLO_FRAME_MAX - 1],
                             (uint8_t)(got & 0xff));
            got++;
        }
        assert_true(r >= 0);
        if (!ack_sent) {
            connection_send_ack(p.conn, 7, &peer_pair);     /* room now */
            ack_sent = true;
        }
    }
    assert_true(acked);
    assert_int_equal(got, sent);
    peer_close(&p);
}

/* Closing from this side: SHUT with its code, then the end. */
static void test_close_sends_shut(void **unused)
{
    (void)unused;
    peer p;
    retpath_msg m;
    open_peer(&p);
    connection_open_return_path(p.conn);
    assert_true(connection_close(p.conn, 2));
    assert_int_equal(peer_next(&p, &m), 1);
    assert_int_equal(m.type, RETPATH_SHUT);
    assert_int_equal(m.value32, 2);
    assert_int_equal(peer_next(&p, &m), -1);
    assert_int_equal(state(&p, NULL, 0), CONNECTION_CLOSED);
    assert_false(connection_close(p.conn, 0));
    assert_false(connection_check_silence(p.conn));
    peer_close(&p);

    /* Before OPEN_RETURN_PATH, and with no code, no SHUT. */
    open_peer(&p);
    assert_true(connection_close(p.conn, 1));
    assert_int_equal(peer_next(&p, &m), -1);
    peer_close(&p);
    open_peer(&p);
    connection_open_return_path(p.conn);
    assert_true(connection_close(p.conn, -1));
    assert_int_equal(peer_next(&p, &m), -1);
    peer_close(&p);
}

/* The receiver thread's answers. */
static void test_answers(void **unused)
{
    (void)unused;
    peer p;
    retpath_msg m;
    open_peer(&p);
    connection_send_nack(p.conn, 5, &peer_pair, "checkpoint 5: no trailer");
    connection_send_shut(p.conn, 1);   /* not open yet: not sent */
    connection_open_return_path(p.conn);
    connection_send_shut(p.conn, 1);
    assert_int_equal(peer_next(&p, &m), 1);
    assert_int_equal(m.type, RETPATH_NACK);
    assert_int_equal(m.value64, 5);
    assert_true(pairing_equal(&m.pair, &peer_pair));
    assert_string_equal(m.text, "checkpoint 5: no trailer");
    assert_int_equal(peer_next(&p, &m), 1);
    assert_int_equal(m.type, RETPATH_SHUT);
    assert_int_equal(m.value32, 1);
    assert_int_equal(peer_next(&p, &m), 0);
    peer_close(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_silence_times_out),
        cmocka_unit_test(test_progress_is_life),
        cmocka_unit_test(test_next_check_at_the_deadline),
        cmocka_unit_test(test_next_check_period_bounds),
        cmocka_unit_test(test_setup_needs_more_than_pings),
        cmocka_unit_test(test_busy_is_not_silence),
        cmocka_unit_test(test_progress_during_check),
        cmocka_unit_test(test_heartbeat_when_idle),
        cmocka_unit_test(test_heartbeats_are_not_life),
        cmocka_unit_test(test_unread_return_path),
        cmocka_unit_test(test_close_sends_shut),
        cmocka_unit_test(test_answers),
        cmocka_unit_test(test_full_return_path_keeps_framing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
