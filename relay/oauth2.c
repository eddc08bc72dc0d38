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

#define OAUTH2_MARGIN_MAX 60		/* refresh this long before expiry at most */
#define OAUTH2_DEFAULT_LIFETIME 300	/* when the server does not say */
#define OAUTH2_FORM_MAX (4 * OAUTH2_TOKEN_MAX)

/* ---- the token manager ---- */

struct oauth2_entry;

struct oauth2_req {
	struct oauth2 *o;
	struct oauth2_entry *e;		/* NULL once the outcome is known */
	oauth2_done_fn done;
	void *arg;
	char *token;
	long expires_in;
	char *error;
	TAILQ_ENTRY(oauth2_req) link;
};
TAILQ_HEAD(oauth2_reqq, oauth2_req);

/* One token source: what the refresh request is made of. */
struct oauth2_entry {
	struct oauth2 *o;
	char *name, *url, *client_id, *secret, *rt_file, *scope, *ca_file;
	int min_version;
	unsigned timeout;
	SSL_CTX *ctx;
	char *token;
	double expires_at, refresh_at;	/* monotonic */
	char *rt_sent;			/* the refresh token of the request in flight */
	struct oauth2_saving *saving;	/* a rotated token on its way to rt_file */
	struct oauth2_http *http;
	struct oauth2_reqq waiting;
	LIST_ENTRY(oauth2_entry) link;
};

/* A rotated refresh token handed to the saver: newer than rt_file until
 * done.  e is NULL once the entry is gone or a newer token replaced it. */
struct oauth2_saving {
	struct oauth2_entry *e;
	char *name, *file, *token;
};

struct oauth2 {
	struct event_base *base;
	struct evdns_base *dns;
	oauth2_saver_fn save;
	void *save_ctx;
	LIST_HEAD(, oauth2_entry) entries;
	struct oauth2_reqq ready;
	struct event *ready_ev;
};

