#include "config.h"
#include "frontend/oauth2_login.h"
#include "frontend/login_state.h"

#include <errno.h>
#include <signal.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include <event2/dns.h>
#include <event2/event.h>

#include "relay/oauth2.h"

#define LOGIN_ERR_MAX 1024
#define LOGIN_DEFAULT_INTERVAL 5	/* RFC 8628 §3.2 */
#define LOGIN_DEFAULT_LIFETIME 900
#define LOGIN_SLOW_DOWN 5		/* RFC 8628 §3.5: add 5 seconds */
#define LOGIN_RUNNING (-1)

struct login {
	struct event_base *base;
	struct evdns_base *dns;
	SSL_CTX *ctx;
	const struct config *conf;
	const struct conf_smarthost *sh;
	char *device_url;
	char *device_code;
	long interval;
	time_t deadline;
	unsigned http_timeout;
	struct event *timer;
	struct oauth2_http *http;
	int rc;
};

struct login_opts {
	const char *device_url;
	long timeout;			/* 0: as long as the code is valid */
	const char *name;
};

static const char *const login_ms_host = "https://login.microsoftonline.com/";
static const char *const login_ms_suffix = "/oauth2/v2.0/token";
static const char *const login_google_token = "https://oauth2.googleapis.com/token";

char *oauth2_login_device_url(const char *url)
{
	size_t n = strlen(url), hl = strlen(login_ms_host), sl = strlen(login_ms_suffix);
	char *d;

	if (strcasecmp(url, login_google_token) == 0)
		return strdup("https://oauth2.googleapis.com/device/code");
	if (n <= hl + sl || strncasecmp(url, login_ms_host, hl) != 0
	    || strcmp(url + n - sl, login_ms_suffix) != 0)
		return NULL;
	/* .../oauth2/v2.0/token -> .../oauth2/v2.0/devicecode */
	d = malloc(n - strlen("token") + strlen("devicecode") + 1);
	if (d)
		sprintf(d, "%.*sdevicecode", (int)(n - strlen("token")), url);
	return d;
}

