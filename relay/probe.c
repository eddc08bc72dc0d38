#include "config.h"
#include "relay/probe.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/dns.h>
#include <event2/event.h>

#include "relay/conn.h"
#include "relay/cred.h"
#include "relay/oauth2.h"
#include "relay/replyclass.h"
#include "relay/secret.h"
#include "relay/tls.h"
#include "lib/log.h"
#include "smtp/client.h"

/* The implicit TLS retry after a silent STARTTLS or plain port is quick:
 * a TLS server answers a hello at once. */
#define PROBE_RETRY_TIMEOUT 5

struct probe {
	const struct config *conf;
	struct event_base *base;
	struct evdns_base *dns;
	SSL_CTX *ctx;			/* the current smarthost's; NULL: ctx_err */
	char ctx_err[512];
	struct probe_result *r;		/* the port being probed */
	struct conn *conn;
	struct cred_req *cred;		/* password_command or OAuth2 token on its way */
	struct oauth2 *oauth2;		/* tokens for oauth2_token_url, cached per smarthost */
	struct timespec t0;
	/* The implicit TLS retry's view of the smarthost: one port, /tls. */
	bool retrying;
	bool retry_tls;			/* the retry's TLS handshake succeeded */
	bool mail_tried;		/* the MAIL FROM test without AUTH ran */
	struct conf_smarthost alt;
	struct conf_port alt_port;
};

/* ---- small helpers ---- */

static long probe_ms_since(const struct timespec *t0)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (long)(now.tv_sec - t0->tv_sec) * 1000 + (now.tv_nsec - t0->tv_nsec) / 1000000;
}

const char *probe_mode_name(enum conf_tls_mode m)
{
	switch (m) {
	case CONF_TLS_IMPLICIT: return "tls";
	case CONF_TLS_NONE: return "none";
	default: return "starttls";
	}
}

const struct conf_port *probe_port(const struct probe_result *r)
{
	return &r->sh->ports[r->index];
}

