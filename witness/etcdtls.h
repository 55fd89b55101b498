/*
 * etcdtls: TLS to the witness's etcd endpoints (https://), for
 * witness/etcd.c.
 *
 * Credentials come from a directory laid out as ftvm's --tls-creds
 * (docs/tls.md): ca.pem, the CA that signed the etcd members' server
 * certificates (required), and cert.pem + key.pem, this node's client
 * certificate, for clusters run with --client-cert-auth (both or
 * neither).  Every connection verifies the member's certificate against
 * ca.pem and checks that it names the endpoint's host (subjectAltName DNS
 * name, or IP address for an address), sending the name as SNI.  TLS 1.2
 * or 1.3, as etcd 3.4 speaks both.
 *
 * Connections are libevent OpenSSL bufferevents handed to evhttp, so the
 * handshake runs on the owner's loop like the rest of a request and never
 * blocks it.
 */
#ifndef FTVM_WITNESS_ETCDTLS_H
#define FTVM_WITNESS_ETCDTLS_H

#include <stddef.h>

struct bufferevent;
struct event_base;

typedef struct etcdtls etcdtls;

/*
 * Loads the credentials in dir.  0, or -errno with a message naming the
 * file at fault.
 */
int etcdtls_new(etcdtls **out, const char *dir, char *err, size_t errlen);
void etcdtls_free(etcdtls *t);

/*
 * A connecting TLS bufferevent (no socket yet: evhttp connects it) that
 * verifies the member as host.  NULL: no memory.
 */
struct bufferevent *etcdtls_bufferevent(etcdtls *t, struct event_base *base,
                                        const char *host);

/*
 * Why TLS on bev failed, if TLS knows: the verification's reason, or
 * OpenSSL's error (an alert the member sent, a protocol error).  Writes
 * "" when TLS has nothing to say (the failure was elsewhere).
 */
void etcdtls_describe(struct bufferevent *bev, char *buf, size_t len);

#endif
