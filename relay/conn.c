#include "config.h"
#define LOG_ROLE LOG_ROLE_SMTP
#include "relay/conn.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/util.h>
#include <openssl/err.h>

#include "relay/tls.h"
#include "lib/linelimit.h"
#include "lib/log.h"

#define CONN_REASON_MAX 1024
#define CONN_PEER_MAX 320
#define CONN_CHUNK SMTP_CLIENT_DATA_CHUNK
/* Content flow control: feed the client while less than HIGH is queued for
 * the socket; resume when it drains to LOW.  Bounds memory per connection. */
#define CONN_OUT_HIGH (4 * CONN_CHUNK)
#define CONN_OUT_LOW CONN_CHUNK
#define CONN_CLOSE_WAIT 2	/* seconds to flush a courtesy QUIT */

enum conn_phase {
	PH_START,	/* conn_new done, waiting for the loop */
	PH_RESOLVE,
	PH_CONNECT,
	PH_TLS,		/* implicit TLS handshake */
	PH_SESSION,	/* the smtp_client drives */
	PH_STARTTLS,	/* handshake after STARTTLS */
	PH_CLOSING,	/* flushing the last output (courtesy QUIT) */
	PH_DONE,	/* I/O gone; closed() is due */
};

struct conn {
	struct event_base *base;
	struct evdns_base *dns;
	const struct conf_smarthost *sh;
	const struct conf_port *port;
	SSL_CTX *ssl_ctx;
	struct conn_events ev;
	void *arg;
	struct smtp_client *cl;

	enum conn_phase phase;
	struct evdns_getaddrinfo_request *dnsreq;
	struct evutil_addrinfo *ai, *ai_next;
	struct bufferevent *sock;	/* the TCP connection */
	struct bufferevent *bev;	/* what we talk to: sock, or the TLS filter over it */
	struct event *timer;
	struct event *kick;		/* runs deferred work from the loop */
	int last_err;			/* errno of the last failed connect */

	char ip[INET6_ADDRSTRLEN];
	char peer[CONN_PEER_MAX];
	struct conn_tls_info tls;

	int fd;				/* content of the current transaction, -1 */
	char *chunk;
	size_t clen, coff;
	bool ceof;
	struct linelimit ll;	/* lines over 998 octets broken on the way out */

	struct timespec t0;
	long connect_ms;		/* -1 until TCP connected */
	long ready_ms;			/* -1 until the session is first ready */
	bool greeted;
	bool ready_told, done_told;
	bool have_verdict;
	enum conn_verdict verdict;
	char reason[CONN_REASON_MAX];
	int depth;			/* inside a user callback */
	bool dead;			/* conn_abort from a callback: free on return */
};

static void conn_step(struct conn *c);
static void conn_read_cb(struct bufferevent *bev, void *arg);
static void conn_write_cb(struct bufferevent *bev, void *arg);
static void conn_event_cb(struct bufferevent *bev, short what, void *arg);

/* ---- verdicts ---- */

static const char *const conn_verdict_names[] = {
	[CONN_OK] = "ok",
	[CONN_REFUSED] = "refused",
	[CONN_TIMEOUT] = "timeout",
	[CONN_DNS] = "dns",
	[CONN_UNREACHABLE] = "unreachable",
	[CONN_TLS_MODE_MISMATCH] = "tls-mode-mismatch",
	[CONN_STARTTLS_MISSING] = "starttls-missing",
	[CONN_CERT_UNTRUSTED] = "cert-untrusted",
	[CONN_CERT_HOSTNAME] = "cert-hostname",
	[CONN_CERT_EXPIRED] = "cert-expired",
	[CONN_TLS_VERSION] = "tls-version",
	[CONN_AUTH_FAILED] = "auth-failed",
	[CONN_AUTH_UNSUPPORTED] = "auth-unsupported",
	[CONN_TOKEN_FAILED] = "token-failed",
	[CONN_TLS_FAILED] = "tls-failed",
	[CONN_PROTOCOL] = "protocol-error",
	[CONN_TEMP] = "temporary-failure",
	[CONN_LOST] = "lost",
};

const char *conn_verdict_name(enum conn_verdict v)
{
	if ((size_t)v >= sizeof(conn_verdict_names) / sizeof(conn_verdict_names[0]))
		return "unknown";
	return conn_verdict_names[v];
}

