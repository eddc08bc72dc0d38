/* The durable spool queue.
 *
 * Layout under spool_dir (Postfix's model):
 *   maildrop/  3770 user:group  setgid front end drops new messages here (sticky,
 *                               setgid: new files belong to the service group)
 *   queue/     0700 user        messages owned by the daemon
 *   corrupt/   0700 user        unreadable files are moved here, never deleted
 *   public/    0755 user        control and submit sockets (authorised by peer uid)
 *
 * One message = one content file ("queue/ID" or "maildrop/ID") holding the
 * envelope header then the message content, written once, plus an optional
 * state file "queue/ID.state" holding per-recipient state, replaced
 * atomically.  Temporary files start with "tmp." and are removed by scans
 * when stale.  Every file read back is untrusted input.  The file formats
 * are described in queue/envelope.c.
 */
#ifndef SMTPRELAY_QUEUE_H
#define SMTPRELAY_QUEUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "smtp/dsnparam.h"

#define QID_LEN 20			/* max characters of a queue id */
#define QID_SIZE (QID_LEN + 1)
#define QID_ID_LEN 18			/* every id has exactly this length */

enum q_area { Q_MAILDROP, Q_QUEUE };

enum q_rcpt_state { Q_PENDING, Q_DEFERRED, Q_DELIVERED, Q_FAILED };

struct q_rcpt {
	char *addr;			/* resolved, fully qualified */
	char *orcpt;			/* as originally given (NULL if same) */
	unsigned notify;
	enum q_rcpt_state state;
	unsigned attempts;
	time_t next_attempt;		/* 0 = now */
	time_t last_attempt;		/* 0 = never */
	char *last_reason;		/* NULL when none */
};

struct q_envelope {
	char id[QID_SIZE];		/* filled by the queue */
	int64_t arrival_us;		/* microseconds since the epoch; 0 = now */
	char *sender;			/* "" = null sender */
	struct q_rcpt *rcpts;
	size_t nrcpts;
	char *envid;			/* DSN ENVID, NULL when none */
	enum smtp_ret ret;
	bool smtputf8;
	bool eightbit;			/* BODY=8BITMIME */
	long uid;			/* submitting uid; -1 for the listener */
	char *origin;			/* "sendmail", "smtp [127.0.0.1]"... for logs */
	/* Filled when read back: */
	uint64_t size;			/* bytes of content */
	uint64_t content_offset;	/* where content starts in the file */
	unsigned dsn_count;		/* DSNs already generated for it */
	/* On hold (README "Running it", "Nothing disappears silently"): nothing left to
	 * deliver, a failure nobody was told about (a failed DSN, a suppressed
	 * DSN); kept until queue_lifetime ends or `smtprelay delete`.  State file. */
	bool held;
};

struct queue;
struct qwriter;

/* Open a spool; with create, make the subdirectories (modes above) if missing.
 * NULL on error with a message naming the path in err. */
struct queue *queue_open(const char *spool_dir, bool create, char *err, size_t errlen);
void queue_close(struct queue *q);
const char *queue_path(const struct queue *q);

/* New unique queue id (time + pid + random), unique across processes and
 * restarts, in Postfix's long-id form and alphabet (no vowels): "4Rf7Kq0BcDz..." */
void queue_new_id(char id[QID_SIZE]);
/* true iff id looks like one made by queue_new_id (length, alphabet): safe as a file name. */
bool queue_id_valid(const char *id);

/* Writing a message: the envelope is written first, content streamed after,
 * then commit makes it durable (size fixed up, fsync file, rename into place
 * without replacing, fsync directory).  Nothing is visible before commit.
 * env->id is set at open. */
struct qwriter *qwriter_open(struct queue *q, enum q_area area, struct q_envelope *env,
    char *err, size_t errlen);
const char *qwriter_id(const struct qwriter *w);
/* Buffered (64 KiB).  -1 with errno on a write error; the error sticks, and
 * qwriter_commit then fails with it and a message naming the file. */
int qwriter_write(struct qwriter *w, const void *data, size_t len);
uint64_t qwriter_size(const struct qwriter *w);
/* Mark the content as 8-bit (known only once it has been seen). */
void qwriter_set_eightbit(struct qwriter *w, bool eightbit);
/* 0 on success (the message is durably queued); -1 with err set (ENOSPC etc.
 * in errno).  Frees w in all cases. */
