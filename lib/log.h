/* Logging: syslog (facility mail) or stderr, one line per event.
 *
 * The daemon tags each line the way Postfix does, "smtprelay/ROLE[PID]",
 * so that pflogsumm and logwatch count it (smtprelayd(8) "LOGGING").  The role is a
 * property of the call: a module sets its default by defining LOG_ROLE
 * before any #include (after config.h), and log_as() names another one for a
 * single line.  Front ends never enable roles: their tag is the ident.
 * Severities are real syslog priorities; a "warning: " / "error: " text
 * prefix is added as Postfix does, for the tools that read it. */
#ifndef SMTPRELAY_LOG_H
#define SMTPRELAY_LOG_H

#include <stdarg.h>
#include <stdbool.h>
#include <syslog.h>

enum log_target { LOG_TARGET_SYSLOG, LOG_TARGET_STDERR };

/* Postfix's program names; LOG_ROLE_NONE takes the fallback of log_roles(). */
enum log_role {
	LOG_ROLE_NONE, LOG_ROLE_MASTER, LOG_ROLE_SMTPD, LOG_ROLE_PICKUP, LOG_ROLE_CLEANUP,
	LOG_ROLE_QMGR, LOG_ROLE_SMTP, LOG_ROLE_BOUNCE, LOG_ROLE_COUNT
};

#ifndef LOG_ROLE
#define LOG_ROLE LOG_ROLE_NONE
#endif

/* ident is the program name shown in each line; debug enables log_debug. */
void log_init(const char *ident, enum log_target target, bool debug);
/* Tag lines "IDENT/ROLE"; lines without a role use fallback. */
void log_roles(enum log_role fallback);
/* Stderr lines start with sd-daemon's "<N>" so journald keeps the severity. */
void log_stderr_priority_prefix(bool on);
bool log_debug_enabled(void);
/* Only errors: the front end keeps cron's mail free of warnings meant for
 * the administrator (the daemon logs those). */
void log_quiet(bool quiet);
/* "smtprelay/smtp" for a role once roles are on, else the ident. */
const char *log_tag(enum log_role role);

void log_as(enum log_role role, int prio, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void log_vas(enum log_role role, int prio, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));

#define log_msg(prio, ...) log_as(LOG_ROLE, (prio), __VA_ARGS__)
#define log_vmsg(prio, fmt, ap) log_vas(LOG_ROLE, (prio), (fmt), (ap))
#define log_debug(...) log_as(LOG_ROLE, LOG_DEBUG, __VA_ARGS__)
#define log_info(...) log_as(LOG_ROLE, LOG_INFO, __VA_ARGS__)
#define log_warn(...) log_as(LOG_ROLE, LOG_WARNING, __VA_ARGS__)
#define log_err(...) log_as(LOG_ROLE, LOG_ERR, __VA_ARGS__)

#endif
