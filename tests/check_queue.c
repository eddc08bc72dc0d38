#include "config.h"
#include "queue/queue.h"
#include "lib/fsutil.h"
#include "lib/log.h"
#include "tests/ckrun.h"

#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static char tdir[64];
static char spool[128];

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static void setup(void)
{
	strcpy(tdir, "/tmp/check_queue.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(tdir));
	snprintf(spool, sizeof(spool), "%s/spool", tdir);
}

static void teardown(void)
{
	nftw(tdir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static struct queue *open_spool(void)
{
	char err[512];
	struct queue *q = queue_open(spool, true, err, sizeof(err));

	ck_assert_msg(q != NULL, "queue_open: %s", err);
	return q;
}

static char *path_of(const char *area, const char *name)
{
	static char p[4][256];
	static int i;

	i = (i + 1) % 4;
	snprintf(p[i], sizeof(p[i]), "%s/%s%s%s", spool, area, name ? "/" : "", name ? name : "");
	return p[i];
}

/* Files in an area whose names start with prefix. */
static int count_files(const char *area, const char *prefix)
{
	DIR *d = opendir(path_of(area, NULL));
	struct dirent *de;
	int n = 0;

	ck_assert_ptr_nonnull(d);
	while ((de = readdir(d)))
		if (de->d_name[0] != '.' && strncmp(de->d_name, prefix, strlen(prefix)) == 0)
			n++;
	closedir(d);
	return n;
}

static bool exists(const char *area, const char *name)
{
	struct stat st;

	return lstat(path_of(area, name), &st) == 0;
}

/* A fully populated envelope (static storage, caller does not free). */
static struct q_envelope *sample_env(void)
{
	static struct q_rcpt rcpts[3];
	static struct q_envelope env;

	memset(rcpts, 0, sizeof(rcpts));
	rcpts[0].addr = "bob@example.com";
	rcpts[0].orcpt = "rfc822;Bob+2B@Example.COM with space %25 and \xc3\xa9";
	rcpts[0].notify = SMTP_NOTIFY_SUCCESS | SMTP_NOTIFY_FAILURE | SMTP_NOTIFY_DELAY;
	rcpts[1].addr = "\"carol smith\"@example.org";
	rcpts[1].notify = SMTP_NOTIFY_NEVER;
	rcpts[2].addr = "j\xc3\xb6rg@b\xc3\xbc\x63her.example";
	memset(&env, 0, sizeof(env));
	env.sender = "alice%weird@example.net";
	env.rcpts = rcpts;
	env.nrcpts = 3;
	env.envid = "QQ314159 id%+2B";
	env.ret = SMTP_RET_HDRS;
	env.smtputf8 = true;
	env.eightbit = true;
	env.uid = (long)getuid();
	env.origin = "smtp [127.0.0.1]";
	return &env;
}

static void enqueue(struct queue *q, enum q_area area, struct q_envelope *env,
    const void *data, size_t len, char id[QID_SIZE])
{
	char err[512];
	struct qwriter *w = qwriter_open(q, area, env, err, sizeof(err));

	ck_assert_msg(w != NULL, "qwriter_open: %s", err);
	ck_assert_int_eq(qwriter_write(w, data, len), 0);
	ck_assert_uint_eq(qwriter_size(w), len);
	strcpy(id, qwriter_id(w));
	ck_assert_str_eq(id, env->id);
	ck_assert_msg(qwriter_commit(w, err, sizeof(err)) == 0, "commit: %s", err);
}

static void enqueue_simple(struct queue *q, enum q_area area, char id[QID_SIZE])
{
	struct q_envelope *env = sample_env();

	env->id[0] = '\0';
	env->arrival_us = 0;
	enqueue(q, area, env, "Subject: hi\r\n\r\nbody\r\n", 21, id);
}

static char *read_content(struct queue *q, enum q_area area, const struct q_envelope *env, size_t *len)
{
	int fd = queue_open_content(q, area, env);
	char *data;

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(fs_read_fd(fd, 64 << 20, &data, len), 0);
	close(fd);
	return data;
}

static void assert_str_or_null(const char *a, const char *b)
{
	if (!a || !b)
		ck_assert_ptr_eq(a, b);
	else
		ck_assert_str_eq(a, b);
}

static void assert_env_eq(const struct q_envelope *a, const struct q_envelope *b)
{
	ck_assert_str_eq(a->id, b->id);
	ck_assert_int_eq(a->arrival_us, b->arrival_us);
	ck_assert_str_eq(a->sender, b->sender);
	assert_str_or_null(a->envid, b->envid);
	ck_assert_int_eq(a->ret, b->ret);
	ck_assert_int_eq(a->smtputf8, b->smtputf8);
	ck_assert_int_eq(a->eightbit, b->eightbit);
	ck_assert_int_eq(a->uid, b->uid);
	ck_assert_str_eq(a->origin, b->origin);
	ck_assert_uint_eq(a->nrcpts, b->nrcpts);
	for (size_t i = 0; i < a->nrcpts; i++) {
		ck_assert_str_eq(a->rcpts[i].addr, b->rcpts[i].addr);
		assert_str_or_null(a->rcpts[i].orcpt, b->rcpts[i].orcpt);
		ck_assert_uint_eq(a->rcpts[i].notify, b->rcpts[i].notify);
	}
}

START_TEST(test_roundtrip)
{
	struct queue *q = open_spool();
	struct q_envelope *env = sample_env(), *got;
	const char content[] = "From: a\r\nSubject: x\r\n\r\nline\r\n.\r\n\0binary\xff";
	char id[QID_SIZE], err[512], *data;
	struct stat st;
	size_t len;

	env->id[0] = '\0';
	env->arrival_us = 0;
	enqueue(q, Q_MAILDROP, env, content, sizeof(content), id);
	ck_assert(queue_id_valid(id));
	ck_assert_int_gt(env->arrival_us, 0);
	ck_assert_int_eq(count_files("maildrop", "tmp."), 0);
	ck_assert_int_eq(count_files("maildrop", ""), 1);
	ck_assert_int_eq(stat(path_of("maildrop", id), &st), 0);
	ck_assert_int_eq(st.st_mode & 07777, 0640);

	ck_assert_msg(queue_read(q, Q_MAILDROP, id, &got, err, sizeof(err)) == 0, "%s", err);
	assert_env_eq(env, got);
	ck_assert_uint_eq(got->size, sizeof(content));
	ck_assert_uint_eq(got->dsn_count, 0);
	for (size_t i = 0; i < got->nrcpts; i++) {
		ck_assert_int_eq(got->rcpts[i].state, Q_PENDING);
		ck_assert_uint_eq(got->rcpts[i].attempts, 0);
		ck_assert_ptr_null(got->rcpts[i].last_reason);
	}
	ck_assert_int_eq(st.st_size, got->content_offset + got->size);
	data = read_content(q, Q_MAILDROP, got, &len);
	ck_assert_uint_eq(len, sizeof(content));
	ck_assert_mem_eq(data, content, len);
	free(data);
	q_envelope_free(got);

	/* Null sender, no envid, no origin: read back as "" and NULL. */
	env->id[0] = '\0';
	env->sender = "";
	env->envid = NULL;
	env->origin = NULL;
	env->ret = SMTP_RET_DEFAULT;
	env->uid = -1;
	enqueue(q, Q_QUEUE, env, "", 0, id);
	ck_assert_int_eq(stat(path_of("queue", id), &st), 0);
	ck_assert_int_eq(st.st_mode & 07777, 0600);
	ck_assert_int_eq(queue_read(q, Q_QUEUE, id, &got, err, sizeof(err)), 0);
	ck_assert_str_eq(got->sender, "");
	ck_assert_ptr_null(got->envid);
	ck_assert_str_eq(got->origin, "");
	ck_assert_int_eq(got->uid, -1);
	ck_assert_uint_eq(got->size, 0);
	q_envelope_free(got);
	queue_close(q);
}
END_TEST

START_TEST(test_big_content)
{
	struct queue *q = open_spool();
	struct q_envelope *env = sample_env(), *got;
	size_t big = 10u << 20, len, off = 0, step = 1;
	unsigned char *content = malloc(big);
	char err[512], *data;
	struct qwriter *w;
	uint32_t x = 2463534242u;

	ck_assert_ptr_nonnull(content);
	for (size_t i = 0; i < big; i++) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		content[i] = (unsigned char)x;
	}
	env->id[0] = '\0';
	w = qwriter_open(q, Q_QUEUE, env, err, sizeof(err));
	ck_assert_msg(w != NULL, "%s", err);
	/* Chunks of every size from 1 byte to over the 64 KiB buffer. */
	while (off < big) {
		size_t n = step < big - off ? step : big - off;
		ck_assert_int_eq(qwriter_write(w, content + off, n), 0);
		off += n;
		step = step * 3 + 1;
		if (step > 300000)
			step = 1;
	}
	ck_assert_int_eq(qwriter_commit(w, err, sizeof(err)), 0);
	ck_assert_int_eq(queue_read(q, Q_QUEUE, env->id, &got, err, sizeof(err)), 0);
	ck_assert_uint_eq(got->size, big);
	data = read_content(q, Q_QUEUE, got, &len);
	ck_assert_uint_eq(len, big);
	ck_assert(memcmp(data, content, big) == 0);
	free(data);
	free(content);
	q_envelope_free(got);
	queue_close(q);
}
END_TEST

START_TEST(test_bad_envelope_rejected)
{
	struct queue *q = open_spool();
	struct q_envelope *env = sample_env();
	char err[512];
	const char *bad_rcpts[] = { "bob@example.com\r\nrcpt 0 evil@example.com", "", "a b@c.d",
		"bob@example.com\n", NULL };

	for (int i = 0; bad_rcpts[i]; i++) {
		env->id[0] = '\0';
		env->rcpts[0].addr = (char *)bad_rcpts[i];
		errno = 0;
		ck_assert_ptr_null(qwriter_open(q, Q_MAILDROP, env, err, sizeof(err)));
		ck_assert_int_eq(errno, EINVAL);
		ck_assert_ptr_nonnull(strstr(err, "recipient"));
	}
	env = sample_env();
	env->id[0] = '\0';
	env->origin = "x\ny";
	ck_assert_ptr_null(qwriter_open(q, Q_MAILDROP, env, err, sizeof(err)));
	env = sample_env();
	env->id[0] = '\0';
	env->sender = "evil\r\n@example.com";
	ck_assert_ptr_null(qwriter_open(q, Q_MAILDROP, env, err, sizeof(err)));
	env = sample_env();
	env->id[0] = '\0';
	env->nrcpts = 0;
	ck_assert_ptr_null(qwriter_open(q, Q_MAILDROP, env, err, sizeof(err)));
	env = sample_env();
	strcpy(env->id, "../../etc/passwd");
	ck_assert_ptr_null(qwriter_open(q, Q_MAILDROP, env, err, sizeof(err)));
	ck_assert_int_eq(errno, EINVAL);
	/* Nothing was left behind by the refusals. */
	{
		char (*ids)[QID_SIZE];
		ck_assert_int_eq(queue_scan(q, Q_MAILDROP, &ids, 0), 0);
		free(ids);
	}
	queue_close(q);
}
END_TEST

START_TEST(test_preset_id)
{
	struct queue *q = open_spool();
	struct q_envelope *env = sample_env();
	char want[QID_SIZE], id[QID_SIZE];

	queue_new_id(want);
	strcpy(env->id, want);
	enqueue(q, Q_MAILDROP, env, "x", 1, id);
	ck_assert_str_eq(id, want);
	ck_assert(exists("maildrop", want));
	queue_close(q);
}
END_TEST

START_TEST(test_ids_sorted_unique)
{
	static char ids[5000][QID_SIZE];
	char child[QID_SIZE];
	int pfd[2];
	pid_t pid;

	for (int i = 0; i < 5000; i++) {
		queue_new_id(ids[i]);
		ck_assert_uint_eq(strlen(ids[i]), QID_ID_LEN);
		ck_assert(queue_id_valid(ids[i]));
		if (i)
			ck_assert_msg(strcmp(ids[i - 1], ids[i]) < 0, "%s !< %s", ids[i - 1], ids[i]);
	}
	/* Another process, later in time, sorts after. */
	usleep(2000);
	ck_assert_int_eq(pipe(pfd), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		memset(child, 0, sizeof(child));
		queue_new_id(child);
		_exit(write(pfd[1], child, QID_SIZE) == QID_SIZE ? 0 : 1);
	}
	ck_assert_int_eq(read(pfd[0], child, QID_SIZE), QID_SIZE);
	waitpid(pid, NULL, 0);
	close(pfd[0]);
	close(pfd[1]);
	ck_assert(queue_id_valid(child));
	ck_assert_str_gt(child, ids[4999]);
	ck_assert(!queue_id_valid("short"));
	ck_assert(!queue_id_valid("0123456789abcdefg/"));
	ck_assert(!queue_id_valid("0123456789abcdefghi"));
	ck_assert(!queue_id_valid(NULL));
}
END_TEST

static long qid_decode(const char *s, int n, int base)
{
	static const char digits[] = "0123456789BCDFGHJKLMNPQRSTVWXYZbcdfghjklmnpqrstvwxyz";
	long v = 0;

	for (int i = 0; i < n; i++) {
		const char *d = strchr(digits, s[i]);

		ck_assert_msg(d && d - digits < base, "%c is no base-%d digit", s[i], base);
		v = v * base + (d - digits);
	}
	return v;
}

/* Postfix's long id layout, which logwatch's $re_QID_l matches: base-52
 * seconds (6) and microseconds (4), 'z', then base-51 digits only. */
START_TEST(test_ids_postfix_long_form)
{
	char id[QID_SIZE];
	time_t before = time(NULL), after;

	queue_new_id(id);
	after = time(NULL);
	ck_assert_uint_eq(strlen(id), QID_ID_LEN);
	ck_assert_uint_eq(strcspn(id, "AEIOUaeiou"), QID_ID_LEN);
	ck_assert_int_eq(id[10], 'z');
	ck_assert_int_ge(qid_decode(id, 6, 52), (long)before);
	ck_assert_int_le(qid_decode(id, 6, 52), (long)after);
	ck_assert_int_lt(qid_decode(id + 6, 4, 52), 1000000);
	ck_assert_int_eq(qid_decode(id + 11, 4, 51), (long)getpid());
	qid_decode(id + 15, 3, 51);
	/* An id of the previous format (base 62) is still read, and sorts first. */
	ck_assert(queue_id_valid("0Wq9zT3kLmAa1B2c3D"));
	ck_assert_str_lt("0Wq9zT3kLmAa1B2c3D", id);
}
END_TEST

#define NPROC 20
#define NMSG 50

static int cmp_id(const void *a, const void *b)
{
	return strcmp(a, b);
}

/* A separate process, as sendmail is: its own queue handle, NMSG messages. */
static int enqueue_child(int out)
{
	struct queue *cq = queue_open(spool, false, NULL, 0);
	int rc = cq ? 0 : 1;

	for (int i = 0; !rc && i < NMSG; i++) {
		struct q_envelope *env = sample_env();
		struct qwriter *w;
		env->id[0] = '\0';
		env->arrival_us = 0;
		if (!(w = qwriter_open(cq, Q_MAILDROP, env, NULL, 0)))
			rc = 2;
		else if (qwriter_write(w, "hello\n", 6) < 0 || qwriter_commit(w, NULL, 0) < 0)
			rc = 3;
		else if (write(out, env->id, QID_SIZE) != QID_SIZE)
			rc = 4;
	}
	queue_close(cq);
	return rc;
}

START_TEST(test_concurrent_enqueue)
{
	struct queue *q = open_spool();
	char (*written)[QID_SIZE] = calloc(NPROC * NMSG, QID_SIZE), (*ids)[QID_SIZE];
	int pfd[2], n = 0, status;

	ck_assert_int_eq(pipe(pfd), 0);
	for (int p = 0; p < NPROC; p++) {
		pid_t pid = fork();
		ck_assert_int_ge(pid, 0);
		if (pid == 0) {
			int rc;
			/* What the parent allocated is ours to free (valgrind checks children too). */
			queue_close(q);
			free(written);
			rc = enqueue_child(pfd[1]);
			_exit(rc);
		}
	}
	close(pfd[1]);
	while (n < NPROC * NMSG && read(pfd[0], written[n], QID_SIZE) == QID_SIZE)
		n++;
	close(pfd[0]);
	while (wait(&status) > 0)
		ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	ck_assert_int_eq(n, NPROC * NMSG);
	qsort(written, (size_t)n, QID_SIZE, cmp_id);
	for (int i = 1; i < n; i++)
		ck_assert_str_ne(written[i - 1], written[i]);
	ck_assert_int_eq(queue_scan(q, Q_MAILDROP, &ids, 3600), n);
	for (int i = 0; i < n; i++)
		ck_assert_str_eq(ids[i], written[i]);
	free(ids);
	free(written);
	queue_close(q);
}
END_TEST

START_TEST(test_scan_order_and_junk)
{
	struct queue *q = open_spool();
	char made[5][QID_SIZE], (*ids)[QID_SIZE];
	FILE *f;

	for (int i = 0; i < 5; i++)
		enqueue_simple(q, Q_QUEUE, made[i]);
	f = fopen(path_of("queue", "README"), "w");
	ck_assert_ptr_nonnull(f);
	fclose(f);
	ck_assert_int_eq(queue_scan(q, Q_QUEUE, &ids, 3600), 5);
	for (int i = 0; i < 5; i++)
		ck_assert_str_eq(ids[i], made[i]);
	free(ids);
	ck_assert(exists("queue", "README"));	/* ignored, not deleted */
	queue_close(q);
}
END_TEST

START_TEST(test_state_update)
{
	struct queue *q = open_spool();
	struct q_envelope *got, *again;
	char id[QID_SIZE], err[512], longr[3000];

	enqueue_simple(q, Q_QUEUE, id);
	ck_assert_int_eq(queue_read(q, Q_QUEUE, id, &got, err, sizeof(err)), 0);
	got->dsn_count = 2;
	got->rcpts[0].state = Q_DELIVERED;
	got->rcpts[0].attempts = 1;
	got->rcpts[0].last_attempt = 1700000000;
	got->rcpts[1].state = Q_DEFERRED;
	got->rcpts[1].attempts = 3;
	got->rcpts[1].next_attempt = 1700000600;
	got->rcpts[1].last_attempt = 1700000300;
	got->rcpts[1].last_reason = strdup("451 4.7.1 try later\r\nrcpt 9 x\n%41 \xc3\xa9");
	got->rcpts[2].state = Q_FAILED;
	memset(longr, 'r', sizeof(longr) - 1);
	longr[sizeof(longr) - 1] = '\0';
	got->rcpts[2].last_reason = strdup(longr);
	ck_assert_msg(queue_update_state(q, got, err, sizeof(err)) == 0, "%s", err);
	ck_assert_int_eq(count_files("queue", "tmp."), 0);

	ck_assert_int_eq(queue_read(q, Q_QUEUE, id, &again, err, sizeof(err)), 0);
	ck_assert_uint_eq(again->dsn_count, 2);
	ck_assert_int_eq(again->rcpts[0].state, Q_DELIVERED);
	ck_assert_uint_eq(again->rcpts[0].attempts, 1);
	ck_assert_int_eq(again->rcpts[0].last_attempt, 1700000000);
	ck_assert_ptr_null(again->rcpts[0].last_reason);
	ck_assert_int_eq(again->rcpts[1].state, Q_DEFERRED);
	ck_assert_uint_eq(again->rcpts[1].attempts, 3);
	ck_assert_int_eq(again->rcpts[1].next_attempt, 1700000600);
	ck_assert_int_eq(again->rcpts[1].last_attempt, 1700000300);
	ck_assert_str_eq(again->rcpts[1].last_reason, got->rcpts[1].last_reason);
	ck_assert_int_eq(again->rcpts[2].state, Q_FAILED);
	ck_assert_uint_eq(strlen(again->rcpts[2].last_reason), 1000);	/* bounded */
	q_envelope_free(again);

	/* A second update replaces the first completely. */
	got->rcpts[1].state = Q_DELIVERED;
	free(got->rcpts[1].last_reason);
	got->rcpts[1].last_reason = NULL;
	ck_assert_int_eq(queue_update_state(q, got, err, sizeof(err)), 0);
	ck_assert_int_eq(queue_read(q, Q_QUEUE, id, &again, err, sizeof(err)), 0);
	ck_assert_int_eq(again->rcpts[1].state, Q_DELIVERED);
	ck_assert_ptr_null(again->rcpts[1].last_reason);
	ck_assert(!again->held);
	q_envelope_free(again);

	/* On hold (README "Running it") survives a restart. */
	got->held = true;
	ck_assert_int_eq(queue_update_state(q, got, err, sizeof(err)), 0);
	ck_assert_int_eq(queue_read(q, Q_QUEUE, id, &again, err, sizeof(err)), 0);
	ck_assert(again->held);
	q_envelope_free(again);
	q_envelope_free(got);

	{
		char (*ids)[QID_SIZE];
		char name[64];
		snprintf(name, sizeof(name), "tmp.%s.state", id);
		ck_assert(!exists("queue", name));
		ck_assert_int_eq(queue_scan(q, Q_QUEUE, &ids, 0), 1);	/* state file not listed */
		free(ids);
	}
	/* What the reader would refuse is refused up front; the old state stays. */
	ck_assert_int_eq(queue_read(q, Q_QUEUE, id, &got, err, sizeof(err)), 0);
	got->rcpts[0].state = (enum q_rcpt_state)7;
	ck_assert_int_eq(queue_update_state(q, got, err, sizeof(err)), -1);
	ck_assert_int_eq(errno, EINVAL);
	q_envelope_free(got);
	ck_assert_int_eq(queue_read(q, Q_QUEUE, id, &again, err, sizeof(err)), 0);
	ck_assert_int_eq(again->rcpts[0].state, Q_DELIVERED);
	q_envelope_free(again);
	ck_assert_str_eq(q_state_name(Q_PENDING), "pending");
	ck_assert_str_eq(q_state_name(Q_DEFERRED), "deferred");
	ck_assert_str_eq(q_state_name(Q_DELIVERED), "delivered");
	ck_assert_str_eq(q_state_name(Q_FAILED), "failed");
	queue_close(q);
}
END_TEST

static void set_old(const char *path)
{
	struct timespec ts[2] = { { time(NULL) - 7200, 0 }, { time(NULL) - 7200, 0 } };

	ck_assert_int_eq(utimensat(AT_FDCWD, path, ts, AT_SYMLINK_NOFOLLOW), 0);
}

START_TEST(test_tmp_leftovers)
{
	struct queue *q = open_spool();
	struct q_envelope *env = sample_env();
	char err[512], (*ids)[QID_SIZE], tmpname[64];
	struct qwriter *w;

	/* A writer that "crashed": its tmp file exists but was never renamed. */
	env->id[0] = '\0';
	w = qwriter_open(q, Q_MAILDROP, env, err, sizeof(err));
	ck_assert_ptr_nonnull(w);
	ck_assert_int_eq(qwriter_write(w, "partial", 7), 0);
	snprintf(tmpname, sizeof(tmpname), "tmp.%s", env->id);
	ck_assert(exists("maildrop", tmpname));
	ck_assert(!exists("maildrop", env->id));
	ck_assert_int_eq(queue_scan(q, Q_MAILDROP, &ids, 3600), 0);
	free(ids);
	ck_assert(exists("maildrop", tmpname));		/* fresh: kept */
	set_old(path_of("maildrop", tmpname));
	ck_assert_int_eq(queue_scan(q, Q_MAILDROP, &ids, 3600), 0);
	free(ids);
	ck_assert(!exists("maildrop", tmpname));	/* stale: removed */
	qwriter_abort(w);

	/* A queue/ file is created at its first flush (off the daemon's loop,
	 * at commit, for most messages); abort removes it at once. */
	env->id[0] = '\0';
	w = qwriter_open(q, Q_QUEUE, env, err, sizeof(err));
	ck_assert_ptr_nonnull(w);
	snprintf(tmpname, sizeof(tmpname), "tmp.%s", env->id);
	ck_assert(!exists("queue", tmpname));
	{
		static char big[70000];
		ck_assert_int_eq(qwriter_write(w, big, sizeof(big)), 0);
	}
	ck_assert(exists("queue", tmpname));
	qwriter_abort(w);
	ck_assert(!exists("queue", tmpname));
	queue_close(q);
}
END_TEST

static void assert_read_bad(struct queue *q, enum q_area area, const char *id, const char *what)
{
	struct q_envelope *env = NULL;
	char err[512] = "";

	errno = 0;
	ck_assert_int_eq(queue_read(q, area, id, &env, err, sizeof(err)), -1);
	ck_assert_int_eq(errno, EBADMSG);
	ck_assert_msg(strstr(err, id) != NULL, "error does not name the file: %s", err);
	if (what)
		ck_assert_msg(strstr(err, what) != NULL, "error '%s' lacks '%s'", err, what);
}

START_TEST(test_truncated)
{
	struct queue *q = open_spool();
	struct q_envelope *env;
	char id[QID_SIZE], err[512];
	struct stat st;
	int fd;

	enqueue_simple(q, Q_QUEUE, id);
	ck_assert_int_eq(queue_read(q, Q_QUEUE, id, &env, err, sizeof(err)), 0);
	ck_assert_int_eq(stat(path_of("queue", id), &st), 0);
	ck_assert_int_eq(truncate(path_of("queue", id), st.st_size - 1), 0);
	assert_read_bad(q, Q_QUEUE, id, "truncated");
	/* A reader holding an envelope from before notices too. */
	errno = 0;
	ck_assert_int_eq(queue_open_content(q, Q_QUEUE, env), -1);
	ck_assert_int_eq(errno, EBADMSG);
	q_envelope_free(env);
	ck_assert_int_eq(truncate(path_of("queue", id), 60), 0);	/* inside the header */
	assert_read_bad(q, Q_QUEUE, id, NULL);
	ck_assert_int_eq(truncate(path_of("queue", id), 0), 0);
	assert_read_bad(q, Q_QUEUE, id, NULL);
	/* Longer than the header says is as wrong as shorter. */
	enqueue_simple(q, Q_QUEUE, id);
	fd = open(path_of("queue", id), O_WRONLY | O_APPEND);
	ck_assert_int_eq(write(fd, "x", 1), 1);
	close(fd);
	assert_read_bad(q, Q_QUEUE, id, NULL);
	queue_close(q);
}
END_TEST

static void write_file(const char *path, const char *data, size_t len)
{
	int fd;

	unlink(path);
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(fs_write_all(fd, data, len), 0);
	close(fd);
}

/* Replace the first occurrence of from with to in a file (same length). */
static void patch_file(const char *path, const char *from, const char *to)
{
	char *data, *p;
	size_t len;

	ck_assert_int_eq(fs_read_file(path, 1 << 20, &data, &len), 0);
	p = strstr(data, from);
	ck_assert_ptr_nonnull(p);
	memcpy(p, to, strlen(to));
	ck_assert_int_eq(unlink(path), 0);
	{
		int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
		ck_assert_int_ge(fd, 0);
		ck_assert_int_eq(fs_write_all(fd, data, len), 0);
		close(fd);
	}
	free(data);
}

START_TEST(test_corrupt_quarantine)
{
	struct queue *q = open_spool();
	struct q_envelope *env;
	char id[QID_SIZE], id2[QID_SIZE], err[512], name[64];

	enqueue_simple(q, Q_QUEUE, id);
	ck_assert_int_eq(queue_read(q, Q_QUEUE, id, &env, err, sizeof(err)), 0);
	ck_assert_int_eq(queue_update_state(q, env, err, sizeof(err)), 0);
	q_envelope_free(env);
	patch_file(path_of("queue", id), "rcpts 3", "rcpts 9");
	assert_read_bad(q, Q_QUEUE, id, NULL);
	ck_assert_int_eq(queue_quarantine(q, Q_QUEUE, id, "test"), 0);
	ck_assert(!exists("queue", id));
	ck_assert(exists("corrupt", id));
	snprintf(name, sizeof(name), "%s.state", id);
	ck_assert(exists("corrupt", name));
	ck_assert(!exists("queue", name));

	/* Unknown version, bad escapes, bad state file. */
	enqueue_simple(q, Q_QUEUE, id2);
	patch_file(path_of("queue", id2), "SMTPRELAY-QUEUE 1", "SMTPRELAY-QUEUE 7");
	assert_read_bad(q, Q_QUEUE, id2, "version");
	patch_file(path_of("queue", id2), "SMTPRELAY-QUEUE 7", "SMTPRELAY-QUEUE 1");
	patch_file(path_of("queue", id2), "%25weird", "%00weird");
	assert_read_bad(q, Q_QUEUE, id2, "sender");
	patch_file(path_of("queue", id2), "%00weird", "%25weird");
	ck_assert_int_eq(queue_read(q, Q_QUEUE, id2, &env, err, sizeof(err)), 0);
	ck_assert_int_eq(queue_update_state(q, env, err, sizeof(err)), 0);
	q_envelope_free(env);
	snprintf(name, sizeof(name), "%s.state", id2);
	patch_file(path_of("queue", name), "pending", "pendinG");
	assert_read_bad(q, Q_QUEUE, id2, "bad state");

	/* A quarantine never overwrites an earlier victim of the same name. */
	ck_assert_int_eq(rename(path_of("queue", id2), path_of("queue", id)), 0);
	ck_assert_int_eq(queue_quarantine(q, Q_QUEUE, id, "again"), 0);
	snprintf(name, sizeof(name), "%s.1", id);
	ck_assert(exists("corrupt", name));
	ck_assert_int_eq(queue_quarantine(q, Q_QUEUE, "../x", "no"), -1);
	queue_close(q);
}
END_TEST

START_TEST(test_remove_and_orphan_state)
{
	struct queue *q = open_spool();
	struct q_envelope *env;
	char id[QID_SIZE], id2[QID_SIZE], err[512], name[64], (*ids)[QID_SIZE];

	enqueue_simple(q, Q_QUEUE, id);
	enqueue_simple(q, Q_QUEUE, id2);
	ck_assert_int_eq(queue_read(q, Q_QUEUE, id, &env, err, sizeof(err)), 0);
	ck_assert_int_eq(queue_update_state(q, env, err, sizeof(err)), 0);
	q_envelope_free(env);
	ck_assert_int_eq(queue_remove(q, Q_QUEUE, id), 0);
	ck_assert(!exists("queue", id));
	snprintf(name, sizeof(name), "%s.state", id);
	ck_assert(!exists("queue", name));
	ck_assert_int_eq(queue_remove(q, Q_QUEUE, id), -1);
	ck_assert_int_eq(errno, ENOENT);

	/* Crash between the two unlinks: content gone, state left. */
	ck_assert_int_eq(queue_read(q, Q_QUEUE, id2, &env, err, sizeof(err)), 0);
	ck_assert_int_eq(queue_update_state(q, env, err, sizeof(err)), 0);
	q_envelope_free(env);
	ck_assert_int_eq(unlink(path_of("queue", id2)), 0);
	snprintf(name, sizeof(name), "%s.state", id2);
	ck_assert(exists("queue", name));
	ck_assert_int_eq(queue_scan(q, Q_QUEUE, &ids, 3600), 0);
	free(ids);
	ck_assert(!exists("queue", name));
	queue_close(q);
}
END_TEST

START_TEST(test_lock)
{
	struct queue *q = open_spool();
	char id[QID_SIZE];
	int fd, fd2, status;
	pid_t pid;

	enqueue_simple(q, Q_QUEUE, id);
	fd = queue_lock(q, id);
	ck_assert_int_ge(fd, 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		struct queue *cq = queue_open(spool, false, NULL, 0);
		int cfd = cq ? queue_lock(cq, id) : -1;
		int rc = cfd < 0 && errno == EWOULDBLOCK ? 0 : 1;
		queue_close(cq);
		queue_close(q);
		_exit(rc);
	}
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	/* flock belongs to the open file description: a second open conflicts too. */
	ck_assert_int_eq(queue_lock(q, id), -1);
	ck_assert_int_eq(errno, EWOULDBLOCK);
	close(fd);
	fd2 = queue_lock(q, id);
	ck_assert_int_ge(fd2, 0);
	/* The holder removes the message: the next locker learns it is gone. */
	ck_assert_int_eq(queue_remove(q, Q_QUEUE, id), 0);
	close(fd2);
	ck_assert_int_eq(queue_lock(q, id), -1);
	ck_assert_int_eq(errno, ENOENT);
	queue_close(q);
}
END_TEST

START_TEST(test_pickup)
{
	struct queue *q = open_spool();
	struct q_envelope *md, *qd;
	char id[QID_SIZE], err[512], (*ids)[QID_SIZE], *data;
	size_t len;

	enqueue_simple(q, Q_MAILDROP, id);
	ck_assert_int_eq(queue_read(q, Q_MAILDROP, id, &md, err, sizeof(err)), 0);
	ck_assert_msg(queue_pickup(q, id, err, sizeof(err)) == 0, "%s", err);
	ck_assert(!exists("maildrop", id));
	ck_assert(exists("queue", id));
	ck_assert_int_eq(queue_read(q, Q_QUEUE, id, &qd, err, sizeof(err)), 0);
	assert_env_eq(md, qd);
	data = read_content(q, Q_QUEUE, qd, &len);
	ck_assert_uint_eq(len, 21);
	ck_assert_mem_eq(data, "Subject: hi\r\n\r\nbody\r\n", 21);
	free(data);
	q_envelope_free(md);
	q_envelope_free(qd);
	/* A second pickup of the same id is harmless. */
	ck_assert_int_eq(queue_pickup(q, id, err, sizeof(err)), 0);
	ck_assert_int_eq(queue_scan(q, Q_QUEUE, &ids, 3600), 1);
	free(ids);
	ck_assert_int_eq(queue_scan(q, Q_MAILDROP, &ids, 3600), 0);
	free(ids);
	queue_close(q);
}
END_TEST

START_TEST(test_pickup_crash_and_bad)
{
	struct queue *q = open_spool();
	char id[QID_SIZE], bad[QID_SIZE], err[512];
	struct stat st1, st2;

	/* Crash after commit, before the maildrop unlink: both copies exist. */
	enqueue_simple(q, Q_MAILDROP, id);
	{
		char *data;
		size_t len;
		ck_assert_int_eq(fs_read_file(path_of("maildrop", id), 1 << 20, &data, &len), 0);
		write_file(path_of("queue", id), data, len);
		free(data);
	}
	ck_assert_int_eq(stat(path_of("queue", id), &st1), 0);
	ck_assert_int_eq(queue_pickup(q, id, err, sizeof(err)), 0);
	ck_assert(!exists("maildrop", id));
	ck_assert_int_eq(stat(path_of("queue", id), &st2), 0);
	ck_assert_int_eq(st1.st_ino, st2.st_ino);	/* queued copy untouched */

	/* A corrupt maildrop file is quarantined, never queued. */
	enqueue_simple(q, Q_MAILDROP, bad);
	patch_file(path_of("maildrop", bad), "data\n", "dat\n\n");
	ck_assert_int_eq(queue_pickup(q, bad, err, sizeof(err)), -1);
	ck_assert_int_eq(errno, EBADMSG);
	ck_assert(!exists("maildrop", bad));
	ck_assert(!exists("queue", bad));
	ck_assert(exists("corrupt", bad));

	/* A symlink planted in maildrop is not followed. */
	queue_new_id(bad);
	ck_assert_int_eq(symlink(path_of("queue", id), path_of("maildrop", bad)), 0);
	ck_assert_int_eq(queue_pickup(q, bad, err, sizeof(err)), -1);
	ck_assert_int_eq(errno, EBADMSG);
	ck_assert(!exists("queue", bad));
	ck_assert(exists("corrupt", bad));

	/* A hard link to someone else's file is refused too. */
	queue_new_id(bad);
	ck_assert_int_eq(link(path_of("queue", id), path_of("maildrop", bad)), 0);
	ck_assert_int_eq(queue_pickup(q, bad, err, sizeof(err)), -1);
	ck_assert_int_eq(errno, EBADMSG);
	ck_assert(!exists("queue", bad));
	queue_close(q);
}
END_TEST

/* Same id in maildrop and queue but different messages (a clock stepped
 * back): neither may be lost. */
START_TEST(test_pickup_id_clash)
{
	struct queue *q = open_spool();
	struct q_envelope *env = sample_env(), *got;
	char id[QID_SIZE], same[QID_SIZE], err[512], (*ids)[QID_SIZE], *data;
	size_t len;

	queue_new_id(same);
	strcpy(env->id, same);
	enqueue(q, Q_QUEUE, env, "first", 5, id);
	strcpy(env->id, same);
	enqueue(q, Q_MAILDROP, env, "second!", 7, id);
	ck_assert_int_eq(queue_pickup(q, same, err, sizeof(err)), 0);
	ck_assert(!exists("maildrop", same));
	ck_assert_int_eq(queue_scan(q, Q_QUEUE, &ids, 3600), 2);
	for (int i = 0; i < 2; i++) {
		ck_assert_int_eq(queue_read(q, Q_QUEUE, ids[i], &got, err, sizeof(err)), 0);
		const char *want = strcmp(ids[i], same) == 0 ? "first" : "second!";
		data = read_content(q, Q_QUEUE, got, &len);
		ck_assert_uint_eq(len, strlen(want));
		ck_assert_mem_eq(data, want, len);
		free(data);
		q_envelope_free(got);
	}
	free(ids);
	queue_close(q);
}
END_TEST

START_TEST(test_pickup_uid_is_owner)
{
	struct queue *q = open_spool();
	struct q_envelope *env = sample_env(), *got;
	char id[QID_SIZE], err[512];

	env->id[0] = '\0';
	env->uid = (long)getuid() + 4242;
	enqueue(q, Q_MAILDROP, env, "x", 1, id);
	ck_assert_int_eq(queue_pickup(q, id, err, sizeof(err)), 0);
	ck_assert_int_eq(queue_read(q, Q_QUEUE, id, &got, err, sizeof(err)), 0);
	ck_assert_int_eq(got->uid, (long)getuid());
	q_envelope_free(got);
	queue_close(q);
}
END_TEST

/* Child: with RLIMIT_FSIZE the kernel answers EFBIG like a full disk would
 * answer ENOSPC; the writer must fail cleanly and leave nothing visible. */
static int efbig_child(void)
{
	struct rlimit rl = { 256 << 10, 256 << 10 };
	struct queue *q = queue_open(spool, false, NULL, 0);
	struct q_envelope *env = sample_env();
	static char chunk[100000];
	char err[512] = "";
	struct qwriter *w;
	int failed = 0, rc = 0;

	signal(SIGXFSZ, SIG_IGN);
	if (!q || setrlimit(RLIMIT_FSIZE, &rl) < 0) {
		queue_close(q);
		return 10;
	}
	env->id[0] = '\0';
	if (!(w = qwriter_open(q, Q_MAILDROP, env, err, sizeof(err)))) {
		queue_close(q);
		return 11;
	}
	for (int i = 0; i < 10 && !failed; i++)
		failed = qwriter_write(w, chunk, sizeof(chunk)) < 0;
	if (failed && errno != EFBIG)
		rc = 12;
	if (qwriter_commit(w, err, sizeof(err)) == 0 || errno != EFBIG)
		rc = rc ? rc : 13;
	else if (!strstr(err, spool) || !strstr(err, "tmp."))
		rc = 14;
	queue_close(q);
	return rc;
}

START_TEST(test_efbig)
{
	struct queue *q = open_spool();
	char (*ids)[QID_SIZE];
	int status;
	pid_t pid = fork();
	DIR *d;
	struct dirent *de;
	int files = 0;

	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		queue_close(q);
		_exit(efbig_child());
	}
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %d", status);
	ck_assert_int_eq(queue_scan(q, Q_MAILDROP, &ids, 0), 0);
	free(ids);
	d = opendir(path_of("maildrop", NULL));
	while ((de = readdir(d)))
		files += de->d_name[0] != '.';
	closedir(d);
	ck_assert_int_eq(files, 0);	/* not even a tmp file */
	queue_close(q);
}
END_TEST

/* ---- asynchronous writers (the listener's big messages) ---- */

static unsigned char *pattern(size_t len, uint32_t x)
{
	unsigned char *p = malloc(len);

	ck_assert_ptr_nonnull(p);
	for (size_t i = 0; i < len; i++) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		p[i] = (unsigned char)x;
	}
	return p;
}

