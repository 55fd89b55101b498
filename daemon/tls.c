/* tls: see tls.h. */
#include "daemon/tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon/parse.h"
#include "vm/mono.h"

/* A handshake in progress looks at the stop flag this often. */
#define SLICE_MS 50

struct tls_ctx {
    SSL_CTX *ctx;
    tls_role role;
    char peer[256];         /* --tls-peer, or "" */
};

struct tls_session {
    SSL *ssl;
};

int tls_opts_check(const tls_opts *o, char *err, size_t errlen)
{
    if (o->creds && o->insecure) {
        snprintf(err, errlen, "--tls-creds and --insecure exclude each "
                 "other");
        return -EINVAL;
    }
    if (!o->creds && !o->insecure) {
        snprintf(err, errlen, "replication needs --tls-creds DIR (ca.pem, "
                 "cert.pem, key.pem; see scripts/make-certs.sh), or "
                 "--insecure for plaintext on loopback addresses only");
        return -EINVAL;
    }
    if (o->peer && !o->creds) {
        snprintf(err, errlen, "--tls-peer needs --tls-creds");
        return -EINVAL;
    }
    return 0;
}

void tls_last_error(char *out, size_t outlen)
{
    unsigned long e = ERR_peek_last_error();
    const char *r = e ? ERR_reason_error_string(e) : NULL;
    snprintf(out, outlen, "%s", r ? r : "unknown TLS error");
    ERR_clear_error();
}

static bool readable(const char *path, char *err, size_t errlen)
{
    if (access(path, R_OK) == 0)
        return true;
    snprintf(err, errlen, "%s: %s", path, strerror(errno));
    return false;
}

