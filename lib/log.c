#include "config.h"
#include "lib/log.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define LOG_TAG_MAX 64

static const char *const log_role_names[LOG_ROLE_COUNT] = {
	[LOG_ROLE_NONE] = "", [LOG_ROLE_MASTER] = "master", [LOG_ROLE_SMTPD] = "smtpd",
	[LOG_ROLE_PICKUP] = "pickup", [LOG_ROLE_CLEANUP] = "cleanup", [LOG_ROLE_QMGR] = "qmgr",
	[LOG_ROLE_SMTP] = "smtp", [LOG_ROLE_BOUNCE] = "bounce",
};

static struct {
	const char *ident;
	enum log_target target;
	bool debug;
	bool quiet;
	bool roles;
	bool sd_prefix;
	enum log_role fallback;
	const char *opened;		/* the tag syslog was last opened with */
	char tags[LOG_ROLE_COUNT][LOG_TAG_MAX];
} log_state = { "smtprelay", LOG_TARGET_STDERR, false, false, false, false, LOG_ROLE_NONE,
	NULL, { { 0 } } };

/* syslog(3) has one tag per process: switching it and sending must not be
 * interleaved with another thread's line. */
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

static void log_make_tags(void)
{
	log_state.opened = NULL;	/* the same buffer may now hold another tag */
	for (int i = 0; i < LOG_ROLE_COUNT; i++) {
		if (log_state.roles && i != LOG_ROLE_NONE)
			snprintf(log_state.tags[i], LOG_TAG_MAX, "%s/%s", log_state.ident,
			    log_role_names[i]);
		else
			snprintf(log_state.tags[i], LOG_TAG_MAX, "%s", log_state.ident);
	}
}

void log_init(const char *ident, enum log_target target, bool debug)
{
	log_state.ident = ident;
	log_state.target = target;
	log_state.debug = debug;
	log_make_tags();
}

void log_roles(enum log_role fallback)
{
	log_state.roles = true;
	log_state.fallback = fallback;
	log_make_tags();
}

void log_stderr_priority_prefix(bool on)
{
	log_state.sd_prefix = on;
}

void log_quiet(bool quiet)
{
	log_state.quiet = quiet;
}

bool log_debug_enabled(void)
{
	return log_state.debug;
}

const char *log_tag(enum log_role role)
{
	if (role <= LOG_ROLE_NONE || role >= LOG_ROLE_COUNT)
		role = log_state.fallback;
	if (!log_state.tags[0][0])
		log_make_tags();
	return log_state.tags[role];
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

static void log_syslog(const char *tag, int prio, const char *line)
{
	pthread_mutex_lock(&log_lock);
	if (log_state.opened != tag) {
		openlog(tag, LOG_PID | LOG_NDELAY, LOG_MAIL);
		log_state.opened = tag;
	}
	syslog(prio, "%s%s", log_prefix(prio), line);
	pthread_mutex_unlock(&log_lock);
}

void log_vas(enum log_role role, int prio, const char *fmt, va_list ap)
{
	const char *tag = log_tag(role);
	char line[2048], sd[8] = "";

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
		log_syslog(tag, prio, line);
		return;
	}
	if (log_state.sd_prefix)
		snprintf(sd, sizeof(sd), "<%d>", prio & LOG_PRIMASK);
	fprintf(stderr, "%s%s[%ld]: %s%s\n", sd, tag, (long)getpid(), log_prefix(prio), line);
}

void log_as(enum log_role role, int prio, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vas(role, prio, fmt, ap);
	va_end(ap);
}