static struct qwriter *async_writer(struct queue *q, struct q_envelope *env)
{
	char err[512];
	struct qwriter *w;

	env->id[0] = '\0';
	w = qwriter_open(q, Q_QUEUE, env, err, sizeof(err));
	ck_assert_msg(w != NULL, "%s", err);
	ck_assert_int_eq(qwriter_set_async(w), 0);
	return w;
}

static void check_committed(struct queue *q, const char *id, const unsigned char *content,
    size_t len)
{
	struct q_envelope *got;
	char err[512], *data;
	size_t n;

	ck_assert_msg(queue_read(q, Q_QUEUE, id, &got, err, sizeof(err)) == 0, "%s", err);
	ck_assert_uint_eq(got->size, len);
	ck_assert(got->eightbit);
	data = read_content(q, Q_QUEUE, got, &n);
	ck_assert_uint_eq(n, len);
	ck_assert(memcmp(data, content, len) == 0);
	free(data);
	q_envelope_free(got);
}

/* Full buffers wait as chunks, untouched by the writing thread; a spill
 * writes them in order, the commit writes the rest. */
START_TEST(test_async_chunks)
{
	struct queue *q = open_spool();
	struct q_envelope *env = sample_env();
	size_t len = 700u << 10, off = 0, step = 1;
	unsigned char *content = pattern(len, 88172645u);
	struct qwriter *w = async_writer(q, env);
	char err[512], id[QID_SIZE];

	env->eightbit = false;	/* set at the end: patched in the file, not the buffer */
	while (off < 300u << 10) {
		size_t n = step < len - off ? step : len - off;

		ck_assert_int_eq(qwriter_write(w, content + off, n), 0);
		off += n;
		step = step * 5 + 3;
		if (step > 200000)
			step = 1;
	}
	/* Header + 300 KiB: four full buffers, and not a file yet. */
	ck_assert_uint_eq(qwriter_queued(w), off / (64u << 10));
	ck_assert_int_eq(count_files("queue", ""), 0);
	ck_assert_int_eq(qwriter_spill(w), 0);
	ck_assert_uint_eq(qwriter_queued(w), 0);
	ck_assert_int_eq(count_files("queue", "tmp."), 1);
	ck_assert_int_eq(qwriter_spill(w), 0);	/* nothing queued: nothing to do */
	ck_assert_int_eq(qwriter_write(w, content + off, len - off), 0);
	ck_assert_uint_ge(qwriter_queued(w), 5);	/* 400 KiB more */
	qwriter_set_eightbit(w, true);
	strcpy(id, qwriter_id(w));
	ck_assert_msg(qwriter_commit(w, err, sizeof(err)) == 0, "%s", err);
	ck_assert_int_eq(count_files("queue", "tmp."), 0);
	check_committed(q, id, content, len);
	free(content);
	queue_close(q);
}
END_TEST

