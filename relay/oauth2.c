#include "config.h"
#include "relay/oauth2.h"

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

#define OAUTH2_ERR_MAX 512
#define OAUTH2_TEXT_MAX 200		/* server-supplied text quoted in messages */
#define OAUTH2_MARGIN_MAX 60		/* refresh this long before expiry at most */
#define OAUTH2_DEFAULT_LIFETIME 300	/* when the server does not say */
#define OAUTH2_FORM_MAX (4 * OAUTH2_TOKEN_MAX)

void oauth2_wipe(void *p, size_t n)
{
	volatile unsigned char *v = p;

	while (p && n--)
		*v++ = 0;
}

static void oauth2_free_secret(char *s)
{
	if (s) {
		oauth2_wipe(s, strlen(s));
		free(s);
	}
}

static void oauth2_buf_wipe(struct buf *b)
{
	oauth2_wipe(b->data, b->cap);
	buf_free(b);
}

/* Server text for a message: printable ASCII only, first line, bounded. */
static void oauth2_clean(char *dst, size_t len, const char *src)
{
	size_t n = 0;

	for (; src && *src && n + 1 < len && n < OAUTH2_TEXT_MAX; src++) {
		unsigned char ch = (unsigned char)*src;

		if (ch == '\r' || ch == '\n')
			break;
		dst[n++] = ch < 0x20 || ch > 0x7e ? '?' : (char)ch;
	}
	while (n > 0 && dst[n - 1] == ' ')
		n--;
	dst[n] = '\0';
}

/* ---- JSON ---- */

struct json_p {
	const char *s;
	size_t len, pos;
	int depth;
	char *err;
	size_t errlen;
};

static int json_fail(struct json_p *p, const char *what)
{
	snprintf(p->err, p->errlen, "%s at offset %zu", what, p->pos);
	return -1;
}

static void json_ws(struct json_p *p)
{
	while (p->pos < p->len && strchr(" \t\r\n", p->s[p->pos]) && p->s[p->pos])
		p->pos++;
}

static bool json_peek(struct json_p *p, char ch)
{
	json_ws(p);
	return p->pos < p->len && p->s[p->pos] == ch;
}

static int json_hex4(struct json_p *p, unsigned *out)
{
	unsigned v = 0;

	if (p->len - p->pos < 4)
		return json_fail(p, "truncated \\u escape");
	for (int i = 0; i < 4; i++) {
		int c = (unsigned char)p->s[p->pos++];

		v <<= 4;
		if (c >= '0' && c <= '9')
			v |= (unsigned)(c - '0');
		else if (c >= 'a' && c <= 'f')
			v |= (unsigned)(c - 'a' + 10);
		else if (c >= 'A' && c <= 'F')
			v |= (unsigned)(c - 'A' + 10);
		else
			return json_fail(p, "bad \\u escape");
	}
	*out = v;
	return 0;
}

