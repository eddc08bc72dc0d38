/* OAuth2 access tokens for smarthosts with oauth2_token_url (Microsoft 365,
 * Google), on the event loop.
 *
 * The token manager refreshes an access token with the refresh_token grant
 * (an HTTPS POST with libevent's HTTP client over an OpenSSL bufferevent;
 * the endpoint is verified like the smarthost: system CA store plus
 * tls_ca_file, SNI, host name), keeps it in memory until shortly before it
 * expires, coalesces concurrent requests for the same smarthost into one
 * HTTP request, and writes a rotated refresh token back to
 * oauth2_refresh_token_file atomically (mode 0600), off the loop when the
 * owner gives it a saver (oauth2_set_saver).  A rejected refresh
 * token or client (invalid_grant, invalid_client) is a configuration error
 * that names the command to run; every other failure names the endpoint's
 * host.  No token, client secret or device code ever reaches a log or an
 * error message.
 *
 * The same HTTPS client, the JSON reader and the form encoder serve the
 * device-code login (frontend/oauth2_login.c).
 *
 * One header, one module per part: relay/oauth2.c the token manager,
 * oauth2_http.c the HTTPS client, oauth2_json.c the JSON reader,
 * oauth2_form.c form encoding, oauth2_token.c token endpoint answers,
 * oauth2_tokenfile.c the refresh token file, oauth2_text.c wiping and
 * quoting (relay/oauth2int.h holds what only they share).
 */
#ifndef SMTPRELAY_OAUTH2_H
#define SMTPRELAY_OAUTH2_H

#include <stdbool.h>
#include <stddef.h>

#include <event2/dns.h>
#include <event2/event.h>
#include <openssl/ssl.h>

#include "conf/conf.h"
#include "lib/buf.h"

#define OAUTH2_BODY_MAX 65536		/* larger responses are refused */
#define OAUTH2_TOKEN_MAX 16384		/* access and refresh tokens */
#define OAUTH2_DEPTH_MAX 32		/* JSON nesting */

/* ---- token manager ---- */

struct oauth2;
struct oauth2_req;

/* token: the access token (valid during the call only), expires_in: its
 * remaining lifetime in seconds.  On failure token is NULL and error says
 * why, naming the smarthost (never a secret).  Always called from the event
 * loop, never from within oauth2_get; the request is freed after it
 * returns. */
typedef void (*oauth2_done_fn)(const char *token, long expires_in, const char *error, void *arg);

struct oauth2 *oauth2_new(struct event_base *base, struct evdns_base *dns);
/* Frees everything; pending callbacks are not called. */
void oauth2_free(struct oauth2 *o);
/* An access token for sh (which must have oauth2_token_url): the cached
 * one while it is fresh, else one HTTP request shared by every caller
 * waiting for the same smarthost.  sh need only live until this returns.
 * NULL with errno on ENOMEM. */
struct oauth2_req *oauth2_get(struct oauth2 *o, const struct conf_smarthost *sh,
    oauth2_done_fn done, void *arg);
/* done() is not called. */
void oauth2_cancel(struct oauth2_req *r);
/* The smarthost refused the cached token (535): the next oauth2_get
 * refreshes. */
void oauth2_invalidate(struct oauth2 *o, const struct conf_smarthost *sh);
/* For messages and `smtprelay probe`: "oauth2_token_url (HOST)",
 * "password_command", "password" or "none". */
void oauth2_source(const struct conf_smarthost *sh, char *dst, size_t len);
/* Saving a rotated refresh token waits for the disk (fsync, rename, fsync
 * of the directory).  A saver runs oauth2_save_refresh_token(path, token)
 * off the event loop, in the order asked, and calls done(arg, error, err)
 * later on the loop (error 0 or an errno, err from the save); path and
 * token are valid during the call only (copy them; wipe the token copy).
 * Until done, a refresh uses the new token, not the file.  Without a saver
 * (front ends, tests) the token is written before oauth2_get's caller
 * hears of the new access token. */
typedef void (*oauth2_saved_fn)(void *arg, int error, const char *err);
typedef void (*oauth2_saver_fn)(void *ctx, const char *path, const char *token,
    oauth2_saved_fn done, void *arg);
