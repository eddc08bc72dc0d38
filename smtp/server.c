#include "config.h"
#include "smtp/server.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lib/addr.h"
#include "lib/buf.h"
#include "smtp/dsnparam.h"
#include "smtp/eod.h"
#include "smtp/reply.h"

#define SMTP_REPLY_MAX 1024		/* one formatted reply line */
#define SMTP_DATA_CHUNK 8192		/* content handed to sink->write at once */
#define SMTP_ENVID_MAX 100		/* RFC 3461 §4.4 */
#define SMTP_ORCPT_MAX 500		/* RFC 3461 §4.2 */
#define SMTP_DEFAULT_MAX_RCPTS 1000

enum smtp_state {
	SS_INIT,		/* greeted, waiting for HELO/EHLO */
	SS_HELO,		/* HELO/EHLO done, no transaction */
	SS_MAIL,		/* MAIL accepted, no recipient yet */
	SS_RCPT,		/* at least one recipient accepted */
	SS_DATA,		/* reading message content */
	SS_DENIED,		/* peer not allowed: only QUIT */
	SS_COMMIT,		/* end of data seen, the sink is still committing */
	SS_CLOSED		/* QUIT, timeout, EOF: input ignored */
};

#define SB(st) (1u << (st))
#define SS_SESSION (SB(SS_INIT) | SB(SS_HELO) | SB(SS_MAIL) | SB(SS_RCPT))
#define SS_TXN (SB(SS_MAIL) | SB(SS_RCPT))

struct smtp_txn {
	char *sender;
	char **rcpts;
	char **orcpts;
	unsigned *notify;
	size_t nrcpts;
	unsigned rcpt_tries;		/* RCPT commands, accepted or not */
	bool eightbit;
	bool smtputf8;
	char *envid;
	int ret;
	bool begun;			/* sink->begin succeeded: abort owed */
	bool failed;			/* discarding the rest of the content */
	struct smtp_reply fail;
	size_t size;
	struct eod eod;
};

struct smtp_server {
	char *hostname;
	bool peer_allowed;
	size_t max_size;
	unsigned max_rcpts;
	const struct smtp_server_sink *sink;
	void *sink_ctx;
	enum smtp_state state;
	char *helo;
	bool esmtp;			/* greeted with EHLO (for the Received: header) */
	bool discard_line;		/* rest of an overlong command line */
	bool eof_pending;		/* the peer closed while a commit was pending */
	struct buf in;			/* unprocessed input */
	struct buf out;			/* replies not yet sent */
	struct smtp_txn t;
};

struct smtp_cmd {
	const char *name;
	int (*handler)(struct smtp_server *s, char *arg);
	unsigned states;		/* where the command is in sequence */
	const char *busy;		/* the 503 text inside a transaction */
};

/* ---- replies ---- */

static int smtp_server_reply(struct smtp_server *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int smtp_server_reply(struct smtp_server *s, const char *fmt, ...)
{
	char line[SMTP_REPLY_MAX];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line) - 2, fmt, ap);
	va_end(ap);
	if (n < 0)
		return -1;
	if ((size_t)n > sizeof(line) - 3)
		n = (int)(sizeof(line) - 3);
	memcpy(line + n, "\r\n", 2);
	return buf_append(&s->out, line, (size_t)n + 2);
}

static int smtp_server_reply_fail(struct smtp_server *s, const struct smtp_reply *r)
{
	char line[SMTP_REPLY_MAX];

	smtp_reply_failure_line(r, line, sizeof(line));
	return smtp_server_reply(s, "%s", line);
}

/* ---- transaction ---- */

static void smtp_server_txn_reset(struct smtp_server *s)
{
	struct smtp_txn *t = &s->t;

	if (t->begun && s->sink->abort)
		s->sink->abort(s->sink_ctx);
	free(t->sender);
	for (size_t i = 0; i < t->nrcpts; i++) {
		free(t->rcpts[i]);
		free(t->orcpts[i]);
	}
	free(t->rcpts);
	free(t->orcpts);
	free(t->notify);
	free(t->envid);
	memset(t, 0, sizeof(*t));
	if (s->state != SS_DENIED && s->state != SS_CLOSED)
		s->state = s->helo ? SS_HELO : SS_INIT;
}

static void smtp_server_close(struct smtp_server *s)
{
	smtp_server_txn_reset(s);
	s->state = SS_CLOSED;
	buf_reset(&s->in);
	s->discard_line = false;
}

/* ---- ESMTP parameters (RFC 1870, 6152, 6531, 3461) ---- */