static int json_put_utf8(struct buf *out, unsigned cp)
{
	unsigned char u[4];
	size_t n;

	if (!out)
		return 0;
	if (cp < 0x80) {
		u[0] = (unsigned char)cp;
		n = 1;
	} else if (cp < 0x800) {
		u[0] = (unsigned char)(0xc0 | cp >> 6);
		u[1] = (unsigned char)(0x80 | (cp & 0x3f));
		n = 2;
	} else if (cp < 0x10000) {
		u[0] = (unsigned char)(0xe0 | cp >> 12);
		u[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
		u[2] = (unsigned char)(0x80 | (cp & 0x3f));
		n = 3;
	} else {
		u[0] = (unsigned char)(0xf0 | cp >> 18);
		u[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3f));
		u[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
		u[3] = (unsigned char)(0x80 | (cp & 0x3f));
		n = 4;
	}
	return buf_append(out, u, n);
}

/* After "\u": one code point, a surrogate pair taken together.  NUL is
 * refused: values become C strings. */
static int json_unicode(struct json_p *p, struct buf *out)
{
	unsigned cp, lo;

	if (json_hex4(p, &cp) < 0)
		return -1;
	if (cp >= 0xdc00 && cp <= 0xdfff)
		return json_fail(p, "lone low surrogate");
	if (cp >= 0xd800 && cp <= 0xdbff) {
		if (p->len - p->pos < 2 || p->s[p->pos] != '\\' || p->s[p->pos + 1] != 'u')
			return json_fail(p, "lone high surrogate");
		p->pos += 2;
		if (json_hex4(p, &lo) < 0)
			return -1;
		if (lo < 0xdc00 || lo > 0xdfff)
			return json_fail(p, "bad surrogate pair");
		cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
	}
	if (cp == 0)
		return json_fail(p, "NUL in string");
	return json_put_utf8(out, cp);
}

static int json_escape(struct json_p *p, struct buf *out)
{
	static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
	const char *e;
	char ch;

	if (p->pos >= p->len)
		return json_fail(p, "unterminated string");
	ch = p->s[p->pos++];
	if (ch == 'u')
		return json_unicode(p, out);
	e = ch ? strchr(from, ch) : NULL;
	if (!e)
		return json_fail(p, "bad escape");
	return out ? buf_append(out, &to[e - from], 1) : 0;
}

/* A string at p->pos (the opening quote); decoded into out (may be NULL). */
static int json_string(struct json_p *p, struct buf *out)
{
	size_t run;

	p->pos++;
	for (;;) {
		for (run = p->pos; run < p->len && p->s[run] != '"' && p->s[run] != '\\'
		    && (unsigned char)p->s[run] >= 0x20; run++)
			;
		if (out && buf_append(out, p->s + p->pos, run - p->pos) < 0)
			return json_fail(p, errno == ENOMEM ? "out of memory" : "string too long");
		p->pos = run;
		if (p->pos >= p->len)
			return json_fail(p, "unterminated string");
		if ((unsigned char)p->s[p->pos] < 0x20)
			return json_fail(p, "control character in string");
		if (p->s[p->pos++] == '"')
			return 0;
		if (json_escape(p, out) < 0)
			return -1;
	}
}

static size_t json_digits(struct json_p *p)
{
	size_t start = p->pos;

	while (p->pos < p->len && isdigit((unsigned char)p->s[p->pos]))
		p->pos++;
	return p->pos - start;
}

static int json_number(struct json_p *p)
{
	if (p->pos < p->len && p->s[p->pos] == '-')
		p->pos++;
	if (p->pos < p->len && p->s[p->pos] == '0')
		p->pos++;
	else if (json_digits(p) == 0)
		return json_fail(p, "bad number");
	if (p->pos < p->len && p->s[p->pos] == '.') {
		p->pos++;
		if (json_digits(p) == 0)
			return json_fail(p, "bad number");
	}
	if (p->pos < p->len && (p->s[p->pos] == 'e' || p->s[p->pos] == 'E')) {
		p->pos++;
		if (p->pos < p->len && (p->s[p->pos] == '+' || p->s[p->pos] == '-'))
			p->pos++;
		if (json_digits(p) == 0)
			return json_fail(p, "bad number");
	}
	return 0;
}

static int json_literal(struct json_p *p)
{
	static const char *const words[] = { "true", "false", "null" };

	for (size_t i = 0; i < 3; i++) {
		size_t n = strlen(words[i]);

		if (p->len - p->pos >= n && memcmp(p->s + p->pos, words[i], n) == 0) {
			p->pos += n;
			return 0;
		}
	}
	return json_fail(p, "unexpected character");
}

static int json_value(struct json_p *p);

/* Arrays and objects below the top: checked, not kept. */
static int json_container(struct json_p *p, char close)
{
	bool object = close == '}';

	if (++p->depth > OAUTH2_DEPTH_MAX)
		return json_fail(p, "nested too deeply");
	p->pos++;
	if (json_peek(p, close)) {
		p->pos++;
		p->depth--;
		return 0;
	}
	for (;;) {
		if (object) {
			if (!json_peek(p, '"') || json_string(p, NULL) < 0)
				return p->err[0] ? -1 : json_fail(p, "expected a member name");
			if (!json_peek(p, ':'))
				return json_fail(p, "expected ':'");
			p->pos++;
		}
		if (json_value(p) < 0)
			return -1;
		if (json_peek(p, ',')) {
			p->pos++;
			continue;
		}
		if (!json_peek(p, close))
			return json_fail(p, "expected ',' or the end of the container");
		p->pos++;
		p->depth--;
		return 0;
	}
}

static int json_value(struct json_p *p)
{
	json_ws(p);
	if (p->pos >= p->len)
		return json_fail(p, "unexpected end");
	switch (p->s[p->pos]) {
	case '"': return json_string(p, NULL);
	case '{': return json_container(p, '}');
	case '[': return json_container(p, ']');
	case '-': case '0': case '1': case '2': case '3': case '4':
	case '5': case '6': case '7': case '8': case '9':
		return json_number(p);
	default:
		return json_literal(p);
	}
}

static int json_set(struct oauth2_json *j, struct buf *key, struct buf *val, bool is_string)
{
	struct oauth2_json_member *m;
	size_t i;

	for (i = 0; i < j->n && strcmp(j->m[i].key, key->data) != 0; i++)
		;
	if (i == j->n) {
		m = reallocarray(j->m, j->n + 1, sizeof(*m));
		if (!m)
			return -1;
		j->m = m;
		j->m[j->n++] = (struct oauth2_json_member){ buf_steal(key), NULL, false };
	} else {
		oauth2_free_secret(j->m[i].value);	/* the last one wins, as in browsers */
	}
	j->m[i].value = buf_steal(val);
	j->m[i].is_string = is_string;
	return 0;
}

/* One member of the top-level object: scalars are kept. */
static int json_member(struct json_p *p, struct oauth2_json *j)
{
	struct buf key, val;
	size_t start;
	bool str;
	int r = -1;

	buf_init(&key, OAUTH2_BODY_MAX);
	buf_init(&val, OAUTH2_BODY_MAX);
	if (!json_peek(p, '"') || buf_puts(&key, "") < 0 || json_string(p, &key) < 0) {
		if (!p->err[0])
			json_fail(p, "expected a member name");
		goto out;
	}
	if (!json_peek(p, ':')) {
		json_fail(p, "expected ':'");
		goto out;
	}
	p->pos++;
	json_ws(p);
	start = p->pos;
	str = p->pos < p->len && p->s[p->pos] == '"';
	if (str ? buf_puts(&val, "") < 0 || json_string(p, &val) < 0 : json_value(p) < 0)
		goto out;
	if (!str && p->s[start] != '{' && p->s[start] != '['
	    && buf_append(&val, p->s + start, p->pos - start) < 0)
		goto out;
	if (val.data && json_set(j, &key, &val, str) < 0) {
		json_fail(p, "out of memory");
		goto out;
	}
	r = 0;
out:
	buf_free(&key);
	oauth2_buf_wipe(&val);
	return r;
}

static int json_object(struct json_p *p, struct oauth2_json *j)
{
	if (!json_peek(p, '{'))
		return json_fail(p, "not a JSON object");
	p->pos++;
	if (json_peek(p, '}')) {
		p->pos++;
		return 0;
	}
	for (;;) {
		if (json_member(p, j) < 0)
			return -1;
		if (json_peek(p, ',')) {
			p->pos++;
			continue;
		}
		if (!json_peek(p, '}'))
			return json_fail(p, "expected ',' or '}'");
		p->pos++;
		return 0;
	}
}

int oauth2_json_parse(const char *s, size_t len, struct oauth2_json *j, char *err, size_t errlen)
{
	struct json_p p = { s, len, 0, 0, err, errlen };

	j->m = NULL;
	j->n = 0;
	err[0] = '\0';
	if (len > OAUTH2_BODY_MAX) {
		snprintf(err, errlen, "response larger than %d bytes", OAUTH2_BODY_MAX);
		return -1;
	}
	if (json_object(&p, j) == 0) {
		json_ws(&p);
		if (p.pos == len)
			return 0;
		json_fail(&p, "trailing data");
	}
	oauth2_json_free(j);
	return -1;
}

static const struct oauth2_json_member *json_find(const struct oauth2_json *j, const char *key)
{
	for (size_t i = 0; i < j->n; i++)
		if (strcmp(j->m[i].key, key) == 0)
			return &j->m[i];
	return NULL;
}

const char *oauth2_json_str(const struct oauth2_json *j, const char *key)
{
	const struct oauth2_json_member *m = json_find(j, key);

	return m && m->is_string ? m->value : NULL;
}

bool oauth2_json_long(const struct oauth2_json *j, const char *key, long *out)
{
	const struct oauth2_json_member *m = json_find(j, key);
	char *end;
	double d;

	if (!m || !m->value[0] || isspace((unsigned char)m->value[0]))
		return false;
	errno = 0;
	d = strtod(m->value, &end);
	if (*end || errno || !isfinite(d) || d < 0 || d > (double)INT_MAX)
		return false;
	*out = (long)d;
	return true;
}

void oauth2_json_free(struct oauth2_json *j)
{
	for (size_t i = 0; i < j->n; i++) {
		free(j->m[i].key);
		oauth2_free_secret(j->m[i].value);
	}
	free(j->m);
	j->m = NULL;
	j->n = 0;
}

/* ---- form encoding ---- */

static int form_encode(struct buf *b, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";

	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;
		char enc[3] = { '%', hex[ch >> 4], hex[ch & 15] };
		int r;

		if (isalnum(ch) || ch == '-' || ch == '.' || ch == '_' || ch == '~')
			r = buf_append(b, s, 1);
		else if (ch == ' ')
			r = buf_append(b, "+", 1);
		else
			r = buf_append(b, enc, 3);
		if (r < 0)
			return -1;
	}
	return 0;
}

