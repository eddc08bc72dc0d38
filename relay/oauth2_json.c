/* A bounded JSON reader for token endpoint answers: the members of one
 * object, nesting limited (OAUTH2_DEPTH_MAX), size limited (OAUTH2_BODY_MAX). */
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
