#include "config.h"
#include "lib/msg.h"

#include "lib/addr.h"
#include "lib/buf.h"
#include "lib/strv.h"
#include "lib/qualify.h"
#include "lib/rfc5322.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

/* Output is coalesced so that a body of short lines is not one out() call per line. */
#define MSG_OBUF_SIZE 65536
/* An RFC 2047 encoded-word holds at most 75 characters: 45 bytes encode to 60. */
#define MSG_2047_CHUNK 45

enum msg_phase { MSG_PHASE_HEADERS, MSG_PHASE_BODY, MSG_PHASE_DONE };

enum msg_field {
	MSG_F_OTHER, MSG_F_TO, MSG_F_BCC, MSG_F_RESENT_TO, MSG_F_RESENT_BCC,
	MSG_F_DATE, MSG_F_MSGID, MSG_F_FROM,
};

struct msg {
	struct msg_params p;
	enum msg_phase phase;
	enum msg_error err;
	bool dot_rule;		/* from_stdin && dot_ends */
	bool skip_lf;		/* a CR ended the last line: an LF right after belongs to it */
	bool at_start;		/* no line kept yet: an mbox "From " line is dropped */
	struct buf line;	/* header section: the current line, without its end */
	struct buf field;	/* header section: the pending field, lines joined by CRLF */
	size_t hdr_total;
	bool has_date, has_msgid, has_from, has_resent;
	struct strv rcpt, resent;
	size_t skipped;
	bool mid_line;		/* body: the current line has content */
	bool dot_held;		/* body: the line so far is "." (dot_rule) */
	bool ended_by_dot, eightbit, finished;
	bool rcpts_ready;	/* header section over: -t recipients final */
	char *obuf;
	size_t olen, total;
};

static unsigned msg_seq;

static int msg_fail(struct msg *m, enum msg_error e)
{
	if (m->err == MSG_OK)
		m->err = e;
	return -1;
}

/* A struct buf failed: ENOBUFS means a header grew past its limit. */
static int msg_buf_fail(struct msg *m)
{
	return msg_fail(m, errno == ENOBUFS ? MSG_BAD_HEADER : MSG_ENOMEM);
}

static const char *msg_hostname(const struct msg *m)
{
	return m->p.hostname && *m->p.hostname ? m->p.hostname : "localhost";
}

static int msg_flush(struct msg *m)
{
	if (m->olen == 0)
		return 0;
	if (m->p.out(m->p.out_ctx, m->obuf, m->olen) != 0)
		return msg_fail(m, MSG_OUTPUT);
	m->olen = 0;
	return 0;
}

static int msg_emit(struct msg *m, const char *data, size_t len)
{
	if (m->err)
		return -1;
	if (len == 0)
		return 0;
	if (m->p.max_size && (len > m->p.max_size || m->total > m->p.max_size - len))
		return msg_fail(m, MSG_TOO_BIG);
	m->total += len;
	if (len > MSG_OBUF_SIZE - m->olen) {
		if (msg_flush(m) < 0)
			return -1;
		if (len >= MSG_OBUF_SIZE)
			return m->p.out(m->p.out_ctx, data, len) ? msg_fail(m, MSG_OUTPUT) : 0;
	}
	memcpy(m->obuf + m->olen, data, len);
	m->olen += len;
	return 0;
}

/* Local parts are case-sensitive (RFC 5321 §2.4), domains are not. */
static int msg_addr_cmp(const char *a, const char *b)
{
	size_t la = addr_local_len(a), lb = addr_local_len(b);
	int r = memcmp(a, b, la < lb ? la : lb);

	if (r)
		return r;
	if (la != lb)
		return la < lb ? -1 : 1;
	return strcasecmp(a + la, b + lb);
}

struct msg_ref {
	const char *s;
	size_t idx;
};

static int msg_ref_cmp(const void *x, const void *y)
{
	const struct msg_ref *a = x, *b = y;
	int r = msg_addr_cmp(a->s, b->s);

	if (r)
		return r;
	return a->idx < b->idx ? -1 : a->idx > b->idx;
}

