#include "config.h"
#include "frontend/noconf.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sysexits.h>
#include <unistd.h>

#include "queue/handoff.h"
#include "frontend/priv.h"
#include "lib/fsutil.h"
#include "lib/log.h"
#include "queue/rawsub.h"

static bool noconf_on;
static char noconf_reason[512];

bool noconf_active(void)
{
	return noconf_on;
}

const char *noconf_why(void)
{
	return noconf_reason;
}

/* Only the system config, unreadable for lack of the group (not missing,
 * not broken), and only when setgid really gave us nothing. */
static bool noconf_applies(const struct sendmail_opts *o, const char *path)
{
	const char *env = getenv("SMTPRELAY_CONF");
	int fd;

	if (o->config || (env && *env) || priv_have())
		return false;
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd >= 0) {
		close(fd);
		return false;
	}
	return errno == EACCES;
}

struct config *noconf_config(const struct sendmail_opts *o, const char *path)
{
	char *errors = NULL;
	struct config *c;

	if (!noconf_applies(o, path))
		return NULL;
	snprintf(noconf_reason, sizeof(noconf_reason), "%s is not readable by uid %ld "
	    "(sendmail's setgid privilege is not in effect, e.g. under NoNewPrivileges): run as "
	    "root, or add the user to group " SMTPRELAY_USER, path, (long)getuid());
	c = conf_load_defaults(path, &errors);
	if (!c) {
		fputs(errors ? errors : "out of memory\n", stderr);
		free(errors);
		return NULL;
	}
	free(errors);
	noconf_on = true;
	if (o->mode != SM_ALIASES)	/* newaliases says it once, as its fatal error */
		log_warn("%s; using the defaults and letting smtprelayd apply its "
		    "configuration", noconf_reason);
	return c;
}

static void noconf_fail(struct submit_error *e, int exit_code, int smtp_code,
    const char *enhanced, const char *text)
{
	e->exit_code = exit_code;
	e->smtp_code = smtp_code;
	snprintf(e->enhanced, sizeof(e->enhanced), "%s", enhanced);
	snprintf(e->text, sizeof(e->text), "%s", text);
}

int noconf_begin(const struct submit_params *p, int *fd, struct submit_error *e)
{
	*fd = handoff_memfd();
	if (*fd < 0 || rawsub_write_header(*fd, p) < 0) {
		noconf_fail(e, EX_OSERR, 451, "4.3.0", strerror(errno));
		if (*fd >= 0)
			close(*fd);
		*fd = -1;
		return -1;
	}
	return 0;
}

int noconf_write(int fd, const char *data, size_t len, size_t max, struct submit_error *e)
{
	struct stat st;
	char text[200];

	/* The header is small next to the content: counting it is harmless. */
	if (fstat(fd, &st) == 0 && (size_t)st.st_size + len > max + 65536) {
		snprintf(text, sizeof(text), "message size exceeds the limit of %zu bytes "
		    "(the default max_message_size; a larger one needs the configuration)", max);
		noconf_fail(e, EX_DATAERR, 552, "5.3.4", text);
		return -1;
	}
	if (fs_write_all(fd, data, len) < 0) {
		noconf_fail(e, EX_OSERR, 451, "4.3.0", strerror(errno));
		return -1;
	}
	return 0;
}

/* The daemon's "error CODE X.Y.Z reason (sendmail exit N)" (daemon/rawpickup.h). */
static bool noconf_parse_error(const char *err, struct submit_error *e)
{
	const char *p = strstr(err, ": error "), *tail;
	char enh[12];
	int code, exit_code, n = 0;

	if (!p || sscanf(p + 8, "%3d %11s %n", &code, enh, &n) != 2 || n == 0 ||
	    !(tail = strstr(p, " (sendmail exit ")) ||
	    sscanf(tail, " (sendmail exit %d)", &exit_code) != 1 ||
	    exit_code < EX__BASE || exit_code > EX__MAX || tail < p + 8 + n)
		return false;
	e->exit_code = exit_code;
	e->smtp_code = code;
	snprintf(e->enhanced, sizeof(e->enhanced), "%s", enh);
	snprintf(e->text, sizeof(e->text), "%.*s", (int)(tail - (p + 8 + n)), p + 8 + n);
	return true;
}

int noconf_handoff(const struct config *c, int fd, char id[QID_SIZE], struct submit_error *e)
{
	char err[sizeof(e->text)];

	if (handoff_send(c->spool_dir, fd, id, QID_SIZE, err, sizeof(err)) == 0)
		return 0;
	if (!noconf_parse_error(err, e))
		noconf_fail(e, EX_TEMPFAIL, 451, "4.3.0", err);
	return -1;
}
