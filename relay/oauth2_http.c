/* HTTPS POST with libevent's HTTP client over an OpenSSL bufferevent, the
 * endpoint verified like a smarthost; one request, bounded answer, deadline. */
#include "config.h"
#include "relay/oauth2.h"
#include "relay/oauth2int.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <openssl/err.h>

#include "relay/tls.h"
#include "lib/fsutil.h"
#include "lib/log.h"

/* ---- HTTPS POST ---- */

struct oauth2_http {
	struct event_base *base;
	struct evhttp_connection *evcon;
	struct event *deadline;
	struct event *finish;
	unsigned timeout;
	char host[256];
	char hostport[300];
	unsigned port;
	bool timed_out;
	bool too_long;
	bool finished;			/* the outcome is known; finish is active */
	int connect_errno;		/* the TCP connect failed with this */
	int status;
	struct buf body;
	char error[OAUTH2_ERR_MAX];
	oauth2_http_fn done;
	void *arg;
};

void oauth2_url_host(const char *url, char *dst, size_t len)
{
	struct evhttp_uri *u = evhttp_uri_parse_with_flags(url, 0);
	const char *host = u ? evhttp_uri_get_host(u) : NULL;
	int port = u ? evhttp_uri_get_port(u) : -1;

	if (!host || !host[0])
		snprintf(dst, len, "%s", "an invalid URL");
	else if (port > 0 && port != 443)
		snprintf(dst, len, "%s:%d", host, port);
	else
		snprintf(dst, len, "%s", host);
	if (u)
		evhttp_uri_free(u);
}

SSL_CTX *oauth2_ssl_ctx(const struct conf_smarthost *sh, char *err, size_t errlen)
{
	struct conf_smarthost v = *sh;

	v.tls_verify = true;
	return tls_client_ctx(&v, err, errlen);
}

static void http_free(struct oauth2_http *h)
{
	if (h->evcon)
		evhttp_connection_free(h->evcon);	/* frees the request, bufferevent, SSL */
	if (h->deadline)
		event_free(h->deadline);
	if (h->finish)
		event_free(h->finish);
	oauth2_buf_wipe(&h->body);
	free(h);
}

void oauth2_http_cancel(struct oauth2_http *h)
{
	if (h)
		http_free(h);
}

static void http_on_finish(evutil_socket_t fd, short what, void *arg)
{
	struct oauth2_http *h = arg;
	struct oauth2_http_result res = {
		.status = h->status,
		.body = h->body.data ? h->body.data : "",
		.len = h->body.len,
		.error = h->status ? NULL : h->error,
	};

	h->done(&res, h->arg);
	http_free(h);
}

/* A connection that never got as far as a TLS exchange. */
static bool http_connect_failed(const SSL *ssl, int e)
{
	OSSL_HANDSHAKE_STATE st = ssl ? SSL_get_state(ssl) : TLS_ST_BEFORE;

	if (st != TLS_ST_BEFORE && st != TLS_ST_CW_CLNT_HELLO)
		return false;
	return e == ECONNREFUSED || e == ENETUNREACH || e == EHOSTUNREACH || e == ETIMEDOUT
	    || e == EADDRNOTAVAIL || (e == ECONNRESET && st == TLS_ST_BEFORE);
}

/* libevent starts the handshake once the socket is writable, which it also
 * is when the connect failed; the first write of the hello then fails with
 * the connect's error, which is gone by the time the request fails.  So take
 * it when the handshake step returns. */
static void http_ssl_info(const SSL *ssl, int where, int ret)
{
	struct oauth2_http *h = SSL_get_app_data(ssl);
	int e = errno;

	if ((where & SSL_CB_EXIT) && ret <= 0 && h && !h->connect_errno && http_connect_failed(ssl, e))
		h->connect_errno = e;
	errno = e;
}

/* The newest OpenSSL error the bufferevent kept; a system error becomes
 * *sys_errno instead. */
static unsigned long http_ssl_error(struct bufferevent *bev, int *sys_errno)
{
	unsigned long e = 0, next;

	while (bev && (next = bufferevent_get_openssl_error(bev)) != 0)
		e = next;
	if (e && ERR_SYSTEM_ERROR(e)) {
		*sys_errno = ERR_GET_REASON(e);
		return 0;
	}
	return e;
}

