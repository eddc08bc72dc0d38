/* TLS client contexts and peer checks for smarthost connections (OpenSSL 3). */
#ifndef SMTPRELAY_TLS_H
#define SMTPRELAY_TLS_H

#include <stdbool.h>
#include <stddef.h>

#include <openssl/ssl.h>

#include "conf/conf.h"
#include "relay/conn.h"

/* Context for one smarthost: system CA store plus tls_ca_file, minimum
 * version, peer verification per tls_verify.  NULL with err on failure
 * (names the CA file and OpenSSL's reason). */
SSL_CTX *tls_client_ctx(const struct conf_smarthost *sh, char *err, size_t errlen);
/* New SSL for a connection to host: SNI, hostname (or IP) verification. */
SSL *tls_new_ssl(SSL_CTX *ctx, const struct conf_smarthost *sh);
/* After the handshake: verification result and the tls_fingerprint pin.
 * Fills info; returns CONN_OK or the verdict with a reason. */
enum conn_verdict tls_check_peer(SSL *ssl, const struct conf_smarthost *sh,
    struct conn_tls_info *info, char *reason, size_t len);
/* Classify a failed handshake: err is the OpenSSL error that ended it (0
 * when the peer just closed), plus the verify result kept in ssl.  implicit:
 * the handshake was implicit TLS (a plaintext answer is then a mode
 * mismatch). */
enum conn_verdict tls_classify_failure(SSL *ssl, unsigned long err, const char *host,
    unsigned port, bool implicit, char *reason, size_t len);

#endif