bool conn_verdict_next_port(enum conn_verdict v)
{
	/* Credentials and lost sessions are the same on every port; everything
	 * that failed while setting the session up may work elsewhere. */
	switch (v) {
	case CONN_OK:
	case CONN_AUTH_FAILED:
	case CONN_AUTH_UNSUPPORTED:
	case CONN_TOKEN_FAILED:
	case CONN_LOST:
		return false;
	default:
		return true;
	}
}

/* ---- small helpers ---- */

static long conn_ms_since(const struct timespec *t0)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (long)(now.tv_sec - t0->tv_sec) * 1000 + (now.tv_nsec - t0->tv_nsec) / 1000000;
}

static void conn_arm(struct conn *c, unsigned secs)
{
	struct timeval tv = { (time_t)(secs ? secs : 1), 0 };

	evtimer_add(c->timer, &tv);
}

static void conn_kick(struct conn *c)
{
	event_active(c->kick, EV_TIMEOUT, 1);
}

static void conn_set_peer(struct conn *c)
{
	if (c->ip[0])
		snprintf(c->peer, sizeof(c->peer), "%s[%s]:%u", c->sh->host, c->ip, c->port->port);
	else
		snprintf(c->peer, sizeof(c->peer), "%s:%u", c->sh->host, c->port->port);
}

static void conn_close_content(struct conn *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
}

/* Everything that can still fire goes; the client and results stay. */
static void conn_teardown(struct conn *c)
{
	if (c->dnsreq) {
		struct evdns_getaddrinfo_request *r = c->dnsreq;

		c->dnsreq = NULL;
		evdns_getaddrinfo_cancel(r);
	}
	if (c->ai)
		evutil_freeaddrinfo(c->ai);
	c->ai = c->ai_next = NULL;
	/* The TLS filter owns the socket bufferevent (BEV_OPT_CLOSE_ON_FREE). */
	if (c->bev)
		bufferevent_free(c->bev);
	else if (c->sock)
		bufferevent_free(c->sock);
	c->bev = c->sock = NULL;
	if (c->timer)
		evtimer_del(c->timer);
	conn_close_content(c);
}

static void conn_free(struct conn *c)
{
	conn_teardown(c);
	if (c->timer)
		event_free(c->timer);
	if (c->kick)
		event_free(c->kick);
	smtp_client_free(c->cl);
	free(c->chunk);
	free(c);
}

/* ---- ending ---- */

/* I/O ends now; closed() follows from the loop. */
static void conn_finish(struct conn *c)
{
	if (c->phase == PH_DONE)
		return;
	conn_teardown(c);
	c->phase = PH_DONE;
	conn_kick(c);
}

static void conn_fail(struct conn *c, enum conn_verdict v, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The first failure decides the verdict. */
static void conn_fail(struct conn *c, enum conn_verdict v, const char *fmt, ...)
{
	va_list ap;

	if (c->phase == PH_DONE)
		return;
	if (!c->have_verdict) {
		c->have_verdict = true;
		c->verdict = v;
		va_start(ap, fmt);
		vsnprintf(c->reason, sizeof(c->reason), fmt, ap);
		va_end(ap);
	}
	conn_finish(c);
}

/* Run a user callback; a conn_abort from inside it frees c afterwards.
 * Callers return right after. */
static void conn_notify(struct conn *c, void (*fn)(struct conn *, void *))
{
	c->depth++;
	if (fn)
		fn(c, c->arg);
	c->depth--;
	if (c->dead)
		conn_free(c);
}

static void conn_notify_closed(struct conn *c)
{
	if (!c->have_verdict) {
		c->verdict = CONN_OK;
		c->reason[0] = '\0';
	}
	if (c->verdict == CONN_OK)
		log_debug("%s: connection closed", c->peer);
	else
		log_debug("%s: %s: %s", c->peer, conn_verdict_name(c->verdict), c->reason);
	c->depth++;
	if (c->ev.closed)
		c->ev.closed(c, c->verdict, c->reason, c->arg);
	c->depth--;
	conn_free(c);
}

/* ---- resolving and connecting ---- */

static void conn_connect_next(struct conn *c);

static enum conn_verdict conn_errno_verdict(int err)
{
	switch (err) {
	case ECONNREFUSED:
		return CONN_REFUSED;
	case ETIMEDOUT:
		return CONN_TIMEOUT;
	default:
		return CONN_UNREACHABLE;
	}
}

static const char *conn_port25_note(const struct conn *c)
{
	return c->port->port == 25 ? " (outbound port 25 is often blocked by cloud providers)" : "";
}

static void conn_connect_failed(struct conn *c, int err)
{
	c->last_err = err ? err : ECONNREFUSED;
	if (c->sock)
		bufferevent_free(c->sock);
	c->sock = c->bev = NULL;
	if (c->ai_next && err != ETIMEDOUT) {
		conn_connect_next(c);
		return;
	}
	conn_fail(c, conn_errno_verdict(c->last_err), "connect to %s: %s%s", c->peer,
	    strerror(c->last_err), c->last_err == ETIMEDOUT ? conn_port25_note(c) : "");
}

/* Our own non-blocking connect: immediate errors (ECONNREFUSED on loopback)
 * come back with their real errno, and every address is tried in turn. */
static int conn_socket(struct conn *c, const struct evutil_addrinfo *ai)
{
	int one = 1;
	int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -1;
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0 || errno == EINPROGRESS)
		return fd;
	one = errno;
	close(fd);
	errno = one;
	return -1;
}

