/* maillog: the log lines Postfix's log tools count (smtprelayd(8) "LOGGING").
 *
 * pflogsumm and logwatch read a message's life from lines in Postfix's
 * exact formats, tagged with Postfix's roles: smtpd "client=", pickup
 * "uid= from=", cleanup "message-id=", qmgr "from=, size=, nrcpt= (queue
 * active)" and "removed", smtp "to=, relay=, delay=, delays=, dsn=,
 * status=", bounce "sender non-delivery notification".  This module owns
 * those formats (the formatting functions are pure, for golden tests) and
 * where the daemon logs: syslog, or stderr with -d.  It does not decide
 * what happened to a message; callers pass that in.
 */
#ifndef SMTPRELAY_MAILLOG_H
#define SMTPRELAY_MAILLOG_H

#include <stdbool.h>
#include <stddef.h>

#include "queue/queue.h"
#include "lib/log.h"

struct conn_tls_info;

/* Where smtprelayd logs: stderr for -t and -d, else syslog facility mail
 * with role tags.  Under systemd (stderr is the journal stream named by
 * $JOURNAL_STREAM) syslog too, so journald records each role's tag and the
 * real severity; with -d there, stderr lines carry sd-daemon "<N>". */
void maillog_init(bool test, bool debug);
/* Whether $JOURNAL_STREAM names the file stderr is (systemd's check). */
bool maillog_stderr_is_journal(void);

/* One recipient's outcome, as the smtp role logs it. */
struct maillog_delivery {
	const char *id;
	const char *to;
	const char *orig_to;		/* logged when it differs from to; NULL = none */
	const char *relay;		/* "host[ip]:port" or "none" */
	double delay;			/* arrival to now, seconds */
	double delays[4];		/* before qmgr / in queue / conn setup / transmission */
	const char *dsn;		/* "2.0.0" */
	const char *status;		/* sent, deferred, bounced */
	const char *reason;		/* inside the parentheses */
	bool by_qmgr;			/* expiry: the queue manager decides, not smtp */
};
/* "ID: to=<...>, [orig_to=<...>, ]relay=..., delay=..., delays=a/b/c/d,
 * dsn=X.Y.Z, status=... (reason)"; returns snprintf's count. */
int maillog_format_delivery(char *out, size_t size, const struct maillog_delivery *d);
void maillog_delivery(const struct maillog_delivery *d);
/* Postfix's delay notation: "0", "0.01", "0.42", "1.3", "12", "1200". */
void maillog_format_delay(char *out, size_t size, double seconds);
/* The enhanced status code in a reply text ("... 550 5.1.1 ..." or "5.1.1 ...")
 * whose class matches cls ('2', '4', '5'); else "cls.0.0". */
void maillog_dsn(const char *reason, char cls, char out[16]);

/* "Verified TLS connection established to PEER: TLSv1.3 with cipher C (B/A bits)";
 * Untrusted when the chain was not verified, Anonymous without a certificate. */
int maillog_format_tls(char *out, size_t size, const char *peer, const struct conn_tls_info *t);

/* What the "queued" lines say about a message, read from its queue file on
 * any thread (maillog_summary_read) and logged on the loop later, so that
 * the event loop does not read the file again. */
struct maillog_summary {
	bool ok;			/* read; else err says why */
	char id[QID_SIZE];
	char sender[1024];
	long uid;
	unsigned long long size;
	size_t nrcpts;
	char message_id[512];		/* "" when the headers have none */
	char err[256];
};
void maillog_summary_read(struct queue *q, const char *id, struct maillog_summary *s);
/* maillog_queued's lines from a summary; with a note (not NULL) pickup's
 * "ID: uid=N from=<...>" line first (then note, e.g. how it came). */
void maillog_summary_log(const struct maillog_summary *s, const char *note);

/* A message is in queue/: cleanup's "message-id=<...>" (when the headers
 * have one) and qmgr's "from=<...>, size=N, nrcpt=N (queue active)". */
void maillog_queued(struct queue *q, const char *id);
/* The Message-ID header's <...> from a message's headers (without <>);
 * false when there is none.  Reads at most the first 64 KiB. */
bool maillog_message_id(const char *text, size_t len, char *out, size_t size);

#endif