/* Committed with every chunk still queued (no spill ran): the commit
 * writes them before it fixes the header's fields in the file. */
START_TEST(test_async_commit_without_spill)
{
	struct queue *q = open_spool();
	struct q_envelope *env = sample_env();
	size_t len = 200u << 10;
	unsigned char *content = pattern(len, 1234567u);
	struct qwriter *w = async_writer(q, env);
	char err[512], id[QID_SIZE];

	ck_assert_int_eq(qwriter_write(w, content, len), 0);
	ck_assert_uint_eq(qwriter_queued(w), 3);
	ck_assert_int_eq(count_files("queue", ""), 0);
	strcpy(id, qwriter_id(w));
	ck_assert_msg(qwriter_commit(w, err, sizeof(err)) == 0, "%s", err);
	check_committed(q, id, content, len);
	free(content);
	queue_close(q);
}
END_TEST

START_TEST(test_async_only_fresh_queue_writers)
{
	struct queue *q = open_spool();
	struct q_envelope *env = sample_env();
	static char big[100000];
	char err[512];
	struct qwriter *w;

	env->id[0] = '\0';
	w = qwriter_open(q, Q_MAILDROP, env, err, sizeof(err));
	ck_assert_ptr_nonnull(w);
	errno = 0;
	ck_assert_int_eq(qwriter_set_async(w), -1);	/* a front end's file exists at once */
	ck_assert_int_eq(errno, EINVAL);
	ck_assert_uint_eq(qwriter_queued(w), 0);
	qwriter_abort(w);
	env->id[0] = '\0';
	w = qwriter_open(q, Q_QUEUE, env, err, sizeof(err));
	ck_assert_int_eq(qwriter_write(w, big, sizeof(big)), 0);	/* written synchronously */
	ck_assert_int_eq(qwriter_set_async(w), -1);
	qwriter_abort(w);
	w = async_writer(q, env);
	ck_assert_int_eq(qwriter_set_async(w), -1);	/* once */
	qwriter_abort(w);
	ck_assert_int_eq(count_files("queue", ""), 0);
	queue_close(q);
}
END_TEST

