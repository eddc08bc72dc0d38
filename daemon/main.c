#include "config.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <unistd.h>

#include "conf/conf.h"
#include "lib/log.h"

struct main_opts {
	const char *conf;
	bool test;
	bool version;
	bool debug;
};

static void main_usage(void)
{
	fputs("usage: smtprelayd [-C FILE|-c FILE] [-t] [-V] [-d]\n", stderr);
}

static int main_args(int argc, char **argv, struct main_opts *o)
{
	int ch;

	memset(o, 0, sizeof(*o));
	opterr = 0;
	while ((ch = getopt(argc, argv, "+C:c:tVd")) != -1) {
		switch (ch) {
		case 'C': case 'c': o->conf = optarg; break;
		case 't': o->test = true; break;
		case 'V': o->version = true; break;
		case 'd': o->debug = true; break;
		default:
			if (optopt == 'C' || optopt == 'c')
				fprintf(stderr, "smtprelayd: -%c needs a file name\n", optopt);
			else
				fprintf(stderr, "smtprelayd: unknown option -%c\n", optopt);
			return -1;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "smtprelayd: unexpected argument \"%s\"\n", argv[optind]);
		return -1;
	}
	return 0;
}

/* Each "FILE:LINE: message" line as a warning: -t may run as a user who
 * cannot read the secrets the daemon (as root) can. */
static void main_warn_lines(char *text)
{
	for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n"))
		log_warn("%s", line);
}

/* -t: exit 0 if the configuration is usable, 78 with FILE:LINE messages if not. */
static int main_check_config(const char *path)
{
	char *errors = NULL;
	struct config *c = conf_load(path, &errors);

	if (!c) {
		fputs(errors ? errors : "configuration error\n", stderr);
		free(errors);
		return EX_CONFIG;
	}
	if (conf_load_secrets(c, NULL, &errors) < 0 && errors)
		main_warn_lines(errors);
	free(errors);
	if (c->nsmarthosts == 0)
		log_warn("%s: no smarthost configured: mail will stay queued", path);
	conf_free(c);
	return EX_OK;
}

int main(int argc, char **argv)
{
	struct main_opts o;
	bool to_stderr;

	if (main_args(argc, argv, &o) < 0) {
		main_usage();
		return EX_USAGE;
	}
	if (o.version) {
		printf("smtprelayd %s\n", PACKAGE_VERSION);
		return EX_OK;
	}
	to_stderr = o.test || o.debug || getenv("JOURNAL_STREAM") != NULL;
	log_init("smtprelayd", to_stderr ? LOG_TARGET_STDERR : LOG_TARGET_SYSLOG, o.debug);
	if (o.test)
		return main_check_config(conf_default_path(o.conf));
	fputs("smtprelayd: the delivery daemon is not implemented yet\n", stderr);
	return EX_UNAVAILABLE;
}
