/* Replay driver: runs files (or every file in directories) through one fuzz
 * target, built with the normal compiler; make check passes it every corpus
 * file of every target.  Each file is also tried with FUZZ_MUTATIONS
 * (default 16) deterministic mutations: flipped bytes, truncation, a
 * duplicated range, so the corpus covers a little more than itself. */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz/fuzz.h"

#define REPLAY_MAX (1 << 20)

static uint8_t *replay_read(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	uint8_t *buf = malloc(REPLAY_MAX);

	if (!f || !buf) {
		fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
		exit(2);
	}
	*len = fread(buf, 1, REPLAY_MAX, f);
	fclose(f);
	return buf;
}

static void replay_mutate(uint8_t *buf, size_t *len, uint32_t *st)
{
	size_t n = *len;

	switch (fuzz_rand(st) % 3) {
	case 0:
		for (int i = 0; n && i < 4; i++)
			buf[fuzz_rand(st) % n] ^= (uint8_t)(1u << (fuzz_rand(st) % 8));
		break;
	case 1:
		*len = n ? fuzz_rand(st) % n : 0;
		break;
	default: {
		size_t a = n ? fuzz_rand(st) % n : 0, k = n - a < 64 ? n - a : 64;
		if (n + k <= REPLAY_MAX) {
			memmove(buf + a + k, buf + a, n - a);
			*len = n + k;
		}
	}
	}
}

static void replay_file(const char *path, unsigned mutations)
{
	size_t len, orig;
	uint8_t *buf = replay_read(path, &len), *copy = malloc(REPLAY_MAX);
	uint32_t st;

	LLVMFuzzerTestOneInput(buf, len);
	st = fuzz_seed(buf, len);
	orig = len;
	for (unsigned i = 0; copy && i < mutations; i++) {
		size_t l = orig;

		memcpy(copy, buf, orig);
		replay_mutate(copy, &l, &st);
		LLVMFuzzerTestOneInput(copy, l);
	}
	free(copy);
	free(buf);
}

static int replay_path(const char *path, unsigned mutations)
{
	struct stat st;
	struct dirent **ents;
	int n, count = 0;

	if (stat(path, &st) < 0) {
		fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
		exit(2);
	}
	if (!S_ISDIR(st.st_mode)) {
		replay_file(path, mutations);
		return 1;
	}
	if ((n = scandir(path, &ents, NULL, alphasort)) < 0) {
		fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
		exit(2);
	}
	for (int i = 0; i < n; i++) {
		char sub[4096];

		if (ents[i]->d_name[0] != '.') {
			snprintf(sub, sizeof(sub), "%s/%s", path, ents[i]->d_name);
			count += replay_path(sub, mutations);
		}
		free(ents[i]);
	}
	free(ents);
	return count;
}

int main(int argc, char **argv)
{
	const char *m = getenv("FUZZ_MUTATIONS");
	unsigned mutations = m ? (unsigned)strtoul(m, NULL, 10) : 16;
	int files = 0;

	if (argc < 2) {
		fprintf(stderr, "usage: %s FILE|DIR...\n", argv[0]);
		return 2;
	}
	for (int i = 1; i < argc; i++)
		files += replay_path(argv[i], mutations);
	printf("%s: %d inputs, %u mutations each: ok\n", argv[0], files, mutations);
	return 0;
}
