/* Fuzz target: the configuration file, through libconfuse and our
 * validation (durations, ports, listen specs, CIDRs, smarthost blocks,
 * aliases blocks), and the parsers it uses on their own. */
#include "config.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conf/conf.h"
#include "fuzz/fuzz.h"

static void fuzz_conf_values(const char *s)
{
	struct conf_port port;
	struct conf_listen listen = { 0 };
	struct conf_cidr cidr;
	unsigned char fp[32];
	char err[512];
	bool host_bits;

	conf_parse_duration(s);
	conf_parse_rate(s);
	conf_parse_fingerprint(s, fp);
	conf_parse_port(s, &port, err, sizeof(err));
	if (conf_parse_listen(s, &listen, err, sizeof(err)) == 0)
		free(listen.spec);
	conf_parse_cidr(s, &cidr, &host_bits, err, sizeof(err));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct config *c;
	char path[64], *errors = NULL, *s;
	int fd;

	fuzz_init();
	if ((fd = fuzz_memfd(data, size)) < 0)
		return 0;
	fuzz_fd_path(fd, path, sizeof(path));
	c = conf_load(path, &errors);
	FUZZ_CHECK(c || errors);
	if (c) {
		char *sender = conf_rewrite_sender(c, "user");

		free(sender);
		conf_free(c);
	}
	free(errors);
	close(fd);
	s = fuzz_str(data, size);
	fuzz_conf_values(s);
	free(s);
	return 0;
}