/* Why there is no response, from what the connection left behind. */
static void http_explain(struct oauth2_http *h, int saved_errno)
{
	struct bufferevent *bev = h->evcon ? evhttp_connection_get_bufferevent(h->evcon) : NULL;
	SSL *ssl = bev ? bufferevent_openssl_get_ssl(bev) : NULL;
	int dns = bev ? bufferevent_socket_get_dns_error(bev) : 0;
	unsigned long e = http_ssl_error(bev, &saved_errno);
	bool verify_failed = ssl && SSL_get_verify_result(ssl) != X509_V_OK;

	if (h->timed_out)
		snprintf(h->error, sizeof(h->error), "%s: timed out after %us", h->hostport,
		    h->timeout);
	else if (h->too_long)
		snprintf(h->error, sizeof(h->error), "%s: response larger than %d bytes",
		    h->hostport, OAUTH2_BODY_MAX);
	else if (dns)
		snprintf(h->error, sizeof(h->error), "cannot resolve %s: %s", h->host,
		    evutil_gai_strerror(dns));
	else if (h->connect_errno)
		snprintf(h->error, sizeof(h->error), "connect to %s: %s", h->hostport,
		    strerror(h->connect_errno));
	else if (!e && !verify_failed && http_connect_failed(ssl, saved_errno))
		snprintf(h->error, sizeof(h->error), "connect to %s: %s", h->hostport,
		    strerror(saved_errno));
	else if (ssl && !SSL_is_init_finished(ssl))
		tls_classify_failure(ssl, e, h->host, h->port, false, h->error, sizeof(h->error));
	else
		snprintf(h->error, sizeof(h->error), "%s closed the connection before a complete "
		    "HTTP response", h->hostport);
}

static void http_on_error(enum evhttp_request_error err, void *arg)
{
	struct oauth2_http *h = arg;

	if (err == EVREQ_HTTP_DATA_TOO_LONG)
		h->too_long = true;
}

static void http_on_response(struct evhttp_request *req, void *arg)
{
	struct oauth2_http *h = arg;
	int saved = errno;
	struct evbuffer *in = req ? evhttp_request_get_input_buffer(req) : NULL;
	size_t n = in ? evbuffer_get_length(in) : 0;

	if (h->finished)
		return;
	h->finished = true;
	h->status = req ? evhttp_request_get_response_code(req) : 0;
	if (h->status > 0 && n > OAUTH2_BODY_MAX) {
		h->status = 0;
		h->too_long = true;
	}
	if (h->status > 0 && n > 0 && (buf_append(&h->body, "", 0) < 0
	    || buf_append(&h->body, evbuffer_pullup(in, (ev_ssize_t)n), n) < 0)) {
		h->status = 0;
		snprintf(h->error, sizeof(h->error), "out of memory");
	} else if (h->status == 0) {
		http_explain(h, saved);
	}
	if (in)
		evbuffer_drain(in, n);
	evtimer_del(h->deadline);
	/* libevent still uses the connection after this returns: finish later. */
	event_active(h->finish, 0, 0);
}

static void http_on_deadline(evutil_socket_t fd, short what, void *arg)
{
	struct oauth2_http *h = arg;

	if (h->finished)
		return;
	h->finished = true;
	h->timed_out = true;
	h->status = 0;
	http_explain(h, 0);
	event_active(h->finish, 0, 0);
}

static int http_parse_url(struct oauth2_http *h, const char *url, char **pathq, char *err,
    size_t errlen)
{
	struct evhttp_uri *u = evhttp_uri_parse_with_flags(url, 0);
	const char *scheme = u ? evhttp_uri_get_scheme(u) : NULL;
	const char *host = u ? evhttp_uri_get_host(u) : NULL;
	const char *path, *query;
	int port, r;

	if (!scheme || strcasecmp(scheme, "https") != 0 || !host || !host[0]
	    || strlen(host) >= sizeof(h->host)) {
		oauth2_clean(h->error, sizeof(h->error), url);
		snprintf(err, errlen, "%s is not an https:// URL", h->error);
		if (u)
			evhttp_uri_free(u);
		return -1;
	}
	port = evhttp_uri_get_port(u);
	h->port = port > 0 ? (unsigned)port : 443;
	/* evhttp keeps an IPv6 literal's brackets; TLS wants the bare address. */
	snprintf(h->host, sizeof(h->host), "%.*s", (int)strlen(host) - (host[0] == '[' ? 2 : 0),
	    host + (host[0] == '['));
	if (h->port == 443)
		snprintf(h->hostport, sizeof(h->hostport), "%s", host);
	else
		snprintf(h->hostport, sizeof(h->hostport), "%s:%u", host, h->port);
	path = evhttp_uri_get_path(u);
	query = evhttp_uri_get_query(u);
	r = asprintf(pathq, "%s%s%s", path && path[0] ? path : "/", query ? "?" : "",
	    query ? query : "");
	evhttp_uri_free(u);
	if (r < 0) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	return 0;
}