struct smtp_params {
	unsigned seen;			/* bit per smtp_server_param_table entry */
	bool size_set;
	uintmax_t size;
	bool eightbit;
	bool smtputf8;
	int ret;
	char *envid;
	unsigned notify;
	char *orcpt;
};

static int smtp_server_hex(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Decode xtext (RFC 3461 §4) into out; decoded bytes must be printable
 * (UTF-8 allowed only with utf8).  Returns the length or -1. */
static int smtp_server_xtext(const char *in, bool utf8, char *out, size_t size)
{
	size_t n = 0;

	for (const unsigned char *p = (const unsigned char *)in; *p; p++) {
		unsigned c = *p;
		if (c == '+') {
			int hi = smtp_server_hex(p[1]), lo = hi < 0 ? -1 : smtp_server_hex(p[2]);
			if (lo < 0)
				return -1;
			c = (unsigned)(hi << 4 | lo);
			p += 2;
		} else if (c == '=' || c <= 0x20 || c == 0x7f) {
			return -1;
		}
		if (c < 0x20 || c == 0x7f || (c >= 0x80 && !utf8) || n + 1 >= size)
			return -1;
		out[n++] = (char)c;
	}
	out[n] = '\0';
	return (int)n;
}

static int smtp_server_param_size(const char *v, struct smtp_params *pp)
{
	uintmax_t n = 0;

	if (!v || !*v)
		return -1;
	for (; *v; v++) {
		if (*v < '0' || *v > '9')
			return -1;
		if (n > (UINTMAX_MAX - 9) / 10)
			n = UINTMAX_MAX;	/* saturate: certainly too big */
		else
			n = n * 10 + (uintmax_t)(*v - '0');
	}
	pp->size = n;
	pp->size_set = true;
	return 0;
}

static int smtp_server_param_notify(const char *v, struct smtp_params *pp)
{
	static const struct { const char *name; unsigned bit; } kw[] = {
		{ "NEVER", SMTP_NOTIFY_NEVER }, { "SUCCESS", SMTP_NOTIFY_SUCCESS },
		{ "FAILURE", SMTP_NOTIFY_FAILURE }, { "DELAY", SMTP_NOTIFY_DELAY },
	};
	unsigned bits = 0;

	while (v && *v) {
		size_t len = strcspn(v, ","), i;
		for (i = 0; i < sizeof(kw) / sizeof(kw[0]); i++)
			if (strlen(kw[i].name) == len && strncasecmp(v, kw[i].name, len) == 0)
				break;
		if (i == sizeof(kw) / sizeof(kw[0]) || (bits & kw[i].bit))
			return -1;
		bits |= kw[i].bit;
		v += len;
		if (*v == ',' && *++v == '\0')
			return -1;
	}
	/* NEVER excludes everything else (RFC 3461 §4.1). */
	if (bits == 0 || ((bits & SMTP_NOTIFY_NEVER) && bits != SMTP_NOTIFY_NEVER))
		return -1;
	pp->notify = bits;
	return 0;
}

/* ORCPT=addr-type;xtext, kept decoded as "addr-type;address". */
static int smtp_server_param_orcpt(const char *v, struct smtp_params *pp)
{
	char dec[SMTP_ORCPT_MAX + 1];
	const char *semi = v ? strchr(v, ';') : NULL;
	size_t tlen;
	int dlen;

	if (!semi || semi == v || (tlen = (size_t)(semi - v)) > 32)
		return -1;
	for (size_t i = 0; i < tlen; i++)
		if (!isalnum((unsigned char)v[i]) && v[i] != '-')
			return -1;
	dlen = smtp_server_xtext(semi + 1, pp->smtputf8, dec, sizeof(dec) - tlen - 1);
	if (dlen <= 0)
		return -1;
	pp->orcpt = malloc(tlen + 1 + (size_t)dlen + 1);
	if (!pp->orcpt)
		return -2;
	memcpy(pp->orcpt, v, tlen + 1);
	memcpy(pp->orcpt + tlen + 1, dec, (size_t)dlen + 1);
	return 0;
}

static int smtp_server_param_body(const char *v, struct smtp_params *pp)
{
	if (v && strcasecmp(v, "7BIT") == 0)
		pp->eightbit = false;
	else if (v && strcasecmp(v, "8BITMIME") == 0)
		pp->eightbit = true;
	else
		return -1;
	return 0;
}

static int smtp_server_param_ret(const char *v, struct smtp_params *pp)
{
	if (v && strcasecmp(v, "FULL") == 0)
		pp->ret = SMTP_RET_FULL;
	else if (v && strcasecmp(v, "HDRS") == 0)
		pp->ret = SMTP_RET_HDRS;
	else
		return -1;
	return 0;
}

static int smtp_server_param_utf8(const char *v, struct smtp_params *pp)
{
	pp->smtputf8 = true;
	return v ? -1 : 0;
}

static int smtp_server_param_envid(const char *v, struct smtp_params *pp)
{
	char dec[SMTP_ENVID_MAX + 1];

	if (!v || smtp_server_xtext(v, false, dec, sizeof(dec)) <= 0)
		return -1;
	pp->envid = strdup(dec);
	return pp->envid ? 0 : -2;
}

static const struct {
	const char *name;
	bool mail;			/* MAIL parameter, else RCPT */
	int (*parse)(const char *v, struct smtp_params *pp);
} smtp_server_param_table[] = {
	{ "SIZE", true, smtp_server_param_size },
	{ "BODY", true, smtp_server_param_body },
	{ "SMTPUTF8", true, smtp_server_param_utf8 },
	{ "RET", true, smtp_server_param_ret },
	{ "ENVID", true, smtp_server_param_envid },
	{ "NOTIFY", false, smtp_server_param_notify },
	{ "ORCPT", false, smtp_server_param_orcpt },
};

/* One parameter: 0 ok, -1 bad value, -2 ENOMEM, -3 unknown or repeated. */
static int smtp_server_param(bool mail, const char *key, const char *v, struct smtp_params *pp)
{
	for (unsigned i = 0; i < sizeof(smtp_server_param_table) / sizeof(smtp_server_param_table[0]); i++) {
		if (smtp_server_param_table[i].mail != mail ||
		    strcasecmp(key, smtp_server_param_table[i].name) != 0)
			continue;
		if (pp->seen & (1u << i))
			return -3;
		pp->seen |= 1u << i;
		return smtp_server_param_table[i].parse(v, pp);
	}
	return -3;
}

/* Parse "KEY[=VALUE] ..." (modified in place).  Returns 0; 1 when rejected
 * (reply queued); -1 on ENOMEM. */
static int smtp_server_params(struct smtp_server *s, bool mail, char *p, struct smtp_params *pp)
{
	while (*p) {
		char *key = p, *eq, *v = NULL;
		int r;

		p += strcspn(p, " ");
		if (*p)
			*p++ = '\0';
		while (*p == ' ')
			p++;
		if ((eq = strchr(key, '=')) != NULL) {
			*eq = '\0';
			v = eq + 1;
		}
		r = smtp_server_param(mail, key, v, pp);
		if (r == -2)
			return -1;
		if (r == -3)
			return smtp_server_reply(s, "555 5.5.4 Unsupported option") < 0 ? -1 : 1;
		/* key is one of the table's names here, not arbitrary input. */
		if (r == -1)
			return smtp_server_reply(s, "501 5.5.4 Bad %s parameter syntax", key) < 0 ? -1 : 1;
	}
	return 0;
}

static void smtp_server_params_free(struct smtp_params *pp)
{
	free(pp->envid);
	free(pp->orcpt);
}

/* ---- paths ---- */

/* MAIL FROM:/RCPT TO: argument -> address and parameters.  Like Postfix
 * (strict_rfc821_envelopes = no) a space after the colon and an address
 * without angle brackets are tolerated.  -1: syntax error; errno ENOMEM. */
static int smtp_server_path(char *arg, const char *prefix, char **addr, char **params)
{
	const unsigned flags = ADDR_ALLOW_BARE | ADDR_ALLOW_UTF8;
	size_t plen = strlen(prefix);
	const char *rest;

	errno = 0;
	if (strncasecmp(arg, prefix, plen) != 0)
		return -1;
	arg += plen;
	while (*arg == ' ')
		arg++;
	if (*arg != '<') {
		char tmp[SMTP_LINE_MAX + 3];
		size_t len = strcspn(arg, " ");
		if (len == 0 || len + 3 > sizeof(tmp))
			return -1;
		snprintf(tmp, sizeof(tmp), "<%.*s>", (int)len, arg);
		if (addr_parse_path(tmp, flags, addr, &rest) < 0)
			return -1;
		rest = arg + len;
		while (*rest == ' ')
			rest++;
	} else if (addr_parse_path(arg, flags, addr, &rest) < 0) {
		return -1;
	}
	*params = arg + (rest - arg);	/* rest points into arg */
	return 0;
}

/* ---- commands ---- */

static int smtp_server_cmd_helo(struct smtp_server *s, char *arg, bool esmtp)
{
	char size[32] = "";
	char *h;

	if (*arg == '\0')
		return smtp_server_reply(s, "501 5.5.4 Syntax: %s hostname", esmtp ? "EHLO" : "HELO");
	for (const unsigned char *p = (const unsigned char *)arg; *p; p++)
		if (*p < 0x20 || *p >= 0x7f)
			return smtp_server_reply(s, "501 5.5.4 Syntax: %s hostname",
			    esmtp ? "EHLO" : "HELO");
	if ((h = strdup(arg)) == NULL)
		return -1;
	/* A new greeting resets the session like RSET (RFC 5321 §4.1.4). */
	smtp_server_txn_reset(s);
	free(s->helo);
	s->helo = h;
	s->esmtp = esmtp;
	s->state = SS_HELO;
	if (!esmtp)
		return smtp_server_reply(s, "250 %s", s->hostname);
	/* "SIZE" alone: no fixed limit (RFC 1870 §4). */
	if (s->max_size)
		snprintf(size, sizeof(size), " %zu", s->max_size);
	/* One append: a multi-line reply is queued whole or not at all. */
	return buf_printf(&s->out, "250-%s\r\n250-PIPELINING\r\n250-SIZE%s\r\n"
	    "250-8BITMIME\r\n250-ENHANCEDSTATUSCODES\r\n250 SMTPUTF8\r\n", s->hostname, size);
}

static int smtp_server_cmd_ehlo(struct smtp_server *s, char *arg)
{
	return smtp_server_cmd_helo(s, arg, true);
}

static int smtp_server_cmd_helo_plain(struct smtp_server *s, char *arg)
{
	return smtp_server_cmd_helo(s, arg, false);
}

/* 0, or 1 after queueing a rejection, or -1 when even that failed. */
static int smtp_server_reject(struct smtp_server *s, const char *text)
{
	return smtp_server_reply(s, "%s", text) < 0 ? -1 : 1;
}

/* MAIL parameters against the limits. */
static int smtp_server_mail_check(struct smtp_server *s, const char *addr,
    const struct smtp_params *pp)
{
	if (s->max_size && pp->size_set && pp->size > s->max_size)
		return smtp_server_reject(s, "552 5.3.4 Message size exceeds fixed limit");
	if (addr_is_utf8(addr) && !pp->smtputf8)
		return smtp_server_reject(s,
		    "553 5.6.7 Must declare SMTPUTF8 to send unicode address");
	return 0;
}

/* Common to MAIL and RCPT: path, parameters.  0 with *addr set; 1 when
 * rejected (reply queued); -1 on ENOMEM. */
static int smtp_server_envelope_arg(struct smtp_server *s, char *arg, bool mail, char **addr,
    struct smtp_params *pp)
{
	const char *prefix = mail ? "FROM:" : "TO:";
	char *params;
	int r;

	*addr = NULL;
	if (smtp_server_path(arg, prefix, addr, &params) < 0) {
		if (errno == ENOMEM)
			return -1;
		if (strncasecmp(arg, prefix, strlen(prefix)) != 0)
			return smtp_server_reject(s, mail ? "501 5.5.4 Syntax: MAIL FROM:<address>" :
			    "501 5.5.4 Syntax: RCPT TO:<address>");
		return smtp_server_reject(s, mail ? "501 5.1.7 Bad sender address syntax" :
		    "501 5.1.3 Bad recipient address syntax");
	}
	if ((r = smtp_server_params(s, mail, params, pp)) != 0) {
		free(*addr);
		*addr = NULL;
	}
	return r;
}

static int smtp_server_cmd_mail(struct smtp_server *s, char *arg)
{
	struct smtp_params pp = { 0 };
	char *addr = NULL;
	int r = smtp_server_envelope_arg(s, arg, true, &addr, &pp);

	if (r == 0 && (r = smtp_server_mail_check(s, addr, &pp)) != 0)
		free(addr);
	if (r != 0) {
		smtp_server_params_free(&pp);
		return r < 0 ? -1 : 0;
	}
	s->t.sender = addr;
	s->t.eightbit = pp.eightbit;
	s->t.smtputf8 = pp.smtputf8;
	s->t.ret = pp.ret;
	s->t.envid = pp.envid;
	s->state = SS_MAIL;
	return smtp_server_reply(s, "250 2.1.0 Ok");
}

static int smtp_server_rcpt_add(struct smtp_server *s, char *addr, struct smtp_params *pp)
{
	struct smtp_txn *t = &s->t;
	size_t n = t->nrcpts + 1;
	char **r = realloc(t->rcpts, n * sizeof(*r));
	char **o;
	unsigned *nt;

	if (!r)
		return -1;
	t->rcpts = r;
	if ((o = realloc(t->orcpts, n * sizeof(*o))) == NULL)
		return -1;
	t->orcpts = o;
	if ((nt = realloc(t->notify, n * sizeof(*nt))) == NULL)
		return -1;
	t->notify = nt;
	r[t->nrcpts] = addr;
	o[t->nrcpts] = pp->orcpt;
	nt[t->nrcpts] = pp->notify;
	pp->orcpt = NULL;
	t->nrcpts = n;
	return 0;
}

/* Checks after syntax: address class, limit, the sink's opinion. */
static int smtp_server_rcpt_check(struct smtp_server *s, const char *addr)
{
	struct smtp_reply fail;

	if (*addr == '\0')
		return smtp_server_reject(s, "501 5.1.3 Bad recipient address syntax");
	if (addr_is_utf8(addr) && !s->t.smtputf8)
		return smtp_server_reject(s,
		    "553 5.6.7 Must declare SMTPUTF8 to send unicode address");
	if (s->t.nrcpts >= s->max_rcpts)
		return smtp_server_reject(s, "452 4.5.3 Error: too many recipients");
	smtp_reply_set(&fail, 550, "5.1.1 Recipient address rejected");
	if (s->sink->rcpt && s->sink->rcpt(s->sink_ctx, addr, &fail) < 0)
		return smtp_server_reply_fail(s, &fail) < 0 ? -1 : 1;
	return 0;
}

static int smtp_server_cmd_rcpt(struct smtp_server *s, char *arg)
{
	struct smtp_params pp = { .smtputf8 = s->t.smtputf8 };
	char *addr = NULL;
	int r;

	s->t.rcpt_tries++;
	r = smtp_server_envelope_arg(s, arg, false, &addr, &pp);
	if (r == 0 && (r = smtp_server_rcpt_check(s, addr)) == 0 &&
	    (r = smtp_server_rcpt_add(s, addr, &pp)) == 0) {
		s->state = SS_RCPT;
		return smtp_server_reply(s, "250 2.1.5 Ok");
	}
	if (r != 0 && addr)
		free(addr);
	smtp_server_params_free(&pp);
	return r < 0 ? -1 : 0;
}

static int smtp_server_cmd_data(struct smtp_server *s, char *arg)
{
	struct smtp_txn *t = &s->t;
	struct smtp_envelope_in env = {
		.helo = s->helo, .esmtp = s->esmtp, .sender = t->sender, .rcpts = t->rcpts,
		.nrcpts = t->nrcpts, .eightbit = t->eightbit, .smtputf8 = t->smtputf8,
		.envid = t->envid, .ret = t->ret, .notify = t->notify, .orcpts = t->orcpts,
	};
	struct smtp_reply fail;

	if (*arg)
		return smtp_server_reply(s, "501 5.5.4 Syntax: DATA");
	if (t->nrcpts == 0) {
		if (t->rcpt_tries == 0)
			return smtp_server_reply(s, "503 5.5.1 Error: need RCPT command");
		return smtp_server_reply(s, "554 5.5.1 Error: no valid recipients");
	}
	smtp_reply_set(&fail, 451, "4.3.0 Error: queue file write error");
	if (s->sink->begin(s->sink_ctx, &env, &fail) < 0) {
		smtp_server_txn_reset(s);
		return smtp_server_reply_fail(s, &fail);
	}
	t->begun = true;
	eod_init(&t->eod);
	s->state = SS_DATA;
	return smtp_server_reply(s, "354 End data with <CR><LF>.<CR><LF>");
}

static int smtp_server_cmd_rset(struct smtp_server *s, char *arg)
{
	if (*arg)
		return smtp_server_reply(s, "501 5.5.4 Syntax: RSET");
	smtp_server_txn_reset(s);
	return smtp_server_reply(s, "250 2.0.0 Ok");
}

static int smtp_server_cmd_noop(struct smtp_server *s, char *arg)
{
	return smtp_server_reply(s, "250 2.0.0 Ok");
}

static int smtp_server_cmd_quit(struct smtp_server *s, char *arg)
{
	int r = smtp_server_reply(s, "221 2.0.0 Bye");

	smtp_server_close(s);
	return r;
}

static int smtp_server_cmd_vrfy(struct smtp_server *s, char *arg)
{
	if (*arg == '\0')
		return smtp_server_reply(s, "501 5.5.4 Syntax: VRFY address");
	return smtp_server_reply(s,
	    "252 2.5.2 Cannot VRFY user, but will accept message and attempt delivery");
}

static int smtp_server_cmd_help(struct smtp_server *s, char *arg)
{
	return smtp_server_reply(s,
	    "214 2.0.0 Commands: EHLO HELO MAIL RCPT DATA RSET NOOP QUIT VRFY HELP");
}

/* The one table of commands: name, handler (NULL = recognised but not
 * implemented, 502), states where it is in sequence, 503 text in a
 * transaction.  Everything else about sequencing is smtp_server_sequence. */
static const struct smtp_cmd smtp_server_cmds[] = {
	{ "EHLO", smtp_server_cmd_ehlo, SS_SESSION, NULL },
	{ "HELO", smtp_server_cmd_helo_plain, SS_SESSION, NULL },
	{ "MAIL", smtp_server_cmd_mail, SB(SS_HELO), "503 5.5.1 Error: nested MAIL command" },
	{ "RCPT", smtp_server_cmd_rcpt, SS_TXN, NULL },
	{ "DATA", smtp_server_cmd_data, SS_TXN, NULL },
	{ "RSET", smtp_server_cmd_rset, SS_SESSION, NULL },
	{ "NOOP", smtp_server_cmd_noop, SS_SESSION, NULL },
	{ "QUIT", smtp_server_cmd_quit, SS_SESSION | SB(SS_DENIED), NULL },
	{ "VRFY", smtp_server_cmd_vrfy, SS_SESSION, NULL },
	{ "HELP", smtp_server_cmd_help, SS_SESSION, NULL },
	{ "EXPN", NULL, SS_SESSION, NULL },
	{ "TURN", NULL, SS_SESSION, NULL },
	{ "ETRN", NULL, SS_SESSION, NULL },
	{ "AUTH", NULL, SS_SESSION, NULL },
	{ "STARTTLS", NULL, SS_SESSION, NULL },
	{ "BDAT", NULL, SS_SESSION, NULL },
	{ "SEND", NULL, SS_SESSION, NULL },
	{ "SOML", NULL, SS_SESSION, NULL },
	{ "SAML", NULL, SS_SESSION, NULL },
};

static const struct smtp_cmd *smtp_server_lookup(const char *verb)
{
	for (size_t i = 0; i < sizeof(smtp_server_cmds) / sizeof(smtp_server_cmds[0]); i++)
		if (strcasecmp(verb, smtp_server_cmds[i].name) == 0)
			return &smtp_server_cmds[i];
	return NULL;
}

/* The reply for a command out of sequence in the current state. */
static int smtp_server_sequence(struct smtp_server *s, const struct smtp_cmd *c)
{
	switch (s->state) {
	case SS_DENIED:
		return smtp_server_reply(s, "503 5.7.1 Error: access denied for %s", s->hostname);
	case SS_INIT:
		return smtp_server_reply(s, "503 5.5.1 Error: send HELO/EHLO first");
	case SS_HELO:
		return smtp_server_reply(s, "503 5.5.1 Error: need MAIL command");
	default:
		if (c && c->busy)
			return smtp_server_reply(s, "%s", c->busy);
		return smtp_server_reply(s, "503 5.5.1 Error: bad sequence of commands");
	}
}

/* One command line, without its line end, NUL-terminated in a private copy. */
static int smtp_server_command(struct smtp_server *s, char *line, size_t len)
{
	const struct smtp_cmd *c;
	char *arg, *end;

	if (memchr(line, '\0', len))
		return s->state == SS_DENIED ? smtp_server_sequence(s, NULL) :
		    smtp_server_reply(s, "500 5.5.2 Error: bad syntax");
	arg = line + strcspn(line, " ");
	if (*arg)
		*arg++ = '\0';
	while (*arg == ' ')
		arg++;
	for (end = arg + strlen(arg); end > arg && (end[-1] == ' ' || end[-1] == '\t'); end--)
		end[-1] = '\0';
	c = smtp_server_lookup(line);
	if (!c || !(c->states & SB(s->state))) {
		if (c || s->state == SS_DENIED)
			return smtp_server_sequence(s, c);
		return smtp_server_reply(s, "500 5.5.2 Error: command not recognized");
	}
	if (!c->handler)
		return smtp_server_reply(s, "502 5.5.1 Error: command not implemented");
	return c->handler(s, arg);
}

/* ---- input ---- */

/* A command line from p: *used is 0 while it is incomplete. */
static int smtp_server_line(struct smtp_server *s, const char *p, size_t n, size_t *used)
{
	char line[SMTP_LINE_MAX + 1];
	const char *lf = memchr(p, '\n', n);
	size_t len;

	if (s->discard_line) {
		*used = lf ? (size_t)(lf - p) + 1 : n;
		s->discard_line = lf == NULL;
		return 0;
	}
	if (!lf) {
		*used = 0;
		if (n < SMTP_LINE_MAX)
			return 0;
		/* Answer now, then drop the tail up to its LF: it is not a command. */
		*used = n;
		s->discard_line = true;
		return smtp_server_reply(s, "500 5.5.2 Error: line too long");
	}
	*used = len = (size_t)(lf - p) + 1;
	if (len > SMTP_LINE_MAX)
		return smtp_server_reply(s, "500 5.5.2 Error: line too long");
	len--;
	if (len && p[len - 1] == '\r')
		len--;
	memcpy(line, p, len);
	line[len] = '\0';
	return smtp_server_command(s, line, len);
}

static int smtp_server_content(struct smtp_server *s, const char *data, size_t len)
{
	struct smtp_txn *t = &s->t;

	if (t->failed)
		return 0;
	t->size = len > SIZE_MAX - t->size ? SIZE_MAX : t->size + len;
	if (s->max_size && t->size > s->max_size) {
		smtp_reply_set(&t->fail, 552, "5.3.4 Error: message file too big");
	} else {
		smtp_reply_set(&t->fail, 451, "4.3.0 Error: queue file write error");
		if (s->sink->write(s->sink_ctx, data, len, &t->fail) == 0)
			return 0;
	}
	/* Storage is given up now; the rest is read and discarded so the
	 * reply comes after end of data and the session stays in step. */
	t->failed = true;
	if (s->sink->abort)
		s->sink->abort(s->sink_ctx);
	t->begun = false;
	return 0;
}

static int smtp_server_reply_queued(struct smtp_server *s, char *id)
{
	for (char *q = id; *q; q++)
		if (*q <= 0x20 || *q >= 0x7f)
			*q = '?';
	return smtp_server_reply(s, "250 2.0.0 Ok: queued as %s", id);
}

static int smtp_server_data_end(struct smtp_server *s)
{
	struct smtp_txn *t = &s->t;
	char id[SMTP_SERVER_ID_SIZE] = "";
	int r;

	id[sizeof(id) - 1] = '\0';
	if (t->failed) {
		r = smtp_server_reply_fail(s, &t->fail);
	} else {
		smtp_reply_set(&t->fail, 451, "4.3.0 Error: queue file write error");
		/* The sink frees its storage in commit, success or not. */
		t->begun = false;
		r = s->sink->commit(s->sink_ctx, id, sizeof(id), &t->fail);
		if (r > 0) {
			/* Answered by smtp_server_commit_done; input waits until then. */
			smtp_server_txn_reset(s);
			s->state = SS_COMMIT;
			return 0;
		}
		r = r < 0 ? smtp_server_reply_fail(s, &t->fail) : smtp_server_reply_queued(s, id);
	}
	s->state = SS_HELO;
	smtp_server_txn_reset(s);
	return r;
}

static int smtp_server_data(struct smtp_server *s, const char *p, size_t n, size_t *used)
{
	char out[SMTP_DATA_CHUNK];
	size_t off = 0, olen;

	while (off < n && !eod_done(&s->t.eod)) {
		off += eod_feed(&s->t.eod, p + off, n - off, out, sizeof(out), &olen);
		if (olen)
			smtp_server_content(s, out, olen);
	}
	*used = off;
	return eod_done(&s->t.eod) ? smtp_server_data_end(s) : 0;
}

/* Process as much of p as possible; *used is how much was taken. */
static int smtp_server_run(struct smtp_server *s, const char *p, size_t n, size_t *used)
{
	size_t off = 0, u;
	int r = 0;

	while (off < n && s->state != SS_CLOSED && s->state != SS_COMMIT) {
		if (s->state == SS_DATA)
			r = smtp_server_data(s, p + off, n - off, &u);
		else if (s->out.len >= SMTP_OUT_HIGH)
			break;		/* the client is not reading its replies */
		else
			r = smtp_server_line(s, p + off, n - off, &u);
		off += u;
		if (r < 0 || u == 0)
			break;
	}
	*used = s->state == SS_CLOSED ? n : off;
	return r;
}

/* Out of memory mid-session: nothing sensible can follow. */
static int smtp_server_fail(struct smtp_server *s)
{
	int e = errno;

	smtp_server_close(s);
	smtp_server_reply(s, "421 4.3.0 %s Error: out of memory", s->hostname);
	errno = e ? e : ENOMEM;
	return -1;
}

static int smtp_server_drain(struct smtp_server *s)
{
	size_t used = 0;
	int r;

	if (s->in.len == 0)
		return 0;
	r = smtp_server_run(s, s->in.data, s->in.len, &used);
	buf_consume(&s->in, used);
	return r < 0 ? smtp_server_fail(s) : 0;
}

int smtp_server_input(struct smtp_server *s, const char *data, size_t len)
{
	size_t used = 0;

	if (s->state == SS_CLOSED)
		return 0;
	if (s->in.len == 0) {
		/* Common case: no copy (message content goes straight through). */
		if (smtp_server_run(s, data, len, &used) < 0)
			return smtp_server_fail(s);
		if (s->state == SS_CLOSED)
			return 0;
		data += used;
		len -= used;
	}
	if (buf_append(&s->in, data, len) < 0)
		return smtp_server_fail(s);
	return smtp_server_drain(s);
}

/* ---- session ---- */

static char *smtp_server_clean_name(const char *name)
{
	char *h = strdup(name && *name ? name : "localhost");

	if (!h)
		return NULL;
	for (char *p = h; *p; p++)
		if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f)
			*p = '?';
	if (strlen(h) > 255)
		h[255] = '\0';
	return h;
}