/* Child: a spill that hits the file size limit (as a full disk would). */
static int async_efbig_child(void)
{
	struct rlimit rl = { 256 << 10, 256 << 10 };
	struct queue *q = queue_open(spool, false, NULL, 0);
	struct q_envelope *env = sample_env();
	static char chunk[100000];
	char err[512] = "";
	struct qwriter *w;
	int i;

	signal(SIGXFSZ, SIG_IGN);
	if (!q || setrlimit(RLIMIT_FSIZE, &rl) < 0)
		return 10;
	env->id[0] = '\0';
	if (!(w = qwriter_open(q, Q_QUEUE, env, err, sizeof(err))) || qwriter_set_async(w) < 0)
		return 11;
	for (i = 0; i < 4; i++)		/* 400 KB queued: the limit is 256 KiB */
		if (qwriter_write(w, chunk, sizeof(chunk)) < 0)
			return 12;
	if (qwriter_spill(w) == 0 || errno != EFBIG)
		return 13;
	if (qwriter_queued(w) != 0)
		return 14;	/* the rest is dropped: the message failed */
	/* The next full buffer reports it, like a failed write(). */
	for (i = 0; i < 2 && qwriter_write(w, chunk, sizeof(chunk)) == 0; i++)
		;
	if (i == 2 || errno != EFBIG)
		return 15;
	if (qwriter_commit(w, err, sizeof(err)) == 0 || errno != EFBIG)
		return 16;
	queue_close(q);
	return 0;
}

