#include "config.h"
#include "smtp/client.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lib/buf.h"
#include "smtp/sasl.h"

#define CLIENT_HOST_MAX 255
#define CLIENT_USER_MAX 1024
#define CLIENT_SECRET_MAX 16384
/* One envelope command: address, NOTIFY, ORCPT (xtext triples at worst). */
#define CLIENT_CMD_MAX (4 * SMTP_CLIENT_ADDR_MAX + 256)
/* Session commands incl. AUTH with a long token, plus the content window
 * (stuffing at most doubles a chunk). */
#define CLIENT_OUT_BASE (4 * SMTP_CLIENT_DATA_CHUNK + 2 * SASL_INPUT_MAX)
#define CLIENT_REPLY_MAX 2048

enum client_state {
	CS_GREETING,
	CS_EHLO,
	CS_HELO,
	CS_STARTTLS,
	CS_TLS_WAIT,
	CS_AUTH,
	CS_READY,
	CS_TXN,		/* MAIL/RCPT/DATA replies outstanding */
	CS_DATA,	/* sending content */
	CS_DOT,		/* waiting for the reply to end of data */
	CS_MSG_DONE,
	CS_QUIT,
	CS_CLOSED,
};

enum client_auth_step {
	AS_INITIAL,	/* AUTH sent, with initial response when the mechanism has one */
	AS_LOGIN_USER,	/* AUTH LOGIN sent, username prompt expected */
	AS_LOGIN_PASS,	/* username sent, password prompt expected */
	AS_FINAL,	/* everything sent, 235 expected */
	AS_ABORTED,	/* error challenge answered or exchange cancelled: failure expected */
};

enum client_pend_kind { PK_RSET, PK_MAIL, PK_RCPT, PK_DATA, PK_DOT, PK_QUIT };

/* A command whose reply is awaited, in the order the replies will come. */
struct client_pend {
	enum client_pend_kind kind;
	size_t idx;		/* recipient index for PK_RCPT */
	size_t cmdlen;		/* bytes at the head of cmds while not yet sent */
	bool sent;
	bool ignore;		/* PK_DOT after a 354 with nobody to deliver to */
};

struct client_rcpt {
	struct smtp_client_result r;
	bool accepted;		/* 2xx to RCPT, waiting for the end of data */
	bool final;
};

struct client_reply {
	int code;
	size_t nlines;
	size_t len;
	char text[CLIENT_REPLY_MAX];	/* "250 first line; second line" */
	char enhanced[SMTP_CLIENT_ENHANCED_MAX];	/* of the first line, "" if none */
};

struct smtp_client {
	char *helo_name;
	char *username;
	char *secret;
	char *server_host;
	unsigned server_port;
	unsigned auth_mechs;
	enum smtp_client_tls tls;
	size_t line_max;
	size_t lines_max;

	enum client_state state;
	bool tls_active;
	bool ehlo_ok;		/* EHLO (not HELO) was accepted */
	bool any_line;		/* some reply line arrived */
	enum smtp_client_error err;
	enum smtp_client_stage err_stage;
	char reason[SMTP_CLIENT_REASON_MAX];
	struct smtp_client_result err_reply;

	struct buf in;
	struct buf out;
	size_t out_off;		/* bytes of out already sent */
	struct client_reply reply;

	char greeting[SMTP_CLIENT_TEXT_MAX];	/* for `smtprelay probe` */
	struct smtp_client_ehlo ehlo;
	struct smtp_client_ehlo ehlo_next;	/* filled while the EHLO reply arrives */
	unsigned auth_mech;
	unsigned auth_used;
	enum client_auth_step auth_step;
	char auth_detail[256];
	struct buf auth_sent;	/* base64 credentials we sent, to mask echoes */

	struct client_pend *q;
	size_t qhead, qtail, qcap;
	struct buf cmds;	/* rendered commands not yet released to out */
	struct client_rcpt *rcpts;
	size_t nrcpts;
	size_t naccepted;
	bool txn;		/* a transaction was started (results valid) */
	bool txn_sent;		/* and reached the server: RSET needed */
	bool mail_ok;
	bool mail_only;		/* the probe's MAIL FROM test */
	struct smtp_client_result msg_res;
	bool bol;		/* content: at the beginning of a line */
	char prev;		/* content: last byte sent */
};

static const char *const client_stage_names[] = {
	[SMTP_CLIENT_STAGE_GREETING] = "greeting",
	[SMTP_CLIENT_STAGE_EHLO] = "EHLO",
	[SMTP_CLIENT_STAGE_HELO] = "HELO",
	[SMTP_CLIENT_STAGE_STARTTLS] = "STARTTLS",
	[SMTP_CLIENT_STAGE_TLS] = "TLS handshake",
	[SMTP_CLIENT_STAGE_AUTH] = "AUTH",
	[SMTP_CLIENT_STAGE_IDLE] = "idle",
	[SMTP_CLIENT_STAGE_RSET] = "RSET",
	[SMTP_CLIENT_STAGE_MAIL] = "MAIL FROM",
	[SMTP_CLIENT_STAGE_RCPT] = "RCPT TO",
	[SMTP_CLIENT_STAGE_DATA] = "DATA",
	[SMTP_CLIENT_STAGE_CONTENT] = "message body",
	[SMTP_CLIENT_STAGE_DOT] = "end of DATA",
	[SMTP_CLIENT_STAGE_QUIT] = "QUIT",
};

/* "... while %s", worded like Postfix's smtp(8) messages. */
static const char *const client_stage_phrases[] = {
	[SMTP_CLIENT_STAGE_GREETING] = "receiving the initial server greeting",
	[SMTP_CLIENT_STAGE_EHLO] = "performing the EHLO handshake",
	[SMTP_CLIENT_STAGE_HELO] = "performing the HELO handshake",
	[SMTP_CLIENT_STAGE_STARTTLS] = "sending STARTTLS",
	[SMTP_CLIENT_STAGE_TLS] = "performing the TLS handshake",
	[SMTP_CLIENT_STAGE_AUTH] = "performing SASL authentication",
	[SMTP_CLIENT_STAGE_IDLE] = "idle",
	[SMTP_CLIENT_STAGE_RSET] = "sending RSET",
	[SMTP_CLIENT_STAGE_MAIL] = "sending MAIL FROM",
	[SMTP_CLIENT_STAGE_RCPT] = "sending RCPT TO",
	[SMTP_CLIENT_STAGE_DATA] = "sending DATA command",
	[SMTP_CLIENT_STAGE_CONTENT] = "sending message body",
	[SMTP_CLIENT_STAGE_DOT] = "sending end of data -- message may be sent more than once",
	[SMTP_CLIENT_STAGE_QUIT] = "sending QUIT",
};

static const struct {
	unsigned bit;
	const char *name;
} client_mechs[] = {
	/* Preference order: tokens only when allowed explicitly (see choose). */
	{ SASL_XOAUTH2, "XOAUTH2" },
	{ SASL_OAUTHBEARER, "OAUTHBEARER" },
	{ SASL_PLAIN, "PLAIN" },
	{ SASL_LOGIN, "LOGIN" },
};

const char *smtp_client_stage_name(enum smtp_client_stage s)
{
	if ((size_t)s >= sizeof(client_stage_names) / sizeof(client_stage_names[0]))
		return "";
	return client_stage_names[s];
}

static const char *client_phrase(enum smtp_client_stage s)
{
	return client_stage_phrases[s];
}

const char *smtp_client_mech_name(unsigned mech)
{
	for (size_t i = 0; i < sizeof(client_mechs) / sizeof(client_mechs[0]); i++)
		if (client_mechs[i].bit == mech)
			return client_mechs[i].name;
	return "";
}

