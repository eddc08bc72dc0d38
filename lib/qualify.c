#include "config.h"
#include "lib/qualify.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lib/addr.h"
#include "lib/buf.h"

struct qualify {
	const char *v;
	size_t n;
	const char *domain;
	struct buf *out;
	size_t copied;		/* v[0, copied) is already in out */
	int count;
};

static bool qualify_wsp(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Index after the construct opened at v[i] ('(' nests, '"' and '[' do
 * not); n when it is unterminated.  A backslash quotes the next byte. */
static size_t qualify_skip(const char *v, size_t n, size_t i)
{
	char open = v[i], close = open == '(' ? ')' : open == '"' ? '"' : ']';
	unsigned depth = 1;

	for (i++; i < n; i++) {
		if (v[i] == '\\' && open != '[') {
			i++;
		} else if (open == '(' && v[i] == '(') {
			depth++;
		} else if (v[i] == close && --depth == 0) {
			return i + 1;
		}
	}
	return n;
}

/* Index after the '>' closing the '<' at v[i], n when unterminated. */
static size_t qualify_skip_angle(const char *v, size_t n, size_t i)
{
	for (i++; i < n && v[i] != '>'; )
		i = v[i] == '(' || v[i] == '"' || v[i] == '[' ? qualify_skip(v, n, i) : i + 1;
	return i < n ? i + 1 : n;
}

/* The one run of non-space, non-comment bytes in v[s, e), quoted strings
 * and domain literals included: false if there is none or more than one. */
static bool qualify_one_run(const char *v, size_t s, size_t e, size_t *rs, size_t *re)
{
	unsigned runs = 0;
	size_t i = s;

	while (i < e) {
		if (qualify_wsp(v[i])) {
			i++;
		} else if (v[i] == '(') {
			i = qualify_skip(v, e, i);
		} else {
			if (runs++)
				return false;
			*rs = i;
			while (i < e && !qualify_wsp(v[i]) && v[i] != '(')
				i = (v[i] == '"' || v[i] == '[') ? qualify_skip(v, e, i) : i + 1;
			*re = i;
		}
	}
	return runs == 1;
}

/* A bare local part: valid without a domain, not valid as a full address. */
static bool qualify_is_bare(const char *v, size_t s, size_t e)
{
	char *a = strndup(v + s, e - s);
	bool bare;

	if (!a)
		return false;	/* left as it is: never worse than before */
	bare = strlen(a) == e - s && addr_valid(a, ADDR_ALLOW_BARE | ADDR_ALLOW_UTF8) &&
	    !addr_valid(a, ADDR_ALLOW_UTF8);
	free(a);
	return bare;
}

/* Qualify the addr-spec in v[s, e) if it is a bare local part. */
static int qualify_spec(struct qualify *q, size_t s, size_t e)
{
	size_t rs, re;

	if (!qualify_one_run(q->v, s, e, &rs, &re) || !qualify_is_bare(q->v, rs, re))
		return 0;
	if (buf_append(q->out, q->v + q->copied, re - q->copied) < 0 ||
	    buf_append(q->out, "@", 1) < 0 || buf_puts(q->out, q->domain) < 0)
		return -1;
	q->copied = re;
	q->count++;
	return 0;
}

/* Inside <...>: skip an obsolete route "@a,@b:" before the addr-spec. */
static int qualify_angle(struct qualify *q, size_t open, size_t close)
{
	size_t s = open + 1, i = s;

	while (i < close && (qualify_wsp(q->v[i]) || q->v[i] == '('))
		i = q->v[i] == '(' ? qualify_skip(q->v, close, i) : i + 1;
	if (i < close && q->v[i] == '@') {
		while (i < close && q->v[i] != ':')
			i = q->v[i] == '(' || q->v[i] == '"' || q->v[i] == '[' ?
			    qualify_skip(q->v, close, i) : i + 1;
		if (i >= close)
			return 0;
		s = i + 1;
	}
	return qualify_spec(q, s, close);
}

/* One mailbox v[s, e): "name <spec>" or a bare "spec (comment)". */
static int qualify_mailbox(struct qualify *q, size_t s, size_t e, size_t open, size_t close)
{
	if (open == (size_t)-1)
		return qualify_spec(q, s, e);
	if (close > e || q->v[close - 1] != '>')
		return 0;	/* unterminated <: not an address we understand */
	return qualify_angle(q, open, close - 1);
}

int qualify_field_body(const char *v, size_t n, const char *domain, struct buf *out)
{
	struct qualify q = { v, n, domain, out, 0, 0 };
	size_t s = 0, i = 0, open = (size_t)-1, close = 0;

	while (i <= n) {
		if (i == n || v[i] == ',' || v[i] == ';') {
			if (qualify_mailbox(&q, s, i, open, close) < 0)
				return -1;
			s = ++i;
			open = (size_t)-1;
		} else if (v[i] == ':' && open == (size_t)-1) {
			s = ++i;	/* a group's display name is no address */
		} else if (v[i] == '<' && open == (size_t)-1) {
			open = i;
			close = i = qualify_skip_angle(v, n, i);
		} else if (v[i] == '(' || v[i] == '"' || v[i] == '[') {
			i = qualify_skip(v, n, i);
		} else {
			i++;
		}
	}
	if (buf_append(out, v + q.copied, n - q.copied) < 0)
		return -1;
	return q.count;
}

bool qualify_field_wanted(const char *name, size_t n)
{
	static const char *const names[] = { "from", "sender", "reply-to", "to", "cc" };

	if (n > 7 && strncasecmp(name, "resent-", 7) == 0)
		name += 7, n -= 7;
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strlen(names[i]) == n && strncasecmp(name, names[i], n) == 0)
			return true;
	return false;
}