static void probe_note(struct probe_result *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void probe_note(struct probe_result *r, const char *fmt, ...)
{
	va_list ap;

	if (r->nnotes >= PROBE_NOTES_MAX)
		return;
	va_start(ap, fmt);
	vsnprintf(r->notes[r->nnotes++], PROBE_TEXT_MAX, fmt, ap);
	va_end(ap);
}

static void probe_set(struct probe_result *r, const char *verdict, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void probe_set(struct probe_result *r, const char *verdict, const char *fmt, ...)
{
	va_list ap;

	r->verdict = verdict;
	va_start(ap, fmt);
	vsnprintf(r->summary, sizeof(r->summary), fmt, ap);
	va_end(ap);
}

/* The port is decided: back to probe_one. */
static void probe_finish(struct probe *p)
{
	p->r->done = true;
	p->r->elapsed_ms = probe_ms_since(&p->t0);
	event_base_loopbreak(p->base);
}

static void probe_fmt_time(time_t t, char *dst, size_t len)
{
	struct tm tm;

	if (!t || !gmtime_r(&t, &tm) || strftime(dst, len, "%Y-%m-%d %H:%M:%S UTC", &tm) == 0)
		snprintf(dst, len, "an unknown date");
}

/* ---- what a connection showed ---- */

static bool probe_starttls_offered(const struct smtp_client *cl, const struct conn_tls_info *t)
{
	/* STARTTLS clears the EHLO extensions (RFC 3207): a session that got
	 * to the handshake had it offered. */
	return t->active || smtp_client_ehlo(cl)->starttls
	    || smtp_client_stage(cl) == SMTP_CLIENT_STAGE_TLS;
}

static void probe_note_cert(struct probe_result *r, const struct conn_tls_info *t)
{
	char when[40];
	const char *host = r->sh->host;

	probe_fmt_time(t->not_after, when, sizeof(when));
	if (t->verified)
		probe_note(r, "certificate: subject %s, issuer %s, expires %s; chain verified, "
		    "host name matches %s%s", t->subject, t->issuer, when, host,
		    t->pin_checked && t->pin_ok ? "; tls_fingerprint matches" : "");
	else
		probe_note(r, "certificate: subject %s, issuer %s, expires %s; not verified "
		    "(tls_verify = false%s%s)%s", t->subject, t->issuer, when,
		    t->verify_error[0] ? ": " : "", t->verify_error,
		    t->pin_checked && t->pin_ok ? "; tls_fingerprint matches" : "");
}

static void probe_note_tls(struct probe_result *r, const struct conn_tls_info *t)
{
	if (!t->active)
		return;
	r->tls = true;
	snprintf(r->tls_version, sizeof(r->tls_version), "%s", t->version);
	snprintf(r->cipher, sizeof(r->cipher), "%s", t->cipher);
	probe_note(r, "TLS: %s, cipher %s", t->version, t->cipher);
	if (t->subject[0] || t->issuer[0])
		probe_note_cert(r, t);
}

static void probe_note_ehlo(struct probe_result *r, const struct smtp_client *cl,
    const struct conn_tls_info *t)
{
	const struct smtp_client_ehlo *e = smtp_client_ehlo(cl);
	enum conf_tls_mode mode = probe_port(r)->mode;

	if (mode == CONF_TLS_STARTTLS && smtp_client_stage(cl) != SMTP_CLIENT_STAGE_GREETING)
		probe_note(r, "STARTTLS: %s", probe_starttls_offered(cl, t) ? "offered" : "not offered");
	else if (mode == CONF_TLS_NONE && e->starttls)
		probe_note(r, "STARTTLS: offered (not used: this is a /none port)");
	if (!e->raw[0])
		return;
	probe_note(r, "EHLO%s: %s", mode == CONF_TLS_STARTTLS && t->active ? " after TLS" : "", e->raw);
	/* Mechanisms offered in plaintext on a STARTTLS port are not the ones
	 * that count: credentials only go over TLS. */
	if (t->active || mode == CONF_TLS_NONE)
		snprintf(r->auth, sizeof(r->auth), "%s", e->auth_raw);
}

/* Everything the connection learnt, once (ready, or closed on a failure). */
static void probe_collect(struct probe_result *r, const struct conn *c)
{
	const struct smtp_client *cl = conn_client(c);
	const struct conn_tls_info *t = conn_tls(c);
	long ms = conn_connect_ms(c);

	if (r->collected)
		return;
	r->collected = true;
	if (ms >= 0)
		probe_note(r, "connected to %s in %ld ms", conn_peer(c), ms);
	if (smtp_client_greeting(cl)[0])
		probe_note(r, "banner: %s", smtp_client_greeting(cl));
	probe_note_tls(r, t);
	probe_note_ehlo(r, cl, t);
}

static void probe_note_auth(struct probe_result *r, const struct smtp_client *cl)
{
	unsigned used = smtp_client_auth_used(cl);
	const struct conf_port *port = probe_port(r);

	if (port->mode == CONF_TLS_NONE) {
		probe_note(r, "AUTH: not used on a /none port");
		return;
	}
	if (used) {
		probe_note(r, "AUTH: offered %s; AUTH %s as %s accepted", r->auth[0] ? r->auth : "(none)",
		    smtp_client_mech_name(used), r->sh->username);
		return;
	}
	probe_note(r, "AUTH: offered %s; not tried (no username configured)",
	    r->auth[0] ? r->auth : "(none)");
}

/* ---- verdicts ---- */

/* conn has a few verdicts of its own (tls-failed, protocol-error,
 * temporary-failure, lost); probe speaks only the verdict words the README
 * lists ("The admin tool and probe"), so those are named by the stage that
 * failed. */
static const char *probe_word(enum conn_verdict v, const struct conn *c)
{
	const struct smtp_client *cl = conn_client(c);
	const char *why;

	/* The probe verdict words (README) are conn's first verdicts, up to token-failed. */
	if (v <= CONN_TOKEN_FAILED)
		return conn_verdict_name(v);
	if (v == CONN_TLS_FAILED)
		/* After a completed handshake: the pin or no certificate. */
		return conn_tls(c)->active ? "cert-untrusted" : "tls-version";
	switch (smtp_client_error(cl, &why)) {
	case SMTP_CLIENT_E_GREETING:
	case SMTP_CLIENT_E_REJECTED:
	case SMTP_CLIENT_E_EOF:
		return "refused";
	case SMTP_CLIENT_E_TEMP:
		return smtp_client_stage(cl) == SMTP_CLIENT_STAGE_AUTH ? "auth-failed" : "refused";
	case SMTP_CLIENT_E_STARTTLS_REFUSED:
		return "starttls-missing";
	case SMTP_CLIENT_E_TIMEOUT:
		return "timeout";
	default:
		return "unreachable";
	}
}

/* A hint, unless the reason already says it (marker). */
struct probe_hint {
	const char *verdict;
	const char *marker;
	const char *hint;
};

static const struct probe_hint probe_hints[] = {
	{ "cert-untrusted", "tls_fingerprint", "update tls_fingerprint if the server's key changed" },
	{ "cert-untrusted", "tls_ca_file", "set tls_ca_file or fix the server's chain" },
	{ "cert-hostname", "host = ", "set host = to a name the certificate is for" },
	{ "cert-expired", "renew", "the server must renew its certificate, or this host's clock "
	    "is wrong" },
	{ "tls-version", "tls_min_version", "check tls_min_version and the server's TLS settings" },
	{ "starttls-missing", "PORT/tls", "use PORT/tls if this port speaks implicit TLS, or "
	    "another port" },
	{ "auth-failed", "check the username", "check username/password" },
	{ "auth-unsupported", "auth = ", "compare auth = {...} with the mechanisms the server "
	    "offers" },
	{ "token-failed", "password_command", "check password_command" },
	{ "dns", "resolv.conf", "check the host name and /etc/resolv.conf" },
};

static const char *probe_hint_conn(const char *word, unsigned port, bool connected,
    const char *reason)
{
	if (strcmp(word, "refused") == 0)
		return connected ? NULL : "nothing listens there or a firewall rejects the connection";
	if (strcmp(word, "timeout") == 0) {
		if (port == 25 && !strstr(reason, "port 25"))
			return "outbound port 25 is often blocked by cloud providers";
		return connected ? NULL : "a firewall may be dropping the packets";
	}
	if (strcmp(word, "unreachable") == 0)
		return connected ? "this does not look like an SMTP server"
		    : "check the network, routes and firewall";
	return NULL;
}

static const char *probe_hint(const char *word, unsigned port, bool connected, const char *reason)
{
	for (size_t i = 0; i < sizeof(probe_hints) / sizeof(probe_hints[0]); i++) {
		const struct probe_hint *h = &probe_hints[i];

		if (strcmp(word, h->verdict) != 0)
			continue;
		if (strstr(reason, h->marker))
			return NULL;
		/* The pin's hint only for pin failures. */
		if (strcmp(h->marker, "tls_fingerprint") == 0)
			continue;
		return h->hint;
	}
	return probe_hint_conn(word, port, connected, reason);
}

static void probe_fail(struct probe_result *r, const char *word, bool connected, const char *reason)
{
	const char *hint = probe_hint(word, probe_port(r)->port, connected, reason);
	const char *tail = hint && strstr(reason, hint) ? NULL : hint;

	probe_set(r, word, "%s%s%s%s", reason, tail ? " (" : "", tail ? tail : "", tail ? ")" : "");
}

/* ---- the implicit TLS retry ---- */

static bool probe_silent(const struct conn *c, enum conn_verdict v)
{
	const struct smtp_client *cl = conn_client(c);

	return v == CONN_TIMEOUT && conn_port(c)->mode != CONF_TLS_IMPLICIT && conn_connect_ms(c) >= 0
	    && smtp_client_stage(cl) == SMTP_CLIENT_STAGE_GREETING && !smtp_client_greeting(cl)[0];
}

static const struct conn_events probe_events;

static void probe_retry_start(struct probe *p)
{
	const struct conf_port *port = probe_port(p->r);
	struct conn_params cp = { &p->alt, 0, p->conf->hostname, NULL, p->ctx };

	p->alt = *p->r->sh;
	p->alt_port.port = port->port;
	p->alt_port.mode = CONF_TLS_IMPLICIT;
	p->alt.ports = &p->alt_port;
	p->alt.nports = 1;
	p->alt.username = NULL;		/* a handshake test: it quits before any AUTH */
	if (p->alt.connect_timeout > PROBE_RETRY_TIMEOUT)
		p->alt.connect_timeout = PROBE_RETRY_TIMEOUT;
	p->retrying = true;
	p->retry_tls = false;
	p->conn = p->ctx ? conn_new(p->base, p->dns, &cp, &probe_events, p) : NULL;
	if (!p->conn) {
		probe_note(p->r, "implicit TLS retry: %s", p->ctx ? strerror(errno) : p->ctx_err);
		probe_finish(p);
	}
}

static void probe_retry_closed(struct probe *p, struct conn *c, enum conn_verdict v,
    const char *reason)
{
	struct probe_result *r = p->r;
	unsigned port = probe_port(r)->port;
	const struct conn_tls_info *t = conn_tls(c);

	/* A certificate verdict means a handshake got as far as the server's
	 * certificate: the port speaks TLS all the same. */
	if (p->retry_tls || t->active || v == CONN_CERT_UNTRUSTED || v == CONN_CERT_HOSTNAME
	    || v == CONN_CERT_EXPIRED) {
		probe_set(r, "tls-mode-mismatch", "no greeting within %us: %s:%u speaks implicit TLS: "
		    "use %u/tls", r->sh->connect_timeout, r->sh->host, port, port);
		probe_note(r, "implicit TLS retry: %s%s%s", t->active ? t->version : "handshake",
		    t->active ? " handshake succeeded" : " reached the certificate: ",
		    t->active ? "" : reason);
	} else {
		probe_note(r, "implicit TLS retry: no TLS either (%s)", v == CONN_OK ? "closed" : reason);
	}
	probe_finish(p);
}

/* ---- connection events ---- */

/* Without AUTH, whether the server takes mail at all: one MAIL FROM, never
 * a recipient or data ("without sending mail", README "The admin tool and probe").  A server that
 * demands AUTH answers 530 here, and then mail would stay queued. */
static bool probe_try_mail(struct probe *p, struct conn *c)
{
	struct smtp_client_msg m = { .mail_only = true };
	char sender[512];
	int fd;

	if (p->conf->from_address)
		snprintf(sender, sizeof(sender), "%s", p->conf->from_address);
	else
		snprintf(sender, sizeof(sender), "postmaster@%s", p->conf->hostname);
	m.sender = sender;
	p->mail_tried = true;
	fd = open("/dev/null", O_RDONLY | O_CLOEXEC);	/* no content: nothing is sent */
	if (fd >= 0 && conn_send(c, &m, fd) == 0)
		return true;
	if (fd >= 0)
		close(fd);
	return false;
}

static void probe_on_msg_done(struct conn *c, void *arg)
{
	struct probe *p = arg;
	struct probe_result *r = p->r;
	const struct smtp_client_result *res = smtp_client_msg_result(conn_client(c));

	if (res && replyclass_result_is_config(res))
		probe_set(r, "auth-failed", "the server demands AUTH, but smarthost %s has no "
		    "username: %s; mail sent this way stays queued (deferred as a configuration "
		    "error) until username and password are set", r->sh->name, res->text);
	else if (res)
		probe_note(r, "MAIL FROM without AUTH: %s", res->text);
	conn_quit(c);
}

static void probe_on_ready(struct conn *c, void *arg)
{
	struct probe *p = arg;
	struct probe_result *r = p->r;
	const struct smtp_client *cl = conn_client(c);
	unsigned used = smtp_client_auth_used(cl);

	if (p->retrying) {
		p->retry_tls = conn_tls(c)->active;
		conn_quit(c);
		return;
	}
	r->ready = true;
	probe_collect(r, c);
	probe_note_auth(r, cl);
	if (probe_port(r)->mode == CONF_TLS_NONE)
		probe_set(r, "ok", "greeting and EHLO ok (no TLS, no AUTH), ready in %ld ms",
		    conn_elapsed_ms(c));
	else
		probe_set(r, "ok", "%s %s, certificate %s, %s%s%s%s%s, ready in %ld ms", r->tls_version,
		    r->cipher, conn_tls(c)->verified ? "verified" : "not verified (tls_verify = false)",
		    used ? "AUTH " : "no AUTH", used ? smtp_client_mech_name(used) : "",
		    used ? " as " : "", used ? r->sh->username : "", used ? " accepted" : "",
		    conn_elapsed_ms(c));
	if (!used && !p->mail_tried && probe_try_mail(p, c))
		return;
	conn_quit(c);
}

static void probe_on_closed(struct conn *c, enum conn_verdict v, const char *reason, void *arg)
{
	struct probe *p = arg;
	struct probe_result *r = p->r;

	p->conn = NULL;
	if (p->retrying) {
		probe_retry_closed(p, c, v, reason);
		return;
	}
	if (r->ready) {
		probe_finish(p);
		return;
	}
	probe_collect(r, c);
	if (v == CONN_OK) {
		/* Cannot happen before ready; never report ok without it. */
		probe_fail(r, "unreachable", conn_connect_ms(c) >= 0, "the session ended early");
		probe_finish(p);
		return;
	}
	probe_fail(r, probe_word(v, c), conn_connect_ms(c) >= 0, reason);
	if (r->auth[0])
		probe_note(r, "AUTH: offered %s", r->auth);
	if (probe_silent(c, v)) {
		probe_retry_start(p);
		return;
	}
	probe_finish(p);
}

static const struct conn_events probe_events = {
	.ready = probe_on_ready,
	.msg_done = probe_on_msg_done,
	.closed = probe_on_closed,
};

/* ---- one port ---- */

static void probe_connect(struct probe *p, const char *secret)
{
	struct conn_params cp = { p->r->sh, p->r->index, p->conf->hostname, secret, p->ctx };

	p->conn = conn_new(p->base, p->dns, &cp, &probe_events, p);
	if (!p->conn) {
		probe_set(p->r, "unreachable", "cannot start a connection to %s:%u: %s", p->r->sh->host,
		    probe_port(p->r)->port, strerror(errno));
		probe_finish(p);
	}
}

static void probe_on_cred(const char *secret, long expires_in, const char *why, void *arg)
{
	struct probe *p = arg;
	bool command = cred_kind(p->r->sh, p->r->index) == CRED_COMMAND;
	char source[320];

	p->cred = NULL;
	if (!secret) {
		probe_set(p->r, "token-failed", "%s%s", why, command ? " (check password_command)" : "");
		probe_finish(p);
		return;
	}
	if (!command) {
		oauth2_source(p->r->sh, source, sizeof(source));
		probe_note(p->r, "OAuth2 token: obtained from %s, valid for %lds more", source,
		    expires_in);
	}
	probe_connect(p, secret);
}

/* Credentials by the relay's own path (relay/cred.h); a secret that cannot
 * be read is reported, not a reason to try without AUTH. */
static void probe_start(struct probe *p)
{
	const struct conf_smarthost *sh = p->r->sh;
	enum cred_kind kind = cred_kind(sh, p->r->index);
	char err[512];

	if (kind == CRED_NONE) {
		probe_connect(p, NULL);
		return;
	}
	if (kind == CRED_COMMAND || kind == CRED_OAUTH2) {
		if (kind == CRED_COMMAND && (sh->auth_mechs & (SASL_XOAUTH2 | SASL_OAUTHBEARER)))
			probe_note(p->r, "OAuth2 token: from password_command");
		p->cred = cred_get(p->base, p->oauth2, sh, p->r->index, SECRET_TIMEOUT, probe_on_cred,
		    p, err, sizeof(err));
		if (!p->cred) {
			probe_set(p->r, "token-failed", "%s", err);
			probe_finish(p);
		}
		return;
	}
	if (kind == CRED_MISSING) {
		/* conf_load_secrets could not read password_file. */
		probe_set(p->r, "auth-failed", "smarthost %s: no password (password_file %s could "
		    "not be read by this user; run smtprelay probe as root or as the service user)",
		    sh->name, sh->password_file ? sh->password_file : "unset");
		p->r->unchecked = true;
		probe_finish(p);
		return;
	}
	probe_connect(p, sh->password);
}

static void probe_one(struct probe *p, struct probe_result *r)
{
	p->r = r;
	p->retrying = false;
	p->mail_tried = false;
	clock_gettime(CLOCK_MONOTONIC, &p->t0);
	log_debug("probe: smarthost %s %s:%u/%s", r->sh->name, r->sh->host, probe_port(r)->port,
	    probe_mode_name(probe_port(r)->mode));
	if (probe_port(r)->mode != CONF_TLS_NONE && !p->ctx) {
		probe_fail(r, "cert-untrusted", false, p->ctx_err);
		probe_finish(p);
		return;
	}
	probe_start(p);
	if (!r->done)
		event_base_dispatch(p->base);
	if (r->done)
		return;
	/* The loop ran dry without a decision: never report success. */
	cred_cancel(p->cred);
	if (p->conn)
		conn_abort(p->conn);
	p->cred = NULL;
	p->conn = NULL;
	probe_set(r, "unreachable", "internal error: the probe stopped without a result");
	probe_finish(p);
}

/* ---- driver ---- */

static int probe_setup(struct probe *p, const struct config *c)
{
	memset(p, 0, sizeof(*p));
	p->conf = c;
	p->base = event_base_new();
	if (!p->base)
		return -1;
	p->dns = evdns_base_new(p->base, EVDNS_BASE_INITIALIZE_NAMESERVERS
	    | EVDNS_BASE_DISABLE_WHEN_INACTIVE);
	/* No usable resolv.conf: /etc/hosts still answers. */
	if (!p->dns)
		p->dns = evdns_base_new(p->base, EVDNS_BASE_DISABLE_WHEN_INACTIVE);
	p->oauth2 = p->dns ? oauth2_new(p->base, p->dns) : NULL;
	return p->oauth2 ? 0 : -1;
}

static void probe_teardown(struct probe *p)
{
	oauth2_free(p->oauth2);
	if (p->dns)
		evdns_base_free(p->dns, 0);
	if (p->base)
		event_base_free(p->base);
}

static void probe_smarthost(struct probe *p, const struct conf_smarthost *sh,
    struct probe_result *res)
{
	p->ctx = tls_client_ctx(sh, p->ctx_err, sizeof(p->ctx_err));
	for (size_t i = 0; i < sh->nports; i++) {
		res[i].sh = sh;
		res[i].index = i;
		probe_one(p, &res[i]);
	}
	SSL_CTX_free(p->ctx);
	p->ctx = NULL;
}

size_t probe_count(const struct config *c)
{
	size_t n = 0;

	for (size_t i = 0; i < c->nsmarthosts; i++)
		n += c->smarthosts[i].nports;
	return n;
}

int probe_ports(const struct config *c, struct probe_result **res, size_t *n)
{
	struct probe p;

	*n = probe_count(c);
	*res = calloc(*n ? *n : 1, sizeof(**res));
	if (!*res || probe_setup(&p, c) < 0) {
		int saved = errno ? errno : ENOMEM;

		if (*res)
			probe_teardown(&p);
		free(*res);
		*res = NULL;
		errno = saved;
		return -1;
	}
	for (size_t i = 0, k = 0; i < c->nsmarthosts; k += c->smarthosts[i].nports, i++)
		probe_smarthost(&p, &c->smarthosts[i], *res + k);
	probe_teardown(&p);
	return 0;
}