int oauth2_form_add(struct buf *b, const char *key, const char *value)
{
	if ((b->len > 0 && buf_append(b, "&", 1) < 0) || form_encode(b, key) < 0
	    || buf_append(b, "=", 1) < 0 || form_encode(b, value) < 0)
		return -1;
	return 0;
}

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
static bool oauth2_token_ok(const char *t)
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

/* ---- the refresh token file ---- */

char *oauth2_load_refresh_token(const char *path, char *err, size_t errlen)
{
	char *data = NULL, *start, *end;
	size_t len = 0;

	if (fs_read_file(path, OAUTH2_TOKEN_MAX + 256, &data, &len) < 0) {
		snprintf(err, errlen, "cannot read %s: %s", path,
		    errno == EFBIG ? "file too large" : strerror(errno));
		return NULL;
	}
	for (start = data; *start && isspace((unsigned char)*start); start++)
		;
	for (end = data + strlen(data); end > start && isspace((unsigned char)end[-1]); end--)
		;
	*end = '\0';
	if (!oauth2_token_ok(start)) {
		snprintf(err, errlen, "%s %s", path, *start ? "does not hold a usable refresh token"
		    : "is empty");
		oauth2_wipe(data, len);
		free(data);
		return NULL;
	}
	memmove(data, start, strlen(start) + 1);
	return data;
}

