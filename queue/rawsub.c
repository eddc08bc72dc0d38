#include "config.h"
#include "queue/rawsub.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/addr.h"
#include "lib/buf.h"
#include "lib/fsutil.h"
#include "queue/qint.h"

struct rawsub {
	struct submit_params p;
	char *origin, *sender, *full_name, *envid;
	char **rcpts, **orcpts;
	unsigned *notify;
	size_t n;
};

/* ---- writing (the front end) ---- */

static void rawsub_escape(struct buf *b, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";

	for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) {
		char one[3] = { '%', hex[*p >> 4], hex[*p & 15] };
		if (*p > 0x20 && *p < 0x7f && *p != '%')
			buf_append(b, p, 1);
		else
			buf_append(b, one, 3);
	}
}

static void rawsub_field(struct buf *b, const char *key, const char *value)
{
	buf_printf(b, "%s ", key);
	rawsub_escape(b, value);
	buf_puts(b, "\n");
}

int rawsub_write_header(int fd, const struct submit_params *p)
{
	struct buf b;
	int r;

	buf_init(&b, Q_MAX_HEADER);
	buf_printf(&b, RAWSUB_MAGIC "opts %d %d %d %d %d %d %u\n", p->extract_rcpts,
	    p->from_stdin, p->dot_ends, p->eightbit, p->smtputf8, (int)p->ret, p->notify & 15);
	rawsub_field(&b, "origin", p->origin);
	rawsub_field(&b, "sender", p->sender);
	rawsub_field(&b, "fullname", p->full_name);
	rawsub_field(&b, "envid", p->envid);
	buf_printf(&b, "rcpts %zu\n", p->nrcpts);
	for (size_t i = 0; i < p->nrcpts; i++) {
		buf_printf(&b, "rcpt %u ", p->notify_each ? p->notify_each[i] & 15 : p->notify & 15);
		rawsub_escape(&b, p->rcpts[i]);
		buf_puts(&b, " ");
		rawsub_escape(&b, p->orcpts ? p->orcpts[i] : NULL);
		buf_puts(&b, "\n");
	}
	if (buf_puts(&b, "data\n") < 0) {
		buf_free(&b);
		errno = ENOMEM;
		return -1;
	}
	r = fs_write_all(fd, b.data, b.len);
	buf_free(&b);
	return r;
}

/* ---- reading (the daemon): untrusted ---- */

bool rawsub_detect(int fd)
{
	/* Any version: an unknown one is refused by name, not as a queue file. */
	char head[sizeof(RAWSUB_MAGIC_NAME)];

	return pread(fd, head, sizeof(head), 0) == (ssize_t)sizeof(head) &&
	    memcmp(head, RAWSUB_MAGIC_NAME " ", sizeof(head)) == 0;
}

static int rawsub_hex(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Decode one %-escaped token; NULL when malformed, too long or with a control. */
static char *rawsub_unescape(const char *s, size_t len)
{
	char *out = malloc(len + 1), *o = out;

	if (!out)
		return NULL;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '%' && i + 2 < len && rawsub_hex(s[i + 1]) >= 0 &&
		    rawsub_hex(s[i + 2]) >= 0) {
			c = (unsigned char)(rawsub_hex(s[i + 1]) * 16 + rawsub_hex(s[i + 2]));
			i += 2;
		} else if (c <= 0x20 || c >= 0x7f || c == '%') {
			c = 0;
		}
		/* No controls: values end up in SMTP commands, headers and logs. */
		if (c < 0x20 || c == 0x7f) {
			free(out);
			return NULL;
		}
		*o++ = (char)c;
	}
	*o = '\0';
	if ((size_t)(o - out) > Q_MAX_STR) {
		free(out);
		return NULL;
	}
	return out;
}

/* One header line without its LF, bounded; NULL at EOF or when too long. */
static char *rawsub_line(FILE *f, char *line, size_t size)
{
	size_t len;

	if (!fgets(line, (int)size, f))
		return NULL;
	len = strlen(line);
	if (len == 0 || line[len - 1] != '\n')
		return NULL;
	line[len - 1] = '\0';
	return line;
}

/* "KEY VALUE": the decoded value (may be empty), NULL when malformed. */
static char *rawsub_text(FILE *f, const char *key)
{
	char line[Q_MAX_LINE + 2];
	size_t klen = strlen(key);

	if (!rawsub_line(f, line, sizeof(line)) || strncmp(line, key, klen) != 0 ||
	    line[klen] != ' ')
		return NULL;
	return rawsub_unescape(line + klen + 1, strlen(line + klen + 1));
}

static int rawsub_opts(FILE *f, struct submit_params *p)
{
	char line[Q_MAX_LINE + 2], end;
	int v[7];

	if (!rawsub_line(f, line, sizeof(line)) ||
	    sscanf(line, "opts %d %d %d %d %d %d %d%c", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5],
	    &v[6], &end) != 7)
		return -1;
	for (int i = 0; i < 5; i++)
		if (v[i] != 0 && v[i] != 1)
			return -1;
	if (v[5] < SMTP_RET_DEFAULT || v[5] > SMTP_RET_HDRS || v[6] < 0 || v[6] > 15)
		return -1;
	p->extract_rcpts = v[0];
	p->from_stdin = v[1];
	p->dot_ends = v[2];
	p->eightbit = v[3];
	p->smtputf8 = v[4];
	p->ret = (enum smtp_ret)v[5];
	p->notify = (unsigned)v[6];
	return 0;
}

