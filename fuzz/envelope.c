/* Fuzz target: the queue file reader.  Spool files are written by every
 * local user (maildrop) and read back by the daemon: the most exposed
 * input: a content file and a state file.  Whatever parses must encode
 * again and parse back the same. */
#include "config.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fuzz/fuzz.h"
#include "lib/buf.h"
#include "queue/qint.h"

static void fuzz_env_roundtrip(const struct q_envelope *env)
{
	struct buf b;
	struct q_envelope *again = NULL;
	char err[512];
	int fd;

	buf_init(&b, (size_t)1 << 28);
	if (envelope_encode(env, &b) < 0) {
		buf_free(&b);
		return;		/* the writer refuses what it would not read */
	}
	fd = fuzz_memfd((const uint8_t *)b.data, b.len);
	FUZZ_CHECK(fd >= 0);
	FUZZ_CHECK(envelope_parse(fd, env->id, b.len, &again, err, sizeof(err)) == 0);
	FUZZ_CHECK(again->nrcpts == env->nrcpts && strcmp(again->sender, env->sender) == 0);
	for (size_t i = 0; i < env->nrcpts; i++)
		FUZZ_CHECK(strcmp(again->rcpts[i].addr, env->rcpts[i].addr) == 0);
	q_envelope_free(again);
	close(fd);
	buf_free(&b);
}

/* Bytes 0-1: length of the content file (big-endian); the rest after it is
 * the state file (none when empty). */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct q_envelope *env = NULL;
	char err[512];
	size_t clen;
	int fd, sfd;

	fuzz_init();
	if (size < 2)
		return 0;
	clen = (size_t)data[0] << 8 | data[1];
	if (clen > size - 2)
		clen = size - 2;
	if ((fd = fuzz_memfd(data + 2, clen)) < 0)
		return 0;
	if (envelope_parse(fd, "08EAG637Jp04MfuQ8M", clen, &env, err, sizeof(err)) == 0) {
		FUZZ_CHECK(env->content_offset <= clen);
		if (2 + clen < size && (sfd = fuzz_memfd(data + 2 + clen, size - 2 - clen)) >= 0) {
			envelope_parse_state(sfd, env, err, sizeof(err));
			close(sfd);
		}
		fuzz_env_roundtrip(env);
		q_envelope_free(env);
	}
	close(fd);
	return 0;
}