static char *oauth2_dirname(const char *path)
{
	const char *slash = strrchr(path, '/');

	if (!slash)
		return strdup(".");
	if (slash == path)
		return strdup("/");
	return strndup(path, (size_t)(slash - path));
}

static int oauth2_write_tmp(int fd, const char *token)
{
	if (fchmod(fd, 0600) < 0 || fs_write_all(fd, token, strlen(token)) < 0
	    || fs_write_all(fd, "\n", 1) < 0 || fsync(fd) < 0)
		return -1;
	return 0;
}

int oauth2_save_refresh_token(const char *path, const char *token, char *err, size_t errlen)
{
	char *dir = oauth2_dirname(path), *tmp = NULL;
	const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
	int fd = -1, saved;

	if (!dir || asprintf(&tmp, "%s/.%s.XXXXXX", dir, base) < 0) {
		tmp = NULL;
		errno = ENOMEM;
		goto fail;
	}
	fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0 || oauth2_write_tmp(fd, token) < 0)
		goto fail;
	if (close(fd) < 0) {
		fd = -1;
		goto fail;
	}
	fd = -1;
	if (rename(tmp, path) < 0 || fs_fsync_dir(dir) < 0)
		goto fail;
	free(tmp);
	free(dir);
	return 0;
fail:
	saved = errno;
	snprintf(err, errlen, "cannot write %s: %s", path, strerror(saved));
	if (fd >= 0) {
		close(fd);
		unlink(tmp);
	} else if (tmp && access(tmp, F_OK) == 0) {
		unlink(tmp);
	}
	free(tmp);
	free(dir);
	errno = saved;
	return -1;
}

int oauth2_check_files(const struct conf_smarthost *sh, char *err, size_t errlen)
{
	char *dir, *tok;

	if (!sh->oauth2_token_url || !sh->oauth2_refresh_token_file)
		return 0;
	tok = oauth2_load_refresh_token(sh->oauth2_refresh_token_file, err, errlen);
	if (!tok)
		return -1;
	oauth2_free_secret(tok);
	dir = oauth2_dirname(sh->oauth2_refresh_token_file);
	if (!dir) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	if (access(dir, W_OK | X_OK) < 0) {
		snprintf(err, errlen, "directory %s of oauth2_refresh_token_file is not writable "
		    "(%s): a rotated refresh token could not be saved", dir, strerror(errno));
		free(dir);
		return -1;
	}
	free(dir);
	return 0;
}

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
	struct oauth2_http *http;
	struct oauth2_reqq waiting;
	LIST_ENTRY(oauth2_entry) link;
};

struct oauth2 {
	struct event_base *base;
	struct evdns_base *dns;
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

static void oauth2_rotated(struct oauth2_entry *e, const char *rt)
{
	char err[OAUTH2_ERR_MAX];

	if (!rt || !e->rt_sent || strcmp(rt, e->rt_sent) == 0)
		return;
	if (oauth2_save_refresh_token(e->rt_file, rt, err, sizeof(err)) < 0)
		log_err("smarthost %s: the provider issued a new refresh token but it could not "
		    "be saved (%s): the old one may stop working; fix the file's directory "
		    "permissions or run `smtprelay oauth2-login %s`", e->name, err, e->name);
	else
		log_info("smarthost %s: the provider rotated the refresh token; saved it to %s",
		    e->name, e->rt_file);
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
	e->rt_sent = oauth2_load_refresh_token(e->rt_file, err, sizeof(err));
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
