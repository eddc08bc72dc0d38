/* Fuzz target: DSN generation from hostile inputs.  The original message's
 * header section (read back from the queue file), the recipients' last
 * replies (the smarthost's text) and ENVID/ORCPT values all come from
 * outside; the DSN built from them must keep its own structure. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon/dsn.h"
#include "fuzz/fuzz.h"
#include "lib/buf.h"

/* Byte 0: how the input is cut: [reply | envid | orcpt | content]. */
static void fuzz_dsn_cut(const uint8_t *data, size_t size, char *parts[3], size_t *content)
{
	size_t off = 1, n;

	for (int i = 0; i < 3; i++) {
		n = off < size ? (size - off) * ((data[0] >> (2 * i)) & 3) / 8 : 0;
		parts[i] = fuzz_str(data + off, n);
		off += n;
	}
	*content = off;
}

/* What the DSN says itself (everything before the copied original headers,
 * which go out as they were queued) has CRLF line ends only: no reply text,
 * ENVID or ORCPT can add a header or a MIME part. */
static void fuzz_dsn_check(const struct buf *out)
{
	static const char mark[] = "Content-Description: Undelivered Message Headers\r\n";
	const char *end = memmem(out->data, out->len, mark, sizeof(mark) - 1);
	size_t len = end ? (size_t)(end - out->data) : out->len;

	FUZZ_CHECK(end != NULL);
	for (size_t i = 0; i < len; i++) {
		if (out->data[i] == '\n')
			FUZZ_CHECK(i > 0 && out->data[i - 1] == '\r');
		if (out->data[i] == '\r')
			FUZZ_CHECK(i + 1 < len && out->data[i + 1] == '\n');
	}
	FUZZ_CHECK(out->len > 4 && memcmp(out->data + out->len - 4, "--\r\n", 4) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct dsn_info info = { "relay.fuzz", "id@relay.fuzz", 1700000000 };
	struct q_rcpt rcpts[2] = { { 0 }, { 0 } };
	struct q_envelope env = { .id = "08EAG637Jp04MfuQ8M", .sender = "s@example.com",
		.rcpts = rcpts, .nrcpts = 2, .arrival_us = 1699990000000000LL, .origin = "smtp [127.0.0.1]" };
	bool failed[2] = { true, false };
	char *parts[3], code[32];
	size_t content;
	struct buf out;
	int fd;

	fuzz_init();
	if (size == 0)
		return 0;
	fuzz_dsn_cut(data, size, parts, &content);
	dsn_status_code(parts[0], code, sizeof(code));
	rcpts[0].addr = "a@example.com";
	rcpts[0].last_reason = parts[0];
	rcpts[0].orcpt = parts[2];
	rcpts[0].state = Q_FAILED;
	rcpts[1].addr = "b@example.com";
	env.envid = parts[1];
	env.ret = data[0] & 64 ? SMTP_RET_FULL : SMTP_RET_HDRS;
	if ((fd = fuzz_memfd(data + content, size - content)) >= 0) {
		buf_init(&out, (size_t)1 << 26);
		if (dsn_wanted(&env, failed) && dsn_build(&out, &info, &env, failed, fd) == 0)
			fuzz_dsn_check(&out);
		buf_free(&out);
		close(fd);
	}
	for (int i = 0; i < 3; i++)
		free(parts[i]);
	return 0;
}
