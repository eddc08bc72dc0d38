/* Fuzz target: the SMTP server state machine (command lines, pipelining,
 * DATA).  Built for libFuzzer by ./configure --enable-fuzzing, and into the
 * corpus replay driver (fuzz/replay.c) for make check.
 *
 * The first input byte chooses the configuration and sink failures; the
 * rest is the client's byte stream, cut into chunks and interleaved with
 * partial output consumption by a PRNG seeded from the input itself.
 */
#include "config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smtp/server.h"

#define FUZZ_CHECK(cond) do { \
	if (!(cond)) \
		fuzz_fail(__LINE__, #cond); \
} while (0)

/* The output being checked, shown when an invariant fails. */
static const char *fuzz_out;
static size_t fuzz_outlen;

static void fuzz_fail(int line, const char *what)
{
	fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, line, what);
	if (fuzz_out)
		fprintf(stderr, "output: [%.*s]\n", (int)fuzz_outlen, fuzz_out);
	abort();
}

struct fuzz_sink {
	unsigned flags;
	bool open;
	bool cr;			/* last content byte written was CR */
	size_t content;
};

static int fuzz_rcpt(void *ctx, const char *rcpt, struct smtp_reply *fail)
{
	struct fuzz_sink *f = ctx;

	FUZZ_CHECK(rcpt[0] != '\0');
	if ((f->flags & 1) && strchr(rcpt, 'x')) {
		fail->code = 550;
		snprintf(fail->text, sizeof(fail->text), "5.1.1 no\r\nx");
		return -1;
	}
	return 0;
}

static int fuzz_begin(void *ctx, const struct smtp_envelope_in *env, struct smtp_reply *fail)
{
	struct fuzz_sink *f = ctx;

	FUZZ_CHECK(!f->open);
	FUZZ_CHECK(env->nrcpts > 0 && env->sender && env->helo);
	for (size_t i = 0; i < env->nrcpts; i++)
		FUZZ_CHECK(env->rcpts[i] && env->rcpts[i][0]);
	if (f->flags & 2) {
		fail->code = 452;
		snprintf(fail->text, sizeof(fail->text), "4.3.1 full");
		return -1;
	}
	f->open = true;
	f->cr = false;
	f->content = 0;
	return 0;
}

/* Content must have CRLF line ends only, even across write calls. */
static int fuzz_write(void *ctx, const char *data, size_t len, struct smtp_reply *fail)
{
	struct fuzz_sink *f = ctx;

	FUZZ_CHECK(f->open && len > 0);
	for (size_t i = 0; i < len; i++) {
		if (data[i] == '\n')
			FUZZ_CHECK(f->cr);
		else
			FUZZ_CHECK(!f->cr);
		f->cr = data[i] == '\r';
	}
	f->content += len;
	if ((f->flags & 4) && f->content > 50) {
		fail->code = 451;
		snprintf(fail->text, sizeof(fail->text), "4.3.0 write error");
		return -1;
	}
	return 0;
}

static int fuzz_commit(void *ctx, char *id, size_t idlen, struct smtp_reply *fail)
{
	struct fuzz_sink *f = ctx;

	FUZZ_CHECK(f->open && !f->cr);
	f->open = false;
	if (f->flags & 8) {
		fail->code = 452;
		snprintf(fail->text, sizeof(fail->text), "4.3.1 full");
		return -1;
	}
	snprintf(id, idlen, "ID\r\n%zu", f->content);
	return 0;
}

static void fuzz_abort(void *ctx)
{
	struct fuzz_sink *f = ctx;

	FUZZ_CHECK(f->open);
	f->open = false;
}

static const struct smtp_server_sink fuzz_sink = {
	fuzz_rcpt, fuzz_begin, fuzz_write, fuzz_commit, fuzz_abort,
};

static uint32_t fuzz_rand(uint32_t *st)
{
	*st ^= *st << 13;
	*st ^= *st >> 17;
	*st ^= *st << 5;
	return *st;
}

/* Position in the reply line being sent, across partial consumption. */
struct fuzz_stream {
	size_t col;
	bool cr;
};

/* Sent bytes: every reply line "DDD-text" or "DDD text", CRLF-terminated. */
static void fuzz_check_sent(struct fuzz_stream *fs, const char *o, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		char c = o[i];
		if (fs->cr) {
			FUZZ_CHECK(c == '\n');
			fs->cr = false;
			fs->col = 0;
			continue;
		}
		if (fs->col < 4) {
			FUZZ_CHECK(fs->col != 0 || (c >= '2' && c <= '5'));
			FUZZ_CHECK(fs->col == 0 || fs->col == 3 || (c >= '0' && c <= '9'));
			FUZZ_CHECK(fs->col != 3 || c == ' ' || c == '-');
		}
		FUZZ_CHECK(c != '\n');
		fs->cr = c == '\r';
		FUZZ_CHECK(!fs->cr || fs->col >= 4);
		fs->col++;
	}
}

/* Consume a PRNG-chosen part of the output; a socket sends in pieces.
 * Pending output always ends with a complete reply. */
static void fuzz_consume(struct smtp_server *s, struct fuzz_stream *fs, uint32_t *st, bool all)
{
	size_t len, n;
	const char *o = smtp_server_output(s, &len);

	fuzz_out = o;
	fuzz_outlen = len;
	if (len == 0)
		return;
	FUZZ_CHECK(o[len - 1] == '\n' && (len >= 2 ? o[len - 2] == '\r' : fs->cr));
	FUZZ_CHECK(len < SMTP_OUT_HIGH + 16384);
	n = all ? len : fuzz_rand(st) % (len + 1);
	fuzz_check_sent(fs, o, n);
	smtp_server_consume_output(s, n);
	fuzz_out = NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_sink f = { 0 };
	struct smtp_server_params p = {
		.hostname = "fuzz.example", .sink = &fuzz_sink, .sink_ctx = &f,
	};
	struct smtp_server *s;
	struct fuzz_stream fs = { 0 };
	uint32_t st = 2463534242u;
	size_t off = 1;

	if (size == 0)
		return 0;
	f.flags = data[0] & 15;
	p.peer_allowed = !(data[0] & 16);
	p.max_message_size = data[0] & 32 ? 0 : 64;
	p.max_recipients = data[0] & 64 ? 0 : 2;
	for (size_t i = 0; i < size; i++)
		st = (st ^ data[i]) * 16777619u | 1;
	if ((s = smtp_server_new(&p)) == NULL)
		return 0;
	while (off < size) {
		size_t n = 1 + fuzz_rand(&st) % 64;
		if (n > size - off)
			n = size - off;
		/* Fails only on ENOMEM or when input piles up past SMTP_IN_MAX. */
		if (smtp_server_input(s, (const char *)data + off, n) < 0)
			FUZZ_CHECK(smtp_server_closing(s));
		off += n;
		fuzz_consume(s, &fs, &st, fuzz_rand(&st) % 4 != 0);
		if (fuzz_rand(&st) % 512 == 0)
			smtp_server_timeout(s);
	}
	fuzz_consume(s, &fs, &st, true);
	smtp_server_eof(s);
	FUZZ_CHECK(smtp_server_closing(s) && !f.open);
	fuzz_consume(s, &fs, &st, true);
	smtp_server_free(s);
	return 0;
}