static enum smtp_client_stage client_pend_stage(enum client_pend_kind k)
{
	switch (k) {
	case PK_RSET:
		return SMTP_CLIENT_STAGE_RSET;
	case PK_MAIL:
		return SMTP_CLIENT_STAGE_MAIL;
	case PK_RCPT:
		return SMTP_CLIENT_STAGE_RCPT;
	case PK_DATA:
		return SMTP_CLIENT_STAGE_DATA;
	case PK_DOT:
		return SMTP_CLIENT_STAGE_DOT;
	case PK_QUIT:
		break;
	}
	return SMTP_CLIENT_STAGE_QUIT;
}

enum smtp_client_stage smtp_client_stage(const struct smtp_client *c)
{
	switch (c->state) {
	case CS_GREETING:
		return SMTP_CLIENT_STAGE_GREETING;
	case CS_EHLO:
		return SMTP_CLIENT_STAGE_EHLO;
	case CS_HELO:
		return SMTP_CLIENT_STAGE_HELO;
	case CS_STARTTLS:
		return SMTP_CLIENT_STAGE_STARTTLS;
	case CS_TLS_WAIT:
		return SMTP_CLIENT_STAGE_TLS;
	case CS_AUTH:
		return SMTP_CLIENT_STAGE_AUTH;
	case CS_DATA:
		return SMTP_CLIENT_STAGE_CONTENT;
	case CS_CLOSED:
		return c->err_stage;
	default:
		break;
	}
	if (c->qhead < c->qtail)
		return client_pend_stage(c->q[c->qhead].kind);
	return SMTP_CLIENT_STAGE_IDLE;
}

/* ---- text helpers ---- */

/* Overwrite every occurrence of needle in s, keeping the length. */
static void client_mask(char *s, const char *needle, size_t nlen)
{
	char *p;

	if (nlen == 0)
		return;
	while ((p = memmem(s, strlen(s), needle, nlen)) != NULL)
		memset(p, '*', nlen);
}

/* A server may echo what we sent; none of it may reach logs. */
static void client_scrub(const struct smtp_client *c, char *s)
{
	if (c->secret)
		client_mask(s, c->secret, strlen(c->secret));
	if (c->auth_sent.len)
		client_mask(s, c->auth_sent.data, c->auth_sent.len);
}

/* Bounded copy replacing control characters: server text goes to logs. */
static void client_copy_text(char *dst, size_t size, const char *src, size_t len)
{
	size_t i;

	if (len > size - 1)
		len = size - 1;
	for (i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)src[i];
		dst[i] = ch < 0x20 || ch == 0x7f ? '?' : (char)ch;
	}
	dst[i] = '\0';
}

static void client_result_reply(const struct smtp_client *c, struct smtp_client_result *r,
    enum smtp_client_stage stage)
{
	r->code = c->reply.code;
	r->local = false;
	r->stage = stage;
	client_copy_text(r->text, sizeof(r->text), c->reply.text, c->reply.len);
	client_scrub(c, r->text);
	memcpy(r->enhanced, c->reply.enhanced, sizeof(r->enhanced));
}

static void client_result_local(const struct smtp_client *c, struct smtp_client_result *r,
    int code, enum smtp_client_stage stage, const char *text)
{
	r->code = code;
	r->local = true;
	r->stage = stage;
	r->enhanced[0] = '\0';
	client_copy_text(r->text, sizeof(r->text), text, strlen(text));
	client_scrub(c, r->text);
}

/* ---- output ---- */

static int client_append(struct smtp_client *c, const void *data, size_t len)
{
	/* Reclaim the sent prefix before growing. */
	if (c->out_off > 0 && c->out_off == c->out.len) {
		buf_reset(&c->out);
		c->out_off = 0;
	}
	return buf_append(&c->out, data, len);
}

