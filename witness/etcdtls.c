/* etcdtls: see etcdtls.h. */
#include "witness/etcdtls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct etcdtls {
    SSL_CTX *ctx;
};

/* OpenSSL's last error for file, as text. */
static int fail(char *err, size_t errlen, const char *what, const char *path)
{
    char e[256] = "";
    unsigned long code = ERR_peek_last_error();
    if (code)
        ERR_error_string_n(code, e, sizeof(e));
    ERR_clear_error();
    snprintf(err, errlen, "--witness-tls: %s %s%s%s", what, path,
             *e ? ": " : "", e);
    return -EINVAL;
}

int etcdtls_new(etcdtls **out, const char *dir, char *err, size_t errlen)
{
    char ca[4096], cert[4096], key[4096];
    if (snprintf(ca, sizeof(ca), "%s/ca.pem", dir) >= (int)sizeof(ca) ||
        snprintf(cert, sizeof(cert), "%s/cert.pem", dir) >=
            (int)sizeof(cert) ||
        snprintf(key, sizeof(key), "%s/key.pem", dir) >= (int)sizeof(key)) {
        snprintf(err, errlen, "--witness-tls: directory name too long");
        return -ENAMETOOLONG;
    }
    if (access(ca, R_OK) < 0) {
        int e = errno;
        snprintf(err, errlen, "--witness-tls: %s: %s (the CA of the etcd "
                 "members' certificates)", ca, strerror(e));
        return -e;
    }
    bool have_cert = access(cert, F_OK) == 0, have_key = access(key, F_OK) == 0;
    if (have_cert != have_key) {
        snprintf(err, errlen, "--witness-tls: %s without %s: give both (a "
                 "client certificate) or neither", have_cert ? cert : key,
                 have_cert ? key : cert);
        return -EINVAL;
    }
    etcdtls *t = calloc(1, sizeof(*t));
    if (!t || !(t->ctx = SSL_CTX_new(TLS_client_method()))) {
        free(t);
        snprintf(err, errlen, "--witness-tls: out of memory");
        return -ENOMEM;
    }
    int rc = 0;
    SSL_CTX_set_min_proto_version(t->ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(t->ctx, SSL_VERIFY_PEER, NULL);
    if (SSL_CTX_load_verify_locations(t->ctx, ca, NULL) != 1)
        rc = fail(err, errlen, "cannot load the CA", ca);
    else if (have_cert &&
             SSL_CTX_use_certificate_chain_file(t->ctx, cert) != 1)
        rc = fail(err, errlen, "cannot load the certificate", cert);
    else if (have_cert &&
             SSL_CTX_use_PrivateKey_file(t->ctx, key, SSL_FILETYPE_PEM) != 1)
        rc = fail(err, errlen, "cannot load the key", key);
    else if (have_cert && SSL_CTX_check_private_key(t->ctx) != 1)
        rc = fail(err, errlen, "the key does not match the certificate",
                  cert);
    if (rc < 0) {
        etcdtls_free(t);
        return rc;
    }
    *out = t;
    return 0;
}

void etcdtls_free(etcdtls *t)
{
    if (!t)
        return;
    SSL_CTX_free(t->ctx);
    free(t);
}

static bool is_address(const char *host)
{
    unsigned char a[16];
    return inet_pton(AF_INET, host, a) == 1 ||
           inet_pton(AF_INET6, host, a) == 1;
}

struct bufferevent *etcdtls_bufferevent(etcdtls *t, struct event_base *base,
                                        const char *host)
{
    SSL *ssl = SSL_new(t->ctx);
    if (!ssl)
        return NULL;
    bool ok;
    if (is_address(host)) {
        ok = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host) == 1;
    } else {
        ok = SSL_set1_host(ssl, host) == 1 &&
             SSL_set_tlsext_host_name(ssl, host) == 1;
    }
    if (!ok) {
        SSL_free(ssl);
        ERR_clear_error();
        return NULL;
    }
    /* The bufferevent owns ssl from here, also on failure. */
    struct bufferevent *bev = bufferevent_openssl_socket_new(
        base, -1, ssl, BUFFEREVENT_SSL_CONNECTING,
        BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
    /*
     * Each request closes its connection (Connection: close); an end
     * without close_notify then is still the end of the answer, which
     * HTTP's own framing has already checked.
     */
    if (bev)
        bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    return bev;
}

void etcdtls_describe(struct bufferevent *bev, char *buf, size_t len)
{
    buf[0] = '\0';
    SSL *ssl = bev ? bufferevent_openssl_get_ssl(bev) : NULL;
    if (!ssl)
        return;
    long vr = SSL_get_verify_result(ssl);
    unsigned long code = bufferevent_get_openssl_error(bev);
    if (vr != X509_V_OK) {
        snprintf(buf, len, "TLS: the member's certificate: %s",
                 X509_verify_cert_error_string(vr));
    } else if (code) {
        char e[256];
        ERR_error_string_n(code, e, sizeof(e));
        snprintf(buf, len, "TLS: %s", e);
    }
    while (bufferevent_get_openssl_error(bev))
        ;
}