static struct evhttp_request *http_request(struct oauth2_http *h, const struct buf *form)
{
	struct evhttp_request *req = evhttp_request_new(http_on_response, h);
	struct evkeyvalq *hd = req ? evhttp_request_get_output_headers(req) : NULL;
	char clen[32];

	if (!req)
		return NULL;
	snprintf(clen, sizeof(clen), "%zu", form->len);
	evhttp_request_set_error_cb(req, http_on_error);
	if (evhttp_add_header(hd, "Host", h->hostport) < 0
	    || evhttp_add_header(hd, "Content-Type", "application/x-www-form-urlencoded") < 0
	    || evhttp_add_header(hd, "Content-Length", clen) < 0
	    || evhttp_add_header(hd, "Accept", "application/json") < 0
	    || evhttp_add_header(hd, "User-Agent", PACKAGE_NAME "/" PACKAGE_VERSION) < 0
	    || evhttp_add_header(hd, "Connection", "close") < 0
	    || evbuffer_add(evhttp_request_get_output_buffer(req), form->data, form->len) < 0) {
		evhttp_request_free(req);
		return NULL;
	}
	return req;
}

static int http_connect(struct oauth2_http *h, struct evdns_base *dns, SSL_CTX *ctx)
{
	struct conf_smarthost peer = { .host = h->host };
	SSL *ssl = tls_new_ssl(ctx, &peer);
	struct bufferevent *bev;

	if (!ssl)
		return -1;
	SSL_set_app_data(ssl, h);
	SSL_set_info_callback(ssl, http_ssl_info);
	bev = bufferevent_openssl_socket_new(h->base, -1, ssl, BUFFEREVENT_SSL_CONNECTING,
	    BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
	if (!bev) {
		SSL_free(ssl);
		return -1;
	}
	/* Servers often close without close_notify after Connection: close. */
	bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
	h->evcon = evhttp_connection_base_bufferevent_new(h->base, dns, bev, h->host,
	    (unsigned short)h->port);
	if (!h->evcon) {
		bufferevent_free(bev);
		return -1;
	}
	evhttp_connection_set_timeout(h->evcon, (int)h->timeout);
	evhttp_connection_set_retries(h->evcon, 0);
	evhttp_connection_set_max_body_size(h->evcon, OAUTH2_BODY_MAX);
	evhttp_connection_set_max_headers_size(h->evcon, 16384);
	return 0;
}

static int http_start(struct oauth2_http *h, struct evdns_base *dns, SSL_CTX *ctx,
    const struct buf *form, const char *pathq)
{
	struct timeval tv = { (time_t)h->timeout, 0 };
	struct evhttp_request *req;

	h->deadline = evtimer_new(h->base, http_on_deadline, h);
	h->finish = event_new(h->base, -1, 0, http_on_finish, h);
	if (!h->deadline || !h->finish || http_connect(h, dns, ctx) < 0)
		return -1;
	req = http_request(h, form);
	if (!req)
		return -1;
	if (evhttp_make_request(h->evcon, req, EVHTTP_REQ_POST, pathq) < 0) {
		evhttp_request_free(req);
		return -1;
	}
	return evtimer_add(h->deadline, &tv);
}

struct oauth2_http *oauth2_http_post(struct event_base *base, struct evdns_base *dns,
    SSL_CTX *ctx, const char *url, const struct buf *form, unsigned timeout,
    oauth2_http_fn done, void *arg, char *err, size_t errlen)
{
	struct oauth2_http *h = calloc(1, sizeof(*h));
	char *pathq = NULL;

	if (!h) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	h->base = base;
	h->timeout = timeout ? timeout : 30;
	h->done = done;
	h->arg = arg;
	buf_init(&h->body, OAUTH2_BODY_MAX);
	if (http_parse_url(h, url, &pathq, err, errlen) < 0) {
		http_free(h);
		return NULL;
	}
	ERR_clear_error();
	if (http_start(h, dns, ctx, form, pathq) < 0) {
		snprintf(err, errlen, "cannot start an HTTPS request to %s: %s", h->hostport,
		    errno ? strerror(errno) : "out of memory");
		free(pathq);
		http_free(h);
		return NULL;
	}
	free(pathq);
	return h;
}