static void conn_set_ip(struct conn *c, const struct sockaddr *sa)
{
	const void *a = sa->sa_family == AF_INET6
	    ? (const void *)&((const struct sockaddr_in6 *)sa)->sin6_addr
	    : (const void *)&((const struct sockaddr_in *)sa)->sin_addr;

	if (!inet_ntop(sa->sa_family, a, c->ip, sizeof(c->ip)))
		snprintf(c->ip, sizeof(c->ip), "?");
	conn_set_peer(c);
}

static void conn_connect_next(struct conn *c)
{
	while (c->ai_next) {
		const struct evutil_addrinfo *ai = c->ai_next;
		int fd;

		c->ai_next = ai->ai_next;
		conn_set_ip(c, ai->ai_addr);
		fd = conn_socket(c, ai);
		if (fd < 0) {
			c->last_err = errno;
			continue;
		}
		c->sock = bufferevent_socket_new(c->base, fd, BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
		if (!c->sock) {
			close(fd);
			conn_fail(c, CONN_UNREACHABLE, "connect to %s: out of memory", c->peer);
			return;
		}
		bufferevent_setcb(c->sock, conn_read_cb, conn_write_cb, conn_event_cb, c);
		/* NULL address: fd is already connecting, libevent waits for it. */
		if (bufferevent_socket_connect(c->sock, NULL, 0) < 0) {
			conn_connect_failed(c, errno);
			return;
		}
		c->phase = PH_CONNECT;
		return;
	}
	conn_connect_failed(c, c->last_err);
}

static void conn_dns_cb(int result, struct evutil_addrinfo *res, void *arg)
{
	struct conn *c = arg;

	/* Cancelled by conn_teardown: c may be gone already. */
	if (result == EVUTIL_EAI_CANCEL)
		return;
	c->dnsreq = NULL;
	if (result != 0) {
		if (res)
			evutil_freeaddrinfo(res);
		conn_fail(c, CONN_DNS, "cannot resolve %s: %s", c->sh->host,
		    result == EVUTIL_EAI_NONAME ? "no such host (NXDOMAIN or no address records)"
		    : result == EVUTIL_EAI_AGAIN ? "temporary DNS failure" : evutil_gai_strerror(result));
		return;
	}
	c->ai = c->ai_next = res;
	conn_connect_next(c);
}

static void conn_start(struct conn *c)
{
	struct evutil_addrinfo hints;
	char port[16];
	struct evdns_getaddrinfo_request *r;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_protocol = IPPROTO_TCP;
	snprintf(port, sizeof(port), "%u", c->port->port);
	c->phase = PH_RESOLVE;
	/* connect_timeout covers everything up to the greeting, DNS included. */
	conn_arm(c, c->sh->connect_timeout);
	r = evdns_getaddrinfo(c->dns, c->sh->host, port, &hints, conn_dns_cb, c);
	/* NULL: answered at once (the callback ran already). */
	if (r && c->phase == PH_RESOLVE)
		c->dnsreq = r;
}

/* ---- TLS ---- */

static bool conn_wrap_tls(struct conn *c)
{
	SSL *ssl = tls_new_ssl(c->ssl_ctx, c->sh);
	struct bufferevent *f;

	if (!ssl) {
		conn_fail(c, CONN_TLS_FAILED, "cannot set up TLS for %s: out of memory", c->peer);
		return false;
	}
	bufferevent_setcb(c->sock, NULL, NULL, NULL, NULL);
	/* The filter's TLS writes stop at the socket's high watermark, so
	 * content never piles up below it either. */
	bufferevent_setwatermark(c->sock, EV_WRITE, CONN_OUT_LOW, CONN_OUT_HIGH);
	f = bufferevent_openssl_filter_new(c->base, c->sock, ssl, BUFFEREVENT_SSL_CONNECTING,
	    BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
	if (!f) {
		/* libevent frees ssl (and may free the socket): leak rather than
		 * risk a double free on this out-of-memory path. */
		c->sock = c->bev = NULL;
		conn_fail(c, CONN_TLS_FAILED, "cannot set up TLS for %s: out of memory", c->peer);
		return false;
	}
	c->bev = f;
	bufferevent_setcb(f, conn_read_cb, conn_write_cb, conn_event_cb, c);
	bufferevent_setwatermark(f, EV_WRITE, CONN_OUT_LOW, 0);
	bufferevent_enable(f, EV_READ | EV_WRITE);
	return true;
}

static void conn_tls_failed(struct conn *c)
{
	unsigned long e, first = 0;
	char reason[CONN_REASON_MAX];
	SSL *ssl = bufferevent_openssl_get_ssl(c->bev);
	enum conn_verdict v;

	/* libevent mixes SSL_get_error() codes (library 0) into the list. */
	while ((e = bufferevent_get_openssl_error(c->bev)) != 0)
		if (!first && ERR_GET_LIB(e) != 0)
			first = e;
	v = tls_classify_failure(ssl, first, c->sh->host, c->port->port, c->phase == PH_TLS,
	    reason, sizeof(reason));
	ERR_clear_error();
	conn_fail(c, v, "%s", reason);
}

static void conn_tls_done(struct conn *c)
{
	char reason[CONN_REASON_MAX];
	SSL *ssl = bufferevent_openssl_get_ssl(c->bev);
	enum conn_verdict v = tls_check_peer(ssl, c->sh, &c->tls, reason, sizeof(reason));
	bool starttls = c->phase == PH_STARTTLS;

	if (v != CONN_OK) {
		conn_fail(c, v, "%s", reason);
		return;
	}
	c->tls.bits = SSL_CIPHER_get_bits(SSL_get_current_cipher(ssl), &c->tls.alg_bits);
	log_debug("%s: %s with %s, %s", c->peer, c->tls.version, c->tls.cipher,
	    c->tls.verified ? "certificate verified" : c->tls.pin_ok ? "public key pinned"
	    : "certificate not verified");
	c->phase = PH_SESSION;
	if (starttls) {
		smtp_client_tls_ready(c->cl);
		conn_arm(c, c->sh->command_timeout);
	}
	/* Bytes that came with the handshake wait in the input buffer. */
	if (evbuffer_get_length(bufferevent_get_input(c->bev)) > 0)
		conn_read_cb(c->bev, c);
	else
		conn_step(c);
}

static void conn_starttls(struct conn *c)
{
	/* Defence against STARTTLS command injection (CVE-2011-0411):
	 * nothing received before the handshake may reach the session.  The
	 * client already refuses bytes fed after the 220; this catches any
	 * still buffered. */
	if (evbuffer_get_length(bufferevent_get_input(c->sock)) > 0) {
		conn_fail(c, CONN_PROTOCOL, "%s: protocol error: the server sent data after its 220 "
		    "reply to STARTTLS, before the TLS handshake (possible command injection)", c->peer);
		return;
	}
	if (evbuffer_get_length(bufferevent_get_output(c->sock)) > 0)
		return;		/* the write callback comes back here once flushed */
	c->phase = PH_STARTTLS;
	conn_arm(c, c->sh->command_timeout);
	conn_wrap_tls(c);
}

/* ---- the session ---- */

static int conn_flush(struct conn *c)
{
	size_t len;
	const char *out = smtp_client_output(c->cl, &len);

	if (!len)
		return 0;
	if (bufferevent_write(c->bev, out, len) < 0) {
		conn_fail(c, CONN_LOST, "%s: local error: out of memory", c->peer);
		return -1;
	}
	smtp_client_consume_output(c->cl, len);
	return 0;
}

static bool conn_out_full(const struct conn *c)
{
	return evbuffer_get_length(bufferevent_get_output(c->bev)) >= CONN_OUT_HIGH;
}

/* Reading the queued content failed: the message must not end with a
 * terminator, so the session is dropped and its recipients deferred. */
static void conn_content_error(struct conn *c, int err)
{
	smtp_client_quit(c->cl);
	conn_fail(c, CONN_LOST, "%s: local error reading the queued message: %s", c->peer,
	    strerror(err));
}

/* Content in chunks, never more than CONN_OUT_HIGH queued: a 35 MB message
 * is never in memory.  Returns true while waiting for the socket to drain. */
static bool conn_feed(struct conn *c)
{
	while (smtp_client_action(c->cl) == SMTP_CLIENT_NEED_DATA) {
		ssize_t n;

		if (conn_flush(c) < 0)
			return true;
		if (conn_out_full(c))
			return true;
		if (c->coff == c->clen && !c->ceof) {
			n = linelimit_read(&c->ll, c->fd, c->chunk, CONN_CHUNK);
			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0) {
				conn_content_error(c, errno);
				return true;
			}
			c->ceof = n == 0;
			c->clen = (size_t)n;
			c->coff = 0;
		}
		n = smtp_client_data(c->cl, c->chunk + c->coff, c->clen - c->coff, c->ceof);
		if (n < 0) {
			conn_content_error(c, errno);
			return true;
		}
		c->coff += (size_t)n;
	}
	return false;
}

static bool conn_idle(const struct conn *c)
{
	enum smtp_client_action a = smtp_client_action(c->cl);

	return (a == SMTP_CLIENT_READY || a == SMTP_CLIENT_MSG_DONE)
	    && smtp_client_stage(c->cl) == SMTP_CLIENT_STAGE_IDLE;
}

/* Up to the greeting the connect deadline runs; then command_timeout for
 * each reply, restarted on every progress; none while idle. */
static void conn_arm_session(struct conn *c)
{
	if (!c->greeted)
		return;
	if (conn_idle(c))
		evtimer_del(c->timer);
	else
		conn_arm(c, c->sh->command_timeout);
}

static void conn_on_ready(struct conn *c)
{
	unsigned mech;

	conn_arm_session(c);
	if (c->ready_told)
		return;
	c->ready_told = true;
	if (c->ready_ms < 0) {
		c->ready_ms = conn_ms_since(&c->t0);
		mech = smtp_client_auth_used(c->cl);
		log_debug("%s: session ready after %ld ms%s%s", c->peer, c->ready_ms,
		    mech ? ", authenticated with " : "", mech ? smtp_client_mech_name(mech) : "");
	}
	conn_notify(c, c->ev.ready);
}

static void conn_on_msg_done(struct conn *c)
{
	conn_close_content(c);
	conn_arm_session(c);
	if (c->done_told)
		return;
	c->done_told = true;
	conn_notify(c, c->ev.msg_done);
}

static enum conn_verdict conn_client_verdict(const struct conn *c, enum smtp_client_error e)
{
	bool up = c->ready_ms >= 0;

	switch (e) {
	case SMTP_CLIENT_OK: return CONN_OK;
	case SMTP_CLIENT_E_STARTTLS_MISSING: return CONN_STARTTLS_MISSING;
	case SMTP_CLIENT_E_TLS_MODE: return CONN_TLS_MODE_MISMATCH;
	case SMTP_CLIENT_E_AUTH_FAILED: return CONN_AUTH_FAILED;
	case SMTP_CLIENT_E_AUTH_UNSUPPORTED: return CONN_AUTH_UNSUPPORTED;
	case SMTP_CLIENT_E_TEMP: return CONN_TEMP;
	case SMTP_CLIENT_E_TIMEOUT: return up ? CONN_LOST : CONN_TIMEOUT;
	case SMTP_CLIENT_E_EOF: return up ? CONN_LOST : CONN_PROTOCOL;
	default: return CONN_PROTOCOL;
	}
}

static void conn_client_reason(struct conn *c, enum conn_verdict v, const char *why)
{
	unsigned p = c->port->port;

	switch (v) {
	case CONN_STARTTLS_MISSING:
		snprintf(c->reason, sizeof(c->reason),
		    "%s does not offer STARTTLS: refusing to continue in plaintext (%s)", c->peer, why);
		break;
	case CONN_TLS_MODE_MISMATCH:
		snprintf(c->reason, sizeof(c->reason), "%s answered with TLS where a plaintext greeting "
		    "was expected: this port expects implicit TLS, not STARTTLS (use %u/tls)", c->peer, p);
		break;
	case CONN_AUTH_FAILED:
		snprintf(c->reason, sizeof(c->reason), "%s: %s (configuration error: check the username "
		    "and password of smarthost \"%s\")", c->peer, why, c->sh->name);
		break;
	default:
		snprintf(c->reason, sizeof(c->reason), "%s: %s", c->peer, why);
		break;
	}
}

static void conn_on_client_closed(struct conn *c)
{
	const char *why = "";
	enum smtp_client_error e = smtp_client_error(c->cl, &why);
	enum conn_verdict v = conn_client_verdict(c, e);

	conn_close_content(c);
	if (!c->have_verdict) {
		c->have_verdict = true;
		c->verdict = v;
		if (v == CONN_OK)
			snprintf(c->reason, sizeof(c->reason), "%s", why);
		else
			conn_client_reason(c, v, why);
	}
	/* A courtesy QUIT may still be queued: give it a moment to leave. */
	if (c->bev && evbuffer_get_length(bufferevent_get_output(c->bev)) > 0
	    && smtp_client_stage(c->cl) != SMTP_CLIENT_STAGE_CONTENT) {
		c->phase = PH_CLOSING;
		bufferevent_setwatermark(c->bev, EV_WRITE, 0, 0);
		conn_arm(c, CONN_CLOSE_WAIT);
		return;
	}
	conn_finish(c);
}

static void conn_step(struct conn *c)
{
	for (;;) {
		if (c->phase != PH_SESSION || conn_flush(c) < 0)
			return;
		switch (smtp_client_action(c->cl)) {
		case SMTP_CLIENT_WAIT:
			conn_arm_session(c);
			return;
		case SMTP_CLIENT_START_TLS:
			conn_starttls(c);
			return;
		case SMTP_CLIENT_NEED_DATA:
			if (conn_feed(c)) {
				if (c->phase == PH_SESSION)
					conn_arm_session(c);
				return;
			}
			break;
		case SMTP_CLIENT_READY:
			conn_on_ready(c);
			return;
		case SMTP_CLIENT_MSG_DONE:
			conn_on_msg_done(c);
			return;
		case SMTP_CLIENT_CLOSED:
			conn_on_client_closed(c);
			return;
		}
	}
}

/* ---- libevent callbacks ---- */

static void conn_read_cb(struct bufferevent *bev, void *arg)
{
	struct conn *c = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	struct evbuffer_iovec v;

	/* During a handshake the data waits for conn_tls_done. */
	if (c->phase != PH_SESSION) {
		if (c->phase == PH_CLOSING || c->phase == PH_DONE)
			evbuffer_drain(in, evbuffer_get_length(in));
		return;
	}
	/* Everything goes to the client, bytes after a 220 to STARTTLS too: it
	 * rejects those (injection defence). */
	while (evbuffer_peek(in, -1, NULL, &v, 1) > 0 && v.iov_len > 0) {
		if (smtp_client_action(c->cl) == SMTP_CLIENT_CLOSED) {
			evbuffer_drain(in, evbuffer_get_length(in));
			break;
		}
		(void)smtp_client_input(c->cl, v.iov_base, v.iov_len);
		evbuffer_drain(in, v.iov_len);
	}
	if (!c->greeted && smtp_client_stage(c->cl) != SMTP_CLIENT_STAGE_GREETING
	    && smtp_client_action(c->cl) != SMTP_CLIENT_CLOSED)
		c->greeted = true;
	conn_step(c);
}

static void conn_write_cb(struct bufferevent *bev, void *arg)
{
	struct conn *c = arg;

	if (c->phase == PH_CLOSING) {
		if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
			conn_finish(c);
		return;
	}
	/* Drained: more content, or the STARTTLS handshake may start. */
	if (c->phase == PH_SESSION)
		conn_step(c);
}

static void conn_connected(struct conn *c)
{
	evutil_freeaddrinfo(c->ai);
	c->ai = c->ai_next = NULL;
	c->bev = c->sock;
	c->connect_ms = conn_ms_since(&c->t0);
	bufferevent_setwatermark(c->sock, EV_WRITE, CONN_OUT_LOW, 0);
	log_debug("%s: connected", c->peer);
	if (c->port->mode == CONF_TLS_IMPLICIT) {
		c->phase = PH_TLS;
		c->bev = NULL;
		conn_wrap_tls(c);
		return;
	}
	c->phase = PH_SESSION;
	bufferevent_enable(c->sock, EV_READ | EV_WRITE);
}

static void conn_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct conn *c = arg;
	int err = EVUTIL_SOCKET_ERROR();

	switch (c->phase) {
	case PH_CONNECT:
		if (what & BEV_EVENT_CONNECTED)
			conn_connected(c);
		else
			conn_connect_failed(c, err);
		return;
	case PH_TLS:
	case PH_STARTTLS:
		if (what & BEV_EVENT_CONNECTED)
			conn_tls_done(c);
		else
			conn_tls_failed(c);
		return;
	case PH_SESSION:
		if (!(what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)))
			return;
		if ((what & BEV_EVENT_ERROR) && err && smtp_client_action(c->cl) != SMTP_CLIENT_CLOSED)
			log_debug("%s: %s", c->peer, strerror(err));
		smtp_client_eof(c->cl);
		conn_step(c);
		return;
	case PH_CLOSING:
		conn_finish(c);
		return;
	default:
		return;
	}
}

