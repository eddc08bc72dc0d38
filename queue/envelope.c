#include "config.h"
#include "queue/qint.h"
#include "lib/addr.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Content file ("queue/ID", "maildrop/ID"), version 1: text lines
 * "KEY VALUE\n" in exactly this order, then the raw content:
 *
 *   SMTPRELAY-QUEUE 1
 *   size NNNNNNNNNNNNNNNNNNNN     content bytes, 20 digits, patched at commit
 *   id ID                         must match the file name
 *   arrival MICROSECONDS          since the epoch
 *   uid UID                       submitting uid, -1 for the listener
 *   origin TEXT
 *   sender TEXT                   empty for the null sender
 *   envid TEXT                    only when given
 *   ret default|full|hdrs
 *   smtputf8 0|1
 *   8bitmime 0|1
 *   rcpts N                       1..Q_MAX_RCPTS, then N times:
 *   rcpt NOTIFY ADDRESS           NOTIFY: decimal q_notify bits (0 = not given)
 *   orcpt TEXT                    only when given; belongs to the rcpt above
 *   data
 *   <exactly size bytes of content>
 *
 * TEXT and ADDRESS are %-escaped: every byte that is not printable ASCII
 * other than space and '%' is written as %XX, so no value can hold a space,
 * a line break or a NUL.  The file must be exactly header + size bytes long:
 * anything else is a truncated (or appended-to) file.
 *
 * State file ("queue/ID.state"), always replaced as a whole:
 *
 *   SMTPRELAY-STATE 1
 *   id ID
 *   dsn_count N
 *   rcpts N                       must equal the content file's count
 *   rcpt STATE ATTEMPTS NEXT LAST per recipient in content file order; STATE
 *                                 as q_state_name(); times in epoch seconds
 *   reason TEXT                   only when there is one; belongs to the rcpt above
 *   held 1                        only when held (struct q_envelope)
 *   end
 */

#define ENV_MAGIC "SMTPRELAY-QUEUE"
#define ENV_STATE_MAGIC "SMTPRELAY-STATE"
#define ENV_VERSION "1"
#define ENV_SIZE_PREFIX ENV_MAGIC " " ENV_VERSION "\nsize "
#define ENV_TIME_MAX ((uint64_t)(sizeof(time_t) >= 8 ? INT64_MAX : INT32_MAX))

static const char *const envelope_ret_names[] = { "default", "full", "hdrs" };
static const char *const envelope_state_names[] = { "pending", "deferred", "delivered", "failed" };

const char *q_state_name(enum q_rcpt_state s)
{
	if ((unsigned)s >= sizeof(envelope_state_names) / sizeof(envelope_state_names[0]))
		return "unknown";
	return envelope_state_names[s];
}

void q_envelope_free(struct q_envelope *env)
{
	if (!env)
		return;
	for (size_t i = 0; i < env->nrcpts; i++) {
		free(env->rcpts[i].addr);
		free(env->rcpts[i].orcpt);
		free(env->rcpts[i].last_reason);
	}
	free(env->rcpts);
	free(env->sender);
	free(env->envid);
	free(env->origin);
	free(env);
}

/* ---- Validation shared by writer and reader ---- */

static bool envelope_plain(unsigned char c)
{
	return c > 0x20 && c < 0x7f && c != '%';
}

/* Text that ends up in SMTP commands or log lines: no control characters. */
static bool envelope_text_ok(const char *s, size_t max)
{
	size_t n = 0;

	for (const unsigned char *p = (const unsigned char *)s; *p; p++, n++)
		if (*p < 0x20 || *p == 0x7f || n >= max)
			return false;
	return true;
}

static bool envelope_notify_ok(unsigned n)
{
	if (n == SMTP_NOTIFY_NEVER || n == 0)
		return true;
	return (n & ~(unsigned)(SMTP_NOTIFY_SUCCESS | SMTP_NOTIFY_FAILURE | SMTP_NOTIFY_DELAY)) == 0;
}

