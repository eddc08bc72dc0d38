/* What a token endpoint answered: the token, or an outcome with a reason a
 * person can act on (RFC 6749 error codes, device-code polling states). */
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

/* ---- token endpoint answers ---- */

void oauth2_token_clear(struct oauth2_token *tok)
{
	oauth2_free_secret(tok->access_token);
	oauth2_free_secret(tok->refresh_token);
	tok->access_token = tok->refresh_token = NULL;
	tok->expires_in = -1;
}

static enum oauth2_outcome oauth2_error_kind(const char *code)
{
	static const struct {
		const char *code;
		enum oauth2_outcome kind;
	} map[] = {
		{ "invalid_grant", OAUTH2_REJECTED },
		{ "invalid_client", OAUTH2_REJECTED },
		{ "unauthorized_client", OAUTH2_REJECTED },
		{ "invalid_scope", OAUTH2_REJECTED },
		{ "invalid_request", OAUTH2_REJECTED },
		{ "unsupported_grant_type", OAUTH2_REJECTED },
		{ "authorization_pending", OAUTH2_PENDING },
		{ "slow_down", OAUTH2_SLOW_DOWN },
		{ "access_denied", OAUTH2_DENIED },
		{ "authorization_declined", OAUTH2_DENIED },	/* Microsoft */
		{ "expired_token", OAUTH2_EXPIRED },
		{ "code_expired", OAUTH2_EXPIRED },		/* Microsoft */
	};

	for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
		if (strcmp(code, map[i].code) == 0)
			return map[i].kind;
	return OAUTH2_TEMP;
}

/* A token goes into SASL messages: printable, no framing characters. */
bool oauth2_token_ok(const char *t)
{
	size_t n = strlen(t);

	if (n == 0 || n > OAUTH2_TOKEN_MAX)
		return false;
	for (; *t; t++)
		if ((unsigned char)*t <= 0x20 || (unsigned char)*t >= 0x7f)
			return false;
	return true;
}

static enum oauth2_outcome oauth2_token_fill(const struct oauth2_json *j, struct oauth2_token *tok,
    char *err, size_t errlen)
{
	const char *at = oauth2_json_str(j, "access_token");
	const char *rt = oauth2_json_str(j, "refresh_token");
	const char *type = oauth2_json_str(j, "token_type");
	char clean[64];

	if (!at || !oauth2_token_ok(at)) {
		snprintf(err, errlen, "the response has %s access_token", at ? "an unusable" : "no");
		return OAUTH2_TEMP;
	}
	if (type && strcasecmp(type, "bearer") != 0) {
		oauth2_clean(clean, sizeof(clean), type);
		snprintf(err, errlen, "token_type \"%s\" is not Bearer", clean);
		return OAUTH2_TEMP;
	}
	if (rt && !oauth2_token_ok(rt)) {
		snprintf(err, errlen, "the response has an unusable refresh_token");
		return OAUTH2_TEMP;
	}
	tok->access_token = strdup(at);
	tok->refresh_token = rt ? strdup(rt) : NULL;
	if (!oauth2_json_long(j, "expires_in", &tok->expires_in))
		tok->expires_in = -1;
	if (!tok->access_token || (rt && !tok->refresh_token)) {
		oauth2_token_clear(tok);
		snprintf(err, errlen, "out of memory");
		return OAUTH2_TEMP;
	}
	return OAUTH2_OK;
}

static enum oauth2_outcome oauth2_token_error(int status, const struct oauth2_json *j, char *err,
    size_t errlen)
{
	const char *code = oauth2_json_str(j, "error");
	const char *desc = oauth2_json_str(j, "error_description");
	char c[64], d[OAUTH2_TEXT_MAX + 1];

	oauth2_clean(c, sizeof(c), code);
	oauth2_clean(d, sizeof(d), desc);
	if (!c[0]) {
		snprintf(err, errlen, "HTTP %d", status);
		return OAUTH2_TEMP;
	}
	if (d[0])
		snprintf(err, errlen, "%s: %s", c, d);
	else
		snprintf(err, errlen, "%s", c);
	return oauth2_error_kind(code);
}

enum oauth2_outcome oauth2_token_response(int status, const char *body, size_t len,
    struct oauth2_token *tok, char *err, size_t errlen)
{
	struct oauth2_json j;
	char why[128];
	enum oauth2_outcome r;

	tok->access_token = tok->refresh_token = NULL;
	tok->expires_in = -1;
	if (oauth2_json_parse(body, len, &j, why, sizeof(why)) < 0) {
		if (status == 200)
			snprintf(err, errlen, "the response is not valid JSON (%s)", why);
		else
			snprintf(err, errlen, "HTTP %d", status);
		return OAUTH2_TEMP;
	}
	if (status == 200 && !oauth2_json_str(&j, "error"))
		r = oauth2_token_fill(&j, tok, err, errlen);
	else
		r = oauth2_token_error(status, &j, err, errlen);
	oauth2_json_free(&j);
	return r;
}