static void conn_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;
	unsigned ct = c->sh->connect_timeout;

	switch (c->phase) {
	case PH_RESOLVE:
		conn_fail(c, CONN_DNS, "cannot resolve %s: no answer within %us", c->sh->host, ct);
		return;
	case PH_CONNECT:
		conn_fail(c, CONN_TIMEOUT, "connect to %s:%u: timed out%s", c->sh->host,
		    c->port->port, conn_port25_note(c));
		return;
	case PH_TLS:
	case PH_STARTTLS:
		conn_fail(c, CONN_TIMEOUT, "TLS handshake with %s timed out", c->peer);
		return;
	case PH_SESSION:
		if (!c->greeted) {
			conn_fail(c, CONN_TIMEOUT, "no greeting from %s within %us%s", c->peer, ct,
			    c->port->mode == CONF_TLS_IMPLICIT ? ""
			    : " (if this port expects implicit TLS, use PORT/tls)");
			return;
		}
		smtp_client_timeout(c->cl);
		conn_step(c);
		return;
	case PH_CLOSING:
		conn_finish(c);
		return;
	default:
		return;
	}
}

static void conn_kick_cb(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;

	switch (c->phase) {
	case PH_START:
		conn_start(c);
		return;
	case PH_SESSION:
		conn_step(c);
		return;
	case PH_DONE:
		conn_notify_closed(c);
		return;
	default:
		return;
	}
}