static int envelope_bad(char *err, size_t errlen, const char *what)
{
	if (err && errlen)
		snprintf(err, errlen, "invalid %s", what);
	errno = EINVAL;
	return -1;
}

static int envelope_check_rcpts(const struct q_envelope *env, char *err, size_t errlen)
{
	if (env->nrcpts == 0 || env->nrcpts > Q_MAX_RCPTS || !env->rcpts)
		return envelope_bad(err, errlen, "recipient count");
	for (size_t i = 0; i < env->nrcpts; i++) {
		const struct q_rcpt *r = &env->rcpts[i];
		if (!r->addr || !addr_valid(r->addr, ADDR_ALLOW_BARE | ADDR_ALLOW_UTF8))
			return envelope_bad(err, errlen, "recipient address");
		if (r->orcpt && !envelope_text_ok(r->orcpt, Q_MAX_STR))
			return envelope_bad(err, errlen, "recipient ORCPT");
		if (!envelope_notify_ok(r->notify))
			return envelope_bad(err, errlen, "recipient NOTIFY");
		if ((unsigned)r->state > Q_FAILED)
			return envelope_bad(err, errlen, "recipient state");
	}
	return 0;
}

int envelope_check(const struct q_envelope *env, char *err, size_t errlen)
{
	if (!queue_id_valid(env->id))
		return envelope_bad(err, errlen, "queue id");
	if (env->arrival_us <= 0)
		return envelope_bad(err, errlen, "arrival time");
	if (env->uid < -1 || env->uid > (long)UINT32_MAX)
		return envelope_bad(err, errlen, "uid");
	if (env->origin && !envelope_text_ok(env->origin, Q_MAX_STR))
		return envelope_bad(err, errlen, "origin");
	if (!env->sender || (env->sender[0] &&
	    !addr_valid(env->sender, ADDR_ALLOW_BARE | ADDR_ALLOW_UTF8)))
		return envelope_bad(err, errlen, "sender address");
	if (env->envid && !envelope_text_ok(env->envid, Q_MAX_STR))
		return envelope_bad(err, errlen, "ENVID");
	if ((unsigned)env->ret > SMTP_RET_HDRS)
		return envelope_bad(err, errlen, "RET");
	return envelope_check_rcpts(env, err, errlen);
}

/* ---- Encoding ---- */

/* Append s %-escaped, at most max bytes of it (cut at a UTF-8 character
 * boundary so a shortened reason stays readable). */
static int envelope_put_text(struct buf *b, const char *s, size_t max)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t n = strlen(s), i = 0;

	if (n > max) {
		n = max;
		while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80)
			n--;
	}
	while (i < n) {
		size_t run = 0;
		while (i + run < n && envelope_plain((unsigned char)s[i + run]))
			run++;
		if (run && buf_append(b, s + i, run) < 0)
			return -1;
		i += run;
		if (i < n) {
			unsigned char c = (unsigned char)s[i++];
			char e[3] = { '%', hex[c >> 4], hex[c & 15] };
			if (buf_append(b, e, 3) < 0)
				return -1;
		}
	}
	return 0;
}

static int envelope_put_field(struct buf *b, const char *key, const char *val)
{
	if (buf_printf(b, "%s ", key) < 0 || envelope_put_text(b, val, (size_t)-1) < 0)
		return -1;
	return buf_append(b, "\n", 1);
}

size_t envelope_size_offset(void)
{
	return sizeof(ENV_SIZE_PREFIX) - 1;
}

void envelope_size_field(char out[ENVELOPE_SIZE_WIDTH + 1], uint64_t size)
{
	snprintf(out, ENVELOPE_SIZE_WIDTH + 1, "%0*" PRIu64, ENVELOPE_SIZE_WIDTH, size);
}

