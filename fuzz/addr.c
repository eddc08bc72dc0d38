/* Fuzz target: RFC 5321 paths and mailboxes, RFC 5322 address lists (the
 * sendmail -t parser) and the mailbox locator used for From: rewriting. */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "fuzz/fuzz.h"
#include "lib/addr.h"
#include "lib/rfc5322.h"
#include "lib/strv.h"

static void fuzz_addr_path(const char *s)
{
	for (unsigned flags = 0; flags < 4; flags++) {
		char *addr = NULL;
		const char *params = NULL;

		if (addr_parse_path(s, flags, &addr, &params) == 0) {
			FUZZ_CHECK(addr && params);
			FUZZ_CHECK(addr[0] == '\0' || addr_valid(addr, flags));
			free(addr);
		}
	}
	if (addr_valid(s, ADDR_ALLOW_BARE | ADDR_ALLOW_UTF8)) {
		char *q = addr_qualify(s, "example.com");
		const char *dom = addr_domain(s);

		FUZZ_CHECK(addr_local_len(s) <= strlen(s));
		FUZZ_CHECK(!dom || (dom > s && dom <= s + strlen(s)));
		FUZZ_CHECK(q && addr_domain(q));
		free(q);
		addr_is_local(s, "relay.fuzz");
	}
	addr_valid_domain(s, true);
}

static void fuzz_addr_list(const char *s, size_t len)
{
	struct strv list = { 0 };
	char *addr = NULL, *copy;
	size_t start = 0, end = 0;
	int skipped = rfc5322_parse_addrlist(s, len, &list);

	FUZZ_CHECK(skipped >= 0);
	for (size_t i = 0; i < list.n; i++)
		FUZZ_CHECK(addr_valid(list.v[i], ADDR_ALLOW_BARE | ADDR_ALLOW_UTF8));
	strv_free(&list);
	if (rfc5322_locate_mailbox(s, len, &addr, &start, &end) == 1) {
		FUZZ_CHECK(start <= end && end <= len);
		free(addr);
	}
	copy = malloc(len + 1);
	FUZZ_CHECK(copy != NULL);
	memcpy(copy, s, len);
	FUZZ_CHECK(rfc5322_unfold(copy, len) <= len);
	free(copy);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = fuzz_str(data, size);

	fuzz_init();
	fuzz_addr_path(s);
	fuzz_addr_list(s, size);
	free(s);
	return 0;
}
