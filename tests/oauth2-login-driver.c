/* Test driver for the device-code login until `smtprelay` dispatches to it:
 * oauth2-login-driver CONFIG oauth2-login [--device-url URL] [--timeout S] NAME
 * Loads CONFIG and its secrets, then runs oauth2_login_main on the rest. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <sysexits.h>

#include "conf/conf.h"
#include "frontend/oauth2_login.h"
#include "lib/log.h"

int main(int argc, char **argv)
{
	char *errors = NULL;
	struct config *c;
	int rc;

	if (argc < 3) {
		fputs("usage: oauth2-login-driver CONFIG oauth2-login [OPTIONS] NAME\n", stderr);
		return EX_USAGE;
	}
	log_init("oauth2-login", LOG_TARGET_STDERR, false);
	c = conf_load(argv[1], &errors);
	if (c && conf_load_secrets(c, NULL, &errors) < 0) {
		conf_free(c);
		c = NULL;
	}
	if (!c) {
		fputs(errors ? errors : "configuration error\n", stderr);
		free(errors);
		return EX_CONFIG;
	}
	free(errors);
	rc = oauth2_login_main(c, argc - 2, argv + 2);
	conf_free(c);
	return rc;
}
