#include "config.h"
#define LOG_ROLE LOG_ROLE_PICKUP
#include "daemon/rawpickup.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sysexits.h>
#include <unistd.h>

#include "daemon/sched.h"
#include "relay/stats.h"
#include "lib/log.h"
#include "queue/rawsub.h"
#include "queue/submit.h"

#define RAWPICKUP_CHUNK 65536
/* Room for the record's header besides the content. */
#define RAWPICKUP_HEADER_SLACK ((uint64_t)4 << 20)

bool rawpickup_detect(int fd)
{
	return rawsub_detect(fd);
}

static void rawpickup_fail(struct submit_error *e, int exit_code, int smtp_code,
    const char *enhanced, const char *text)
{
	e->exit_code = exit_code;
	e->smtp_code = smtp_code;
	snprintf(e->enhanced, sizeof(e->enhanced), "%s", enhanced);
	snprintf(e->text, sizeof(e->text), "%s", text);
}

static int rawpickup_copy(struct submit *s, FILE *f, struct submit_error *e)
{
	char *buf = malloc(RAWPICKUP_CHUNK);
	size_t n;

	if (!buf) {
		rawpickup_fail(e, EX_TEMPFAIL, 451, "4.3.0", "out of memory");
		return -1;
	}
	while ((n = fread(buf, 1, RAWPICKUP_CHUNK, f)) > 0) {
		if (submit_write(s, buf, n, e) < 0) {
			free(buf);
			return -1;
		}
	}
	free(buf);
	if (ferror(f)) {
		rawpickup_fail(e, EX_TEMPFAIL, 451, "4.3.0", "reading the handed-over message failed");
		return -1;
	}
	return 0;
}

/* Parse the record from f and run the submission with the daemon's config. */
static int rawpickup_submit(struct daemon *d, FILE *f, long uid, char id[QID_SIZE],
    struct submit_error *e)
{
	struct submit_params *p;
	struct rawsub *r;
	struct submit *s;
	char why[128];
	int ret = -1;

	if (!(r = rawsub_read_header(f, why, sizeof(why)))) {
		rawpickup_fail(e, EX_DATAERR, 554, "5.6.0", why);
		return -1;
	}
	p = rawsub_params(r);
	p->conf = d->conf;
	p->queue = d->queue;
	p->area = Q_QUEUE;
	p->uid = uid;
	/* Resolution is quadratic in the count, and here it is the daemon's time. */
	p->max_rcpts = d->conf->max_recipients;
	if ((s = submit_begin(p, e)) != NULL) {
		if (rawpickup_copy(s, f, e) < 0)
			submit_abort(s);
		else
			ret = submit_commit(s, id, e);
	}
	rawsub_free(r);
	return ret;
}

static int rawpickup_run(struct daemon *d, int fd, long uid, char id[QID_SIZE],
    struct submit_error *e)
{
	char text[160];
	struct stat st;
	FILE *f;
	int dfd, r;

	/* The front end could only guess the limit: the bound is ours. */
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size < 0 ||
	    (uint64_t)st.st_size > (uint64_t)d->conf->max_message_size + RAWPICKUP_HEADER_SLACK) {
		snprintf(text, sizeof(text), "message size exceeds the limit of %zu bytes "
		    "(max_message_size)", d->conf->max_message_size);
		rawpickup_fail(e, EX_DATAERR, 552, "5.3.4", text);
		return -1;
	}
	if ((dfd = dup(fd)) < 0 || lseek(dfd, 0, SEEK_SET) < 0 || !(f = fdopen(dfd, "r"))) {
		if (dfd >= 0)
			close(dfd);
		rawpickup_fail(e, EX_TEMPFAIL, 451, "4.3.0", strerror(errno));
		return -1;
	}
	r = rawpickup_submit(d, f, uid, id, e);
	fclose(f);
	return r;
}

int rawpickup_queue(struct daemon *d, int fd, long uid, char id[QID_SIZE], char *err,
    size_t errlen)
{
	struct submit_error e = { 0 };

	if (rawpickup_run(d, fd, uid, id, &e) < 0) {
		snprintf(err, errlen, "%d %s %s (sendmail exit %d)", e.smtp_code ? e.smtp_code : 451,
		    e.enhanced[0] ? e.enhanced : "4.3.0", e.text, e.exit_code ? e.exit_code : EX_TEMPFAIL);
		return -1;
	}
	stats_received(STATS_SRC_SENDMAIL);
	if (sched_add(d->sched, id) < 0)
		log_err("%s: out of memory scheduling (delivered at the next queue scan)", id);
	return 0;
}