static int client_printf(struct smtp_client *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int client_printf(struct smtp_client *c, const char *fmt, ...)
{
	va_list ap;
	int r;

	if (c->out_off > 0 && c->out_off == c->out.len) {
		buf_reset(&c->out);
		c->out_off = 0;
	}
	va_start(ap, fmt);
	r = buf_vprintf(&c->out, fmt, ap);
	va_end(ap);
	return r;
}

const char *smtp_client_output(struct smtp_client *c, size_t *len)
{
	*len = c->out.len - c->out_off;
	return *len ? c->out.data + c->out_off : NULL;
}

void smtp_client_consume_output(struct smtp_client *c, size_t len)
{
	size_t pending = c->out.len - c->out_off;

	c->out_off += len < pending ? len : pending;
	if (c->out_off == c->out.len) {
		buf_reset(&c->out);
		c->out_off = 0;
	} else if (c->out_off > c->out.len / 2) {
		buf_consume(&c->out, c->out_off);
		c->out_off = 0;
	}
}

/* ---- failure ---- */

/* Every recipient without a final answer is deferred by a session failure:
 * with the server's 4xx reply when there is one, else with the reason. */
static void client_defer_unfinished(struct smtp_client *c, bool use_reply,
    enum smtp_client_stage stage)
{
	char text[SMTP_CLIENT_TEXT_MAX];
	struct smtp_client_result *first = NULL;

	/* Deliberately cut to the result's size. */
	memcpy(text, "4.4.2 ", 6);
	client_copy_text(text + 6, sizeof(text) - 6, c->reason, strlen(c->reason));
	for (size_t i = 0; i < c->nrcpts; i++) {
		struct client_rcpt *r = &c->rcpts[i];

		if (r->final)
			continue;
		if (use_reply)
			client_result_reply(c, &r->r, stage);
		else
			client_result_local(c, &r->r, 421, stage, text);
		r->final = true;
		if (!first)
			first = &r->r;
	}
	if (first && c->msg_res.code == 0)
		c->msg_res = *first;
}

static void client_fail(struct smtp_client *c, enum smtp_client_error e, bool with_reply,
    bool quit, const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* End the session: reason for the driver's logs, unfinished recipients
 * deferred, and a courtesy QUIT when the conversation is still in step. */
static void client_fail(struct smtp_client *c, enum smtp_client_error e, bool with_reply,
    bool quit, const char *fmt, ...)
{
	enum smtp_client_stage stage = smtp_client_stage(c);
	va_list ap;

	if (c->state == CS_CLOSED)
		return;
	c->err = e;
	c->err_stage = stage;
	va_start(ap, fmt);
	vsnprintf(c->reason, sizeof(c->reason), fmt, ap);
	va_end(ap);
	client_scrub(c, c->reason);
	memset(&c->err_reply, 0, sizeof(c->err_reply));
	if (with_reply)
		client_result_reply(c, &c->err_reply, stage);
	client_defer_unfinished(c, with_reply && c->reply.code / 100 == 4, stage);
	c->state = CS_CLOSED;
	c->qhead = c->qtail = 0;
	buf_reset(&c->cmds);
	buf_reset(&c->in);
	if (quit)
		(void)client_printf(c, "QUIT\r\n");
}

static void client_nomem(struct smtp_client *c)
{
	client_fail(c, SMTP_CLIENT_E_INTERNAL, false, false,
	    "local error while %s: %s", client_phrase(smtp_client_stage(c)), strerror(errno));
}

/* 421 ends the session (RFC 5321 §3.8); other 4xx too at session stages. */
static void client_fail_temp(struct smtp_client *c, const char *what)
{
	client_fail(c, SMTP_CLIENT_E_TEMP, true, c->reply.code != 421,
	    "%s: %s", what, c->reply.text);
}

static void client_protocol(struct smtp_client *c, const char *what, const char *line,
    size_t len)
{
	char excerpt[80];

	client_copy_text(excerpt, sizeof(excerpt), line ? line : "", line ? len : 0);
	client_fail(c, SMTP_CLIENT_E_PROTOCOL, false, false, "protocol error while %s: %s%s%s%s",
	    client_phrase(smtp_client_stage(c)), what, line ? " \"" : "", excerpt, line ? "\"" : "");
}

/* ---- EHLO extensions ---- */

static bool client_word_eq(const char *s, size_t len, const char *word)
{
	return strlen(word) == len && strncasecmp(s, word, len) == 0;
}

static void client_word_add(char *list, size_t size, const char *w, size_t len)
{
	size_t have = strlen(list);

	if (have + (have > 0) + len + 1 > size)
		return;
	if (have > 0)
		list[have++] = ' ';
	client_copy_text(list + have, size - have, w, len);
}

/* Is w one of the space-separated words of list (case-insensitively)? */
static bool client_list_has(const char *list, const char *w, size_t len)
{
	while (*list) {
		size_t n = strcspn(list, " ");

		if (n == len && strncasecmp(list, w, len) == 0)
			return true;
		list += n;
		while (*list == ' ')
			list++;
	}
	return false;
}

static void client_ehlo_auth(struct smtp_client_ehlo *e, const char *s, size_t len)
{
	size_t i = 0;

	while (i < len) {
		size_t j = i;

		while (j < len && s[j] != ' ')
			j++;
		for (size_t m = 0; j > i && m < sizeof(client_mechs) / sizeof(client_mechs[0]); m++) {
			if (client_word_eq(s + i, j - i, client_mechs[m].name))
				e->auth_offered |= client_mechs[m].bit;
		}
		/* "AUTH" and the old "AUTH=" line usually repeat each other. */
		if (j > i && !client_list_has(e->auth_raw, s + i, j - i))
			client_word_add(e->auth_raw, sizeof(e->auth_raw), s + i, j - i);
		i = j + 1;
	}
}

static uint64_t client_parse_size(const char *s, size_t len)
{
	uint64_t v = 0;
	size_t i = 0;

	while (i < len && s[i] == ' ')
		i++;
	for (; i < len && s[i] >= '0' && s[i] <= '9'; i++) {
		if (v > (UINT64_MAX - 9) / 10)
			return 0;	/* absurd: treat as no limit */
		v = v * 10 + (uint64_t)(s[i] - '0');
	}
	return v;
}

/* One EHLO extension line ("SIZE 35882577", "AUTH PLAIN LOGIN", "AUTH=LOGIN"). */
static void client_ehlo_line(struct smtp_client_ehlo *e, const char *s, size_t len)
{
	size_t k = 0;

	while (k < len && s[k] != ' ' && s[k] != '=')
		k++;
	if (k == 0)
		return;
	if (!client_list_has(e->raw, s, k))
		client_word_add(e->raw, sizeof(e->raw), s, k);
	if (client_word_eq(s, k, "PIPELINING"))
		e->pipelining = true;
	else if (client_word_eq(s, k, "STARTTLS"))
		e->starttls = true;
	else if (client_word_eq(s, k, "8BITMIME"))
		e->eightbitmime = true;
	else if (client_word_eq(s, k, "SMTPUTF8"))
		e->smtputf8 = true;
	else if (client_word_eq(s, k, "DSN"))
		e->dsn = true;
	else if (client_word_eq(s, k, "ENHANCEDSTATUSCODES"))
		e->enhancedstatuscodes = true;
	else if (client_word_eq(s, k, "SIZE")) {
		e->size_ext = true;
		e->size = client_parse_size(s + k, len - k);
	} else if (client_word_eq(s, k, "AUTH") && k < len)
		client_ehlo_auth(e, s + k + 1, len - k - 1);
}

/* ---- session set-up ---- */

static void client_ready(struct smtp_client *c)
{
	c->state = CS_READY;
}

static void client_send_ehlo(struct smtp_client *c)
{
	memset(&c->ehlo_next, 0, sizeof(c->ehlo_next));
	if (client_printf(c, "EHLO %s\r\n", c->helo_name) < 0) {
		client_nomem(c);
		return;
	}
	c->state = CS_EHLO;
}

static void client_on_greeting(struct smtp_client *c)
{
	client_copy_text(c->greeting, sizeof(c->greeting), c->reply.text, c->reply.len);
	if (c->reply.code == 421) {
		client_fail_temp(c, "server is unavailable");
		return;
	}
	if (c->reply.code != 220) {
		client_fail(c, SMTP_CLIENT_E_GREETING, true, true,
		    "server refused to talk to us: %s", c->reply.text);
		return;
	}
	client_send_ehlo(c);
}

static void client_auth_start(struct smtp_client *c);

/* Greeting and EHLO/HELO done: STARTTLS, AUTH, or ready. */
static void client_after_hello(struct smtp_client *c)
{
	if (c->tls == SMTP_CLIENT_TLS_STARTTLS && !c->tls_active) {
		if (!c->ehlo.starttls) {
			client_fail(c, SMTP_CLIENT_E_STARTTLS_MISSING, false, true,
			    "server does not offer STARTTLS%s; refusing to go on without TLS "
			    "(use PORT/tls if the port expects implicit TLS)",
			    c->ehlo_ok ? "" : " (it rejected EHLO)");
			return;
		}
		if (client_printf(c, "STARTTLS\r\n") < 0) {
			client_nomem(c);
			return;
		}
		c->state = CS_STARTTLS;
		return;
	}
	/* PORT/none: credentials are never sent without TLS (smtprelayd(8) "Delivery"). */
	if (c->username && c->tls != SMTP_CLIENT_TLS_NONE) {
		client_auth_start(c);
		return;
	}
	client_ready(c);
}

static void client_on_ehlo(struct smtp_client *c)
{
	switch (c->reply.code / 100) {
	case 2:
		c->ehlo = c->ehlo_next;
		c->ehlo_ok = true;
		client_after_hello(c);
		return;
	case 5:
		if (client_printf(c, "HELO %s\r\n", c->helo_name) < 0) {
			client_nomem(c);
			return;
		}
		c->state = CS_HELO;
		return;
	case 4:
		client_fail_temp(c, "server is unavailable (in reply to EHLO)");
		return;
	}
	client_protocol(c, "unexpected reply", c->reply.text, c->reply.len);
}

static void client_on_helo(struct smtp_client *c)
{
	switch (c->reply.code / 100) {
	case 2:
		memset(&c->ehlo, 0, sizeof(c->ehlo));
		c->ehlo_ok = false;
		client_after_hello(c);
		return;
	case 5:
		client_fail(c, SMTP_CLIENT_E_REJECTED, true, true,
		    "server rejected HELO: %s", c->reply.text);
		return;
	case 4:
		client_fail_temp(c, "server is unavailable (in reply to HELO)");
		return;
	}
	client_protocol(c, "unexpected reply", c->reply.text, c->reply.len);
}

static void client_on_starttls(struct smtp_client *c)
{
	if (c->reply.code == 220) {
		c->state = CS_TLS_WAIT;
		return;
	}
	if (c->reply.code == 421) {
		client_fail_temp(c, "server is unavailable (in reply to STARTTLS)");
		return;
	}
	client_fail(c, SMTP_CLIENT_E_STARTTLS_REFUSED, true, true,
	    "server refused STARTTLS: %s", c->reply.text);
}

/* ---- AUTH ---- */

static unsigned client_auth_choose(const struct smtp_client *c)
{
	/* Token mechanisms need a token, not a password: only when asked for. */
	unsigned allowed = c->auth_mechs ? c->auth_mechs : SASL_PLAIN | SASL_LOGIN;
	unsigned ok = allowed & c->ehlo.auth_offered;

	for (size_t i = 0; i < sizeof(client_mechs) / sizeof(client_mechs[0]); i++)
		if (ok & client_mechs[i].bit)
			return client_mechs[i].bit;
	return 0;
}

static void client_mech_list(unsigned bits, char *dst, size_t size)
{
	dst[0] = '\0';
	for (size_t i = 0; i < sizeof(client_mechs) / sizeof(client_mechs[0]); i++)
		if (bits & client_mechs[i].bit)
			client_word_add(dst, size, client_mechs[i].name, strlen(client_mechs[i].name));
}

static bool client_auth_possible(struct smtp_client *c)
{
	char allowed[64];

	if (!c->ehlo_ok) {
		client_fail(c, SMTP_CLIENT_E_AUTH_UNSUPPORTED, false, true,
		    "server does not support EHLO, so it cannot authenticate us; credentials are configured");
		return false;
	}
	if (!c->ehlo.auth_raw[0]) {
		client_fail(c, SMTP_CLIENT_E_AUTH_UNSUPPORTED, false, true,
		    "server does not offer AUTH; credentials are configured");
		return false;
	}
	c->auth_mech = client_auth_choose(c);
	if (c->auth_mech)
		return true;
	client_mech_list(c->auth_mechs ? c->auth_mechs : SASL_PLAIN | SASL_LOGIN,
	    allowed, sizeof(allowed));
	client_fail(c, SMTP_CLIENT_E_AUTH_UNSUPPORTED, false, true,
	    "server offers AUTH %s, none of the allowed mechanisms (%s)", c->ehlo.auth_raw, allowed);
	return false;
}

/* "AUTH MECH base64\r\n" for the mechanisms with an initial response; the
 * base64 is kept to mask it should the server ever echo it. */
static int client_auth_initial(struct smtp_client *c)
{
	const char *name = smtp_client_mech_name(c->auth_mech);
	int r;

	if (c->auth_mech == SASL_LOGIN)
		return client_printf(c, "AUTH LOGIN\r\n");
	if (c->auth_mech == SASL_PLAIN)
		r = sasl_plain(&c->auth_sent, c->username, c->secret);
	else if (c->auth_mech == SASL_XOAUTH2)
		r = sasl_xoauth2(&c->auth_sent, c->username, c->secret);
	else
		r = sasl_oauthbearer(&c->auth_sent, c->username, c->server_host, c->server_port,
		    c->secret);
	if (r < 0)
		return -1;
	return client_printf(c, "AUTH %s %s\r\n", name, c->auth_sent.data);
}

static void client_auth_start(struct smtp_client *c)
{
	if (!client_auth_possible(c))
		return;
	c->state = CS_AUTH;
	c->auth_step = c->auth_mech == SASL_LOGIN ? AS_LOGIN_USER : AS_INITIAL;
	c->auth_detail[0] = '\0';
	if (client_auth_initial(c) < 0)
		client_nomem(c);
}

/* Send one base64 response line for LOGIN (username or password). */
static int client_auth_login(struct smtp_client *c, const char *value)
{
	struct buf *b = &c->auth_sent;

	buf_reset(b);
	if (sasl_b64_encode(b, value, strlen(value)) < 0)
		return -1;
	return client_printf(c, "%s\r\n", b->data);
}

static void client_auth_fail(struct smtp_client *c)
{
	const char *name = smtp_client_mech_name(c->auth_mech);
	const char *sep = c->auth_detail[0] ? "; server said: " : "";

	if (c->reply.code / 100 == 4) {
		client_fail(c, SMTP_CLIENT_E_TEMP, true, c->reply.code != 421,
		    "temporary failure in SASL authentication (AUTH %s): %s%s%s",
		    name, c->reply.text, sep, c->auth_detail);
		return;
	}
	client_fail(c, SMTP_CLIENT_E_AUTH_FAILED, true, true,
	    "SASL authentication failed (AUTH %s): %s%s%s", name, c->reply.text, sep,
	    c->auth_detail);
}

/* A 334 where success or failure was due.  For the OAuth mechanisms it
 * carries the error (base64 JSON): answer as the mechanism wants, the
 * failure reply follows.  Anything else is cancelled with "*". */
static void client_auth_challenge(struct smtp_client *c)
{
	struct buf dec;
	const char *b64 = c->reply.len > 4 ? c->reply.text + 4 : "";
	int r;

	buf_init(&dec, sizeof(c->auth_detail) * 2);
	if (sasl_b64_decode(&dec, b64, strlen(b64)) == 0 && dec.len > 0)
		client_copy_text(c->auth_detail, sizeof(c->auth_detail), dec.data, dec.len);
	else
		client_copy_text(c->auth_detail, sizeof(c->auth_detail), b64, strlen(b64));
	client_scrub(c, c->auth_detail);
	buf_free(&dec);
	if (c->auth_mech == SASL_XOAUTH2)
		r = client_printf(c, "\r\n");
	else if (c->auth_mech == SASL_OAUTHBEARER)
		r = client_printf(c, "AQ==\r\n");	/* RFC 7628 §3.2.3: a lone ^A */
	else
		r = client_printf(c, "*\r\n");
	c->auth_step = AS_ABORTED;
	if (r < 0)
		client_nomem(c);
}

static void client_on_auth(struct smtp_client *c)
{
	int code = c->reply.code;

	if (code == 235 && (c->auth_step == AS_INITIAL || c->auth_step == AS_FINAL)) {
		c->auth_used = c->auth_mech;
		client_ready(c);
		return;
	}
	if (code != 334 || c->auth_step == AS_ABORTED) {
		client_auth_fail(c);
		return;
	}
	if (c->auth_step == AS_LOGIN_USER || c->auth_step == AS_LOGIN_PASS) {
		bool user = c->auth_step == AS_LOGIN_USER;

		c->auth_step = user ? AS_LOGIN_PASS : AS_FINAL;
		if (client_auth_login(c, user ? c->username : c->secret) < 0)
			client_nomem(c);
		return;
	}
	client_auth_challenge(c);
}

/* ---- transaction: queued commands ---- */

static int client_push(struct smtp_client *c, enum client_pend_kind kind, size_t idx,
    size_t cmdlen, bool sent)
{
	if (c->qtail == c->qcap) {
		size_t ncap = c->qcap ? c->qcap * 2 : 16;
		struct client_pend *q = reallocarray(c->q, ncap, sizeof(*q));

		if (!q)
			return -1;
		c->q = q;
		c->qcap = ncap;
	}
	c->q[c->qtail++] = (struct client_pend){ kind, idx, cmdlen, sent, false };
	return 0;
}

/* A rendered command waits in cmds until released, in order. */
static int client_queue_cmd(struct smtp_client *c, enum client_pend_kind kind, size_t idx,
    const char *cmd, size_t len)
{
	if (buf_append(&c->cmds, cmd, len) < 0)
		return -1;
	if (client_push(c, kind, idx, len, false) < 0) {
		c->cmds.len -= len;
		return -1;
	}
	return 0;
}

static void client_drop_unsent(struct smtp_client *c)
{
	while (c->qtail > c->qhead && !c->q[c->qtail - 1].sent)
		c->qtail--;
	buf_reset(&c->cmds);
}

static void client_finish(struct smtp_client *c)
{
	client_drop_unsent(c);
	if (c->msg_res.code == 0) {
		for (size_t i = 0; i < c->nrcpts; i++) {
			if (c->rcpts[i].r.code >= 400) {
				c->msg_res = c->rcpts[i].r;
				break;
			}
		}
	}
	c->state = CS_MSG_DONE;
}

/* Move commands to the output: all of them with PIPELINING (RFC 2920),
 * else the next one once every earlier reply is in.  Without PIPELINING,
 * DATA is not sent when no recipient was accepted. */
static void client_release(struct smtp_client *c)
{
	for (size_t i = c->qhead; i < c->qtail; i++) {
		struct client_pend *p = &c->q[i];

		if (p->sent)
			continue;
		if (!c->ehlo.pipelining && i != c->qhead)
			return;
		if (p->kind == PK_DATA && !c->ehlo.pipelining && (!c->mail_ok || !c->naccepted)) {
			client_finish(c);
			return;
		}
		if (client_append(c, c->cmds.data, p->cmdlen) < 0) {
			client_nomem(c);
			return;
		}
		buf_consume(&c->cmds, p->cmdlen);
		p->sent = true;
		c->txn_sent = true;
	}
}

/* ---- transaction: replies ---- */

static void client_apply_accepted(struct smtp_client *c, enum smtp_client_stage stage)
{
	for (size_t i = 0; i < c->nrcpts; i++) {
		struct client_rcpt *r = &c->rcpts[i];

		if (r->accepted && !r->final) {
			client_result_reply(c, &r->r, stage);
			r->final = true;
		}
	}
	client_result_reply(c, &c->msg_res, stage);
}

static void client_on_mail(struct smtp_client *c)
{
	if (c->reply.code / 100 == 2 && c->mail_only) {
		c->mail_ok = true;
		client_result_reply(c, &c->msg_res, SMTP_CLIENT_STAGE_MAIL);
		client_finish(c);
		return;
	}
	if (c->reply.code / 100 == 2) {
		c->mail_ok = true;
		return;
	}
	if (c->reply.code / 100 == 3) {
		client_protocol(c, "unexpected reply", c->reply.text, c->reply.len);
		return;
	}
	client_result_reply(c, &c->msg_res, SMTP_CLIENT_STAGE_MAIL);
	for (size_t i = 0; i < c->nrcpts; i++) {
		c->rcpts[i].r = c->msg_res;
		c->rcpts[i].final = true;
	}
	/* Pipelined RCPT and DATA replies are still to come: wait for them. */
	if (!c->ehlo.pipelining || c->mail_only)
		client_finish(c);
}

static void client_on_rcpt(struct smtp_client *c, size_t idx)
{
	struct client_rcpt *r = &c->rcpts[idx];

	if (c->reply.code / 100 == 3) {
		client_protocol(c, "unexpected reply", c->reply.text, c->reply.len);
		return;
	}
	if (!c->mail_ok)
		return;		/* already failed with the MAIL reply */
	client_result_reply(c, &r->r, SMTP_CLIENT_STAGE_RCPT);
	if (c->reply.code / 100 == 2) {
		r->accepted = true;
		c->naccepted++;
	} else {
		r->final = true;
	}
}

static void client_on_data(struct smtp_client *c)
{
	bool deliver = c->mail_ok && c->naccepted > 0;

	switch (c->reply.code / 100) {
	case 3:
		if (deliver) {
			c->state = CS_DATA;
			c->bol = true;
			c->prev = '\n';
			return;
		}
		/* 354 with nobody to deliver to (RFC 2920 §3.1 says it cannot
		 * happen): end an empty message and disregard its result. */
		if (client_append(c, ".\r\n", 3) < 0 || client_push(c, PK_DOT, 0, 0, true) < 0) {
			client_nomem(c);
			return;
		}
		c->q[c->qtail - 1].ignore = true;
		return;
	case 4:
	case 5:
		if (deliver)
			client_apply_accepted(c, SMTP_CLIENT_STAGE_DATA);
		client_finish(c);
		return;
	}
	client_protocol(c, "unexpected reply", c->reply.text, c->reply.len);
}

static void client_on_dot(struct smtp_client *c, bool ignore)
{
	if (c->reply.code / 100 == 3) {
		client_protocol(c, "unexpected reply", c->reply.text, c->reply.len);
		return;
	}
	if (!ignore)
		client_apply_accepted(c, SMTP_CLIENT_STAGE_DOT);
	client_finish(c);
}

/* A reply nothing was waiting for.  While the content is being sent it is
 * the server giving up on the message (e.g. 552 too big): it is the answer
 * for the accepted recipients, and the session cannot go on. */
static void client_unsolicited(struct smtp_client *c)
{
	int cls = c->reply.code / 100;

	if (c->state == CS_DATA && (cls == 4 || cls == 5)) {
		client_apply_accepted(c, SMTP_CLIENT_STAGE_CONTENT);
		client_fail(c, cls == 4 ? SMTP_CLIENT_E_TEMP : SMTP_CLIENT_E_REJECTED, true,
		    false, "server gave up while sending message body: %s", c->reply.text);
		return;
	}
	if (c->reply.code == 421) {
		client_fail(c, SMTP_CLIENT_E_TEMP, true, false,
		    "server closed the session while %s: %s",
		    client_phrase(smtp_client_stage(c)), c->reply.text);
		return;
	}
	client_protocol(c, "unexpected reply", c->reply.text, c->reply.len);
}

static void client_on_pend(struct smtp_client *c, const struct client_pend *p)
{
	switch (p->kind) {
	case PK_RSET:
		/* Before a QUIT the outcome no longer matters. */
		if (c->reply.code / 100 != 2 && c->state != CS_QUIT)
			client_fail(c, SMTP_CLIENT_E_REJECTED, true, true,
			    "server rejected RSET: %s", c->reply.text);
		break;
	case PK_MAIL:
		client_on_mail(c);
		break;
	case PK_RCPT:
		client_on_rcpt(c, p->idx);
		break;
	case PK_DATA:
		client_on_data(c);
		break;
	case PK_DOT:
		client_on_dot(c, p->ignore);
		break;
	case PK_QUIT:
		c->state = CS_CLOSED;
		break;
	}
}

/* Replies after the session set-up come in the order of the commands. */
static void client_on_queued(struct smtp_client *c)
{
	struct client_pend p;

	if (c->qhead == c->qtail || !c->q[c->qhead].sent) {
		client_unsolicited(c);
		return;
	}
	p = c->q[c->qhead];
	if (c->reply.code == 421 && p.kind != PK_QUIT) {
		client_fail(c, SMTP_CLIENT_E_TEMP, true, false, "server closed the session while %s: %s",
		    client_phrase(client_pend_stage(p.kind)), c->reply.text);
		return;
	}
	client_on_pend(c, &p);
	if (c->state == CS_CLOSED)
		return;
	if (++c->qhead == c->qtail)
		c->qhead = c->qtail = 0;
	client_release(c);
}

/* ---- replies ---- */

static void client_dispatch(struct smtp_client *c)
{
	switch (c->state) {
	case CS_GREETING:
		client_on_greeting(c);
		break;
	case CS_EHLO:
		client_on_ehlo(c);
		break;
	case CS_HELO:
		client_on_helo(c);
		break;
	case CS_STARTTLS:
		client_on_starttls(c);
		break;
	case CS_AUTH:
		client_on_auth(c);
		break;
	case CS_TLS_WAIT:
	case CS_CLOSED:
		break;
	default:
		client_on_queued(c);
		break;
	}
}

static bool client_is_code(const char *s)
{
	return s[0] >= '2' && s[0] <= '5' && s[1] >= '0' && s[1] <= '5' && s[2] >= '0' && s[2] <= '9';
}

/* digits: 1 to max of them at s; their count, 0 when none or too many. */
static size_t client_digits(const char *s, size_t len, size_t max)
{
	size_t n = 0;

	while (n < len && s[n] >= '0' && s[n] <= '9')
		n++;
	return n > max ? 0 : n;
}

/* RFC 3463 "class.subject.detail" after the code of a first reply line;
 * the relay decides on it (smtprelayd(8) "Delivery"), so it is data, not text to re-parse. */
static void client_enhanced(struct client_reply *r, const char *line, size_t len)
{
	const char *p = line + 4;
	size_t left = len > 4 ? len - 4 : 0, a, b;

	r->enhanced[0] = '\0';
	if (left < 5 || p[0] != line[0] || p[1] != '.')
		return;
	if ((a = client_digits(p + 2, left - 2, 3)) == 0 || 2 + a >= left || p[2 + a] != '.')
		return;
	if ((b = client_digits(p + 3 + a, left - 3 - a, 3)) == 0)
		return;
	if (3 + a + b < left && p[3 + a + b] != ' ')
		return;
	memcpy(r->enhanced, p, 3 + a + b);
	r->enhanced[3 + a + b] = '\0';
}

/* Join the reply's lines: "250 first line; second line" (bounded). */
static void client_reply_add(struct client_reply *r, const char *line, size_t len)
{
	size_t room;

	if (r->nlines == 1) {
		/* The code once, with a space even when more lines follow. */
		client_copy_text(r->text, sizeof(r->text), line, 3);
		r->len = 3;
		if (len > 4) {
			r->text[r->len++] = ' ';
			r->text[r->len] = '\0';
		}
	} else if (len > 4 && r->len + 2 < sizeof(r->text)) {
		memcpy(r->text + r->len, "; ", 2);
		r->len += 2;
	}
	line += len > 4 ? 4 : len;
	len -= len > 4 ? 4 : len;
	room = sizeof(r->text) - 1 - r->len;
	if (len > room)
		len = room;
	client_copy_text(r->text + r->len, sizeof(r->text) - r->len, line, len);
	r->len += len;
}

/* One reply line, without its line end: 3-digit code, then ' ' (last line),
 * '-' (more follow) or nothing (RFC 5321 §4.2). */
static void client_reply_line(struct smtp_client *c, const char *line, size_t len)
{
	struct client_reply *r = &c->reply;
	int code;
	bool last;

	c->any_line = true;
	if (len < 3 || !client_is_code(line) || (len > 3 && line[3] != ' ' && line[3] != '-')) {
		client_protocol(c, "malformed reply line", line, len);
		return;
	}
	code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
	last = len == 3 || line[3] == ' ';
	if (r->nlines > 0 && code != r->code) {
		client_protocol(c, "reply code changed within a multi-line reply", line, len);
		return;
	}
	if (r->nlines >= c->lines_max) {
		client_protocol(c, "reply with too many lines", line, len);
		return;
	}
	r->code = code;
	r->nlines++;
	if (r->nlines == 1)
		client_enhanced(r, line, len);
	client_reply_add(r, line, len);
	if (c->state == CS_EHLO && r->nlines > 1 && len > 4)
		client_ehlo_line(&c->ehlo_next, line + 4, len - 4);
	if (!last)
		return;
	client_dispatch(c);
	r->code = 0;
	r->nlines = 0;
	r->len = 0;
	r->text[0] = '\0';
	r->enhanced[0] = '\0';
}

/* TLS alert (0x15) or handshake (0x16) record, version 3.x: a TLS server. */
static int client_tls_record(struct smtp_client *c)
{
	const unsigned char *d = (const unsigned char *)c->in.data;

	if (c->state != CS_GREETING || c->any_line || c->tls == SMTP_CLIENT_TLS_IMPLICIT
	    || c->in.len == 0 || (d[0] != 0x15 && d[0] != 0x16))
		return 0;
	if (c->in.len < 2)
		return 1;	/* wait for the second byte */
	if (d[1] != 0x03)
		return 0;
	client_fail(c, SMTP_CLIENT_E_TLS_MODE, false, false,
	    "the server answered with TLS: this port probably expects implicit TLS (use PORT/tls)");
	return 1;
}

static void client_injection(struct smtp_client *c)
{
	client_fail(c, SMTP_CLIENT_E_PROTOCOL, false, false,
	    "protocol error: the server sent data after its 220 reply to STARTTLS, "
	    "before the TLS handshake (possible command injection, CVE-2011-0411)");
}

/* Process every complete line in the input buffer. */
static void client_parse(struct smtp_client *c)
{
	size_t off = 0;

	if (client_tls_record(c))
		return;
	while (off < c->in.len && c->state != CS_CLOSED) {
		const char *p = c->in.data + off;
		size_t avail = c->in.len - off;
		const char *nl;
		size_t n;

		if (c->state == CS_TLS_WAIT) {
			client_injection(c);
			return;
		}
		nl = memchr(p, '\n', avail);
		if (!nl) {
			if (avail > c->line_max + 1)
				client_protocol(c, "reply line too long", p, avail < 40 ? avail : 40);
			break;
		}
		n = (size_t)(nl - p);
		off += n + 1;
		if (n > 0 && p[n - 1] == '\r')
			n--;
		if (n > c->line_max) {
			client_protocol(c, "reply line too long", p, n < 40 ? n : 40);
			break;
		}
		client_reply_line(c, p, n);
	}
	if (c->state == CS_CLOSED)
		buf_reset(&c->in);
	else
		buf_consume(&c->in, off);
}

int smtp_client_input(struct smtp_client *c, const char *data, size_t len)
{
	while (len > 0 && c->state != CS_CLOSED) {
		size_t room = c->in.max - c->in.len;
		size_t n = len < room ? len : room;

		if (buf_append(&c->in, data, n) < 0) {
			client_nomem(c);
			break;
		}
		data += n;
		len -= n;
		client_parse(c);
	}
	return c->state == CS_CLOSED && c->err != SMTP_CLIENT_OK ? -1 : 0;
}

/* ---- transaction: envelope ---- */

/* RFC 3461 §4: xtext, '+' and '=' and anything outside '!'..'~' as +HH. */
static int client_xtext(struct buf *b, const char *s)
{
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;
		int r;

		if (ch >= '!' && ch <= '~' && ch != '+' && ch != '=')
			r = buf_append(b, s, 1);
		else
			r = buf_printf(b, "+%02X", ch);
		if (r < 0)
			return -1;
	}
	return 0;
}

static int client_render_mail(const struct smtp_client *c, const struct smtp_client_msg *m,
    struct buf *b)
{
	const struct smtp_client_ehlo *e = &c->ehlo;
	int r = buf_printf(b, "MAIL FROM:<%s>", m->sender);

	if (r == 0 && e->size_ext && m->size)
		r = buf_printf(b, " SIZE=%" PRIu64, m->size);
	if (r == 0 && m->eightbit && e->eightbitmime)
		r = buf_puts(b, " BODY=8BITMIME");
	if (r == 0 && m->smtputf8)
		r = buf_puts(b, " SMTPUTF8");	/* offered: checked before */
	if (r == 0 && e->dsn && m->ret == SMTP_RET_FULL)
		r = buf_puts(b, " RET=FULL");
	if (r == 0 && e->dsn && m->ret == SMTP_RET_HDRS)
		r = buf_puts(b, " RET=HDRS");
	if (r == 0 && e->dsn && m->envid && *m->envid) {
		r = buf_puts(b, " ENVID=");
		if (r == 0)
			r = client_xtext(b, m->envid);
	}
	if (r == 0)
		r = buf_puts(b, "\r\n");
	return r;
}

static int client_render_notify(struct buf *b, unsigned n)
{
	static const struct {
		unsigned bit;
		const char *name;
	} kw[] = {
		{ SMTP_NOTIFY_SUCCESS, "SUCCESS" },
		{ SMTP_NOTIFY_FAILURE, "FAILURE" },
		{ SMTP_NOTIFY_DELAY, "DELAY" },
	};
	const char *sep = " NOTIFY=";

	if (n & SMTP_NOTIFY_NEVER)
		return buf_puts(b, " NOTIFY=NEVER");
	for (size_t i = 0; i < sizeof(kw) / sizeof(kw[0]); i++) {
		if (!(n & kw[i].bit))
			continue;
		if (buf_printf(b, "%s%s", sep, kw[i].name) < 0)
			return -1;
		sep = ",";
	}
	return 0;
}

/* "type;xtext" as stored by the listener goes out as is; a plain ASCII
 * address becomes rfc822;xtext.  Non-ASCII would need RFC 6533: left out. */
static int client_render_orcpt(struct buf *b, const char *o)
{
	size_t t = strspn(o, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-");
	bool ascii = true;

	for (const char *p = o; *p; p++)
		ascii = ascii && (unsigned char)*p < 0x80;
	if (!ascii || !*o)
		return 0;
	if (t > 0 && o[t] == ';' && strcspn(o, " ") == strlen(o))
		return buf_printf(b, " ORCPT=%s", o);
	if (buf_puts(b, " ORCPT=rfc822;") < 0)
		return -1;
	return client_xtext(b, o);
}

static int client_render_rcpt(const struct smtp_client *c, const struct smtp_client_msg *m,
    size_t i, struct buf *b)
{
	int r = buf_printf(b, "RCPT TO:<%s>", m->rcpts[i]);

	if (r == 0 && c->ehlo.dsn && m->notify && m->notify[i])
		r = client_render_notify(b, m->notify[i]);
	if (r == 0 && c->ehlo.dsn && m->orcpts && m->orcpts[i])
		r = client_render_orcpt(b, m->orcpts[i]);
	if (r == 0)
		r = buf_puts(b, "\r\n");
	return r;
}

static int client_render_all(struct smtp_client *c, const struct smtp_client_msg *m)
{
	struct buf b;
	int r;

	buf_init(&b, CLIENT_CMD_MAX);
	r = client_render_mail(c, m, &b);
	if (r == 0)
		r = client_queue_cmd(c, PK_MAIL, 0, b.data, b.len);
	for (size_t i = 0; r == 0 && !m->mail_only && i < m->nrcpts; i++) {
		buf_reset(&b);
		r = client_render_rcpt(c, m, i, &b);
		if (r == 0)
			r = client_queue_cmd(c, PK_RCPT, i, b.data, b.len);
	}
	if (r == 0 && !m->mail_only)
		r = client_queue_cmd(c, PK_DATA, 0, "DATA\r\n", 6);
	buf_free(&b);
	return r;
}

/* Envelope text goes into command lines: no line breaks or controls. */
static bool client_str_ok(const char *s, size_t max, bool empty_ok)
{
	size_t n;

	if (!s)
		return false;
	n = strnlen(s, max + 1);
	if (n > max || (n == 0 && !empty_ok))
		return false;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			return false;
	return true;
}

static bool client_msg_ok(const struct smtp_client_msg *m)
{
	if (m && m->mail_only)
		return client_str_ok(m->sender, SMTP_CLIENT_ADDR_MAX, true) && m->nrcpts == 0;
	if (!m || !client_str_ok(m->sender, SMTP_CLIENT_ADDR_MAX, true) || !m->rcpts
	    || m->nrcpts == 0 || m->nrcpts > SMTP_CLIENT_RCPTS_MAX)
		return false;
	if (m->envid && !client_str_ok(m->envid, 100, true))
		return false;
	for (size_t i = 0; i < m->nrcpts; i++) {
		if (!client_str_ok(m->rcpts[i], SMTP_CLIENT_ADDR_MAX, false))
			return false;
		if (m->orcpts && m->orcpts[i]
		    && !client_str_ok(m->orcpts[i], SMTP_CLIENT_ADDR_MAX, true))
			return false;
	}
	return true;
}

static void client_txn_clear(struct smtp_client *c)
{
	free(c->rcpts);
	c->rcpts = NULL;
	c->nrcpts = 0;
	c->naccepted = 0;
	c->txn = false;
	c->txn_sent = false;
	c->mail_ok = false;
	c->mail_only = false;
	memset(&c->msg_res, 0, sizeof(c->msg_res));
}

static int client_txn_init(struct smtp_client *c, const struct smtp_client_msg *m)
{
	size_t lim = CLIENT_OUT_BASE + (m->nrcpts + 4) * CLIENT_CMD_MAX;

	client_txn_clear(c);
	c->rcpts = calloc(m->nrcpts ? m->nrcpts : 1, sizeof(*c->rcpts));
	if (!c->rcpts)
		return -1;
	c->nrcpts = m->nrcpts;
	c->txn = true;
	c->mail_only = m->mail_only;
	/* Room for the whole pipelined batch. */
	if (c->out.max < lim)
		c->out.max = lim;
	if (c->cmds.max < lim)
		c->cmds.max = lim;
	return 0;
}

/* What we know the server would refuse fails here, before sending anything. */
static bool client_local_refusal(struct smtp_client *c, const struct smtp_client_msg *m)
{
	char text[SMTP_CLIENT_TEXT_MAX];
	int code;

	if (m->smtputf8 && !c->ehlo.smtputf8) {
		code = 554;
		snprintf(text, sizeof(text), "5.6.7 server does not support SMTPUTF8, "
		    "which this message needs");
	} else if (c->ehlo.size_ext && c->ehlo.size && m->size > c->ehlo.size) {
		code = 552;
		snprintf(text, sizeof(text), "5.3.4 message size %" PRIu64
		    " exceeds size limit %" PRIu64 " of server", m->size, c->ehlo.size);
	} else {
		return false;
	}
	client_result_local(c, &c->msg_res, code, SMTP_CLIENT_STAGE_MAIL, text);
	for (size_t i = 0; i < c->nrcpts; i++) {
		c->rcpts[i].r = c->msg_res;
		c->rcpts[i].final = true;
	}
	c->state = CS_MSG_DONE;
	return true;
}

int smtp_client_send(struct smtp_client *c, const struct smtp_client_msg *m)
{
	if (c->state != CS_READY || !client_msg_ok(m)) {
		errno = EINVAL;
		return -1;
	}
	if (client_txn_init(c, m) < 0)
		return -1;
	if (client_local_refusal(c, m))
		return 0;
	if (client_render_all(c, m) < 0) {
		int e = errno;

		client_drop_unsent(c);
		client_txn_clear(c);
		errno = e;
		return -1;
	}
	c->state = CS_TXN;
	client_release(c);
	return c->state == CS_CLOSED ? -1 : 0;
}

/* ---- content ---- */

/* Dot-stuff (RFC 5321 §4.5.2) and make every line end CRLF, across calls:
 * bol and prev carry the state from one chunk to the next. */
static int client_stuff(struct smtp_client *c, const char *p, size_t n)
{
	size_t start = 0;

	for (size_t i = 0; i < n; i++) {
		char ch = p[i];
		const char *fix = NULL;

		if (c->prev == '\r' && ch != '\n') {
			fix = "\n";	/* bare CR ends a line */
			c->bol = true;
		} else if (ch == '\n' && c->prev != '\r') {
			fix = "\r";	/* bare LF */
		}
		if (c->bol && ch == '.')
			fix = fix ? (fix[0] == '\n' ? "\n." : fix) : ".";
		if (fix) {
			if (client_append(c, p + start, i - start) < 0
			    || client_append(c, fix, strlen(fix)) < 0)
				return -1;
			start = i;
		}
		c->bol = ch == '\n';
		c->prev = ch;
	}
	return client_append(c, p + start, n - start);
}

static int client_end_data(struct smtp_client *c)
{
	const char *end = c->prev == '\n' ? ".\r\n" : c->prev == '\r' ? "\n.\r\n" : "\r\n.\r\n";

	if (client_append(c, end, strlen(end)) < 0 || client_push(c, PK_DOT, 0, 0, true) < 0)
		return -1;
	c->state = CS_DOT;
	return 0;
}

ssize_t smtp_client_data(struct smtp_client *c, const char *data, size_t len, bool last)
{
	size_t n;

	if (c->state != CS_DATA) {
		errno = EINVAL;
		return -1;
	}
	/* Flow control: the content never piles up here.  The terminator
	 * alone (len 0) is always taken. */
	if (len > 0 && c->out.len - c->out_off >= SMTP_CLIENT_DATA_CHUNK)
		return 0;
	n = len < SMTP_CLIENT_DATA_CHUNK ? len : SMTP_CLIENT_DATA_CHUNK;
	if (client_stuff(c, data, n) < 0 || (last && n == len && client_end_data(c) < 0)) {
		int e = errno;

		client_nomem(c);
		errno = e;
		return -1;
	}
	return (ssize_t)n;
}

/* ---- events ---- */

void smtp_client_tls_ready(struct smtp_client *c)
{
	if (c->state != CS_TLS_WAIT)
		return;
	/* RFC 3207 §4.2: forget everything learnt before TLS. */
	c->tls_active = true;
	memset(&c->ehlo, 0, sizeof(c->ehlo));
	c->ehlo_ok = false;
	client_send_ehlo(c);
}

void smtp_client_eof(struct smtp_client *c)
{
	if (c->state == CS_CLOSED)
		return;
	if (c->state == CS_QUIT) {
		c->state = CS_CLOSED;
		return;
	}
	client_fail(c, SMTP_CLIENT_E_EOF, false, false, "lost connection while %s",
	    client_phrase(smtp_client_stage(c)));
}

void smtp_client_timeout(struct smtp_client *c)
{
	bool silent = c->state == CS_GREETING && !c->any_line && c->in.len == 0
	    && c->tls != SMTP_CLIENT_TLS_IMPLICIT;

	if (c->state == CS_CLOSED)
		return;
	if (c->state == CS_QUIT) {
		c->state = CS_CLOSED;
		return;
	}
	client_fail(c, SMTP_CLIENT_E_TIMEOUT, false, false, "conversation timed out while %s%s",
	    client_phrase(smtp_client_stage(c)),
	    silent ? " (the server sent nothing: if this port expects implicit TLS, use PORT/tls)"
		   : "");
}

enum smtp_client_action smtp_client_action(const struct smtp_client *c)
{
	switch (c->state) {
	case CS_CLOSED:
		return SMTP_CLIENT_CLOSED;
	case CS_TLS_WAIT:
		return SMTP_CLIENT_START_TLS;
	case CS_READY:
		return SMTP_CLIENT_READY;
	case CS_DATA:
		return SMTP_CLIENT_NEED_DATA;
	case CS_MSG_DONE:
		return SMTP_CLIENT_MSG_DONE;
	default:
		return SMTP_CLIENT_WAIT;
	}
}

void smtp_client_reset(struct smtp_client *c)
{
	bool sent = c->txn_sent;

	if (c->state != CS_MSG_DONE)
		return;
	client_txn_clear(c);
	c->state = CS_READY;
	if (!sent)
		return;
	if (client_queue_cmd(c, PK_RSET, 0, "RSET\r\n", 6) < 0) {
		client_nomem(c);
		return;
	}
	client_release(c);
}

void smtp_client_quit(struct smtp_client *c)
{
	if (c->state == CS_CLOSED)
		return;
	if (c->state != CS_READY && c->state != CS_MSG_DONE) {
		client_fail(c, SMTP_CLIENT_OK, false, false, "session aborted while %s",
		    client_phrase(smtp_client_stage(c)));
		return;
	}
	if (client_queue_cmd(c, PK_QUIT, 0, "QUIT\r\n", 6) < 0) {
		client_nomem(c);
		return;
	}
	c->state = CS_QUIT;
	client_release(c);
}

/* ---- results ---- */

size_t smtp_client_nrcpts(const struct smtp_client *c)
{
	return c->nrcpts;
}

const struct smtp_client_result *smtp_client_rcpt_result(const struct smtp_client *c, size_t i)
{
	return i < c->nrcpts ? &c->rcpts[i].r : NULL;
}

const struct smtp_client_result *smtp_client_msg_result(const struct smtp_client *c)
{
	return c->txn ? &c->msg_res : NULL;
}

enum smtp_client_error smtp_client_error(const struct smtp_client *c, const char **reason)
{
	if (reason)
		*reason = c->reason;
	return c->err;
}

const struct smtp_client_result *smtp_client_error_reply(const struct smtp_client *c)
{
	return &c->err_reply;
}

const struct smtp_client_ehlo *smtp_client_ehlo(const struct smtp_client *c)
{
	return &c->ehlo;
}

const char *smtp_client_greeting(const struct smtp_client *c)
{
	return c->greeting;
}

unsigned smtp_client_auth_used(const struct smtp_client *c)
{
	return c->auth_used;
}

/* ---- life cycle ---- */

enum client_param_kind { CP_HOST, CP_USER, CP_SECRET };

static bool client_param_ok(const char *s, size_t max, enum client_param_kind kind)
{
	size_t n = strnlen(s, max + 1);

	if (n == 0 || n > max)
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)s[i];

		/* ^A frames the OAuth responses, even in a secret; the others
		 * go into command lines or SASL fields. */
		if (ch == 0x01 || (kind != CP_SECRET && (ch < 0x20 || ch == 0x7f))
		    || (kind == CP_HOST && ch == ' '))
			return false;
	}
	return true;
}

