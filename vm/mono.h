/*
 * mono: the host's monotonic clock, the one every timing in ftvm uses
 * (pauses, heartbeats, failure timeouts, checkpoint schedules), and its
 * conversion to the timeval libevent timers take.
 */
#ifndef FTVM_VM_MONO_H
#define FTVM_VM_MONO_H

#include <stdint.h>
#include <sys/time.h>

/* CLOCK_MONOTONIC in nanoseconds. */
uint64_t mono_ns(void);
/* A duration in nanoseconds as a timeval (microsecond resolution). */
struct timeval mono_tv(uint64_t ns);

#endif