static void login_fail(struct login *l, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void login_fail(struct login *l, int rc, const char *fmt, ...)
{
	va_list ap;

	fputs("smtprelay oauth2-login: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	l->rc = rc;
	event_base_loopexit(l->base, NULL);
}

static void login_on_device(const struct oauth2_http_result *res, void *arg);
static void login_on_token(const struct oauth2_http_result *res, void *arg);

static int login_post(struct login *l, const char *url, const struct buf *form, oauth2_http_fn fn)
{
	char err[LOGIN_ERR_MAX];

	l->http = oauth2_http_post(l->base, l->dns, l->ctx, url, form, l->http_timeout, fn, l,
	    err, sizeof(err));
	if (!l->http) {
		login_fail(l, EX_UNAVAILABLE, "%s", err);
		return -1;
	}
	return 0;
}

static void login_form_done(struct login *l, struct buf *form, int r, const char *url,
    oauth2_http_fn fn)
{
	if (r < 0)
		login_fail(l, EX_OSERR, "cannot build the request: %s", strerror(errno));
	else
		login_post(l, url, form, fn);
	oauth2_wipe(form->data, form->cap);
	buf_free(form);
}

static void login_poll(evutil_socket_t fd, short what, void *arg)
{
	struct login *l = arg;
	const struct conf_smarthost *sh = l->sh;
	struct buf form;
	int r;

	if (time(NULL) >= l->deadline) {
		login_fail(l, EX_TEMPFAIL, "timed out waiting for the sign-in; run it again");
		return;
	}
	buf_init(&form, 4 * OAUTH2_TOKEN_MAX);
	r = oauth2_form_add(&form, "grant_type", "urn:ietf:params:oauth:grant-type:device_code");
	if (r == 0)
		r = oauth2_form_add(&form, "device_code", l->device_code);
	if (r == 0)
		r = oauth2_form_add(&form, "client_id", sh->oauth2_client_id);
	if (r == 0 && sh->oauth2_client_secret)
		r = oauth2_form_add(&form, "client_secret", sh->oauth2_client_secret);
	login_form_done(l, &form, r, sh->oauth2_token_url, login_on_token);
}

static void login_schedule(struct login *l)
{
	struct timeval tv = { (time_t)l->interval, 0 };

	if (evtimer_add(l->timer, &tv) < 0)
		login_fail(l, EX_OSERR, "cannot set a timer");
}

static void login_store(struct login *l, const struct oauth2_token *tok)
{
	const char *file = l->sh->oauth2_refresh_token_file;
	char err[LOGIN_ERR_MAX];

	if (!tok->refresh_token) {
		login_fail(l, EX_PROTOCOL, "signed in, but the provider returned no refresh token "
		    "(the scope needs offline_access for Microsoft; Google returns one for "
		    "\"TVs and Limited Input devices\" clients)");
		return;
	}
	if (oauth2_save_refresh_token(file, tok->refresh_token, err, sizeof(err)) < 0) {
		login_fail(l, EX_CANTCREAT, "%s", err);
		return;
	}
	if (login_state_own(l->conf, file) != EX_OK) {
		l->rc = EX_CANTCREAT;
		event_base_loopexit(l->base, NULL);
		return;
	}
	printf("Signed in. The refresh token for smarthost %s is stored in %s (mode 0600).\n"
	    "smtprelayd uses it from its next delivery; no restart is needed.\n",
	    l->sh->name, file);
	fflush(stdout);
	l->rc = EX_OK;
	event_base_loopexit(l->base, NULL);
}

static void login_on_token(const struct oauth2_http_result *res, void *arg)
{
	struct login *l = arg;
	struct oauth2_token tok;
	char why[LOGIN_ERR_MAX];

	l->http = NULL;
	if (res->status == 0) {
		login_fail(l, EX_UNAVAILABLE, "token endpoint: %s", res->error);
		return;
	}
	switch (oauth2_token_response(res->status, res->body, res->len, &tok, why, sizeof(why))) {
	case OAUTH2_OK:
		login_store(l, &tok);
		oauth2_token_clear(&tok);
		return;
	case OAUTH2_PENDING:
		login_schedule(l);
		return;
	case OAUTH2_SLOW_DOWN:
		l->interval += LOGIN_SLOW_DOWN;
		login_schedule(l);
		return;
	case OAUTH2_DENIED:
		login_fail(l, EX_NOPERM, "the sign-in was declined (%s)", why);
		return;
	case OAUTH2_EXPIRED:
		login_fail(l, EX_TEMPFAIL, "the code expired before the sign-in finished (%s); "
		    "run it again", why);
		return;
	case OAUTH2_REJECTED:
		login_fail(l, EX_CONFIG, "the token endpoint refused the request (%s): check "
		    "oauth2_client_id, oauth2_client_secret_file and oauth2_scope", why);
		return;
	default:
		login_fail(l, EX_UNAVAILABLE, "token endpoint: %s", why);
		return;
	}
}

/* Only what a person must see: the URL and the user code. */
static void login_print_code(struct login *l, const char *uri, const char *complete,
    const char *code, long lifetime)
{
	printf("To allow smtprelay to send mail for smarthost %s as %s, open\n\n    %s\n\n"
	    "in a browser on any device and enter the code\n\n    %s\n\n", l->sh->name,
	    l->sh->username ? l->sh->username : "the mailbox", uri, code);
	if (complete)
		printf("(or open %s)\n", complete);
	printf("Waiting for the sign-in (the code is valid for %ld minutes)...\n",
	    (lifetime + 59) / 60);
	fflush(stdout);
}

static bool login_printable(const char *s)
{
	if (!s || !*s || strlen(s) > 2048)
		return false;
	for (; *s; s++)
		if ((unsigned char)*s <= 0x20 || (unsigned char)*s >= 0x7f)
			return false;
	return true;
}

static int login_device_fields(struct login *l, const struct oauth2_json *j, char *err,
    size_t errlen)
{
	const char *dc = oauth2_json_str(j, "device_code");
	const char *uc = oauth2_json_str(j, "user_code");
	const char *uri = oauth2_json_str(j, "verification_uri");
	const char *complete = oauth2_json_str(j, "verification_uri_complete");
	long lifetime = LOGIN_DEFAULT_LIFETIME, interval = LOGIN_DEFAULT_INTERVAL;
	time_t until;

	if (!uri)
		uri = oauth2_json_str(j, "verification_url");	/* Google's spelling */
	if (!login_printable(dc) || !login_printable(uc) || !login_printable(uri)) {
		snprintf(err, errlen, "the response lacks device_code, user_code or verification_uri");
		return -1;
	}
	if (!login_printable(complete))
		complete = NULL;
	oauth2_json_long(j, "expires_in", &lifetime);
	if (oauth2_json_long(j, "interval", &interval) && interval < 1)
		interval = 1;
	l->interval = interval;
	until = time(NULL) + lifetime;
	if (until < l->deadline)
		l->deadline = until;
	if (!(l->device_code = strdup(dc))) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	login_print_code(l, uri, complete, uc, lifetime);
	return 0;
}

static void login_on_device(const struct oauth2_http_result *res, void *arg)
{
	struct login *l = arg;
	struct oauth2_json j;
	struct oauth2_token tok;
	char why[LOGIN_ERR_MAX];

	l->http = NULL;
	if (res->status == 0) {
		login_fail(l, EX_UNAVAILABLE, "device authorization endpoint: %s", res->error);
		return;
	}
	if (res->status != 200) {
		/* Same error format as the token endpoint. */
		enum oauth2_outcome o = oauth2_token_response(res->status, res->body, res->len,
		    &tok, why, sizeof(why));

		oauth2_token_clear(&tok);
		login_fail(l, o == OAUTH2_REJECTED ? EX_CONFIG : EX_UNAVAILABLE,
		    "device authorization endpoint %s refused the request: %s", l->device_url, why);
		return;
	}
	if (oauth2_json_parse(res->body, res->len, &j, why, sizeof(why)) < 0) {
		login_fail(l, EX_UNAVAILABLE, "device authorization endpoint: the response is not "
		    "valid JSON (%s)", why);
		return;
	}
	if (login_device_fields(l, &j, why, sizeof(why)) < 0)
		login_fail(l, EX_UNAVAILABLE, "device authorization endpoint: %s", why);
	else
		login_schedule(l);
	oauth2_json_free(&j);
}

static void login_start(struct login *l)
{
	struct buf form;
	int r;

	buf_init(&form, 4 * OAUTH2_TOKEN_MAX);
	r = oauth2_form_add(&form, "client_id", l->sh->oauth2_client_id);
	if (r == 0 && l->sh->oauth2_scope)
		r = oauth2_form_add(&form, "scope", l->sh->oauth2_scope);
	login_form_done(l, &form, r, l->device_url, login_on_device);
}

static int login_usage(void)
{
	fputs("usage: smtprelay oauth2-login [--device-url URL] [--timeout SECONDS] NAME\n", stderr);
	return EX_USAGE;
}

static int login_args(int argc, char **argv, struct login_opts *o)
{
	static const struct option longopts[] = {
		{ "device-url", required_argument, NULL, 'u' },
		{ "timeout", required_argument, NULL, 't' },
		{ NULL, 0, NULL, 0 },
	};
	char *end;
	int ch;

	memset(o, 0, sizeof(*o));
	optind = 0;	/* GNU: full reset, the caller may have parsed its own options */
	opterr = 0;
	while ((ch = getopt_long(argc, argv, "+", longopts, NULL)) != -1) {
		if (ch == 'u') {
			o->device_url = optarg;
		} else if (ch == 't') {
			errno = 0;
			o->timeout = strtol(optarg, &end, 10);
			if (errno || *end || o->timeout <= 0)
				return -1;
		} else {
			return -1;
		}
	}
	if (argc - optind != 1)
		return -1;
	o->name = argv[optind];
	return 0;
}

static const struct conf_smarthost *login_find(const struct config *c, const char *name)
{
	for (size_t i = 0; i < c->nsmarthosts; i++)
		if (strcmp(c->smarthosts[i].name, name) == 0)
			return &c->smarthosts[i];
	return NULL;
}

static int login_check(const struct config *c, const struct conf_smarthost *sh,
    const struct login_opts *o)
{
	if (!sh) {
		fprintf(stderr, "smtprelay oauth2-login: %s: no smarthost \"%s\"\n", c->path, o->name);
		return EX_CONFIG;
	}
	if (!sh->oauth2_token_url || !sh->oauth2_client_id || !sh->oauth2_refresh_token_file) {
		fprintf(stderr, "smtprelay oauth2-login: %s: smarthost \"%s\" needs oauth2_token_url, "
		    "oauth2_client_id and oauth2_refresh_token_file\n", c->path, o->name);
		return EX_CONFIG;
	}
	return login_state_prepare(c, sh->oauth2_refresh_token_file);
}

static int login_setup(struct login *l, const struct login_opts *o)
{
	char err[LOGIN_ERR_MAX];

	l->device_url = o->device_url ? strdup(o->device_url)
	    : oauth2_login_device_url(l->sh->oauth2_token_url);
	if (!l->device_url) {
		fprintf(stderr, "smtprelay oauth2-login: no known device authorization endpoint "
		    "for %s: give it with --device-url URL\n", l->sh->oauth2_token_url);
		return EX_USAGE;
	}
	l->base = event_base_new();
	l->dns = l->base ? evdns_base_new(l->base, EVDNS_BASE_INITIALIZE_NAMESERVERS) : NULL;
	if (l->base && !l->dns)
		l->dns = evdns_base_new(l->base, 0);
	l->timer = l->base ? evtimer_new(l->base, login_poll, l) : NULL;
	if (!l->base || !l->dns || !l->timer) {
		fputs("smtprelay oauth2-login: cannot set up the event loop\n", stderr);
		return EX_OSERR;
	}
	l->ctx = oauth2_ssl_ctx(l->sh, err, sizeof(err));
	if (!l->ctx) {
		fprintf(stderr, "smtprelay oauth2-login: %s\n", err);
		return EX_CONFIG;
	}
	return EX_OK;
}

static void login_cleanup(struct login *l)
{
	oauth2_http_cancel(l->http);
	if (l->timer)
		event_free(l->timer);
	if (l->ctx)
		SSL_CTX_free(l->ctx);
	if (l->dns)
		evdns_base_free(l->dns, 0);
	if (l->base)
		event_base_free(l->base);
	if (l->device_code) {
		oauth2_wipe(l->device_code, strlen(l->device_code));
		free(l->device_code);
	}
	free(l->device_url);
}

int oauth2_login_main(const struct config *c, int argc, char **argv)
{
	struct login_opts o;
	struct login l = { .rc = LOGIN_RUNNING };
	struct sigaction ign = { .sa_handler = SIG_IGN }, old;
	int rc;

	if (login_args(argc, argv, &o) < 0)
		return login_usage();
	l.conf = c;
	l.sh = login_find(c, o.name);
	if ((rc = login_check(c, l.sh, &o)) != EX_OK)
		return rc;
	rc = login_setup(&l, &o);
	/* A peer closing early must be an error, not the end of the program. */
	sigaction(SIGPIPE, &ign, &old);
	if (rc == EX_OK) {
		l.http_timeout = l.sh->connect_timeout + l.sh->command_timeout;
		l.deadline = time(NULL) + (o.timeout > 0 ? o.timeout : 24 * 3600);
		login_start(&l);
		if (l.rc == LOGIN_RUNNING)
			event_base_dispatch(l.base);
		rc = l.rc == LOGIN_RUNNING ? EX_SOFTWARE : l.rc;
	}
	login_cleanup(&l);
	sigaction(SIGPIPE, &old, NULL);
	return rc;
}