START_TEST(test_async_error_sticks)
{
	struct queue *q = open_spool();
	int status;
	pid_t pid = fork();

	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		queue_close(q);
		_exit(async_efbig_child());
	}
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %d", status);
	ck_assert_int_eq(count_files("queue", ""), 0);	/* not even a tmp file */
	queue_close(q);
}
END_TEST

struct spiller {
	struct qwriter *w;
	volatile int stop;	/* set after the last write; read after a spill */
	unsigned spills;
	int error;
};

static void *spiller_run(void *arg)
{
	struct spiller *sp = arg;

	for (;;) {
		int stop = __atomic_load_n(&sp->stop, __ATOMIC_ACQUIRE);

		if (qwriter_spill(sp->w) < 0)
			sp->error = errno;
		sp->spills++;
		if (stop)
			return NULL;
		sched_yield();
	}
}

/* One thread writes while another spills, as the listener and a commit
 * worker do (run under the sanitizers by tools/check-sanitizers). */
START_TEST(test_async_concurrent_spill)
{
	struct queue *q = open_spool();
	struct q_envelope *env = sample_env();
	size_t len = 6u << 20, off = 0, step = 7;
	unsigned char *content = pattern(len, 2463534242u);
	struct spiller sp = { .w = async_writer(q, env) };
	char err[512], id[QID_SIZE];
	pthread_t t;

	ck_assert_int_eq(pthread_create(&t, NULL, spiller_run, &sp), 0);
	while (off < len) {
		size_t n = step < len - off ? step : len - off;

		ck_assert_int_eq(qwriter_write(sp.w, content + off, n), 0);
		off += n;
		step = step * 3 + 1;
		if (step > 150000)
			step = 7;
	}
	__atomic_store_n(&sp.stop, 1, __ATOMIC_RELEASE);
	ck_assert_int_eq(pthread_join(t, NULL), 0);
	ck_assert_int_eq(sp.error, 0);
	ck_assert_uint_gt(sp.spills, 1);
	qwriter_set_eightbit(sp.w, true);
	strcpy(id, qwriter_id(sp.w));
	ck_assert_msg(qwriter_commit(sp.w, err, sizeof(err)) == 0, "%s", err);
	check_committed(q, id, content, len);
	free(content);
	queue_close(q);
}
END_TEST