/* Drop later duplicates, keeping the order; sorting keeps this O(n log n)
 * even for the many thousands of addresses a 1 MiB header can hold. */
static int msg_rcpts_dedup(struct strv *l)
{
	struct msg_ref *refs;
	size_t keep = 0, o = 0;

	if (l->n < 2)
		return 0;
	if (!(refs = calloc(l->n, sizeof(*refs))))
		return -1;
	for (size_t i = 0; i < l->n; i++)
		refs[i] = (struct msg_ref){ l->v[i], i };
	qsort(refs, l->n, sizeof(*refs), msg_ref_cmp);
	for (size_t i = 1; i < l->n; i++) {
		if (msg_addr_cmp(refs[keep].s, refs[i].s) != 0) {
			keep = i;
			continue;
		}
		free(l->v[refs[i].idx]);
		l->v[refs[i].idx] = NULL;
	}
	free(refs);
	for (size_t i = 0; i < l->n; i++)
		if (l->v[i])
			l->v[o++] = l->v[i];
	l->n = o;
	return 0;
}

/* Length of the field name if s starts a header field ("Name:" or the
 * obsolete "Name :"), else 0; *colon is the index of the ':'. */
static size_t msg_field_name(const char *s, size_t n, size_t *colon)
{
	size_t i = 0, name;

	while (i < n && (unsigned char)s[i] >= 33 && (unsigned char)s[i] <= 126 && s[i] != ':')
		i++;
	name = i;
	while (i < n && (s[i] == ' ' || s[i] == '\t'))
		i++;
	if (name == 0 || i >= n || s[i] != ':')
		return 0;
	*colon = i;
	return name;
}

static enum msg_field msg_field_kind(const char *name, size_t n)
{
	static const struct {
		const char *name;
		enum msg_field kind;
	} tab[] = {
		{ "to", MSG_F_TO }, { "cc", MSG_F_TO }, { "bcc", MSG_F_BCC },
		{ "resent-to", MSG_F_RESENT_TO }, { "resent-cc", MSG_F_RESENT_TO },
		{ "resent-bcc", MSG_F_RESENT_BCC }, { "date", MSG_F_DATE },
		{ "message-id", MSG_F_MSGID }, { "from", MSG_F_FROM },
	};

	for (size_t i = 0; i < sizeof(tab) / sizeof(tab[0]); i++)
		if (strlen(tab[i].name) == n && strncasecmp(name, tab[i].name, n) == 0)
			return tab[i].kind;
	return MSG_F_OTHER;
}

/* A new unfolded copy of the field body after the colon. */
static char *msg_field_value(const struct msg *m, size_t colon, size_t *len)
{
	size_t n = m->field.len - colon - 1;
	char *v = malloc(n + 1);

	if (!v)
		return NULL;
	memcpy(v, m->field.data + colon + 1, n);
	*len = rfc5322_unfold(v, n);
	v[*len] = '\0';
	return v;
}

static int msg_extract(struct msg *m, struct strv *l, size_t colon)
{
	char *v;
	size_t vlen;
	int r;

	if (!(v = msg_field_value(m, colon, &vlen)))
		return msg_fail(m, MSG_ENOMEM);
	r = rfc5322_parse_addrlist(v, vlen, l);
	free(v);
	if (r < 0)
		return msg_fail(m, MSG_ENOMEM);
	m->skipped += (size_t)r;
	return 0;
}

/* rewrite_from_header: a From: holding one local address gets rewrite_from,
 * keeping display name and comments.  *done stays false to keep the field. */