/* ---- API ---- */

static struct smtp_client *conn_new_client(const struct conn_params *p)
{
	const struct conf_smarthost *sh = p->sh;
	const struct conf_port *port = &sh->ports[p->port_index];
	struct smtp_client_params cp;

	memset(&cp, 0, sizeof(cp));
	cp.helo_name = p->helo_name;
	cp.tls = port->mode == CONF_TLS_IMPLICIT ? SMTP_CLIENT_TLS_IMPLICIT
	    : port->mode == CONF_TLS_NONE ? SMTP_CLIENT_TLS_NONE : SMTP_CLIENT_TLS_STARTTLS;
	/* Never "no secret, so no AUTH" (smtprelayd(8) "Delivery": fail closed); conn_new
	 * refuses that case.  PORT/none sends no AUTH by design. */
	cp.username = port->mode != CONF_TLS_NONE && sh->username && sh->username[0]
	    ? sh->username : NULL;
	cp.secret = cp.username ? p->secret : NULL;
	cp.auth_mechs = sh->auth_mechs;
	cp.server_host = sh->host;
	cp.server_port = port->port;
	return smtp_client_new(&cp);
}

struct conn *conn_new(struct event_base *base, struct evdns_base *dns, const struct conn_params *p,
    const struct conn_events *ev, void *arg)
{
	struct conn *c;

	if (!base || !dns || !p || !p->sh || !p->sh->host || p->port_index >= p->sh->nports
	    || (p->sh->ports[p->port_index].mode != CONF_TLS_NONE && !p->ssl_ctx)) {
		errno = EINVAL;
		return NULL;
	}
	if (p->sh->username && p->sh->username[0] && !p->secret &&
	    p->sh->ports[p->port_index].mode != CONF_TLS_NONE) {
		errno = ENOKEY;		/* a username without its secret: never unauthenticated */
		return NULL;
	}
	c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->base = base;
	c->dns = dns;
	c->sh = p->sh;
	c->port = &p->sh->ports[p->port_index];
	c->ssl_ctx = p->ssl_ctx;
	if (ev)
		c->ev = *ev;
	c->arg = arg;
	c->fd = -1;
	c->connect_ms = -1;
	c->ready_ms = -1;
	clock_gettime(CLOCK_MONOTONIC, &c->t0);
	conn_set_peer(c);
	c->cl = conn_new_client(p);
	c->timer = evtimer_new(base, conn_timer_cb, c);
	c->kick = event_new(base, -1, 0, conn_kick_cb, c);
	if (!c->cl || !c->timer || !c->kick) {
		int e = errno;

		conn_free(c);
		errno = e ? e : ENOMEM;
		return NULL;
	}
	/* Start from the loop, so no callback ever runs inside conn_new. */
	conn_kick(c);
	return c;
}

