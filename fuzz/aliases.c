/* Fuzz target: an /etc/aliases-style file (aliases_file), then resolution
 * of a few local names through it (recursion, loops, :include: refused). */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conf/conf.h"
#include "lib/strv.h"
#include "fuzz/fuzz.h"
#include "lib/addr.h"

static struct config *fuzz_alias_config(void)
{
	static const char text[] = "hostname = \"relay.fuzz\"\nadmin_address = \"admin@example.com\"\n";
	static struct config *c;
	char path[64], *errors = NULL;
	int fd;

	if (c)
		return c;
	fd = fuzz_memfd((const uint8_t *)text, sizeof(text) - 1);
	fuzz_fd_path(fd, path, sizeof(path));
	if (!(c = conf_load(path, &errors))) {
		fprintf(stderr, "fuzz: base config: %s\n", errors ? errors : "?");
		abort();
	}
	close(fd);
	return c;
}

static void fuzz_alias_resolve(const struct config *c, const char *name)
{
	struct strv out = { 0 };
	char err[512];
	int n = conf_resolve(c, name, &out, err, sizeof(err));

	FUZZ_CHECK(n < 0 || (size_t)n == out.n);
	for (size_t i = 0; i < out.n; i++)
		FUZZ_CHECK(addr_valid(out.v[i], ADDR_ALLOW_UTF8));
	strv_free(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const names[] = { "root", "postmaster", "a", "MAILER-DAEMON", "x@localhost" };
	struct config *c;
	struct strv targets = { 0 };
	char path[64], err[512], *s;
	int fd;

	fuzz_init();
	c = fuzz_alias_config();
	if ((fd = fuzz_memfd(data, size)) < 0)
		return 0;
	fuzz_fd_path(fd, path, sizeof(path));
	if (conf_aliases_read(c, path, err, sizeof(err)) == 0)
		for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
			fuzz_alias_resolve(c, names[i]);
	conf_aliases_free(c);
	close(fd);
	s = fuzz_str(data, size);
	if (conf_alias_split(s, &targets, err, sizeof(err)) == 0)
		strv_free(&targets);
	free(s);
	return 0;
}