static int msg_from_rewrite(struct msg *m, size_t colon, bool *done)
{
	size_t vlen, s, e;
	char *v, *a;
	int r;

	*done = false;
	if (!(v = msg_field_value(m, colon, &vlen)))
		return msg_fail(m, MSG_ENOMEM);
	r = rfc5322_locate_mailbox(v, vlen, &a, &s, &e);
	if (r < 0) {
		free(v);
		return msg_fail(m, MSG_ENOMEM);
	}
	if (r == 1 && addr_is_local(a, m->p.hostname)) {
		*done = true;
		if (msg_emit(m, m->field.data, colon + 1) < 0 || msg_emit(m, v, s) < 0 ||
		    msg_emit(m, m->p.rewrite_from, strlen(m->p.rewrite_from)) < 0 ||
		    msg_emit(m, v + e, vlen - e) < 0 || msg_emit(m, "\r\n", 2) < 0)
			r = -1;
	}
	free(a);
	free(v);
	return r < 0 ? -1 : 0;
}

/* Pass the field on; with qualify_headers, bare addresses in address
 * fields get @hostname first (lib/qualify.h). */
static int msg_emit_field(struct msg *m, size_t nlen, size_t colon)
{
	const char *f = m->field.data;
	struct buf q;
	int r;

	if (!m->p.qualify_headers || !qualify_field_wanted(f, nlen))
		return msg_emit(m, f, m->field.len) < 0 || msg_emit(m, "\r\n", 2) < 0 ? -1 : 0;
	buf_init(&q, 2 * MSG_HEADER_MAX);
	r = qualify_field_body(f + colon + 1, m->field.len - colon - 1, msg_hostname(m), &q);
	if (r < 0)
		r = msg_buf_fail(m);
	else if (r == 0)
		r = msg_emit(m, f, m->field.len);
	else if ((r = msg_emit(m, f, colon + 1)) == 0)
		r = msg_emit(m, q.data, q.len);
	buf_free(&q);
	return r < 0 || msg_emit(m, "\r\n", 2) < 0 ? -1 : 0;
}

/* Act on the complete pending field (if any) and pass it on unless it is dropped. */
static int msg_field_flush(struct msg *m)
{
	const char *f = m->field.data;
	size_t colon = 0, nlen;
	enum msg_field kind;
	bool drop;
	int r = 0;

	if (m->field.len == 0)
		return 0;
	nlen = msg_field_name(f, m->field.len, &colon);
	if (nlen > 7 && strncasecmp(f, "resent-", 7) == 0)
		m->has_resent = true;
	kind = msg_field_kind(f, nlen);
	drop = kind == MSG_F_BCC || kind == MSG_F_RESENT_BCC;
	if (m->p.extract_rcpts && (kind == MSG_F_TO || kind == MSG_F_BCC))
		r = msg_extract(m, &m->rcpt, colon);
	else if (m->p.extract_rcpts && (kind == MSG_F_RESENT_TO || kind == MSG_F_RESENT_BCC))
		r = msg_extract(m, &m->resent, colon);
	else if (kind == MSG_F_DATE)
		m->has_date = true;
	else if (kind == MSG_F_MSGID)
		m->has_msgid = true;
	else if (kind == MSG_F_FROM)
		m->has_from = true;
	if (r == 0 && kind == MSG_F_FROM && m->p.rewrite_from)
		r = msg_from_rewrite(m, colon, &drop);
	if (r == 0 && !drop && msg_emit_field(m, nlen, colon) < 0)
		r = -1;
	buf_reset(&m->field);
	return r;
}

/* Append s without control characters, so no caller string can inject a header line. */
static int msg_put_clean(struct buf *b, const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s >= 0x20 && *s != 0x7f && buf_append(b, s, 1) < 0)
			return -1;
	return 0;
}

static int msg_add_date(struct msg *m, struct buf *b)
{
	char d[RFC5322_DATE_MAX];

	if (rfc5322_date(m->p.now, d, sizeof(d)) < 0)
		return msg_fail(m, MSG_BAD_HEADER);
	return buf_printf(b, "Date: %s\r\n", d) < 0 ? msg_buf_fail(m) : 0;
}