struct smtp_server *smtp_server_new(const struct smtp_server_params *p)
{
	struct smtp_server *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	s->hostname = smtp_server_clean_name(p->hostname);
	if (!s->hostname) {
		free(s);
		return NULL;
	}
	s->peer_allowed = p->peer_allowed;
	s->max_size = p->max_message_size;
	s->max_rcpts = p->max_recipients ? p->max_recipients : SMTP_DEFAULT_MAX_RCPTS;
	s->sink = p->sink;
	s->sink_ctx = p->sink_ctx;
	buf_init(&s->in, SMTP_IN_MAX);
	/* Headroom above the high-water mark: a reply always fits. */
	buf_init(&s->out, SMTP_OUT_HIGH + 8 * SMTP_REPLY_MAX);
	s->state = p->peer_allowed ? SS_INIT : SS_DENIED;
	if ((p->peer_allowed ? smtp_server_reply(s, "220 %s ESMTP smtprelay", s->hostname) :
	    smtp_server_reply(s, "554 5.7.1 %s access denied", s->hostname)) < 0) {
		smtp_server_free(s);
		return NULL;
	}
	return s;
}

void smtp_server_free(struct smtp_server *s)
{
	if (!s)
		return;
	smtp_server_close(s);
	free(s->helo);
	free(s->hostname);
	buf_free(&s->in);
	buf_free(&s->out);
	free(s);
}

