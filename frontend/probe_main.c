/* smtprelay-probe: `smtprelay probe` on its own until the admin tool
 * (frontend/admin.c) dispatches to probe_run.
 * usage: smtprelay-probe [-C FILE | -c FILE] [-d] [--json]
 * Exit 0 when some port is usable, 1 when none is, 64 usage, 78 config error. */
#include "config.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>

#include "conf/conf.h"
#include "frontend/probe.h"
#include "relay/secaccess.h"
#include "lib/log.h"

static struct config *probe_main_config(const char *path)
{
	char *errors = NULL, *warnings = NULL;
	struct config *c = conf_load(path, &errors);

	if (c) {
		free(errors);
		errors = NULL;
		if (secaccess_load(c, false, &errors, &warnings) < 0) {
			conf_free(c);
			c = NULL;
		}
		if (warnings)
			fputs(warnings, stderr);
		free(warnings);
	}
	if (!c)
		fprintf(stderr, "%s", errors ? errors : "smtprelay probe: cannot load the config\n");
	free(errors);
	return c;
}

int main(int argc, char **argv)
{
	const char *given = NULL;
	bool json = false, debug = false;
	struct config *c;
	int status;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--json") == 0) {
			json = true;
		} else if (strcmp(argv[i], "-d") == 0) {
			debug = true;
		} else if ((strcmp(argv[i], "-C") == 0 || strcmp(argv[i], "-c") == 0) && i + 1 < argc) {
			given = argv[++i];
		} else {
			fprintf(stderr, "usage: smtprelay-probe [-C FILE] [-d] [--json]\n");
			return EX_USAGE;
		}
	}
	log_init("smtprelay", LOG_TARGET_STDERR, debug);
	c = probe_main_config(conf_default_path(given));
	if (!c)
		return EX_CONFIG;
	status = probe_run(c, json, stdout);
	conf_free(c);
	return status;
}