/* <YYYYMMDDhhmmss.QUEUEID@hostname>, the timestamp in UTC as Postfix does. */
static int msg_add_msgid(struct msg *m, struct buf *b)
{
	char ts[32];
	struct tm tm;
	int r;

	if (!gmtime_r(&m->p.now, &tm) || strftime(ts, sizeof(ts), "%Y%m%d%H%M%S", &tm) == 0)
		return msg_fail(m, MSG_BAD_HEADER);
	r = buf_printf(b, "Message-ID: <%s.", ts);
	if (r == 0 && m->p.queue_id && *m->p.queue_id)
		r = msg_put_clean(b, m->p.queue_id);
	else if (r == 0)
		r = buf_printf(b, "%ld.%u", (long)getpid(), ++msg_seq);
	if (r == 0)
		r = buf_puts(b, "@");
	if (r == 0)
		r = msg_put_clean(b, msg_hostname(m));
	if (r == 0)
		r = buf_puts(b, ">\r\n");
	return r < 0 ? msg_buf_fail(m) : 0;
}

static int msg_encode_word(struct buf *b, const unsigned char *s, size_t n)
{
	static const char b64[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

	if (buf_puts(b, "=?utf-8?B?") < 0)
		return -1;
	for (size_t i = 0; i < n; i += 3) {
		unsigned long v = (unsigned long)s[i] << 16 |
		    (i + 1 < n ? (unsigned long)s[i + 1] << 8 : 0) | (i + 2 < n ? s[i + 2] : 0);
		char q[4] = { b64[v >> 18 & 63], b64[v >> 12 & 63],
			i + 1 < n ? b64[v >> 6 & 63] : '=', i + 2 < n ? b64[v & 63] : '=' };

		if (buf_append(b, q, 4) < 0)
			return -1;
	}
	return buf_puts(b, "?=");
}

/* RFC 2047 B encoding in words short enough for RFC 2047's 75 characters,
 * never splitting a UTF-8 sequence across two words. */
static int msg_encode_2047(struct buf *b, const char *s)
{
	size_t n = strlen(s), i = 0;

	while (i < n) {
		size_t e = n - i > MSG_2047_CHUNK ? i + MSG_2047_CHUNK : n;

		while (e < n && e > i + 1 && ((unsigned char)s[e] & 0xc0) == 0x80)
			e--;
		if ((i > 0 && buf_puts(b, " ") < 0) ||
		    msg_encode_word(b, (const unsigned char *)s + i, e - i) < 0)
			return -1;
		i = e;
	}
	return 0;
}

/* name as an RFC 5322 phrase: atoms and spaces as they are, anything with
 * specials quoted, 8-bit text RFC 2047 encoded (Postfix's
 * full_name_encoding_charset = utf-8).  s is trimmed, without controls. */
static int msg_phrase(struct buf *b, const char *s)
{
	bool eight = false, plain = true;

	for (const char *p = s; *p; p++) {
		unsigned char c = (unsigned char)*p;

		eight |= c >= 0x80;
		plain &= c == ' ' || (c < 0x80 && strchr("()<>[]:;@\\,.\"", c) == NULL);
	}
	if (eight)
		return msg_encode_2047(b, s);
	if (plain)
		return buf_puts(b, s);
	if (buf_puts(b, "\"") < 0)
		return -1;
	for (; *s; s++)
		if ((*s == '"' || *s == '\\') ? buf_printf(b, "\\%c", *s) < 0 :
		    buf_append(b, s, 1) < 0)
			return -1;
	return buf_puts(b, "\"");
}

/* The full name without control characters and surrounding spaces; NULL
 * with errno 0 when nothing is left. */
static char *msg_clean_name(const char *name)
{
	size_t n, o = 0, start = 0;
	char *s;

	errno = 0;
	if (!name)
		return NULL;
	n = strlen(name);
	if (!(s = malloc(n + 1)))
		return NULL;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)name[i];

		s[o++] = c < 0x20 || c == 0x7f ? ' ' : (char)c;
	}
	while (o > 0 && s[o - 1] == ' ')
		o--;
	while (start < o && s[start] == ' ')
		start++;
	s[o] = '\0';
	memmove(s, s + start, o - start + 1);
	if (s[0] == '\0') {
		free(s);
		return NULL;
	}
	return s;
}

