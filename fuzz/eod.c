/* Fuzz target: the end-of-data detector and dot-unstuffer, in chunks and
 * with output buffers of PRNG-chosen sizes.  Invariants: progress on every
 * call, output within bounds, CRLF line ends only, and the same result
 * whatever the chunking. */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "fuzz/fuzz.h"
#include "smtp/eod.h"

/* Whole output and bytes consumed, chunked as the PRNG says (st NULL: whole). */
static char *fuzz_eod_run(const char *in, size_t len, uint32_t *st, size_t *outlen,
    size_t *used)
{
	char *out = malloc(2 * len + EOD_OUT_MIN), tmp[256];
	struct eod e;

	FUZZ_CHECK(out != NULL);
	eod_init(&e);
	*outlen = *used = 0;
	while (*used < len && !eod_done(&e)) {
		size_t step = st ? 1 + fuzz_rand(st) % 32 : len - *used;
		size_t cap = st ? EOD_OUT_MIN + fuzz_rand(st) % 64 : sizeof(tmp), olen, n;

		if (step > len - *used)
			step = len - *used;
		n = eod_feed(&e, in + *used, step, tmp, cap, &olen);
		FUZZ_CHECK(n > 0 && n <= step && olen <= cap);
		memcpy(out + *outlen, tmp, olen);
		*outlen += olen;
		*used += n;
	}
	return out;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint32_t st = fuzz_seed(data, size);
	size_t alen, aused, blen, bused;
	char *a = fuzz_eod_run((const char *)data, size, NULL, &alen, &aused);
	char *b = fuzz_eod_run((const char *)data, size, &st, &blen, &bused);

	FUZZ_CHECK(alen == blen && aused == bused && memcmp(a, b, alen) == 0);
	for (size_t i = 0; i < alen; i++) {
		if (a[i] == '\r')
			FUZZ_CHECK(i + 1 < alen && a[i + 1] == '\n');
		if (a[i] == '\n')
			FUZZ_CHECK(i > 0 && a[i - 1] == '\r');
	}
	free(a);
	free(b);
	return 0;
}