static int envelope_encode_rcpts(const struct q_envelope *env, struct buf *b)
{
	if (buf_printf(b, "rcpts %zu\n", env->nrcpts) < 0)
		return -1;
	for (size_t i = 0; i < env->nrcpts; i++) {
		const struct q_rcpt *r = &env->rcpts[i];
		if (buf_printf(b, "rcpt %u ", r->notify) < 0 ||
		    envelope_put_text(b, r->addr, (size_t)-1) < 0 || buf_append(b, "\n", 1) < 0)
			return -1;
		if (r->orcpt && envelope_put_field(b, "orcpt", r->orcpt) < 0)
			return -1;
	}
	return buf_puts(b, "data\n");
}

/* The header of a content file, with the size field zero (envelope_check first). */
int envelope_encode(const struct q_envelope *env, struct buf *b)
{
	char size[ENVELOPE_SIZE_WIDTH + 1];

	envelope_size_field(size, 0);
	if (buf_printf(b, "%s%s\nid %s\narrival %" PRId64 "\nuid %ld\n", ENV_SIZE_PREFIX,
	    size, env->id, env->arrival_us, env->uid) < 0)
		return -1;
	if (envelope_put_field(b, "origin", env->origin ? env->origin : "") < 0 ||
	    envelope_put_field(b, "sender", env->sender) < 0)
		return -1;
	if (env->envid && envelope_put_field(b, "envid", env->envid) < 0)
		return -1;
	if (buf_printf(b, "ret %s\nsmtputf8 %d\n8bitmime %d\n", envelope_ret_names[env->ret],
	    env->smtputf8 ? 1 : 0, env->eightbit ? 1 : 0) < 0)
		return -1;
	return envelope_encode_rcpts(env, b);
}

static long long envelope_time(time_t t)
{
	return t < 0 ? 0 : (long long)t;
}

int envelope_encode_state(const struct q_envelope *env, struct buf *b)
{
	if (buf_printf(b, "%s %s\nid %s\ndsn_count %u\nrcpts %zu\n", ENV_STATE_MAGIC,
	    ENV_VERSION, env->id, env->dsn_count, env->nrcpts) < 0)
		return -1;
	for (size_t i = 0; i < env->nrcpts; i++) {
		const struct q_rcpt *r = &env->rcpts[i];
		if (buf_printf(b, "rcpt %s %u %lld %lld\n", q_state_name(r->state), r->attempts,
		    envelope_time(r->next_attempt), envelope_time(r->last_attempt)) < 0)
			return -1;
		if (!r->last_reason)
			continue;
		if (buf_puts(b, "reason ") < 0 || envelope_put_text(b, r->last_reason, Q_MAX_STR) < 0 ||
		    buf_append(b, "\n", 1) < 0)
			return -1;
	}
	if (env->held && buf_puts(b, "held 1\n") < 0)
		return -1;
	return buf_puts(b, "end\n");
}

/* ---- Reading: every byte is untrusted ---- */

struct envelope_parser {
	int fd;
	size_t pos, len;	/* unread bytes: buf[pos..len) */
	uint64_t off;		/* file offset of buf[pos] */
	unsigned lineno;
	bool peeked;		/* the current line is to be returned again */
	char *key, *val;	/* current line; val NULL without a space */
	char *err;
	size_t errlen;
	char buf[4 * Q_MAX_LINE];
};

