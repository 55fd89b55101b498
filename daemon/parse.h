/*
 * parse: the values every command line and control command shares, read
 * one way everywhere.  Each function returns 0 or -EINVAL (-ERANGE where
 * said) and leaves *out alone on failure; the message for a person is the
 * caller's, which knows the option.
 */
#ifndef FTVM_DAEMON_PARSE_H
#define FTVM_DAEMON_PARSE_H

#include <stddef.h>
#include <stdint.h>

/*
 * A time: "500ms", "5s", "2m" (or "2min"), "1h", or a bare number of
 * seconds; fractions allowed ("1.5s").  From 1 ms up; -ERANGE outside.
 */
int parse_duration(const char *s, uint64_t *ns);

/*
 * A size in bytes: "1048576", or a number with K, M or G (powers of
 * 1024), optionally followed by "i", "B" or "iB": "64K", "256M", "4GiB".
 */
int parse_size(const char *s, uint64_t *bytes);

/* A whole decimal number from min to max; -ERANGE outside. */
int parse_count(const char *s, long min, long max, long *out);

/*
 * "HOST:PORT", "[IPV6]:PORT", or ":PORT" (an empty host, for "every
 * address" where the caller allows it).  host gets the address without
 * brackets; port is 0..65535 (whether 0 is allowed is the caller's).  An
 * IPv6 address without brackets is refused: its colons are ambiguous.
 */
int parse_hostport(const char *s, char *host, size_t hostlen,
                   uint16_t *port);

#endif