START_TEST(test_open_errors)
{
	char err[512], path[256];
	struct queue *q;
	struct stat st;
	FILE *f;

	q = queue_open(spool, false, err, sizeof(err));
	ck_assert_ptr_null(q);
	ck_assert_ptr_nonnull(strstr(err, spool));
	ck_assert_ptr_nonnull(strstr(err, "No such file"));

	q = open_spool();
	queue_close(q);
	ck_assert_int_eq(stat(path_of("maildrop", NULL), &st), 0);
	ck_assert_int_eq(st.st_mode & 07777, 03770);
	ck_assert_int_eq(stat(path_of("queue", NULL), &st), 0);
	ck_assert_int_eq(st.st_mode & 07777, 0700);
	ck_assert_int_eq(stat(path_of("corrupt", NULL), &st), 0);
	ck_assert_int_eq(st.st_mode & 07777, 0700);
	ck_assert_int_eq(stat(path_of("public", NULL), &st), 0);
	ck_assert_int_eq(st.st_mode & 07777, 0755);
	/* Existing directories keep their modes. */
	ck_assert_int_eq(chmod(path_of("queue", NULL), 0750), 0);
	q = open_spool();
	queue_close(q);
	ck_assert_int_eq(stat(path_of("queue", NULL), &st), 0);
	ck_assert_int_eq(st.st_mode & 07777, 0750);
	q = queue_open(spool, false, err, sizeof(err));
	ck_assert_ptr_nonnull(q);
	ck_assert_str_eq(queue_path(q), spool);
	queue_close(q);

	/* A file where a directory belongs. */
	ck_assert_int_eq(rmdir(path_of("public", NULL)), 0);
	f = fopen(path_of("public", NULL), "w");
	fclose(f);
	ck_assert_ptr_null(queue_open(spool, true, err, sizeof(err)));
	snprintf(path, sizeof(path), "%s/public", spool);
	ck_assert_ptr_nonnull(strstr(err, path));
	ck_assert_ptr_nonnull(strstr(err, "Not a directory"));
	ck_assert_int_eq(rmdir(path_of("maildrop", NULL)), 0);
	ck_assert_ptr_null(queue_open(spool, false, err, sizeof(err)));
	ck_assert_ptr_nonnull(strstr(err, "maildrop"));
}
END_TEST

