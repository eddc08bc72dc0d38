/* Logging: syslog (facility mail) or stderr, one line per event. */
#ifndef SMTPRELAY_LOG_H
#define SMTPRELAY_LOG_H

#include <stdarg.h>
#include <stdbool.h>
#include <syslog.h>

enum log_target { LOG_TARGET_SYSLOG, LOG_TARGET_STDERR };

/* ident is the program name shown in each line; debug enables log_debug. */
void log_init(const char *ident, enum log_target target, bool debug);
bool log_debug_enabled(void);
/* Only errors: the front end keeps cron's mail free of warnings meant for
 * the administrator (the daemon logs those). */
void log_quiet(bool quiet);

void log_msg(int prio, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void log_vmsg(int prio, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));

#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARNING, __VA_ARGS__)
#define log_err(...) log_msg(LOG_ERR, __VA_ARGS__)

#endif
