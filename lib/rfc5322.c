#include "config.h"
#include "lib/rfc5322.h"

#include "lib/addr.h"
#include "lib/buf.h"
#include "lib/strv.h"

#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RFC5322_NOPOS ((size_t)-1)

/* Parser results for one list member. */
enum {
	RFC5322_EMPTY = 0,	/* nothing but whitespace and comments */
	RFC5322_FOUND = 1,
	RFC5322_GARBAGE = -2,
	RFC5322_NOMEM = -1,
};

/* One list member as found by the splitter: byte offsets into the value. */
struct rfc5322_entry {
	size_t start, end;
	size_t lt, gt;		/* '<' and its '>'; RFC5322_NOPOS if absent */
	bool broken;		/* unterminated construct or stray bracket */
	bool group;		/* inside "name: ... ;" */
};

typedef int (*rfc5322_entry_fn)(void *ctx, const char *s, const struct rfc5322_entry *e);

struct rfc5322_split {
	const char *s;
	size_t len, i;
	bool in_group, in_angle;
	bool route_ok;		/* inside <>: still in an obsolete route, where commas belong */
	struct rfc5322_entry e;
	rfc5322_entry_fn fn;
	void *ctx;
};

static bool rfc5322_wsp(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* atext of RFC 5322, plus UTF-8 (RFC 6532); '.' is handled as a token. */
static bool rfc5322_atom_char(unsigned char c)
{
	if (c >= 0x80)
		return true;
	if (c <= 0x20 || c == 0x7f)
		return false;
	return strchr("()<>[]:;@\\,.\"", c) == NULL;
}

/* i at '(': index after the matching ')' (comments nest, '\' quotes). */
static size_t rfc5322_skip_comment(const char *s, size_t len, size_t i, bool *ok)
{
	size_t depth = 0;

	for (; i < len; i++) {
		if (s[i] == '\\')
			i++;
		else if (s[i] == '(')
			depth++;
		else if (s[i] == ')' && --depth == 0)
			return i + 1;
	}
	*ok = false;
	return len;
}

/* i at the opening '"' or '[': index after the closing one. */
static size_t rfc5322_skip_delim(const char *s, size_t len, size_t i, char close, bool *ok)
{
	for (i++; i < len; i++) {
		if (s[i] == '\\')
			i++;
		else if (s[i] == close)
			return i + 1;
	}
	*ok = false;
	return len;
}

static void rfc5322_entry_reset(struct rfc5322_split *sp, size_t start)
{
	sp->e.start = start;
	sp->e.end = start;
	sp->e.lt = RFC5322_NOPOS;
	sp->e.gt = RFC5322_NOPOS;
	sp->e.broken = false;
	sp->e.group = sp->in_group;
	sp->in_angle = false;
}

/* The member ends at sp->i (a ',' or ';' or the end of the value). */
static int rfc5322_emit(struct rfc5322_split *sp)
{
	int r;

	sp->e.end = sp->i;
	if (sp->in_angle)
		sp->e.broken = true;
	r = sp->fn(sp->ctx, sp->s, &sp->e);
	rfc5322_entry_reset(sp, sp->i + 1);
	return r;
}

/* Inside <...>: only '>' ends it; a comma outside a route means the '>' was
 * forgotten, so the member ends there (broken) rather than eating the list. */
static int rfc5322_split_angle(struct rfc5322_split *sp, char c)
{
	if (c == '>') {
		sp->in_angle = false;
		sp->e.gt = sp->i;
	} else if (c == ':') {
		sp->route_ok = false;
	} else if ((c == ',' && !sp->route_ok) || c == ';') {
		sp->in_angle = false;
		sp->e.broken = true;
		return 1;	/* handle as a separator at top level */
	}
	return 0;
}

static void rfc5322_split_open_angle(struct rfc5322_split *sp)
{
	size_t j = sp->i + 1;

	if (sp->e.lt != RFC5322_NOPOS)
		sp->e.broken = true;	/* two addresses in one member */
	sp->e.lt = sp->i;
	sp->in_angle = true;
	while (j < sp->len && rfc5322_wsp(sp->s[j]))
		j++;
	sp->route_ok = j < sp->len && sp->s[j] == '@';
}

/* One separator or bracket at top level.  Returns the callback's result. */
static int rfc5322_split_top(struct rfc5322_split *sp, char c)
{
	int r = 0;

	switch (c) {
	case '<':
		rfc5322_split_open_angle(sp);
		break;
	case '>':
		sp->e.broken = true;
		break;
	case ',':
		r = rfc5322_emit(sp);
		break;
	case ';':
		r = rfc5322_emit(sp);
		sp->in_group = false;
		sp->e.group = false;
		break;
	case ':':
		/* Group start: what came before is the group's display name. */
		sp->in_group = true;
		rfc5322_entry_reset(sp, sp->i + 1);
		break;
	}
	return r;
}

/* Walk the value once, calling fn for every member (empty ones included). */
static int rfc5322_split(const char *s, size_t len, rfc5322_entry_fn fn, void *ctx)
{
	struct rfc5322_split sp = { .s = s, .len = len, .fn = fn, .ctx = ctx };
	bool ok;
	int r;

	rfc5322_entry_reset(&sp, 0);
	while (sp.i < len) {
		char c = s[sp.i];

		ok = true;
		if (c == '(' || c == '"' || c == '[') {
			sp.i = c == '(' ? rfc5322_skip_comment(s, len, sp.i, &ok) :
			    rfc5322_skip_delim(s, len, sp.i, c == '"' ? '"' : ']', &ok);
			if (!ok)
				sp.e.broken = true;
			continue;
		}
		if (!sp.in_angle || rfc5322_split_angle(&sp, c)) {
			if ((r = rfc5322_split_top(&sp, c)) < 0)
				return r;
		}
		sp.i++;
	}
	sp.i = len;
	return rfc5322_emit(&sp);
}

/* Scan [i, to) for an addr-spec: words (atoms, quoted strings, literals)
 * joined by '.' and '@', whitespace and comments ignored.  Two adjacent
 * words ("John Smith") are not an addr-spec.  The tokens are appended to out;
 * [*ts, *te) spans them. */
static int rfc5322_addrspec(const char *s, size_t i, size_t to, struct buf *out,
    size_t *ts, size_t *te)
{
	bool ok = true, word = false;

	*ts = *te = RFC5322_NOPOS;
	while (i < to) {
		unsigned char c = (unsigned char)s[i];
		bool isword = c != '.' && c != '@';
		size_t j = i + 1;

		if (rfc5322_wsp((char)c)) {
			i++;
			continue;
		}
		if (c == '(') {
			i = rfc5322_skip_comment(s, to, i, &ok);
			if (!ok)
				return RFC5322_GARBAGE;
			continue;
		}
		if (c == '"' || c == '[')
			j = rfc5322_skip_delim(s, to, i, c == '"' ? '"' : ']', &ok);
		else if (isword)
			for (j = i; j < to && rfc5322_atom_char((unsigned char)s[j]); j++)
				;
		if (!ok || j == i || (isword && word))
			return RFC5322_GARBAGE;
		word = isword;
		if (*ts == RFC5322_NOPOS)
			*ts = i;
		*te = j;
		if (buf_append(out, s + i, j - i) < 0)
			return errno == ENOBUFS ? RFC5322_GARBAGE : RFC5322_NOMEM;
		i = j;
	}
	return out->len ? RFC5322_FOUND : RFC5322_EMPTY;
}

/* Skip "@a,@b:" at the start of the inside of <...>. */
static size_t rfc5322_skip_route(const char *s, size_t i, size_t to)
{
	bool ok = true;

	while (i < to && rfc5322_wsp(s[i]))
		i++;
	if (i >= to || s[i] != '@')
		return i;
	while (i < to && s[i] != ':') {
		if (s[i] == '"' || s[i] == '[')
			i = rfc5322_skip_delim(s, to, i, s[i] == '"' ? '"' : ']', &ok) - 1;
		i++;
	}
	return i < to && ok ? i + 1 : RFC5322_NOPOS;
}

/* The address of one member, validated.  [*ts, *te) is what to replace to
 * change it.  Returns RFC5322_FOUND, _EMPTY, _GARBAGE or _NOMEM. */
static int rfc5322_entry_addr(const char *s, const struct rfc5322_entry *e,
    char **addr, size_t *ts, size_t *te)
{
	struct buf b;
	size_t from = e->start, to = e->end;
	int r;

	*addr = NULL;
	if (e->broken)
		return RFC5322_GARBAGE;
	if (e->lt != RFC5322_NOPOS) {
		if (e->gt == RFC5322_NOPOS)
			return RFC5322_GARBAGE;
		to = e->gt;
		from = rfc5322_skip_route(s, e->lt + 1, to);
		if (from == RFC5322_NOPOS)
			return RFC5322_GARBAGE;
	}
	buf_init(&b, ADDR_MAX);
	r = rfc5322_addrspec(s, from, to, &b, ts, te);
	if (r == RFC5322_FOUND && (memchr(b.data, '\0', b.len) ||
	    !addr_valid(b.data, ADDR_ALLOW_BARE | ADDR_ALLOW_UTF8)))
		r = RFC5322_GARBAGE;
	if (r == RFC5322_EMPTY && e->lt != RFC5322_NOPOS)
		r = RFC5322_GARBAGE;	/* "<>" names no recipient */
	if (r == RFC5322_FOUND) {
		*addr = buf_steal(&b);
		if (e->lt != RFC5322_NOPOS) {
			*ts = e->lt + 1;
			*te = e->gt;
		}
	}
	buf_free(&b);
	return r;
}

struct rfc5322_list {
	struct strv *addrs;
	int skipped;
};

static int rfc5322_list_entry(void *ctx, const char *s, const struct rfc5322_entry *e)
{
	struct rfc5322_list *l = ctx;
	size_t ts, te;
	char *a;
	int r = rfc5322_entry_addr(s, e, &a, &ts, &te);

	if (r == RFC5322_NOMEM)
		return -1;
	if (r == RFC5322_GARBAGE && l->skipped < INT_MAX)
		l->skipped++;
	if (r != RFC5322_FOUND)
		return 0;
	if (strv_push(l->addrs, a) < 0) {
		free(a);
		return -1;
	}
	return 0;
}

int rfc5322_parse_addrlist(const char *value, size_t len, struct strv *addrs)
{
	struct rfc5322_list l = { .addrs = addrs };

	if (rfc5322_split(value, len, rfc5322_list_entry, &l) < 0) {
		errno = ENOMEM;
		return -1;
	}
	return l.skipped;
}

struct rfc5322_locate {
	char *addr;
	size_t start, end;
	bool bad;
};

static int rfc5322_locate_entry(void *ctx, const char *s, const struct rfc5322_entry *e)
{
	struct rfc5322_locate *lc = ctx;
	size_t ts, te;
	char *a;
	int r = rfc5322_entry_addr(s, e, &a, &ts, &te);

	if (r == RFC5322_NOMEM)
		return -1;
	if (r == RFC5322_EMPTY && !e->group)
		return 0;
	if (r != RFC5322_FOUND || e->group || lc->addr) {
		free(a);
		lc->bad = true;
		return 0;
	}
	lc->addr = a;
	lc->start = ts;
	lc->end = te;
	return 0;
}

int rfc5322_locate_mailbox(const char *value, size_t len, char **addr, size_t *start, size_t *end)
{
	struct rfc5322_locate lc = { 0 };

	*addr = NULL;
	if (rfc5322_split(value, len, rfc5322_locate_entry, &lc) < 0) {
		free(lc.addr);
		errno = ENOMEM;
		return -1;
	}
	if (lc.bad || !lc.addr) {
		free(lc.addr);
		return 0;
	}
	*addr = lc.addr;
	*start = lc.start;
	*end = lc.end;
	return 1;
}

size_t rfc5322_unfold(char *s, size_t len)
{
	size_t o = 0;

	for (size_t i = 0; i < len; i++)
		if (s[i] != '\r' && s[i] != '\n')
			s[o++] = s[i];
	return o;
}

int rfc5322_date(time_t t, char *out, size_t outlen)
{
	static const char days[7][4] = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" };
	static const char months[12][4] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
		"Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
	struct tm tm;
	long off;
	char sign = '+';
	int n;

	if (!localtime_r(&t, &tm) || tm.tm_wday < 0 || tm.tm_wday > 6 ||
	    tm.tm_mon < 0 || tm.tm_mon > 11)
		return -1;
	off = tm.tm_gmtoff;
	if (off < 0) {
		sign = '-';
		off = -off;
	}
	n = snprintf(out, outlen, "%s, %02d %s %04d %02d:%02d:%02d %c%02ld%02ld",
	    days[tm.tm_wday], tm.tm_mday, months[tm.tm_mon], tm.tm_year + 1900,
	    tm.tm_hour, tm.tm_min, tm.tm_sec, sign, off / 3600, off % 3600 / 60);
	return n < 0 || (size_t)n >= outlen ? -1 : 0;
}