static double oauth2_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static bool oauth2_same(const char *a, const char *b)
{
	return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static bool oauth2_entry_match(const struct oauth2_entry *e, const struct conf_smarthost *sh)
{
	return oauth2_same(e->name, sh->name) && oauth2_same(e->url, sh->oauth2_token_url)
	    && oauth2_same(e->client_id, sh->oauth2_client_id)
	    && oauth2_same(e->secret, sh->oauth2_client_secret)
	    && oauth2_same(e->rt_file, sh->oauth2_refresh_token_file)
	    && oauth2_same(e->scope, sh->oauth2_scope) && oauth2_same(e->ca_file, sh->tls_ca_file)
	    && e->min_version == sh->tls_min_version;
}

static void oauth2_entry_free(struct oauth2_entry *e)
{
	if (e->saving)
		e->saving->e = NULL;
	oauth2_http_cancel(e->http);
	if (e->ctx)
		SSL_CTX_free(e->ctx);
	free(e->name);
	free(e->url);
	free(e->client_id);
	oauth2_free_secret(e->secret);
	free(e->rt_file);
	free(e->scope);
	free(e->ca_file);
	oauth2_free_secret(e->token);
	oauth2_free_secret(e->rt_sent);
	free(e);
}

static char *oauth2_dup(const char *s, bool *ok)
{
	char *d = s ? strdup(s) : NULL;

	if (s && !d)
		*ok = false;
	return d;
}

static struct oauth2_entry *oauth2_entry_new(struct oauth2 *o, const struct conf_smarthost *sh)
{
	struct oauth2_entry *e = calloc(1, sizeof(*e));
	bool ok = true;

	if (!e)
		return NULL;
	e->o = o;
	e->name = oauth2_dup(sh->name, &ok);
	e->url = oauth2_dup(sh->oauth2_token_url, &ok);
	e->client_id = oauth2_dup(sh->oauth2_client_id, &ok);
	e->secret = oauth2_dup(sh->oauth2_client_secret, &ok);
	e->rt_file = oauth2_dup(sh->oauth2_refresh_token_file, &ok);
	e->scope = oauth2_dup(sh->oauth2_scope, &ok);
	e->ca_file = oauth2_dup(sh->tls_ca_file, &ok);
	e->min_version = sh->tls_min_version;
	TAILQ_INIT(&e->waiting);
	if (!ok) {
		oauth2_entry_free(e);
		return NULL;
	}
	LIST_INSERT_HEAD(&o->entries, e, link);
	return e;
}

static struct oauth2_entry *oauth2_entry_get(struct oauth2 *o, const struct conf_smarthost *sh)
{
	struct oauth2_entry *e;

	LIST_FOREACH(e, &o->entries, link)
		if (oauth2_entry_match(e, sh))
			break;
	if (!e)
		e = oauth2_entry_new(o, sh);
	/* Timeouts may change on reload without a new token being needed. */
	if (e)
		e->timeout = sh->connect_timeout + sh->command_timeout;
	return e;
}

static void oauth2_req_free(struct oauth2_req *r)
{
	oauth2_free_secret(r->token);
	free(r->error);
	free(r);
}

static void oauth2_on_ready(evutil_socket_t fd, short what, void *arg)
{
	struct oauth2 *o = arg;
	struct oauth2_req *r;

	/* A callback may cancel or add requests: take one at a time. */
	while ((r = TAILQ_FIRST(&o->ready))) {
		TAILQ_REMOVE(&o->ready, r, link);
		r->done(r->token, r->expires_in, r->token ? NULL : r->error, r->arg);
		oauth2_req_free(r);
	}
}

/* The outcome for r: the entry's token, or error. */
static void oauth2_req_finish(struct oauth2_req *r, const char *error)
{
	struct oauth2_entry *e = r->e;
	double left = e->expires_at - oauth2_now();

	if (!error) {
		r->token = strdup(e->token);
		r->expires_in = left > 0 ? (long)left : 0;
	}
	if (error || !r->token)
		r->error = strdup(error ? error : "out of memory");
	r->e = NULL;
	TAILQ_INSERT_TAIL(&r->o->ready, r, link);
	event_active(r->o->ready_ev, 0, 0);
}

static void oauth2_entry_finish(struct oauth2_entry *e, const char *error)
{
	struct oauth2_req *r;

	while ((r = TAILQ_FIRST(&e->waiting))) {
		TAILQ_REMOVE(&e->waiting, r, link);
		oauth2_req_finish(r, error);
	}
}

static void oauth2_saved_log(const char *name, const char *file, int error, const char *err)
{
	if (error)
		log_err("smarthost %s: the provider issued a new refresh token but it could not "
		    "be saved (%s): the old one may stop working; fix the file's directory "
		    "permissions or run `smtprelay oauth2-login %s`", name, err, name);
	else
		log_info("smarthost %s: the provider rotated the refresh token; saved it to %s",
		    name, file);
}

static void oauth2_saving_free(struct oauth2_saving *v)
{
	if (v->e && v->e->saving == v)
		v->e->saving = NULL;
	free(v->name);
	free(v->file);
	oauth2_free_secret(v->token);
	free(v);
}

/* The saver is done: from now on the file holds the token (or the error
 * is logged and the next refresh reads the file again, as it would have). */
static void oauth2_saved(void *arg, int error, const char *err)
{
	struct oauth2_saving *v = arg;

	oauth2_saved_log(v->name, v->file, error, err);
	oauth2_saving_free(v);
}

/* Hand rt to the saver; false when there is none or out of memory. */
static bool oauth2_save_later(struct oauth2_entry *e, const char *rt)
{
	struct oauth2_saving *v;

	if (!e->o->save || !(v = calloc(1, sizeof(*v))))
		return false;
	if (!(v->name = strdup(e->name)) || !(v->file = strdup(e->rt_file)) ||
	    !(v->token = strdup(rt))) {
		oauth2_saving_free(v);
		return false;
	}
	if (e->saving)
		e->saving->e = NULL;	/* superseded: the saver keeps their order */
	v->e = e;
	e->saving = v;
	e->o->save(e->o->save_ctx, v->file, v->token, oauth2_saved, v);
	return true;
}

static void oauth2_rotated(struct oauth2_entry *e, const char *rt)
{
	char err[OAUTH2_ERR_MAX];
	int r;

	if (!rt || !e->rt_sent || strcmp(rt, e->rt_sent) == 0 || oauth2_save_later(e, rt))
		return;
	r = oauth2_save_refresh_token(e->rt_file, rt, err, sizeof(err));
	oauth2_saved_log(e->name, e->rt_file, r < 0 ? (errno ? errno : EIO) : 0, err);
}

static void oauth2_store(struct oauth2_entry *e, struct oauth2_token *tok, const char *host)
{
	long life = tok->expires_in >= 0 ? tok->expires_in : OAUTH2_DEFAULT_LIFETIME;
	double margin = life / 10.0 < OAUTH2_MARGIN_MAX ? life / 10.0 : OAUTH2_MARGIN_MAX;
	double now = oauth2_now();

	oauth2_free_secret(e->token);
	e->token = tok->access_token;
	tok->access_token = NULL;
	e->expires_at = now + (double)life;
	e->refresh_at = e->expires_at - margin;
	log_info("smarthost %s: new OAuth2 access token from %s, valid for %lds", e->name, host,
	    life);
	oauth2_rotated(e, tok->refresh_token);
}

static void oauth2_rejected(struct oauth2_entry *e, const char *why, char *msg, size_t len)
{
	if (strncmp(why, "invalid_grant", 13) == 0)
		snprintf(msg, len, "smarthost %s: the refresh token in %s was rejected (%s): run "
		    "`smtprelay oauth2-login %s` again", e->name, e->rt_file, why, e->name);
	else if (strncmp(why, "invalid_scope", 13) == 0)
		snprintf(msg, len, "smarthost %s: the token endpoint refused oauth2_scope (%s): "
		    "check oauth2_scope", e->name, why);
	else
		snprintf(msg, len, "smarthost %s: the token endpoint refused the client (%s): "
		    "check oauth2_client_id and oauth2_client_secret_file%s", e->name, why,
		    e->secret ? "" : " (this provider may need a client secret)");
}

static void oauth2_on_http(const struct oauth2_http_result *res, void *arg)
{
	struct oauth2_entry *e = arg;
	struct oauth2_token tok;
	char why[OAUTH2_ERR_MAX], msg[2 * OAUTH2_ERR_MAX], host[300];
	enum oauth2_outcome out;

	e->http = NULL;
	oauth2_url_host(e->url, host, sizeof(host));
	if (res->status == 0) {
		snprintf(msg, sizeof(msg), "smarthost %s: cannot obtain an OAuth2 access token "
		    "from %s: %s", e->name, host, res->error);
		log_warn("%s", msg);
		oauth2_entry_finish(e, msg);
		return;
	}
	out = oauth2_token_response(res->status, res->body, res->len, &tok, why, sizeof(why));
	if (out == OAUTH2_OK) {
		oauth2_store(e, &tok, host);
		oauth2_token_clear(&tok);
		oauth2_entry_finish(e, NULL);
		return;
	}
	if (out == OAUTH2_REJECTED) {
		oauth2_rejected(e, why, msg, sizeof(msg));
		log_err("%s", msg);
	} else {
		snprintf(msg, sizeof(msg), "smarthost %s: cannot obtain an OAuth2 access token "
		    "from %s: %s", e->name, host, why);
		log_warn("%s", msg);
	}
	oauth2_entry_finish(e, msg);
}

static int oauth2_form(struct oauth2_entry *e, struct buf *form)
{
	if (oauth2_form_add(form, "grant_type", "refresh_token") < 0
	    || oauth2_form_add(form, "refresh_token", e->rt_sent) < 0
	    || oauth2_form_add(form, "client_id", e->client_id ? e->client_id : "") < 0
	    || (e->secret && oauth2_form_add(form, "client_secret", e->secret) < 0)
	    || (e->scope && oauth2_form_add(form, "scope", e->scope) < 0))
		return -1;
	return 0;
}

static int oauth2_prepare(struct oauth2_entry *e, const struct conf_smarthost *sh, char *msg,
    size_t len)
{
	char err[OAUTH2_ERR_MAX];

	oauth2_free_secret(e->rt_sent);
	/* A rotated token still being saved is newer than the file. */
	e->rt_sent = e->saving ? strdup(e->saving->token) :
	    oauth2_load_refresh_token(e->rt_file, err, sizeof(err));
	if (!e->rt_sent && e->saving)
		snprintf(err, sizeof(err), "out of memory");
	if (!e->rt_sent) {
		snprintf(msg, len, "smarthost %s: no refresh token (%s): run `smtprelay "
		    "oauth2-login %s`", e->name, err, e->name);
		return -1;
	}
	if (!e->ctx && !(e->ctx = oauth2_ssl_ctx(sh, err, sizeof(err)))) {
		snprintf(msg, len, "smarthost %s: OAuth2 token endpoint: %s", e->name, err);
		return -1;
	}
	return 0;
}

/* One refresh request for everyone waiting on e. */
static void oauth2_fetch(struct oauth2_entry *e, const struct conf_smarthost *sh)
{
	char msg[2 * OAUTH2_ERR_MAX], err[OAUTH2_ERR_MAX];
	struct buf form;

	buf_init(&form, OAUTH2_FORM_MAX);
	if (oauth2_prepare(e, sh, msg, sizeof(msg)) < 0) {
		log_err("%s", msg);
		oauth2_entry_finish(e, msg);
		return;
	}
	if (oauth2_form(e, &form) < 0) {
		snprintf(msg, sizeof(msg), "smarthost %s: cannot build the token request: %s",
		    e->name, strerror(errno));
	} else {
		log_debug("smarthost %s: requesting an OAuth2 access token", e->name);
		e->http = oauth2_http_post(e->o->base, e->o->dns, e->ctx, e->url, &form, e->timeout,
		    oauth2_on_http, e, err, sizeof(err));
		if (!e->http)
			snprintf(msg, sizeof(msg), "smarthost %s: %s", e->name, err);
	}
	oauth2_buf_wipe(&form);
	if (!e->http) {
		log_warn("%s", msg);
		oauth2_entry_finish(e, msg);
	}
}

struct oauth2 *oauth2_new(struct event_base *base, struct evdns_base *dns)
{
	struct oauth2 *o = calloc(1, sizeof(*o));

	if (!o)
		return NULL;
	o->base = base;
	o->dns = dns;
	LIST_INIT(&o->entries);
	TAILQ_INIT(&o->ready);
	o->ready_ev = event_new(base, -1, 0, oauth2_on_ready, o);
	if (!o->ready_ev) {
		free(o);
		return NULL;
	}
	return o;
}

void oauth2_set_saver(struct oauth2 *o, oauth2_saver_fn save, void *ctx)
{
	o->save = save;
	o->save_ctx = ctx;
}

void oauth2_free(struct oauth2 *o)
{
	struct oauth2_entry *e;
	struct oauth2_req *r;

	if (!o)
		return;
	while ((e = LIST_FIRST(&o->entries))) {
		while ((r = TAILQ_FIRST(&e->waiting))) {
			TAILQ_REMOVE(&e->waiting, r, link);
			oauth2_req_free(r);
		}
		LIST_REMOVE(e, link);
		oauth2_entry_free(e);
	}
	while ((r = TAILQ_FIRST(&o->ready))) {
		TAILQ_REMOVE(&o->ready, r, link);
		oauth2_req_free(r);
	}
	event_free(o->ready_ev);
	free(o);
}

struct oauth2_req *oauth2_get(struct oauth2 *o, const struct conf_smarthost *sh,
    oauth2_done_fn done, void *arg)
{
	struct oauth2_entry *e = oauth2_entry_get(o, sh);
	struct oauth2_req *r = e ? calloc(1, sizeof(*r)) : NULL;

	if (!r) {
		errno = ENOMEM;
		return NULL;
	}
	r->o = o;
	r->e = e;
	r->done = done;
	r->arg = arg;
	if (e->token && oauth2_now() < e->refresh_at) {
		oauth2_req_finish(r, NULL);
		return r;
	}
	TAILQ_INSERT_TAIL(&e->waiting, r, link);
	if (!e->http)
		oauth2_fetch(e, sh);
	return r;
}

void oauth2_cancel(struct oauth2_req *r)
{
	if (!r)
		return;
	if (r->e)
		TAILQ_REMOVE(&r->e->waiting, r, link);
	else
		TAILQ_REMOVE(&r->o->ready, r, link);
	oauth2_req_free(r);
}

void oauth2_invalidate(struct oauth2 *o, const struct conf_smarthost *sh)
{
	struct oauth2_entry *e;

	LIST_FOREACH(e, &o->entries, link) {
		if (oauth2_entry_match(e, sh) && e->token) {
			oauth2_free_secret(e->token);
			e->token = NULL;
		}
	}
}

void oauth2_source(const struct conf_smarthost *sh, char *dst, size_t len)
{
	char host[300];

	if (sh->oauth2_token_url) {
		oauth2_url_host(sh->oauth2_token_url, host, sizeof(host));
		snprintf(dst, len, "oauth2_token_url (%s)", host);
	} else if (sh->password_command) {
		snprintf(dst, len, "password_command");
	} else if (sh->password_file) {
		snprintf(dst, len, "password_file");
	} else if (sh->password) {
		snprintf(dst, len, "password");
	} else {
		snprintf(dst, len, "none");
	}
}