static bool client_params_ok(const struct smtp_client_params *p)
{
	if (!p || !p->helo_name || !client_param_ok(p->helo_name, CLIENT_HOST_MAX, CP_HOST))
		return false;
	if (p->tls != SMTP_CLIENT_TLS_NONE && p->tls != SMTP_CLIENT_TLS_STARTTLS
	    && p->tls != SMTP_CLIENT_TLS_IMPLICIT)
		return false;
	if (p->username && (!client_param_ok(p->username, CLIENT_USER_MAX, CP_USER) || !p->secret
	    || !client_param_ok(p->secret, CLIENT_SECRET_MAX, CP_SECRET)))
		return false;
	if (p->server_host && *p->server_host
	    && !client_param_ok(p->server_host, CLIENT_HOST_MAX, CP_HOST))
		return false;
	if (p->line_max && (p->line_max < 64 || p->line_max > 1024 * 1024))
		return false;
	return true;
}

static char *client_strdup(const char *s, bool *fail)
{
	char *d;

	if (!s || !*s)
		return NULL;
	d = strdup(s);
	if (!d)
		*fail = true;
	return d;
}

struct smtp_client *smtp_client_new(const struct smtp_client_params *p)
{
	struct smtp_client *c;
	bool fail = false;

	if (!client_params_ok(p)) {
		errno = EINVAL;
		return NULL;
	}
	c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->helo_name = client_strdup(p->helo_name, &fail);
	c->username = client_strdup(p->username, &fail);
	c->secret = p->username ? client_strdup(p->secret, &fail) : NULL;
	c->server_host = client_strdup(p->server_host, &fail);
	if (fail) {
		smtp_client_free(c);
		errno = ENOMEM;
		return NULL;
	}
	c->server_port = p->server_port;
	c->auth_mechs = p->auth_mechs;
	c->tls = p->tls;
	c->tls_active = p->tls == SMTP_CLIENT_TLS_IMPLICIT;
	c->line_max = p->line_max ? p->line_max : SMTP_CLIENT_LINE_MAX;
	c->lines_max = p->lines_max ? p->lines_max : SMTP_CLIENT_LINES_MAX;
	buf_init(&c->in, c->line_max + 2);
	buf_init(&c->out, CLIENT_OUT_BASE);
	buf_init(&c->cmds, CLIENT_OUT_BASE);
	buf_init(&c->auth_sent, 2 * SASL_INPUT_MAX);
	c->state = CS_GREETING;
	return c;
}

static void client_wipe(struct buf *b)
{
	if (b->data)
		explicit_bzero(b->data, b->cap);
	buf_free(b);
}

void smtp_client_free(struct smtp_client *c)
{
	if (!c)
		return;
	if (c->secret)
		explicit_bzero(c->secret, strlen(c->secret));
	free(c->secret);
	free(c->helo_name);
	free(c->username);
	free(c->server_host);
	buf_free(&c->in);
	client_wipe(&c->out);
	client_wipe(&c->cmds);
	client_wipe(&c->auth_sent);
	free(c->q);
	free(c->rcpts);
	free(c);
}