void oauth2_set_saver(struct oauth2 *o, oauth2_saver_fn save, void *ctx);
/* At start: the refresh token file is readable and its directory writable
 * (a rotated token must be saved).  0, or -1 with a message in err. */
int oauth2_check_files(const struct conf_smarthost *sh, char *err, size_t errlen);

/* ---- HTTPS POST (application/x-www-form-urlencoded) ---- */

struct oauth2_http;

struct oauth2_http_result {
	int status;			/* HTTP status; 0: no response (see error) */
	const char *body;		/* NUL-terminated, at most OAUTH2_BODY_MAX */
	size_t len;
	const char *error;		/* transport failure, names the host */
};
/* Called once from the event loop; the result lives during the call. */
typedef void (*oauth2_http_fn)(const struct oauth2_http_result *res, void *arg);

/* Context for an endpoint: always verified (system CA store plus
 * sh->tls_ca_file, minimum version as for the smarthost), even when the
 * smarthost itself is pinned with tls_verify = false. */
SSL_CTX *oauth2_ssl_ctx(const struct conf_smarthost *sh, char *err, size_t errlen);
/* POST form to url (https only) within timeout seconds.  NULL with a
 * message in err (bad URL, ENOMEM). */
struct oauth2_http *oauth2_http_post(struct event_base *base, struct evdns_base *dns,
    SSL_CTX *ctx, const char *url, const struct buf *form, unsigned timeout,
    oauth2_http_fn done, void *arg, char *err, size_t errlen);
/* done() is not called. */
void oauth2_http_cancel(struct oauth2_http *h);
/* "host" or "host:port" of an https URL, for messages. */
void oauth2_url_host(const char *url, char *dst, size_t len);

/* ---- responses ---- */

/* A JSON object's top-level scalar members (nested values are checked and
 * skipped).  Strings are decoded (escapes, \u surrogate pairs to UTF-8). */
struct oauth2_json_member {
	char *key;
	char *value;			/* decoded string, or the number's text */
	bool is_string;
};
struct oauth2_json {
	struct oauth2_json_member *m;
	size_t n;
};
/* 0, or -1 with a message in err (no value ever quoted). */
int oauth2_json_parse(const char *s, size_t len, struct oauth2_json *j, char *err, size_t errlen);
/* The string member key, NULL when absent or not a string. */
const char *oauth2_json_str(const struct oauth2_json *j, const char *key);
/* An integer member (a number, or a string of digits as some servers send). */
bool oauth2_json_long(const struct oauth2_json *j, const char *key, long *out);
/* Wipes the values. */
void oauth2_json_free(struct oauth2_json *j);

/* "&key=value" (no "&" first), application/x-www-form-urlencoded. */
int oauth2_form_add(struct buf *b, const char *key, const char *value);

enum oauth2_outcome {
	OAUTH2_OK,
	OAUTH2_TEMP,			/* try again later: 5xx, bad JSON, network */
	OAUTH2_REJECTED,		/* invalid_grant, invalid_client, unauthorized_client */
	OAUTH2_PENDING,			/* device flow: authorization_pending */
	OAUTH2_SLOW_DOWN,
	OAUTH2_DENIED,			/* access_denied */
	OAUTH2_EXPIRED,			/* expired_token */
};

struct oauth2_token {
	char *access_token;
	char *refresh_token;		/* NULL when not rotated */
	long expires_in;		/* -1 when absent */
};

/* Interpret a token endpoint answer.  OAUTH2_OK fills tok (free with
 * oauth2_token_clear); otherwise err says what the server said ("HTTP 503",
 * "invalid_grant: AADSTS70008 ...", "not JSON: ..."), sanitised and short. */
enum oauth2_outcome oauth2_token_response(int status, const char *body, size_t len,
    struct oauth2_token *tok, char *err, size_t errlen);
void oauth2_token_clear(struct oauth2_token *tok);

/* Replace path with token + "\n": temporary file in the same directory,
 * fsync, rename, fsync of the directory; mode 0600.  0, or -1 with a message
 * in err. */
int oauth2_save_refresh_token(const char *path, const char *token, char *err, size_t errlen);
/* Read the refresh token (surrounding white space removed); caller wipes
 * and frees.  NULL with a message in err. */
char *oauth2_load_refresh_token(const char *path, char *err, size_t errlen);
void oauth2_wipe(void *p, size_t n);

#endif