int qwriter_commit(struct qwriter *w, char *err, size_t errlen);
/* qwriter_commit in two halves, for a group commit (queue/commit.h); both
 * are safe on a worker thread.  stage: write, fsync, close, rename into
 * place; -1 with err set and the temporary file removed.  Then fsync
 * qwriter_dirfd (-1: nothing to sync, e.g. a descriptor writer) and settle
 * with that fsync's errno (or stage's): an error takes the renamed file
 * back.  settle frees w and returns 0 only when the message is durable. */
int qwriter_stage(struct qwriter *w, char *err, size_t errlen);
/* The same with the file's fsync moved out so that it can overlap the
 * directory fsync: write, rename into place, keep the file open; then
 * qwriter_sync (fsync, close; -1 with err set) may run while another
 * thread fsyncs qwriter_dirfd, and settle gets the first of their errors.
 * Until both flushes are done a crash may leave ID with part of its
 * content: queue_read refuses such a file (its size field does not match),
 * and it was never acknowledged. */
int qwriter_stage_early(struct qwriter *w, char *err, size_t errlen);
int qwriter_sync(struct qwriter *w, char *err, size_t errlen);
int qwriter_dirfd(const struct qwriter *w);
int qwriter_settle(struct qwriter *w, int error, char *err, size_t errlen);
void qwriter_abort(struct qwriter *w);

/* Asynchronous writing, for the daemon's listener (smtprelayd(8), "Queue
 * guarantees"): after qwriter_set_async (a queue/ writer, before any
 * write), qwriter_write never touches the file.  Each full 64 KiB buffer
 * is queued as a chunk; qwriter_spill, on any one thread at a time, makes
 * tmp.ID and writes the queued chunks in order.  Its first error (ENOSPC,
 * EIO) sticks: the next qwriter_write that queues a chunk fails with it,
 * and so does qwriter_stage/qwriter_commit, which write what is still
 * queued.  Only the queue (qwriter_queued, the spill's dequeuing and
 * error) is shared between threads: the caller must not run qwriter_stage,
 * qwriter_commit or qwriter_abort while a qwriter_spill is running. */
int qwriter_set_async(struct qwriter *w);
/* Chunks queued and not yet written (safe from any thread). */
unsigned qwriter_queued(struct qwriter *w);
/* 0, or -1 with errno (this spill's or an earlier one's error). */
int qwriter_spill(struct qwriter *w);

/* Read a message's envelope (content file header + state file).  A corrupt
 * or truncated file returns -1 with errno EBADMSG and err describing it;
 * the caller decides to quarantine. */
int queue_read(struct queue *q, enum q_area area, const char *id, struct q_envelope **env,
    char *err, size_t errlen);
void q_envelope_free(struct q_envelope *env);
/* Open the content file for reading, positioned at the content. */
int queue_open_content(struct queue *q, enum q_area area, const struct q_envelope *env);

/* Replace queue/ID.state atomically with env's per-recipient state (durable). */
int queue_update_state(struct queue *q, const struct q_envelope *env, char *err, size_t errlen);
/* Remove a finished message (content and state), durably. */
int queue_remove(struct queue *q, enum q_area area, const char *id);
/* Move a bad file to corrupt/ with a log line naming why. */
int queue_quarantine(struct queue *q, enum q_area area, const char *id, const char *why);

/* Exclusive, non-blocking lock on a message so two deliverers never work on
 * one: returns an fd to keep while working (close to release), -1 with
 * errno EWOULDBLOCK if someone else holds it. */
int queue_lock(struct queue *q, const char *id);

/* List message ids of an area, sorted by arrival; stale temporary files are
 * removed (older than max_tmp_age seconds).  Returns count, -1 on error. */
int queue_scan(struct queue *q, enum q_area area, char (**ids)[QID_SIZE], time_t max_tmp_age);

/* Move one maildrop message into queue/: validated as untrusted, copied to a
 * daemon-owned file, then removed from maildrop.  A bad file is quarantined. */
int queue_pickup(struct queue *q, const char *id, char *err, size_t errlen);

/* A content-file-format message on a descriptor (a memfd from a front end
 * without the setgid privilege): validated as untrusted, the uid taken from
 * the peer's credentials, queued under a fresh id (returned in id). */
int queue_accept_fd(struct queue *q, int fd, long uid, char id[QID_SIZE], char *err,
    size_t errlen);
/* The writer for that: the content-file format into fd (not closed; no
 * rename, no fsync needed for a memfd). */
struct qwriter *qwriter_open_fd(int fd, struct q_envelope *env, char *err, size_t errlen);

const char *q_state_name(enum q_rcpt_state s);

#endif