/* RFC 3461 "addr-type;address" as the listener keeps it (decoded xtext). */
static bool rawsub_orcpt_ok(const char *o)
{
	size_t t = strspn(o, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-");

	return t > 0 && t <= 32 && o[t] == ';' && o[t + 1] && strlen(o + t + 1) <= 500 &&
	    !strchr(o + t + 1, ' ');
}

/* "rcpt NOTIFY ADDRESS ORCPT" into slot i. */
static int rawsub_rcpt(FILE *f, struct rawsub *r, size_t i)
{
	char line[Q_MAX_LINE + 2], *addr, *orcpt, *end;
	unsigned long notify;

	if (!rawsub_line(f, line, sizeof(line)) || strncmp(line, "rcpt ", 5) != 0)
		return -1;
	notify = strtoul(line + 5, &end, 10);
	if (end == line + 5 || *end != ' ' || notify > 15)
		return -1;
	addr = end + 1;
	if (!(orcpt = strchr(addr, ' ')) || strchr(orcpt + 1, ' ') || orcpt == addr)
		return -1;
	r->notify[i] = (unsigned)notify;
	r->rcpts[i] = rawsub_unescape(addr, (size_t)(orcpt - addr));
	r->orcpts[i] = orcpt[1] ? rawsub_unescape(orcpt + 1, strlen(orcpt + 1)) : NULL;
	return r->rcpts[i] && (!orcpt[1] || (r->orcpts[i] && rawsub_orcpt_ok(r->orcpts[i]))) ?
	    0 : -1;
}

static int rawsub_rcpts(FILE *f, struct rawsub *r)
{
	char line[Q_MAX_LINE + 2], end;
	unsigned long n;

	if (!rawsub_line(f, line, sizeof(line)) || sscanf(line, "rcpts %lu%c", &n, &end) != 1 ||
	    n > Q_MAX_RCPTS)
		return -1;
	r->rcpts = calloc(n + 1, sizeof(*r->rcpts));
	r->orcpts = calloc(n + 1, sizeof(*r->orcpts));
	r->notify = calloc(n + 1, sizeof(*r->notify));
	if (!r->rcpts || !r->orcpts || !r->notify)
		return -1;
	for (r->n = 0; r->n < n; r->n++)
		if (rawsub_rcpt(f, r, r->n) < 0) {
			r->n++;		/* free what the failed line allocated */
			return -1;
		}
	return rawsub_line(f, line, sizeof(line)) && strcmp(line, "data") == 0 ? 0 : -1;
}

/* What sendmail -V accepts (RFC 3461 ENVID): printable ASCII, at most 100. */
static bool rawsub_envid_ok(const char *s)
{
	size_t len = strlen(s);

	for (const char *p = s; *p; p++)
		if (*p < 0x21 || *p > 0x7e)
			return false;
	return len <= 100;
}

/* What sendmail -f takes: empty (the null sender) or an address, maybe bare. */
static bool rawsub_sender_ok(const char *s)
{
	return !s[0] || (strlen(s) <= ADDR_MAX && addr_valid(s, ADDR_ALLOW_BARE | ADDR_ALLOW_UTF8));
}

/* Only what the front end writes: it names the path in logs. */
static bool rawsub_origin_ok(const char *s)
{
	return strcmp(s, "sendmail") == 0 || strcmp(s, "sendmail -bs") == 0;
}

/* Empty text fields mean "not given". */
static const char *rawsub_opt(const char *s)
{
	return s && s[0] ? s : NULL;
}

struct rawsub *rawsub_read_header(FILE *f, char *why, size_t whylen)
{
	char line[Q_MAX_LINE + 2];
	struct rawsub *r = calloc(1, sizeof(*r));

	if (r && (!rawsub_line(f, line, sizeof(line)) ||
	    strncmp(line, RAWSUB_MAGIC, sizeof(RAWSUB_MAGIC) - 2) != 0 ||
	    line[sizeof(RAWSUB_MAGIC) - 2] != '\0')) {
		snprintf(why, whylen, "unsupported " RAWSUB_MAGIC_NAME " version (sendmail and "
		    "smtprelayd from different releases? restart smtprelayd after upgrading)");
		rawsub_free(r);
		return NULL;
	}
	if (!r || rawsub_opts(f, &r->p) < 0 ||
	    !(r->origin = rawsub_text(f, "origin")) || !rawsub_origin_ok(r->origin) ||
	    !(r->sender = rawsub_text(f, "sender")) || !rawsub_sender_ok(r->sender) ||
	    !(r->full_name = rawsub_text(f, "fullname")) || !(r->envid = rawsub_text(f, "envid")) ||
	    !rawsub_envid_ok(r->envid) || rawsub_rcpts(f, r) < 0) {
		snprintf(why, whylen, "%s", r ? "malformed " RAWSUB_MAGIC_NAME " header" :
		    "out of memory");
		rawsub_free(r);
		return NULL;
	}
	r->p.origin = r->origin;
	r->p.sender = r->sender;
	r->p.full_name = rawsub_opt(r->full_name);
	r->p.envid = rawsub_opt(r->envid);
	r->p.rcpts = r->rcpts;
	r->p.orcpts = r->orcpts;
	r->p.notify_each = r->notify;
	r->p.nrcpts = r->n;
	return r;
}

struct submit_params *rawsub_params(struct rawsub *r)
{
	return &r->p;
}

void rawsub_free(struct rawsub *r)
{
	if (!r)
		return;
	for (size_t i = 0; i < r->n; i++) {
		free(r->rcpts[i]);
		free(r->orcpts[i]);
	}
	free(r->rcpts);
	free(r->orcpts);
	free(r->notify);
	free(r->origin);
	free(r->sender);
	free(r->full_name);
	free(r->envid);
	free(r);
}