int tls_ctx_new(tls_ctx **out, tls_role role, const tls_opts *o, char *err,
                size_t errlen)
{
    char ca[4096], cert[4096], key[4096], why[256];
    snprintf(ca, sizeof(ca), "%s/ca.pem", o->creds);
    snprintf(cert, sizeof(cert), "%s/cert.pem", o->creds);
    snprintf(key, sizeof(key), "%s/key.pem", o->creds);
    if (!readable(ca, err, errlen) || !readable(cert, err, errlen) ||
        !readable(key, err, errlen))
        return -ENOENT;
    tls_ctx *c = calloc(1, sizeof(*c));
    if (!c) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    c->role = role;
    snprintf(c->peer, sizeof(c->peer), "%s", o->peer ? o->peer : "");
    c->ctx = SSL_CTX_new(role == TLS_CLIENT ? TLS_client_method()
                                            : TLS_server_method());
    const char *bad = NULL;
    if (!c->ctx)
        bad = "creating the TLS context";
    else if (!SSL_CTX_set_min_proto_version(c->ctx, TLS1_3_VERSION) ||
             !SSL_CTX_set_max_proto_version(c->ctx, TLS1_3_VERSION))
        bad = "TLS 1.3";
    else if (SSL_CTX_load_verify_locations(c->ctx, ca, NULL) != 1)
        bad = ca;
    else if (SSL_CTX_use_certificate_chain_file(c->ctx, cert) != 1)
        bad = cert;
    else if (SSL_CTX_use_PrivateKey_file(c->ctx, key, SSL_FILETYPE_PEM) != 1)
        bad = key;
    else if (SSL_CTX_check_private_key(c->ctx) != 1)
        bad = "key.pem does not belong to cert.pem";
    if (bad) {
        tls_last_error(why, sizeof(why));
        snprintf(err, errlen, "TLS credentials: %s: %s", bad, why);
        tls_ctx_free(c);
        return -EINVAL;
    }
    SSL_CTX_set_verify(c->ctx, SSL_VERIFY_PEER |
                       (role == TLS_SERVER ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT
                                           : 0), NULL);
    /* AES-128-GCM first: the fastest with AES-NI, and 128 bits suffice. */
    SSL_CTX_set_ciphersuites(c->ctx, "TLS_AES_128_GCM_SHA256:"
                             "TLS_AES_256_GCM_SHA384:"
                             "TLS_CHACHA20_POLY1305_SHA256");
    /* Nothing is ever resumed: no tickets to issue or keep. */
    SSL_CTX_set_num_tickets(c->ctx, 0);
    SSL_CTX_set_session_cache_mode(c->ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_mode(c->ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
                     SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    /* Whole records (and more) per read(2), not header then body. */
    SSL_CTX_set_read_ahead(c->ctx, 1);
    SSL_CTX_set_default_read_buffer_len(c->ctx, 256 * 1024);
    /* The kernel's record layer where it has one (see docs/tls.md). */
    SSL_CTX_set_options(c->ctx, SSL_OP_ENABLE_KTLS);
    *out = c;
    return 0;
}

void tls_ctx_free(tls_ctx *c)
{
    if (!c)
        return;
    SSL_CTX_free(c->ctx);
    free(c);
}

void tls_session_free(tls_session *s)
{
    if (!s)
        return;
    SSL_free(s->ssl);
    free(s);
}

void *tls_session_ssl(tls_session *s)
{
    return s->ssl;
}

void tls_session_describe(tls_session *s, char *out, size_t outlen)
{
    BIO *w = SSL_get_wbio(s->ssl), *r = SSL_get_rbio(s->ssl);
    snprintf(out, outlen, "%s %s, kernel TLS %s", SSL_get_version(s->ssl),
             SSL_get_cipher_name(s->ssl),
             BIO_get_ktls_send(w) && BIO_get_ktls_recv(r) ? "on"
             : BIO_get_ktls_send(w) ? "on for sending" : "off");
}

/* Pins the name the peer's certificate must carry: DNS name or IP. */
static int set_peer_name(SSL *ssl, const char *name)
{
    X509_VERIFY_PARAM *vp = SSL_get0_param(ssl);
    unsigned char ip[16];
    if (inet_pton(AF_INET, name, ip) == 1 || inet_pton(AF_INET6, name, ip))
        return X509_VERIFY_PARAM_set1_ip_asc(vp, name) == 1 ? 0 : -EINVAL;
    X509_VERIFY_PARAM_set_hostflags(vp, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    return SSL_set1_host(ssl, name) == 1 ? 0 : -EINVAL;
}

/* Why the handshake failed, in the operator's words. */
static void why_failed(SSL *ssl, int ret, const char *pinned, char *out,
                       size_t outlen)
{
    int se = SSL_get_error(ssl, ret);
    long v = SSL_get_verify_result(ssl);
    unsigned long e = ERR_peek_last_error();
    int reason = ERR_GET_REASON(e);
    if (v != X509_V_OK) {
        const char *hint = "";
        if (v == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY ||
            v == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT ||
            v == X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN ||
            v == X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT)
            hint = " (not signed by our CA)";
        else if (v == X509_V_ERR_HOSTNAME_MISMATCH ||
                 v == X509_V_ERR_IP_ADDRESS_MISMATCH)
            hint = " (it is not the expected peer)";
        snprintf(out, outlen, "the peer's certificate is refused: %s%s%s%s",
                 X509_verify_cert_error_string(v), hint,
                 *pinned ? "; expected peer " : "", pinned);
    } else if (e && ERR_GET_LIB(e) == ERR_LIB_SSL &&
               reason >= SSL_AD_REASON_OFFSET) {
        snprintf(out, outlen, "the peer refused the handshake: %s",
                 SSL_alert_desc_string_long(reason - SSL_AD_REASON_OFFSET));
    } else if (e && ERR_GET_LIB(e) == ERR_LIB_SSL &&
               reason == SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE) {
        snprintf(out, outlen, "the peer presented no certificate");
    } else if (e && ERR_GET_LIB(e) == ERR_LIB_SSL &&
               (reason == SSL_R_WRONG_VERSION_NUMBER ||
                reason == SSL_R_HTTP_REQUEST ||
                reason == SSL_R_PACKET_LENGTH_TOO_LONG)) {
        snprintf(out, outlen, "the peer does not speak TLS (plaintext?)");
    } else if (se == SSL_ERROR_SYSCALL || se == SSL_ERROR_ZERO_RETURN ||
               (e && ERR_GET_REASON(e) ==
                         SSL_R_UNEXPECTED_EOF_WHILE_READING)) {
        snprintf(out, outlen, "the peer closed the connection%s%s",
                 SSL_is_init_finished(ssl) ? "" : " during the handshake",
                 se == SSL_ERROR_SYSCALL && errno ? ": " : "");
        if (se == SSL_ERROR_SYSCALL && errno)
            snprintf(out + strlen(out), outlen - strlen(out), "%s",
                     strerror(errno));
    } else {
        tls_last_error(out, outlen);
    }
    ERR_clear_error();
}

void tls_session_why(tls_session *s, int ret, char *out, size_t outlen)
{
    why_failed(s->ssl, ret, "", out, outlen);
}

static bool stopped(const bool *stop, pthread_mutex_t *lock)
{
    if (!stop)
        return false;
    pthread_mutex_lock(lock);
    bool s = *stop;
    pthread_mutex_unlock(lock);
    return s;
}

int tls_handshake(tls_ctx *c, int fd, const char *who, const char *peer_name,
                  uint64_t deadline_ns, const bool *stop,
                  pthread_mutex_t *lock, tls_session **out, char *err,
                  size_t errlen)
{
    const char *pin = *c->peer ? c->peer : peer_name ? peer_name : "";
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) {
        snprintf(err, errlen, "%s: %s", who, strerror(errno));
        return -errno;
    }
    ERR_clear_error();
    tls_session *s = calloc(1, sizeof(*s));
    if (!s || !(s->ssl = SSL_new(c->ctx)) || SSL_set_fd(s->ssl, fd) != 1 ||
        (*pin && set_peer_name(s->ssl, pin) < 0)) {
        snprintf(err, errlen, "%s: cannot set TLS up%s%s", who,
                 *pin ? " for peer name " : "", pin);
        tls_session_free(s);
        return -ENOMEM;
    }
    if (c->role == TLS_CLIENT)
        SSL_set_connect_state(s->ssl);
    else
        SSL_set_accept_state(s->ssl);
    for (;;) {
        errno = 0;
        int r = SSL_do_handshake(s->ssl);
        if (r == 1)
            break;
        int se = SSL_get_error(s->ssl, r);
        short ev = se == SSL_ERROR_WANT_READ ? POLLIN
                 : se == SSL_ERROR_WANT_WRITE ? POLLOUT : 0;
        if (!ev) {
            char why[400];
            why_failed(s->ssl, r, pin, why, sizeof(why));
            snprintf(err, errlen, "TLS handshake with %s failed: %s", who,
                     why);
            tls_session_free(s);
            return -EPROTO;
        }
        uint64_t now = mono_ns();
        if (now >= deadline_ns || stopped(stop, lock)) {
            snprintf(err, errlen, "%s: %s", who, now >= deadline_ns
                     ? "no TLS handshake within the deadline"
                     : "cancelled during the TLS handshake");
            tls_session_free(s);
            return now >= deadline_ns ? -ETIMEDOUT : -ECANCELED;
        }
        uint64_t left = (deadline_ns - now) / 1000000u + 1;
        struct pollfd p = { .fd = fd, .events = ev };
        if (poll(&p, 1, left < SLICE_MS ? (int)left : SLICE_MS) < 0 &&
            errno != EINTR) {
            snprintf(err, errlen, "%s: %s", who, strerror(errno));
            tls_session_free(s);
            return -EIO;
        }
    }
    *out = s;
    return 0;
}

/* ---- loopback ---- */

bool tls_loopback_peer(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const void *)sa;
        return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
    }
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const void *)sa;
        if (IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr))
            return true;
        return IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr) &&
               in6->sin6_addr.s6_addr[12] == 127;
    }
    return false;
}

bool tls_loopback_host(const char *host)
{
    if (!*host)
        return false;
    struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *res;
    if (getaddrinfo(host, NULL, &hints, &res) != 0)
        return false;
    bool all = res != NULL;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next)
        all = all && tls_loopback_peer(ai->ai_addr);
    freeaddrinfo(res);
    return all;
}

bool tls_loopback_addr(const char *hostport)
{
    char host[256];
    uint16_t port;
    return parse_hostport(hostport, host, sizeof(host), &port) == 0 &&
           tls_loopback_host(host);
}