int conn_send(struct conn *c, const struct smtp_client_msg *m, int content_fd)
{
	return conn_send_prefixed(c, m, NULL, 0, content_fd);
}

int conn_send_prefixed(struct conn *c, const struct smtp_client_msg *m, const char *prefix,
    size_t plen, int content_fd)
{
	if (plen > CONN_CHUNK || c->phase != PH_SESSION || c->dead || content_fd < 0
	    || smtp_client_action(c->cl) != SMTP_CLIENT_READY) {
		errno = EINVAL;
		return -1;
	}
	if (!c->chunk && !(c->chunk = malloc(CONN_CHUNK)))
		return -1;
	if (smtp_client_send(c->cl, m) < 0) {
		int e = errno;

		conn_kick(c);	/* the client may have closed (ENOMEM) */
		errno = e;
		return -1;
	}
	c->fd = content_fd;
	/* The prefix goes out as the first chunk of content. */
	if (plen)
		memcpy(c->chunk, prefix, plen);
	c->clen = plen;
	c->coff = 0;
	c->ceof = false;
	linelimit_init(&c->ll);
	c->ready_told = c->done_told = false;
	conn_kick(c);
	return 0;
}

void conn_reset(struct conn *c)
{
	if (c->phase != PH_SESSION || smtp_client_action(c->cl) != SMTP_CLIENT_MSG_DONE)
		return;
	smtp_client_reset(c->cl);
	c->ready_told = c->done_told = false;
	conn_kick(c);
}