/* "From: Full Name <addr>" or "From: addr", a bare sender qualified. */
static int msg_add_from(struct msg *m, struct buf *b)
{
	const char *from = m->p.from_addr && *m->p.from_addr ? m->p.from_addr : "MAILER-DAEMON";
	char *addr, *name;
	int r;

	if (!(addr = addr_qualify(from, msg_hostname(m))))
		return msg_fail(m, MSG_ENOMEM);
	name = msg_clean_name(m->p.full_name);
	if (!name && errno) {
		free(addr);
		return msg_fail(m, MSG_ENOMEM);
	}
	r = buf_puts(b, "From: ");
	if (r == 0 && name)
		r = msg_phrase(b, name) < 0 || buf_puts(b, " <") < 0 ? -1 : 0;
	if (r == 0)
		r = msg_put_clean(b, addr);
	if (r == 0)
		r = buf_puts(b, name ? ">\r\n" : "\r\n");
	free(addr);
	free(name);
	return r < 0 ? msg_buf_fail(m) : 0;
}

static int msg_add_missing(struct msg *m)
{
	struct buf b;
	int r = 0;

	if (!m->p.add_missing)
		return 0;
	buf_init(&b, MSG_HEADER_MAX);
	if (!m->has_date)
		r = msg_add_date(m, &b);
	if (r == 0 && !m->has_msgid)
		r = msg_add_msgid(m, &b);
	if (r == 0 && !m->has_from)
		r = msg_add_from(m, &b);
	if (r == 0)
		r = msg_emit(m, b.data, b.len);
	buf_free(&b);
	return r;
}

/* The header section is complete; blank adds the empty line before a body. */
static int msg_rcpts_final(struct msg *m);

static int msg_hdr_end(struct msg *m, bool blank)
{
	if (msg_field_flush(m) < 0 || msg_add_missing(m) < 0)
		return -1;
	if (blank && msg_emit(m, "\r\n", 2) < 0)
		return -1;
	m->phase = MSG_PHASE_BODY;
	m->mid_line = false;
	/* The envelope is written before the content: -t recipients must be
	 * final as soon as the header section is. */
	if (msg_rcpts_final(m) < 0)
		return -1;
	m->rcpts_ready = true;
	return 0;
}

/* Does this line belong to the header section?  *field: it starts one. */
static bool msg_hdr_is_header(const struct msg *m, const char *s, size_t n, bool *field)
{
	size_t colon;

	*field = msg_field_name(s, n, &colon) > 0;
	return *field || ((s[0] == ' ' || s[0] == '\t') && m->field.len > 0);
}

static int msg_hdr_append(struct msg *m, const char *s, size_t n, bool field)
{
	if (n + 2 > MSG_HEADER_MAX - m->hdr_total)
		return msg_fail(m, MSG_BAD_HEADER);
	m->hdr_total += n + 2;
	if (field && msg_field_flush(m) < 0)
		return -1;
	if (!field && buf_append(&m->field, "\r\n", 2) < 0)
		return msg_buf_fail(m);
	return buf_append(&m->field, s, n) < 0 ? msg_buf_fail(m) : 0;
}