static int envelope_fail(struct envelope_parser *p, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int envelope_fail(struct envelope_parser *p, const char *fmt, ...)
{
	va_list ap;
	int n = 0;

	if (p->err && p->errlen) {
		n = snprintf(p->err, p->errlen, "line %u: ", p->lineno);
		if (n >= 0 && (size_t)n < p->errlen) {
			va_start(ap, fmt);
			vsnprintf(p->err + n, p->errlen - (size_t)n, fmt, ap);
			va_end(ap);
		}
	}
	errno = EBADMSG;
	return -1;
}

static int envelope_nomem(struct envelope_parser *p)
{
	if (p->err && p->errlen)
		snprintf(p->err, p->errlen, "%s", strerror(ENOMEM));
	errno = ENOMEM;
	return -1;
}

/* Refill so that a whole line (or proof that it is too long) is buffered. */
static int envelope_fill(struct envelope_parser *p)
{
	ssize_t got;

	if (p->len - p->pos > Q_MAX_LINE)
		return envelope_fail(p, "line too long");
	memmove(p->buf, p->buf + p->pos, p->len - p->pos);
	p->len -= p->pos;
	p->pos = 0;
	do
		got = read(p->fd, p->buf + p->len, sizeof(p->buf) - p->len);
	while (got < 0 && errno == EINTR);
	if (got < 0) {
		int saved = errno;
		if (p->err && p->errlen)
			snprintf(p->err, p->errlen, "read: %s", strerror(saved));
		errno = saved;
		return -1;
	}
	if (got == 0)
		return envelope_fail(p, "unexpected end of file (truncated)");
	p->len += (size_t)got;
	return 0;
}

/* Next line split into key and value; the previous line's pointers die. */
static int envelope_line(struct envelope_parser *p)
{
	char *start, *nl;
	size_t n;

	if (p->peeked) {
		p->peeked = false;
		return 0;
	}
	while (!(nl = memchr(p->buf + p->pos, '\n', p->len - p->pos)))
		if (envelope_fill(p) < 0)
			return -1;
	start = p->buf + p->pos;
	n = (size_t)(nl - start);
	p->pos += n + 1;
	p->off += n + 1;
	p->lineno++;
	if (n > Q_MAX_LINE)
		return envelope_fail(p, "line too long");
	if (memchr(start, '\0', n))
		return envelope_fail(p, "NUL byte in header");
	*nl = '\0';
	p->key = start;
	p->val = strchr(start, ' ');
	if (p->val)
		*p->val++ = '\0';
	return 0;
}

/* Next line must be "KEY VALUE". */
static int envelope_field(struct envelope_parser *p, const char *key, char **val)
{
	if (envelope_line(p) < 0)
		return -1;
	if (strcmp(p->key, key) != 0 || !p->val)
		return envelope_fail(p, "expected \"%s\"", key);
	*val = p->val;
	return 0;
}

/* Strict decimal: digits only, no sign, no leading zeros, at most max. */
static int envelope_num(struct envelope_parser *p, const char *s, uint64_t max,
    const char *what, uint64_t *v)
{
	uint64_t n = 0;

	if (!*s || (s[0] == '0' && s[1]))
		return envelope_fail(p, "bad %s", what);
	for (; *s; s++) {
		unsigned d = (unsigned)(*s - '0');
		if (d > 9 || n > (max - d) / 10)
			return envelope_fail(p, "bad %s", what);
		n = n * 10 + d;
	}
	*v = n;
	return 0;
}

static int envelope_hex(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* Decode %-escaped TEXT into a new string of at most max bytes. */
static int envelope_text(struct envelope_parser *p, const char *s, size_t max,
    const char *what, char **out)
{
	size_t n = strlen(s), o = 0;
	char *d;

	if (n > 3 * max)
		return envelope_fail(p, "%s too long", what);
	if (!(d = malloc(n + 1)))
		return envelope_nomem(p);
	for (size_t i = 0; i < n; i++) {
		int hi, lo;
		if (s[i] != '%') {
			if (!envelope_plain((unsigned char)s[i]))
				goto bad;
			d[o++] = s[i];
			continue;
		}
		if (i + 2 >= n || (hi = envelope_hex(s[i + 1])) < 0 ||
		    (lo = envelope_hex(s[i + 2])) < 0 || (hi | lo) == 0)
			goto bad;
		d[o++] = (char)(hi << 4 | lo);
		i += 2;
	}
	d[o] = '\0';
	if (o > max) {
		free(d);
		return envelope_fail(p, "%s too long", what);
	}
	*out = d;
	return 0;
bad:
	free(d);
	return envelope_fail(p, "bad encoding in %s", what);
}

static int envelope_bool(struct envelope_parser *p, const char *key, bool *b)
{
	char *v;

	if (envelope_field(p, key, &v) < 0)
		return -1;
	if (strcmp(v, "0") != 0 && strcmp(v, "1") != 0)
		return envelope_fail(p, "bad %s", key);
	*b = v[0] == '1';
	return 0;
}

static int envelope_name(struct envelope_parser *p, const char *v, const char *const *names,
    unsigned n, const char *what, unsigned *out)
{
	for (unsigned i = 0; i < n; i++) {
		if (strcmp(v, names[i]) == 0) {
			*out = i;
			return 0;
		}
	}
	return envelope_fail(p, "bad %s", what);
}

static int envelope_magic(struct envelope_parser *p, const char *magic)
{
	if (envelope_line(p) < 0)
		return -1;
	if (strcmp(p->key, magic) != 0 || !p->val)
		return envelope_fail(p, "not a %s file", magic);
	if (strcmp(p->val, ENV_VERSION) != 0)
		return envelope_fail(p, "unsupported format version %.20s", p->val);
	return 0;
}

static int envelope_size(struct envelope_parser *p, uint64_t *size)
{
	char *v;
	uint64_t n = 0;

	if (envelope_field(p, "size", &v) < 0)
		return -1;
	if (strlen(v) != ENVELOPE_SIZE_WIDTH)
		return envelope_fail(p, "bad size");
	for (const char *s = v; *s; s++) {
		unsigned d = (unsigned)(*s - '0');
		if (d > 9 || n > (UINT64_MAX - d) / 10)
			return envelope_fail(p, "bad size");
		n = n * 10 + d;
	}
	*size = n;
	return 0;
}

static int envelope_uid(struct envelope_parser *p, long *uid)
{
	char *v;
	uint64_t n;

	if (envelope_field(p, "uid", &v) < 0)
		return -1;
	if (strcmp(v, "-1") == 0) {
		*uid = -1;
		return 0;
	}
	if (envelope_num(p, v, UINT32_MAX, "uid", &n) < 0)
		return -1;
	*uid = (long)n;
	return 0;
}

static int envelope_head_ids(struct envelope_parser *p, struct q_envelope *env,
    const char *id, uint64_t *size)
{
	char *v;
	uint64_t n;

	if (envelope_magic(p, ENV_MAGIC) < 0 || envelope_size(p, size) < 0)
		return -1;
	if (envelope_field(p, "id", &v) < 0)
		return -1;
	/* id NULL: a message handed over on a descriptor has no file name. */
	if (!queue_id_valid(v) || (id && strcmp(v, id) != 0))
		return envelope_fail(p, "id does not match the file name");
	memcpy(env->id, v, QID_ID_LEN + 1);
	if (envelope_field(p, "arrival", &v) < 0 || envelope_num(p, v, INT64_MAX, "arrival", &n) < 0)
		return -1;
	env->arrival_us = (int64_t)n;
	return envelope_uid(p, &env->uid);
}

static int envelope_head(struct envelope_parser *p, struct q_envelope *env,
    const char *id, uint64_t *size)
{
	char *v;
	unsigned ret = 0;

	if (envelope_head_ids(p, env, id, size) < 0)
		return -1;
	if (envelope_field(p, "origin", &v) < 0 || envelope_text(p, v, Q_MAX_STR, "origin", &env->origin) < 0)
		return -1;
	if (envelope_field(p, "sender", &v) < 0 || envelope_text(p, v, ADDR_MAX, "sender", &env->sender) < 0)
		return -1;
	if (envelope_line(p) < 0)
		return -1;
	if (strcmp(p->key, "envid") == 0 && p->val) {
		if (envelope_text(p, p->val, Q_MAX_STR, "envid", &env->envid) < 0)
			return -1;
	} else {
		p->peeked = true;
	}
	if (envelope_field(p, "ret", &v) < 0 || envelope_name(p, v, envelope_ret_names, 3, "ret", &ret) < 0)
		return -1;
	env->ret = (enum smtp_ret)ret;
	if (envelope_bool(p, "smtputf8", &env->smtputf8) < 0)
		return -1;
	return envelope_bool(p, "8bitmime", &env->eightbit);
}

/* "rcpts N": allocate the array up front, bounded by Q_MAX_RCPTS. */
static int envelope_rcpt_count(struct envelope_parser *p, struct q_envelope *env)
{
	char *v;
	uint64_t n;

	if (envelope_field(p, "rcpts", &v) < 0 || envelope_num(p, v, Q_MAX_RCPTS, "rcpts", &n) < 0)
		return -1;
	if (n == 0)
		return envelope_fail(p, "no recipients");
	if (env->rcpts)
		return n == env->nrcpts ? 0 : envelope_fail(p, "recipient count differs");
	if (!(env->rcpts = calloc((size_t)n, sizeof(*env->rcpts))))
		return envelope_nomem(p);
	env->nrcpts = (size_t)n;
	return 0;
}

static int envelope_rcpt(struct envelope_parser *p, struct q_rcpt *r)
{
	char *v, *sp;
	uint64_t notify;

	if (envelope_field(p, "rcpt", &v) < 0)
		return -1;
	if (!(sp = strchr(v, ' ')))
		return envelope_fail(p, "bad rcpt");
	*sp = '\0';
	if (envelope_num(p, v, 15, "NOTIFY", &notify) < 0)
		return -1;
	r->notify = (unsigned)notify;
	if (envelope_text(p, sp + 1, ADDR_MAX, "recipient", &r->addr) < 0 || envelope_line(p) < 0)
		return -1;
	if (strcmp(p->key, "orcpt") == 0 && p->val)
		return envelope_text(p, p->val, Q_MAX_STR, "orcpt", &r->orcpt);
	p->peeked = true;
	return 0;
}

static int envelope_body(struct envelope_parser *p, struct q_envelope *env, uint64_t file_size)
{
	for (size_t i = 0; i < env->nrcpts; i++)
		if (envelope_rcpt(p, &env->rcpts[i]) < 0)
			return -1;
	if (envelope_line(p) < 0)
		return -1;
	if (strcmp(p->key, "data") != 0 || p->val)
		return envelope_fail(p, "expected \"data\"");
	env->content_offset = p->off;
	if (file_size < p->off || file_size - p->off != env->size)
		return envelope_fail(p, "content is %" PRIu64 " bytes, header says %" PRIu64
		    " (truncated?)", file_size < p->off ? 0 : file_size - p->off, env->size);
	return 0;
}

static void envelope_parser_init(struct envelope_parser *p, int fd, char *err, size_t errlen)
{
	p->fd = fd;
	p->pos = p->len = 0;
	p->off = 0;
	p->lineno = 0;
	p->peeked = false;
	p->key = p->val = NULL;
	p->err = err;
	p->errlen = errlen;
}

/* Parse a content file header from the start of fd (of file_size bytes). */
int envelope_parse(int fd, const char *id, uint64_t file_size, struct q_envelope **out,
    char *err, size_t errlen)
{
	struct envelope_parser *p = malloc(sizeof(*p));
	struct q_envelope *env = calloc(1, sizeof(*env));
	char why[128];
	int r = -1;

	if (!p || !env) {
		free(p);
		free(env);
		errno = ENOMEM;
		if (err && errlen)
			snprintf(err, errlen, "%s", strerror(ENOMEM));
		return -1;
	}
	envelope_parser_init(p, fd, err, errlen);
	if (envelope_head(p, env, id, &env->size) < 0 || envelope_rcpt_count(p, env) < 0 ||
	    envelope_body(p, env, file_size) < 0)
		goto out;
	if (envelope_check(env, why, sizeof(why)) < 0) {
		envelope_fail(p, "%s", why);
		goto out;
	}
	r = 0;
out:
	free(p);
	if (r < 0) {
		int saved = errno;
		q_envelope_free(env);
		errno = saved;
		return -1;
	}
	*out = env;
	return 0;
}

static int envelope_state_rcpt(struct envelope_parser *p, struct q_rcpt *r)
{
	char *v, *tok[4];
	uint64_t n[3];
	unsigned st = 0;
	int i = 0;

	if (envelope_field(p, "rcpt", &v) < 0)
		return -1;
	for (char *s = v; i < 4; i++) {
		tok[i] = s;
		s = strchr(s, ' ');
		if ((s == NULL) != (i == 3))
			return envelope_fail(p, "bad rcpt state");
		if (s)
			*s++ = '\0';
	}
	if (envelope_name(p, tok[0], envelope_state_names, 4, "state", &st) < 0 ||
	    envelope_num(p, tok[1], UINT32_MAX, "attempts", &n[0]) < 0 ||
	    envelope_num(p, tok[2], ENV_TIME_MAX, "next attempt", &n[1]) < 0 ||
	    envelope_num(p, tok[3], ENV_TIME_MAX, "last attempt", &n[2]) < 0)
		return -1;
	r->state = (enum q_rcpt_state)st;
	r->attempts = (unsigned)n[0];
	r->next_attempt = (time_t)n[1];
	r->last_attempt = (time_t)n[2];
	free(r->last_reason);
	r->last_reason = NULL;
	if (envelope_line(p) < 0)
		return -1;
	if (strcmp(p->key, "reason") == 0 && p->val)
		return envelope_text(p, p->val, Q_MAX_STR, "reason", &r->last_reason);
	p->peeked = true;
	return 0;
}

static int envelope_at_eof(struct envelope_parser *p)
{
	ssize_t got;
	char c;

	do
		got = read(p->fd, &c, 1);
	while (got < 0 && errno == EINTR);
	if (got != 0)
		return envelope_fail(p, "data after \"end\"");
	return 0;
}

static int envelope_state_body(struct envelope_parser *p, struct q_envelope *env)
{
	char *v;
	uint64_t n;

	if (envelope_magic(p, ENV_STATE_MAGIC) < 0 || envelope_field(p, "id", &v) < 0)
		return -1;
	if (strcmp(v, env->id) != 0)
		return envelope_fail(p, "id does not match");
	if (envelope_field(p, "dsn_count", &v) < 0 || envelope_num(p, v, UINT32_MAX, "dsn_count", &n) < 0)
		return -1;
	env->dsn_count = (unsigned)n;
	if (envelope_rcpt_count(p, env) < 0)
		return -1;
	for (size_t i = 0; i < env->nrcpts; i++)
		if (envelope_state_rcpt(p, &env->rcpts[i]) < 0)
			return -1;
	if (envelope_line(p) < 0)
		return -1;
	if (strcmp(p->key, "held") == 0 && p->val && strcmp(p->val, "1") == 0) {
		env->held = true;
		if (envelope_line(p) < 0)
			return -1;
	}
	if (strcmp(p->key, "end") != 0 || p->val)
		return envelope_fail(p, "expected \"end\"");
	if (p->pos != p->len)
		return envelope_fail(p, "data after \"end\"");
	return envelope_at_eof(p);
}

/* Apply a state file to env (already read from its content file). */
int envelope_parse_state(int fd, struct q_envelope *env, char *err, size_t errlen)
{
	struct envelope_parser *p = malloc(sizeof(*p));
	int r;

	if (!p) {
		if (err && errlen)
			snprintf(err, errlen, "%s", strerror(ENOMEM));
		errno = ENOMEM;
		return -1;
	}
	envelope_parser_init(p, fd, err, errlen);
	r = envelope_state_body(p, env);
	free(p);
	return r;
}