void conn_quit(struct conn *c)
{
	if (c->dead || c->phase == PH_DONE || c->phase == PH_CLOSING)
		return;
	if (c->phase != PH_SESSION) {
		/* Not talking SMTP yet (or in a handshake): just hang up. */
		c->have_verdict = true;
		c->verdict = CONN_OK;
		snprintf(c->reason, sizeof(c->reason), "closed before the session was set up");
		conn_finish(c);
		return;
	}
	smtp_client_quit(c->cl);
	conn_kick(c);
}

void conn_abort(struct conn *c)
{
	if (!c)
		return;
	if (c->depth > 0) {
		c->dead = true;
		conn_teardown(c);
		event_del(c->kick);
		return;
	}
	conn_free(c);
}

const struct smtp_client *conn_client(const struct conn *c)
{
	return c->cl;
}

const char *conn_peer(const struct conn *c)
{
	return c->peer;
}

const char *conn_host(const struct conn *c)
{
	return c->sh->host;
}

const struct conf_port *conn_port(const struct conn *c)
{
	return c->port;
}

const struct conn_tls_info *conn_tls(const struct conn *c)
{
	return &c->tls;
}

long conn_elapsed_ms(const struct conn *c)
{
	return c->ready_ms >= 0 ? c->ready_ms : conn_ms_since(&c->t0);
}

long conn_connect_ms(const struct conn *c)
{
	return c->connect_ms;
}
