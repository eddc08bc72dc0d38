/* The durable-write stage (queue/commit.c): batching, ordering, and every
 * error path with real queue files.  Disk faults and slow flushes come from
 * tests/fsshim.so: main() re-executes this program with it preloaded. */
#include "config.h"
#include "queue/commit.h"
#include "queue/queue.h"
#include "queue/submit.h"

#include <check.h>
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define NMSG 16

static char tdir[64];
static char spool[128];
static struct queue *q;
static struct commit *c;

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

/* Change the shim's behaviour for this test case. */
static void shim(const char *delay_us, const char *fail)
{
	void (*reload)(void) = (void (*)(void))dlsym(RTLD_DEFAULT, "fsshim_reload");

	ck_assert_msg(reload != NULL, "tests/fsshim.so is not preloaded");
	setenv("FSSHIM_DELAY_US", delay_us, 1);
	setenv("FSSHIM_FAIL", fail, 1);
	reload();
}

static void setup(void)
{
	char err[512];

	strcpy(tdir, "/tmp/check_commit.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(tdir));
	snprintf(spool, sizeof(spool), "%s/spool", tdir);
	q = queue_open(spool, true, err, sizeof(err));
	ck_assert_msg(q != NULL, "queue_open: %s", err);
	c = commit_new(err, sizeof(err));
	ck_assert_msg(c != NULL, "commit_new: %s", err);
	shim("0", "");
}

static void teardown(void)
{
	shim("0", "");
	commit_free(c);
	queue_close(q);
	nftw(tdir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* Reap until n jobs have completed (what the event loop does). */
static void reap_until(int *completed, int n)
{
	double deadline = now_ms() + 20000;

	while (*completed < n) {
		struct pollfd p = { commit_fd(c), POLLIN, 0 };

		ck_assert_msg(now_ms() < deadline, "only %d of %d jobs completed", *completed, n);
		poll(&p, 1, 100);
		commit_reap(c);
	}
}

/* ---- messages, committed as the listener does ---- */

struct msg {
	struct qwriter *w;
	char id[QID_SIZE];
	int error;
	char err[COMMIT_ERR_SIZE];
	int *completed;
};

static int msg_stage(void *arg, int *dirfd, char *err, size_t errlen)
{
	struct msg *m = arg;

	if (qwriter_stage_early(m->w, err, errlen) < 0)
		return errno;
	*dirfd = qwriter_dirfd(m->w);
	return 0;
}

static int msg_flush(void *arg, char *err, size_t errlen)
{
	struct msg *m = arg;

	return qwriter_sync(m->w, err, errlen) < 0 ? errno : 0;
}

static int msg_settle(void *arg, int error, char *err, size_t errlen)
{
	struct msg *m = arg;

	return qwriter_settle(m->w, error, err, errlen) < 0 ? errno : 0;
}

static void msg_done(void *arg, int error, const char *err)
{
	struct msg *m = arg;

	m->error = error;
	snprintf(m->err, sizeof(m->err), "%s", err);
	(*m->completed)++;
}

static const struct commit_ops msg_ops = { msg_stage, msg_settle, msg_done, msg_flush };

static void msg_open(struct msg *m, int *completed)
{
	char *rcpts[] = { "bob@example.com" };
	struct q_rcpt r = { .addr = rcpts[0] };
	struct q_envelope env = { .sender = "alice@example.com", .rcpts = &r, .nrcpts = 1,
	    .uid = -1, .origin = "test" };
	char err[512];

	memset(m, 0, sizeof(*m));
	m->completed = completed;
	m->w = qwriter_open(q, Q_QUEUE, &env, err, sizeof(err));
	ck_assert_msg(m->w != NULL, "qwriter_open: %s", err);
	snprintf(m->id, sizeof(m->id), "%s", qwriter_id(m->w));
	ck_assert_int_eq(qwriter_write(m->w, "Subject: x\r\n\r\nbody\r\n", 20), 0);
}

static void msgs_commit(struct msg *m, int n)
{
	int completed = 0;

	for (int i = 0; i < n; i++) {
		msg_open(&m[i], &completed);
	}
	for (int i = 0; i < n; i++)
		ck_assert_int_eq(commit_submit(c, &msg_ops, &m[i], false), 0);
	reap_until(&completed, n);
}

static bool exists(const char *name)
{
	char p[256];
	struct stat st;

	snprintf(p, sizeof(p), "%s/queue/%s", spool, name);
	return stat(p, &st) == 0;
}

/* Nothing half-written may stay behind: no tmp.* left in queue/. */
static int tmp_files(void)
{
	char p[256];
	struct dirent *e;
	DIR *d;
	int n = 0;

	snprintf(p, sizeof(p), "%s/queue", spool);
	ck_assert_ptr_nonnull(d = opendir(p));
	while ((e = readdir(d)))
		n += strncmp(e->d_name, "tmp.", 4) == 0;
	closedir(d);
	return n;
}

START_TEST(t_lone_message_one_round)
{
	struct msg m;
	struct commit_stats st;

	msgs_commit(&m, 1);
	ck_assert_msg(m.error == 0, "%s", m.err);
	ck_assert(exists(m.id));
	commit_get_stats(c, &st);
	ck_assert_uint_eq(st.jobs, 1);
	ck_assert_uint_eq(st.batches, 1);
	ck_assert_uint_eq(st.dir_fsyncs, 1);
}
END_TEST

/* 16 commits at once on a 20 ms disk share their directory fsyncs and take
 * far less than 16 one-at-a-time commits (2 flushes each). */
START_TEST(t_concurrent_messages_share_flushes)
{
	struct msg m[NMSG];
	struct commit_stats st;
	double t0;

	shim("20000", "");
	t0 = now_ms();
	msgs_commit(m, NMSG);
	for (int i = 0; i < NMSG; i++) {
		ck_assert_msg(m[i].error == 0, "%s", m[i].err);
		ck_assert(exists(m[i].id));
	}
	commit_get_stats(c, &st);
	ck_assert_uint_eq(st.jobs, NMSG);
	/* Without group commit: one per message. */
	ck_assert_msg(st.dir_fsyncs <= NMSG / 2, "%lu directory fsyncs for %d messages", st.dir_fsyncs, NMSG);
	ck_assert_msg(st.max_batch >= NMSG / 4, "largest batch %lu", st.max_batch);
	ck_assert_msg(now_ms() - t0 < NMSG * 2 * 20 / 2, "took %.0f ms", now_ms() - t0);
}
END_TEST

/* The file's flush overlaps its directory's fsync: a flush that waits for
 * the directory fsync to begin would wait for ever if they ran in a row. */
static volatile uint64_t *fsyncs;	/* the shim's FSSHIM_COUNT counter */

static int overlap_flush(void *arg, char *err, size_t errlen)
{
	double deadline = now_ms() + 10000;

	while (__atomic_load_n(fsyncs, __ATOMIC_SEQ_CST) == 0 && now_ms() < deadline)
		usleep(1000);
	if (__atomic_load_n(fsyncs, __ATOMIC_SEQ_CST) == 0) {
		snprintf(err, errlen, "no directory fsync began while the file was flushed");
		return ETIMEDOUT;
	}
	return msg_flush(arg, err, errlen);
}

static const struct commit_ops overlap_ops = { msg_stage, msg_settle, msg_done, overlap_flush };

START_TEST(t_file_flush_overlaps_directory_fsync)
{
	char path[128];
	struct msg m;
	int completed = 0, fd;

	snprintf(path, sizeof(path), "%s/count", tdir);
	ck_assert_int_ge(fd = open(path, O_RDWR | O_CREAT, 0600), 0);
	ck_assert_int_eq(ftruncate(fd, 4096), 0);
	fsyncs = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	ck_assert(fsyncs != MAP_FAILED);
	close(fd);
	setenv("FSSHIM_COUNT", path, 1);
	shim("0", "");
	msg_open(&m, &completed);
	ck_assert_int_eq(commit_submit(c, &overlap_ops, &m, false), 0);
	reap_until(&completed, 1);
	unsetenv("FSSHIM_COUNT");
	shim("0", "");
	ck_assert_msg(m.error == 0, "%s", m.err);
	ck_assert(exists(m.id));
	ck_assert_uint_eq(*fsyncs, 2);	/* the directory, then the file */
	munmap((void *)fsyncs, 4096);
}
END_TEST

/* ---- ordering of serial jobs ---- */

struct step {
	int n;
	int *staged, *nstaged, *doneorder, *ndone;
};

static int step_stage(void *arg, int *dirfd, char *err, size_t errlen)
{
	struct step *s = arg;

	(void)dirfd;
	(void)err;
	(void)errlen;
	/* A slow first job gives the others time to pile up behind it. */
	if (s->n == 0)
		usleep(20000);
	s->staged[(*s->nstaged)++] = s->n;
	return 0;
}

static void step_done(void *arg, int error, const char *err)
{
	struct step *s = arg;

	(void)err;
	ck_assert_int_eq(error, 0);
	s->doneorder[(*s->ndone)++] = s->n;
}

static const struct commit_ops step_ops = { step_stage, NULL, step_done };

/* Parallel jobs in between keep every syncer busy with directory fsyncs. */
static int other_stage(void *arg, int *dirfd, char *err, size_t errlen)
{
	(void)err;
	(void)errlen;
	*dirfd = *(int *)arg;
	return 0;
}

static void other_done(void *arg, int error, const char *err)
{
	(void)arg;
	(void)err;
	ck_assert_int_eq(error, 0);
}

static const struct commit_ops other_ops = { other_stage, NULL, other_done };

START_TEST(t_serial_jobs_keep_their_order)
{
	enum { N = 50 };
	struct step s[N];
	int staged[N], doneorder[N], nstaged = 0, ndone = 0;
	int dirfd = open(spool, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	shim("2000", "");
	for (int i = 0; i < N; i++) {
		s[i] = (struct step){ i, staged, &nstaged, doneorder, &ndone };
		ck_assert_int_eq(commit_submit(c, &step_ops, &s[i], true), 0);
		ck_assert_int_eq(commit_submit(c, &other_ops, &dirfd, false), 0);
	}
	reap_until(&ndone, N);
	while (commit_pending(c))
		commit_reap(c);
	close(dirfd);
	for (int i = 0; i < N; i++) {
		ck_assert_int_eq(staged[i], i);
		ck_assert_int_eq(doneorder[i], i);
	}
}
END_TEST

START_TEST(t_free_completes_everything)
{
	enum { N = 20 };
	struct step s[N];
	int staged[N], doneorder[N], nstaged = 0, ndone = 0;

	for (int i = 0; i < N; i++) {
		s[i] = (struct step){ i, staged, &nstaged, doneorder, &ndone };
		ck_assert_int_eq(commit_submit(c, &step_ops, &s[i], i % 2), 0);
	}
	commit_free(c);
	ck_assert_int_eq(ndone, N);
	c = commit_new(NULL, 0);
	ck_assert_ptr_nonnull(c);
}
END_TEST

/* ---- error paths: one message fails, the batch does not ---- */

struct fault {
	const char *rule;		/* %s is the failing message's id */
	int error;
	int smtp_code;
};

static const struct fault faults[] = {
	{ "write:ENOSPC:0:*/queue/tmp.%s", ENOSPC, 452 },
	{ "write:EIO:0:*/queue/tmp.%s", EIO, 451 },
	/* the file is fsynced after its rename, overlapping the directory's */
	{ "fsync:ENOSPC:0:*/queue/%s", ENOSPC, 452 },
	{ "fsync:EIO:0:*/queue/%s", EIO, 451 },
	{ "rename:EIO:0:tmp.%s", EIO, 451 },
};

START_TEST(t_fault_fails_that_message_alone)
{
	const struct fault *f = &faults[_i];
	struct msg m[4];
	struct submit_error e = { 0 };
	char rule[300];
	int completed = 0;

	for (int i = 0; i < 4; i++)
		msg_open(&m[i], &completed);
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
	snprintf(rule, sizeof(rule), f->rule, m[2].id);
#pragma GCC diagnostic pop
	shim("2000", rule);
	for (int i = 0; i < 4; i++)
		ck_assert_int_eq(commit_submit(c, &msg_ops, &m[i], false), 0);
	reap_until(&completed, 4);
	for (int i = 0; i < 4; i++) {
		if (i == 2)
			continue;
		ck_assert_msg(m[i].error == 0, "%s: %s", m[i].id, m[i].err);
		ck_assert(exists(m[i].id));
	}
	ck_assert_int_eq(m[2].error, f->error);
	ck_assert_msg(strstr(m[2].err, m[2].id) != NULL, "error does not name the file: %s", m[2].err);
	ck_assert(!exists(m[2].id));
	ck_assert_int_eq(tmp_files(), 0);
	submit_spool_failure(&e, m[2].error, m[2].err);
	ck_assert_int_eq(e.smtp_code, f->smtp_code);
	ck_assert_int_eq(e.exit_code, 75);
}
END_TEST

/* The directory fsync fails: every message that relied on it is taken back
 * (never acknowledged), the next batch is fine. */
START_TEST(t_directory_fsync_failure_takes_back_the_batch)
{
	struct msg m[3], later;
	int completed = 0, failed = 0;

	shim("0", "fsync:EIO:1:*/queue");
	msgs_commit(m, 3);
	for (int i = 0; i < 3; i++) {
		if (m[i].error == 0)
			continue;
		failed++;
		ck_assert_int_eq(m[i].error, EIO);
		ck_assert(!exists(m[i].id));
		ck_assert_msg(strstr(m[i].err, "fsync") != NULL, "%s", m[i].err);
	}
	ck_assert_int_ge(failed, 1);
	ck_assert_int_eq(tmp_files(), 0);
	msg_open(&later, &completed);
	ck_assert_int_eq(commit_submit(c, &msg_ops, &later, false), 0);
	reap_until(&completed, 1);
	ck_assert_msg(later.error == 0, "%s", later.err);
	ck_assert(exists(later.id));
}
END_TEST

static Suite *commit_suite(void)
{
	Suite *s = suite_create("commit");
	TCase *tc = tcase_create("commit");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, t_lone_message_one_round);
	tcase_add_test(tc, t_concurrent_messages_share_flushes);
	tcase_add_test(tc, t_file_flush_overlaps_directory_fsync);
	tcase_add_test(tc, t_serial_jobs_keep_their_order);
	tcase_add_test(tc, t_free_completes_everything);
	tcase_add_loop_test(tc, t_fault_fails_that_message_alone, 0,
	    (int)(sizeof(faults) / sizeof(faults[0])));
	tcase_add_test(tc, t_directory_fsync_failure_takes_back_the_batch);
	suite_add_tcase(s, tc);
	return s;
}

/* Preload the shim (built next to this program) and run again. */
static void preload_shim(char **argv)
{
	const char *top = getenv("top_builddir"), *asan = getenv("ASAN_OPTIONS");
	char so[4096], opts[1024];

	if (getenv("FSSHIM_LOADED"))
		return;
	snprintf(so, sizeof(so), "%s/tests/fsshim.so", top ? top : ".");
	setenv("LD_PRELOAD", so, 1);
	setenv("FSSHIM_LOADED", "1", 1);
	/* In a --enable-sanitizers build the shim comes before ASan's runtime. */
	snprintf(opts, sizeof(opts), "%s%sverify_asan_link_order=0", asan ? asan : "",
	    asan && *asan ? ":" : "");
	setenv("ASAN_OPTIONS", opts, 1);
	execv("/proc/self/exe", argv);
	perror("check_commit: re-executing with tests/fsshim.so");
	exit(1);
}

int main(int argc, char **argv)
{
	SRunner *sr;
	int failed;

	(void)argc;
	preload_shim(argv);
	sr = srunner_create(commit_suite());
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
