/* One outgoing SMTP connection to one smarthost port, on the event loop.
 *
 * Resolves the host (evdns), connects, does implicit TLS or STARTTLS
 * (libevent OpenSSL bufferevents, certificate and hostname verified, optional
 * SPKI pin), and drives the transport-free smtp_client state machine through
 * greeting, EHLO and AUTH.  Then it carries message transactions for the
 * relay (connection reuse with RSET) and for `smtprelay probe`.
 * Every failure is classified with a verdict word (README "The admin tool
 * and probe") and a reason a person can act on, naming host and port.
 */
#ifndef SMTPRELAY_CONN_H
#define SMTPRELAY_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include <event2/dns.h>
#include <event2/event.h>
#include <openssl/ssl.h>

#include "conf/conf.h"
#include "smtp/client.h"

enum conn_verdict {
	CONN_OK,
	CONN_REFUSED,
	CONN_TIMEOUT,
	CONN_DNS,
	CONN_UNREACHABLE,
	CONN_TLS_MODE_MISMATCH,
	CONN_STARTTLS_MISSING,
	CONN_CERT_UNTRUSTED,
	CONN_CERT_HOSTNAME,
	CONN_CERT_EXPIRED,
	CONN_TLS_VERSION,
	CONN_AUTH_FAILED,
	CONN_AUTH_UNSUPPORTED,
	CONN_TOKEN_FAILED,
	CONN_TLS_FAILED,	/* other handshake failure (incl. pin mismatch) */
	CONN_PROTOCOL,		/* greeting refused, garbage, unexpected replies */
	CONN_TEMP,		/* 421 and other temporary refusals of the session */
	CONN_LOST,		/* connection dropped after the session was up */
};

/* The probe verdict word: "ok", "refused", "timeout", "dns", ... */
const char *conn_verdict_name(enum conn_verdict v);
/* Whether the relay should try the next port (connection-level failure) */
bool conn_verdict_next_port(enum conn_verdict v);

struct conn_tls_info {
	bool active;
	char version[16];		/* "TLSv1.3" */
	char cipher[64];
	int bits, alg_bits;		/* the cipher's secret bits, as Postfix logs them */
	char subject[256];
	char issuer[256];
	time_t not_after;
	bool verified;			/* chain (and hostname) verified */
	char verify_error[160];		/* OpenSSL's text when not verified */
	bool pin_checked;
	bool pin_ok;
};

struct conn;

struct conn_events {
	/* Session established (greeting, EHLO, TLS, AUTH done) and idle. */
	void (*ready)(struct conn *c, void *arg);
	/* A transaction started with conn_send finished: results are in
	 * smtp_client_rcpt_result / smtp_client_msg_result of conn_client(c). */
	void (*msg_done)(struct conn *c, void *arg);
	/* The connection is over: after conn_quit (CONN_OK) or a failure.  The
	 * conn is freed right after this returns. */
	void (*closed)(struct conn *c, enum conn_verdict v, const char *reason, void *arg);
};

struct conn_params {
	const struct conf_smarthost *sh;
	size_t port_index;		/* into sh->ports */
	const char *helo_name;
	const char *secret;		/* password or access token; NULL: no AUTH */
	SSL_CTX *ssl_ctx;		/* from tls_client_ctx() for this smarthost */
};

struct conn *conn_new(struct event_base *base, struct evdns_base *dns, const struct conn_params *p,
    const struct conn_events *ev, void *arg);
/* Start a transaction; only after ready() (or from inside it).  The content
 * (CRLF lines, not dot-stuffed) is read from content_fd (positioned at the
 * content) in 64 KiB chunks as the socket drains; on success the conn owns
 * and closes it.  -1 with errno (EINVAL: not ready, bad envelope; ENOMEM)
 * leaves content_fd to the caller.  msg_done() or closed() follows. */
int conn_send(struct conn *c, const struct smtp_client_msg *m, int content_fd);
/* The same with prefix (at most 64 KiB, copied) sent before the content:
 * the DKIM-Signature fields.  m->size must include it. */
int conn_send_prefixed(struct conn *c, const struct smtp_client_msg *m, const char *prefix,
    size_t plen, int content_fd);
/* After msg_done: RSET and back to ready (ready() is called again). */
void conn_reset(struct conn *c);
/* Polite end: QUIT, then closed(CONN_OK). */
void conn_quit(struct conn *c);
/* Immediate end without callbacks (shutdown, reload): frees c. */
void conn_abort(struct conn *c);

const struct smtp_client *conn_client(const struct conn *c);
/* "smtp.example.com[192.0.2.1]:587" (the address once connected). */
const char *conn_peer(const struct conn *c);
const char *conn_host(const struct conn *c);
const struct conf_port *conn_port(const struct conn *c);
const struct conn_tls_info *conn_tls(const struct conn *c);
/* Milliseconds from conn_new to ready (or to now). */
long conn_elapsed_ms(const struct conn *c);
/* Milliseconds from conn_new until TCP connected (DNS included), -1 when
 * the connection never got that far. */
long conn_connect_ms(const struct conn *c);

#endif