void smtp_server_eof(struct smtp_server *s)
{
	/* The client may half-close after its final dot: it still gets its answer. */
	if (s->state == SS_COMMIT) {
		s->eof_pending = true;
		return;
	}
	smtp_server_close(s);
}

bool smtp_server_committing(const struct smtp_server *s)
{
	return s->state == SS_COMMIT;
}

void smtp_server_commit_done(struct smtp_server *s, const char *queue_id,
    const struct smtp_reply *fail)
{
	char id[SMTP_SERVER_ID_SIZE];
	int r;

	if (s->state != SS_COMMIT)
		return;
	s->state = s->helo ? SS_HELO : SS_INIT;
	if (queue_id) {
		snprintf(id, sizeof(id), "%s", queue_id);
		r = smtp_server_reply_queued(s, id);
	} else {
		struct smtp_reply f = *fail;
		r = smtp_server_reply_fail(s, &f);
	}
	if (r < 0)
		smtp_server_fail(s);
	else
		smtp_server_drain(s);
	if (s->eof_pending)
		smtp_server_close(s);
}

void smtp_server_timeout(struct smtp_server *s)
{
	if (s->state == SS_CLOSED)
		return;
	smtp_server_close(s);
	smtp_server_reply(s, "421 4.4.2 %s Error: timeout exceeded", s->hostname);
}

const char *smtp_server_output(struct smtp_server *s, size_t *len)
{
	*len = s->out.len;
	return s->out.len ? s->out.data : "";
}

void smtp_server_consume_output(struct smtp_server *s, size_t len)
{
	buf_consume(&s->out, len);
	if (s->out.len < SMTP_OUT_HIGH && s->state != SS_CLOSED)
		smtp_server_drain(s);
}

bool smtp_server_closing(const struct smtp_server *s)
{
	return s->state == SS_CLOSED;
}

bool smtp_server_want_input(const struct smtp_server *s)
{
	return s->state != SS_CLOSED && s->state != SS_COMMIT && s->out.len < SMTP_OUT_HIGH;
}