/* ---- robustness: random damage must give EBADMSG, never a crash ---- */

static uint64_t rng_state = 0x9E3779B97F4A7C15u;

static uint64_t rng(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

static size_t mutate(char *d, size_t len, size_t cap)
{
	static const char pool[] = "\n %0123456789-abcdefrcpt\0\xff";
	int n = 1 + (int)(rng() % 4);

	for (int k = 0; k < n; k++) {
		size_t at = len ? rng() % len : 0;
		switch (rng() % 6) {
		case 0:	/* flip a byte */
			if (len)
				d[at] = (char)rng();
			break;
		case 1:	/* plausible character */
			if (len)
				d[at] = pool[rng() % (sizeof(pool) - 1)];
			break;
		case 2:	/* truncate */
			len = at;
			break;
		case 3:	/* delete a byte */
			if (len) {
				memmove(d + at, d + at + 1, len - at - 1);
				len--;
			}
			break;
		case 4:	/* insert a byte */
			if (len < cap) {
				memmove(d + at + 1, d + at, len - at);
				d[at] = pool[rng() % (sizeof(pool) - 1)];
				len++;
			}
			break;
		default:	/* duplicate a chunk */
			if (len && len + 40 <= cap) {
				char chunk[40];
				size_t n2 = rng() % 40, from = rng() % len;
				if (from + n2 > len)
					n2 = len - from;
				memcpy(chunk, d + from, n2);
				memmove(d + at + n2, d + at, len - at);
				memcpy(d + at, chunk, n2);
				len += n2;
			}
			break;
		}
	}
	return len;
}

static int fuzz_one(struct queue *q, const char *path, const char *orig, size_t olen,
    const char *id)
{
	char buf[8192], err[256];
	struct q_envelope *env = NULL;
	size_t len;
	int r;

	ck_assert_uint_le(olen, sizeof(buf) / 2);
	memcpy(buf, orig, olen);
	len = mutate(buf, olen, sizeof(buf));
	write_file(path, buf, len);
	errno = 0;
	r = queue_read(q, Q_QUEUE, id, &env, err, sizeof(err));
	if (r == 0) {
		ck_assert_ptr_nonnull(env);
		ck_assert(env->nrcpts >= 1);
		q_envelope_free(env);
		return 1;
	}
	ck_assert_msg(errno == EBADMSG, "errno %d (%s) for a damaged file", errno, err);
	return 0;
}

START_TEST(test_fuzz)
{
	struct queue *q = open_spool();
	struct q_envelope *env;
	char id[QID_SIZE], err[512], state[64], *content, *stdata;
	size_t clen, slen;
	int ok = 0, iters = getenv("QUEUE_FUZZ_ITERS") ? atoi(getenv("QUEUE_FUZZ_ITERS")) : 3000;

	enqueue_simple(q, Q_QUEUE, id);
	ck_assert_int_eq(queue_read(q, Q_QUEUE, id, &env, err, sizeof(err)), 0);
	env->rcpts[1].state = Q_DEFERRED;
	env->rcpts[1].last_reason = strdup("421 busy");
	ck_assert_int_eq(queue_update_state(q, env, err, sizeof(err)), 0);
	q_envelope_free(env);
	snprintf(state, sizeof(state), "%s.state", id);
	ck_assert_int_eq(fs_read_file(path_of("queue", id), 1 << 20, &content, &clen), 0);
	ck_assert_int_eq(fs_read_file(path_of("queue", state), 1 << 20, &stdata, &slen), 0);

	for (int i = 0; i < iters; i++)
		ok += fuzz_one(q, path_of("queue", id), content, clen, id);
	write_file(path_of("queue", id), content, clen);
	for (int i = 0; i < iters; i++)
		ok += fuzz_one(q, path_of("queue", state), stdata, slen, id);
	/* Some mutations are harmless (content bytes, reason text): both paths ran. */
	ck_assert_int_gt(ok, 0);
	ck_assert_int_lt(ok, 2 * iters);
	free(content);
	free(stdata);
	queue_close(q);
}
END_TEST

START_TEST(test_many_rcpts_and_limits)
{
	struct queue *q = open_spool();
	struct q_envelope *env = sample_env(), *got;
	size_t n = 5000;	/* a header larger than the 64 KiB write buffer */
	struct q_rcpt *r = calloc(n, sizeof(*r));
	char id[QID_SIZE], err[512], (*addrs)[32] = calloc(n, 32);

	for (size_t i = 0; i < n; i++) {
		snprintf(addrs[i], 32, "user%zu@example.com", i);
		r[i].addr = addrs[i];
	}
	env->id[0] = '\0';
	env->rcpts = r;
	env->nrcpts = n;
	enqueue(q, Q_QUEUE, env, "x", 1, id);
	ck_assert_int_eq(queue_read(q, Q_QUEUE, id, &got, err, sizeof(err)), 0);
	ck_assert_uint_eq(got->nrcpts, n);
	ck_assert_str_eq(got->rcpts[n - 1].addr, "user4999@example.com");
	q_envelope_free(got);
	/* Over the bound is refused at write time, so never read back. */
	env->id[0] = '\0';
	env->nrcpts = 100001;
	ck_assert_ptr_null(qwriter_open(q, Q_QUEUE, env, err, sizeof(err)));
	free(r);
	free(addrs);
	queue_close(q);
}
END_TEST

static Suite *queue_suite(void)
{
	Suite *s = suite_create("queue");
	TCase *tc = tcase_create("core");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_roundtrip);
	tcase_add_test(tc, test_big_content);
	tcase_add_test(tc, test_bad_envelope_rejected);
	tcase_add_test(tc, test_preset_id);
	tcase_add_test(tc, test_ids_sorted_unique);
	tcase_add_test(tc, test_ids_postfix_long_form);
	tcase_add_test(tc, test_concurrent_enqueue);
	tcase_add_test(tc, test_scan_order_and_junk);
	tcase_add_test(tc, test_state_update);
	tcase_add_test(tc, test_tmp_leftovers);
	tcase_add_test(tc, test_truncated);
	tcase_add_test(tc, test_corrupt_quarantine);
	tcase_add_test(tc, test_remove_and_orphan_state);
	tcase_add_test(tc, test_lock);
	tcase_add_test(tc, test_pickup);
	tcase_add_test(tc, test_pickup_crash_and_bad);
	tcase_add_test(tc, test_pickup_id_clash);
	tcase_add_test(tc, test_pickup_uid_is_owner);
	tcase_add_test(tc, test_efbig);
	tcase_add_test(tc, test_async_chunks);
	tcase_add_test(tc, test_async_commit_without_spill);
	tcase_add_test(tc, test_async_only_fresh_queue_writers);
	tcase_add_test(tc, test_async_error_sticks);
	tcase_add_test(tc, test_async_concurrent_spill);
	tcase_add_test(tc, test_open_errors);
	tcase_add_test(tc, test_fuzz);
	tcase_add_test(tc, test_many_rcpts_and_limits);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	log_init("check_queue", LOG_TARGET_STDERR, false);
	return ckrun(queue_suite());
}
