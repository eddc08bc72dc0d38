/* Fuzz target: the SMTP client state machine fed a hostile smarthost's
 * replies (greeting, multiline EHLO keywords, AUTH challenges, STARTTLS
 * boundary, per-recipient and end-of-data replies), cut into PRNG-chosen
 * chunks.  Byte 0 chooses TLS mode, credentials and mechanisms; the driver
 * does what the client asks (send a message, feed content, finish TLS). */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "conf/conf.h"
#include "fuzz/fuzz.h"
#include "smtp/client.h"

static const char *const fuzz_rcpts[] = { "a@example.com", "b@example.org", "c@example.net" };
static const unsigned fuzz_notify[] = { 0, 2 | 4, 1 };

static void fuzz_client_act(struct smtp_client *c, bool *sent, unsigned *msgs)
{
	static const char content[] = "Subject: x\r\n\r\n.dot\r\nline\n";
	struct smtp_client_msg m = {
		.sender = "s@example.com", .rcpts = fuzz_rcpts, .nrcpts = 3, .size = 30,
		.eightbit = true, .envid = "env+id", .ret = 2, .notify = fuzz_notify,
	};
	size_t len;

	switch (smtp_client_action(c)) {
	case SMTP_CLIENT_START_TLS:
		smtp_client_tls_ready(c);
		break;
	case SMTP_CLIENT_READY:
		if (!*sent)
			FUZZ_CHECK(smtp_client_send(c, &m) == 0 || smtp_client_action(c) != SMTP_CLIENT_READY);
		*sent = true;
		break;
	case SMTP_CLIENT_NEED_DATA:
		smtp_client_data(c, content, sizeof(content) - 1, true);
		break;
	case SMTP_CLIENT_MSG_DONE:
		FUZZ_CHECK(smtp_client_msg_result(c) != NULL);
		for (size_t i = 0; i < smtp_client_nrcpts(c); i++)
			FUZZ_CHECK(smtp_client_rcpt_result(c, i) != NULL);
		if (++*msgs < 3) {
			smtp_client_reset(c);
			*sent = false;
		} else {
			smtp_client_quit(c);
		}
		break;
	default:
		break;
	}
	smtp_client_output(c, &len);
	smtp_client_consume_output(c, len);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct smtp_client_params p = { .helo_name = "relay.fuzz" };
	struct smtp_client *c;
	uint32_t st = fuzz_seed(data, size);
	unsigned msgs = 0;
	bool sent = false;
	size_t off = 1;

	fuzz_init();
	if (size == 0)
		return 0;
	p.tls = data[0] % 3;
	if (data[0] & 4) {
		p.username = "user";
		p.secret = "secret";
		p.auth_mechs = (data[0] >> 3) & 15;
		p.server_host = "smarthost.fuzz";
		p.server_port = 587;
	}
	if (data[0] & 128)
		p.line_max = 64;
	if (!(c = smtp_client_new(&p)))
		return 0;
	while (off < size && smtp_client_action(c) != SMTP_CLIENT_CLOSED) {
		size_t n = 1 + fuzz_rand(&st) % 48;

		if (n > size - off)
			n = size - off;
		smtp_client_input(c, (const char *)data + off, n);
		off += n;
		fuzz_client_act(c, &sent, &msgs);
		fuzz_client_act(c, &sent, &msgs);
	}
	if (fuzz_rand(&st) % 2)
		smtp_client_eof(c);
	else
		smtp_client_timeout(c);
	FUZZ_CHECK(smtp_client_action(c) == SMTP_CLIENT_CLOSED);
	smtp_client_error(c, NULL);
	smtp_client_free(c);
	return 0;
}