/* One complete line of the header section (in m->line). */
static int msg_hdr_line(struct msg *m)
{
	const char *s = m->line.data;
	size_t n = m->line.len;
	bool field, header;

	if (n == 1 && m->dot_rule && s[0] == '.') {
		m->ended_by_dot = true;
		if (msg_hdr_end(m, false) < 0)
			return -1;
		m->phase = MSG_PHASE_DONE;
		return 0;
	}
	if (n == 0)
		return msg_hdr_end(m, true);
	header = msg_hdr_is_header(m, s, n, &field);
	/* Like Postfix's sendmail, drop leading mbox "From " envelope lines. */
	if (m->at_start && m->p.from_stdin && !field && n > 5 && memcmp(s, "From ", 5) == 0)
		return 0;
	m->at_start = false;
	if (header)
		return msg_hdr_append(m, s, n, field);
	/* Not a header: the body starts here, separated by an empty line as Postfix does. */
	if (msg_hdr_end(m, true) < 0 || msg_emit(m, s, n) < 0)
		return -1;
	return msg_emit(m, "\r\n", 2);
}

static void msg_hdr_release(struct msg *m)
{
	if (m->phase == MSG_PHASE_HEADERS) {
		buf_reset(&m->line);
		return;
	}
	buf_free(&m->line);
	buf_free(&m->field);
}

/* The current line outgrew the header section limit: a header is refused,
 * anything else is the start of a body that needs no buffering. */
static int msg_hdr_overflow(struct msg *m, const char *p, size_t n)
{
	size_t room = m->line.max - m->line.len;
	bool field;
	int r;

	if (buf_append(&m->line, p, room) < 0)
		return msg_buf_fail(m);
	if (msg_hdr_is_header(m, m->line.data, m->line.len, &field))
		return msg_fail(m, MSG_BAD_HEADER);
	r = msg_hdr_end(m, true);
	if (r == 0)
		r = msg_emit(m, m->line.data, m->line.len);
	m->mid_line = true;
	if (r == 0)
		r = msg_emit(m, p + room, n - room);
	msg_hdr_release(m);
	return r;
}

static int msg_hdr_content(struct msg *m, const char *p, size_t n)
{
	if (buf_append(&m->line, p, n) == 0)
		return 0;
	if (errno != ENOBUFS)
		return msg_fail(m, MSG_ENOMEM);
	return msg_hdr_overflow(m, p, n);
}

static int msg_hdr_eol(struct msg *m)
{
	int r = msg_hdr_line(m);

	msg_hdr_release(m);
	return r;
}

static int msg_body_content(struct msg *m, const char *p, size_t n)
{
	if (m->dot_held) {
		m->dot_held = false;
		if (msg_emit(m, ".", 1) < 0)
			return -1;
	} else if (!m->mid_line && m->dot_rule && n == 1 && p[0] == '.') {
		/* Maybe the lone dot: wait for what follows. */
		m->dot_held = true;
		m->mid_line = true;
		return 0;
	}
	m->mid_line = true;
	return msg_emit(m, p, n);
}

static int msg_body_eol(struct msg *m)
{
	if (m->dot_held) {
		m->dot_held = false;
		m->ended_by_dot = true;
		m->phase = MSG_PHASE_DONE;
		return 0;
	}
	m->mid_line = false;
	return msg_emit(m, "\r\n", 2);
}

/* Line content without CR or LF, n > 0. */
static int msg_content(struct msg *m, const char *p, size_t n)
{
	for (size_t i = 0; i < n && !m->eightbit; i++)
		m->eightbit = (unsigned char)p[i] >= 0x80;
	if (m->phase == MSG_PHASE_HEADERS)
		return msg_hdr_content(m, p, n);
	return msg_body_content(m, p, n);
}

static int msg_eol(struct msg *m)
{
	if (m->phase == MSG_PHASE_HEADERS)
		return msg_hdr_eol(m);
	return msg_body_eol(m);
}

static size_t msg_find_eol(const char *data, size_t i, size_t len)
{
	while (i < len && data[i] != '\r' && data[i] != '\n')
		i++;
	return i;
}

/* CRLF, LF and CR each end one line.  A CR ends its line at once; an LF
 * right after it (maybe in the next chunk) is swallowed, which makes the
 * result independent of chunk boundaries. */
