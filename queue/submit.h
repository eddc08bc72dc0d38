/* Submission: the one path by which new mail enters the queue.
 *
 * sendmail (stdin and -bs) and the daemon's listener both go through here:
 * recipients are resolved (aliases, admin_address), the sender rewritten
 * (from_address), the content passed through the message filter (line ends,
 * -t extraction, Bcc removal, missing headers), and the result written to
 * the queue and made durable before success is reported.
 */
#ifndef SMTPRELAY_SUBMIT_H
#define SMTPRELAY_SUBMIT_H

#include <stdbool.h>
#include <stddef.h>

#include "conf/conf.h"
#include "lib/strv.h"
#include "queue/queue.h"

struct submit_params {
	const struct config *conf;
	struct queue *queue;
	enum q_area area;		/* Q_MAILDROP from sendmail, Q_QUEUE in the daemon */
	bool handover;			/* write to handover_fd instead (see queue/handoff.h) */
	int handover_fd;
	const char *sender;		/* as given ("" = null sender) */
	char *const *rcpts;		/* as given: addresses or local names */
	size_t nrcpts;
	bool extract_rcpts;		/* sendmail -t */
	bool from_stdin;		/* sendmail: normalise line ends */
	bool dot_ends;			/* sendmail without -i */
	const char *full_name;		/* for a generated From:, may be NULL */
	const char *received_from;	/* listener: "HELO ([IP])"; NULL: local submission */
	const char *protocol;		/* listener: "SMTP" or "ESMTP"; NULL for local */
	bool remote_client;		/* listener peer not on loopback: headers are not
					 * qualified (Postfix's local_header_rewrite_clients) */
	unsigned notify;		/* q_notify bits for every recipient, 0 = default */
	const unsigned *notify_each;	/* or per recipient (SMTP NOTIFY=), may be NULL */
	char *const *orcpts;		/* per recipient ORCPT= ("rfc822;addr"), may be NULL */
	enum smtp_ret ret;
	const char *envid;
	bool eightbit;			/* declared 8BITMIME */
	bool smtputf8;
	long uid;			/* submitter, -1 when unknown */
	const char *origin;		/* for logs: "sendmail", "smtp [127.0.0.1]" */
	time_t now;			/* 0 = time(NULL) */
	unsigned max_rcpts;		/* 0 = no limit; the daemon bounds work it does for
					 * others (daemon/rawpickup.c) */
	bool async_writer;		/* the listener: full buffers wait for qwriter_spill
					 * (queue/queue.h) instead of being written here */
};

/* Why a submission failed, for both worlds: sysexits and SMTP replies. */
struct submit_error {
	int exit_code;			/* sysexits.h */
	int smtp_code;			/* e.g. 452 */
	char enhanced[12];		/* e.g. "4.3.1" */
	char text[512];			/* a sentence a person can act on */
};

struct submit;

struct submit *submit_begin(const struct submit_params *p, struct submit_error *e);
/* The queue id chosen for this message (known from the start). */
const char *submit_id(const struct submit *s);
int submit_write(struct submit *s, const char *data, size_t len, struct submit_error *e);
/* The queue writer, once the header section is through (else NULL): with
 * async_writer, the caller spills its chunks (qwriter_queued, qwriter_spill). */
struct qwriter *submit_writer(const struct submit *s);
/* Make the message durable.  0: queued (id in s until freed); -1: nothing is
 * queued and e says why.  Frees s in both cases. */
int submit_commit(struct submit *s, char id[QID_SIZE], struct submit_error *e);
void submit_abort(struct submit *s);
/* submit_commit for a group commit (queue/commit.h): everything but making
 * it durable.  Returns the complete message's writer (id filled) for
 * qwriter_stage/qwriter_settle, or NULL with e set.  Frees s in both cases. */
struct qwriter *submit_finish(struct submit *s, char id[QID_SIZE], struct submit_error *e);
/* The reply and exit code for a spool errno (ENOSPC: 452 4.3.1, 75). */
void submit_spool_failure(struct submit_error *e, int err, const char *what);

/* Resolve one recipient as given into fully qualified addresses, appending
 * to list (deduplicated; the caller's to strv_free).  For -bv and RCPT
 * checks.  0 or -1 with e set. */
int submit_resolve(const struct config *conf, const char *given, struct strv *list,
    struct submit_error *e);
void submit_free_list(char **list, size_t n);

#endif
