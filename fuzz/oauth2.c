/* Fuzz target: OAuth2 token endpoint answers (JSON from a remote server,
 * with an HTTP status): the JSON reader and the outcome classification.
 * Error text must come back sanitised: printable, bounded, no token. */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "relay/oauth2.h"
#include "fuzz/fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const int statuses[] = { 200, 400, 401, 429, 500, 503, 302, 0 };
	struct oauth2_json j;
	struct oauth2_token tok = { 0 };
	char err[256];
	long v;

	fuzz_init();
	if (size == 0)
		return 0;
	if (oauth2_json_parse((const char *)data + 1, size - 1, &j, err, sizeof(err)) == 0) {
		oauth2_json_str(&j, "access_token");
		oauth2_json_long(&j, "expires_in", &v);
		oauth2_json_free(&j);
	}
	err[0] = '\0';
	if (oauth2_token_response(statuses[data[0] % 8], (const char *)data + 1, size - 1, &tok,
	    err, sizeof(err)) == OAUTH2_OK) {
		FUZZ_CHECK(tok.access_token != NULL);
		oauth2_token_clear(&tok);
	} else {
		for (const char *p = err; *p; p++)
			FUZZ_CHECK((unsigned char)*p >= 0x20 && *p != 0x7f);
	}
	return 0;
}