int msg_input(struct msg *m, const char *data, size_t len)
{
	size_t i = 0, j;

	if (m->err)
		return -1;
	while (i < len && m->phase != MSG_PHASE_DONE) {
		if (m->skip_lf) {
			m->skip_lf = false;
			if (data[i] == '\n') {
				i++;
				continue;
			}
		}
		j = msg_find_eol(data, i, len);
		if (j > i && msg_content(m, data + i, j - i) < 0)
			return -1;
		if (j == len || m->phase == MSG_PHASE_DONE)
			break;
		m->skip_lf = data[j] == '\r';
		i = j + 1;
		if (msg_eol(m) < 0)
			return -1;
	}
	return m->err ? -1 : 0;
}

/* For -t: the Resent- recipients when any Resent- field was seen. */
static int msg_rcpts_final(struct msg *m)
{
	if (m->has_resent) {
		strv_free(&m->rcpt);
		m->rcpt = m->resent;
		m->resent = (struct strv){ 0 };
	}
	strv_free(&m->resent);
	return msg_rcpts_dedup(&m->rcpt) < 0 ? msg_fail(m, MSG_ENOMEM) : 0;
}

int msg_finish(struct msg *m)
{
	if (m->err)
		return -1;
	if (m->finished)
		return 0;
	if (m->phase == MSG_PHASE_HEADERS && m->line.len > 0 && msg_hdr_eol(m) < 0)
		return -1;
	if (m->phase == MSG_PHASE_HEADERS && msg_hdr_end(m, false) < 0)
		return -1;
	if (m->phase == MSG_PHASE_BODY) {
		if (m->dot_held)
			m->ended_by_dot = true;
		else if (m->mid_line && msg_emit(m, "\r\n", 2) < 0)
			return -1;
	}
	m->phase = MSG_PHASE_DONE;
	msg_hdr_release(m);
	if (msg_flush(m) < 0 || (!m->rcpts_ready && msg_rcpts_final(m) < 0))
		return -1;
	m->rcpts_ready = true;
	m->finished = true;
	return 0;
}

struct msg *msg_new(const struct msg_params *p)
{
	struct msg *m;

	if (!p->out) {
		errno = EINVAL;
		return NULL;
	}
	if (!(m = calloc(1, sizeof(*m))))
		return NULL;
	if (!(m->obuf = malloc(MSG_OBUF_SIZE))) {
		free(m);
		return NULL;
	}
	m->p = *p;
	m->dot_rule = p->from_stdin && p->dot_ends;
	m->at_start = true;
	buf_init(&m->line, MSG_HEADER_MAX);
	buf_init(&m->field, MSG_HEADER_MAX);
	if (p->prepend)
		msg_emit(m, p->prepend, strlen(p->prepend));
	return m;
}

bool msg_ended_by_dot(const struct msg *m)
{
	return m->ended_by_dot;
}

bool msg_headers_done(const struct msg *m)
{
	return m->rcpts_ready;
}

char **msg_rcpts(const struct msg *m, size_t *n)
{
	if (!m->rcpts_ready) {
		*n = 0;
		return NULL;
	}
	*n = m->rcpt.n;
	return m->rcpt.v;
}

size_t msg_rcpts_skipped(const struct msg *m)
{
	return m->skipped;
}

bool msg_eightbit(const struct msg *m)
{
	return m->eightbit;
}

size_t msg_size(const struct msg *m)
{
	return m->total;
}

enum msg_error msg_error(const struct msg *m)
{
	return m->err;
}

const char *msg_strerror(enum msg_error e)
{
	switch (e) {
	case MSG_OK:
		return "success";
	case MSG_ENOMEM:
		return "out of memory";
	case MSG_TOO_BIG:
		return "message too big";
	case MSG_OUTPUT:
		return "cannot write message";
	case MSG_BAD_HEADER:
		return "message header section too large or malformed";
	}
	return "unknown error";
}

void msg_free(struct msg *m)
{
	if (!m)
		return;
	buf_free(&m->line);
	buf_free(&m->field);
	strv_free(&m->rcpt);
	strv_free(&m->resent);
	free(m->obuf);
	free(m);
}
