/* Fuzz target: the message filter every submission passes through (header
 * clean-up, Bcc removal, -t recipient extraction, the sendmail dot rule),
 * fed in PRNG-sized chunks with byte 0 choosing the options. */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "fuzz/fuzz.h"
#include "lib/addr.h"
#include "lib/msg.h"

struct fuzz_msg_out {
	size_t len;
	bool cr;
	bool stdin_mode;
};

/* Output has CRLF line ends only, even across calls. */
static int fuzz_msg_sink(void *ctx, const char *data, size_t len)
{
	struct fuzz_msg_out *o = ctx;

	for (size_t i = 0; i < len; i++) {
		if (data[i] == '\n')
			FUZZ_CHECK(o->cr);
		else
			FUZZ_CHECK(!o->cr);
		o->cr = data[i] == '\r';
	}
	o->len += len;
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_msg_out o = { 0 };
	struct msg_params p = {
		.hostname = "relay.fuzz", .queue_id = "0123456789ABCDEFGH", .from_addr = "u@relay.fuzz",
		.full_name = "Fuzz \"Q\" User", .now = 1700000000, .out = fuzz_msg_sink, .out_ctx = &o,
	};
	uint32_t st = fuzz_seed(data, size);
	struct msg *m;
	size_t off = 1, n;
	char **rcpts;

	fuzz_init();
	if (size == 0)
		return 0;
	p.from_stdin = data[0] & 1;
	p.dot_ends = data[0] & 2;
	p.extract_rcpts = data[0] & 4;
	p.add_missing = data[0] & 8;
	p.rewrite_from = data[0] & 16 ? "app@example.com" : NULL;
	p.prepend = data[0] & 32 ? "Received: from x\r\n" : NULL;
	p.max_size = data[0] & 64 ? 4096 : 0;
	if (!(m = msg_new(&p)))
		return 0;
	while (off < size) {
		n = 1 + fuzz_rand(&st) % 256;
		if (n > size - off)
			n = size - off;
		if (msg_input(m, (const char *)data + off, n) < 0)
			break;
		off += n;
	}
	if (off >= size && msg_finish(m) == 0) {
		FUZZ_CHECK(o.len == msg_size(m) && !o.cr);
		rcpts = msg_rcpts(m, &n);
		for (size_t i = 0; i < n; i++)
			FUZZ_CHECK(addr_valid(rcpts[i], ADDR_ALLOW_BARE | ADDR_ALLOW_UTF8));
	}
	msg_free(m);
	return 0;
}
