#include "config.h"
#include "lib/log.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

static struct {
	const char *ident;
	enum log_target target;
	bool debug;
	bool quiet;
	bool opened;
} log_state = { "smtprelay", LOG_TARGET_STDERR, false, false, false };

void log_init(const char *ident, enum log_target target, bool debug)
{
	log_state.ident = ident;
	log_state.target = target;
	log_state.debug = debug;
	if (target == LOG_TARGET_SYSLOG && !log_state.opened) {
		openlog(ident, LOG_PID | LOG_NDELAY, LOG_MAIL);
		log_state.opened = true;
	}
}

void log_quiet(bool quiet)
{
	log_state.quiet = quiet;
}

bool log_debug_enabled(void)
{
	return log_state.debug;
}

/* Postfix-style severity prefixes, so existing log tools keep working. */
static const char *log_prefix(int prio)
{
	switch (prio) {
	case LOG_EMERG: case LOG_ALERT: case LOG_CRIT: return "fatal: ";
	case LOG_ERR: return "error: ";
	case LOG_WARNING: return "warning: ";
	case LOG_DEBUG: return "debug: ";
	default: return "";
	}
}

void log_vmsg(int prio, const char *fmt, va_list ap)
{
	char line[2048];

	if (prio == LOG_DEBUG && !log_state.debug)
		return;
	if (log_state.quiet && prio > LOG_ERR)
		return;
	vsnprintf(line, sizeof(line), fmt, ap);
	/* A log line is one line: never let data with newlines split it. */
	for (char *p = line; *p; p++)
		if (*p == '\n' || *p == '\r')
			*p = ' ';
	if (log_state.target == LOG_TARGET_SYSLOG) {
		syslog(prio, "%s%s", log_prefix(prio), line);
		return;
	}
	fprintf(stderr, "%s[%ld]: %s%s\n", log_state.ident, (long)getpid(),
	    log_prefix(prio), line);
}

void log_msg(int prio, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vmsg(prio, fmt, ap);
	va_end(ap);
}
