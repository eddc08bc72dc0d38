/* queue/rawsub.c: the record a front end without the configuration hands to
 * the daemon.  Whatever the writer writes the reader takes back unchanged;
 * anything else is refused (the reader is the daemon, the writer anyone). */
#include "config.h"
#include "queue/rawsub.h"
#include "tests/ckrun.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static FILE *rawsub_file(const char *data, size_t len)
{
	FILE *f = tmpfile();

	ck_assert_ptr_nonnull(f);
	ck_assert_uint_eq(fwrite(data, 1, len, f), len);
	rewind(f);
	return f;
}

START_TEST(test_round_trip)
{
	char *const rcpts[] = { "root", "J\xc3\xb6rg@example.com", "a%b@example.com" };
	char *const orcpts[] = { NULL, "rfc822;j@example.com", NULL };
	const unsigned notify[] = { 0, 6, 1 };
	struct submit_params in = {
		.sender = "", .rcpts = rcpts, .nrcpts = 3, .orcpts = orcpts, .notify_each = notify,
		.extract_rcpts = true, .from_stdin = true, .dot_ends = false, .eightbit = true,
		.ret = SMTP_RET_HDRS, .notify = 4, .full_name = "Jane Q. Public, 100%",
		.envid = "env-1", .origin = "sendmail -bs",
	};
	int fd = memfd_create("check", 0);
	char buf[4096], why[128], rest[16] = "";
	ssize_t n;
	struct rawsub *r;
	struct submit_params *p;
	FILE *f;

	ck_assert_int_eq(rawsub_write_header(fd, &in), 0);
	ck_assert_int_eq(write(fd, "body\n", 5), 5);
	ck_assert(rawsub_detect(fd));
	n = pread(fd, buf, sizeof(buf), 0);
	ck_assert_int_gt(n, 0);
	f = rawsub_file(buf, (size_t)n);
	r = rawsub_read_header(f, why, sizeof(why));
	ck_assert_msg(r != NULL, "%s", why);
	p = rawsub_params(r);
	ck_assert_str_eq(p->sender, "");
	ck_assert_str_eq(p->full_name, in.full_name);
	ck_assert_str_eq(p->envid, "env-1");
	ck_assert_str_eq(p->origin, "sendmail -bs");
	ck_assert(p->extract_rcpts && p->from_stdin && !p->dot_ends && p->eightbit && !p->smtputf8);
	ck_assert_int_eq(p->ret, SMTP_RET_HDRS);
	ck_assert_uint_eq(p->notify, 4);
	ck_assert_uint_eq(p->nrcpts, 3);
	for (size_t i = 0; i < 3; i++) {
		ck_assert_str_eq(p->rcpts[i], rcpts[i]);
		ck_assert_uint_eq(p->notify_each[i], notify[i]);
		if (orcpts[i])
			ck_assert_str_eq(p->orcpts[i], orcpts[i]);
		else
			ck_assert_ptr_null(p->orcpts[i]);
	}
	ck_assert_ptr_nonnull(fgets(rest, sizeof(rest), f));
	ck_assert_str_eq(rest, "body\n");
	rawsub_free(r);
	fclose(f);
	close(fd);
}
END_TEST

#define GOOD_OPTS "opts 0 1 1 0 0 0 0\n"
#define GOOD_TEXT "origin sendmail\nsender app\nfullname \nenvid \n"
#define GOOD_RCPT "rcpts 1\nrcpt 0 bob@example.com \n"

static const char *const bad_records[] = {
	"",
	"SMTPRELAY-SUBMIT 2\n" GOOD_OPTS GOOD_TEXT GOOD_RCPT "data\n",
	"SMTPRELAY-SUBMIT 1 \n" GOOD_OPTS GOOD_TEXT GOOD_RCPT "data\n",
	"SMTPRELAY-SUBMIT 1\nopts 0 1 1 0 0 0\n" GOOD_TEXT GOOD_RCPT "data\n",
	"SMTPRELAY-SUBMIT 1\nopts 0 1 1 0 0 0 0 \n" GOOD_TEXT GOOD_RCPT "data\n",
	"SMTPRELAY-SUBMIT 1\nopts 0 1 1 0 0 3 0\n" GOOD_TEXT GOOD_RCPT "data\n",
	"SMTPRELAY-SUBMIT 1\nopts -1 1 1 0 0 0 0\n" GOOD_TEXT GOOD_RCPT "data\n",
	"SMTPRELAY-SUBMIT 1\n" GOOD_OPTS "origin sendmail\nsender a b\nfullname \nenvid \n"
	    GOOD_RCPT "data\n",
	"SMTPRELAY-SUBMIT 1\n" GOOD_OPTS "origin sendmail\nsender a%0\nfullname \nenvid \n"
	    GOOD_RCPT "data\n",
	"SMTPRELAY-SUBMIT 1\n" GOOD_OPTS "origin sendmail\nsender a%0D\nfullname \nenvid \n"
	    GOOD_RCPT "data\n",
	"SMTPRELAY-SUBMIT 1\n" GOOD_OPTS "origin sendmail\nsender a%00\nfullname \nenvid \n"
	    GOOD_RCPT "data\n",
	"SMTPRELAY-SUBMIT 1\n" GOOD_OPTS "origin sendmail\nsender \xff\nfullname \nenvid \n"
	    GOOD_RCPT "data\n",
	"SMTPRELAY-SUBMIT 1\n" GOOD_OPTS "sender app\norigin sendmail\nfullname \nenvid \n"
	    GOOD_RCPT "data\n",
	"SMTPRELAY-SUBMIT 1\n" GOOD_OPTS GOOD_TEXT "rcpts 1\nrcpt 16 bob@example.com \ndata\n",
	"SMTPRELAY-SUBMIT 1\n" GOOD_OPTS GOOD_TEXT "rcpts 1\nrcpt 0  \ndata\n",
	"SMTPRELAY-SUBMIT 1\n" GOOD_OPTS GOOD_TEXT "rcpts 1\nrcpt 0 a b c\ndata\n",
	"SMTPRELAY-SUBMIT 1\n" GOOD_OPTS GOOD_TEXT "rcpts 2\nrcpt 0 bob@example.com \ndata\n",
	"SMTPRELAY-SUBMIT 1\n" GOOD_OPTS GOOD_TEXT "rcpts 100001\n",
	"SMTPRELAY-SUBMIT 1\n" GOOD_OPTS GOOD_TEXT GOOD_RCPT "data",
	"SMTPRELAY-SUBMIT 1\n" GOOD_OPTS GOOD_TEXT GOOD_RCPT,
	"SMTPRELAY-SUBMIT 1\n" GOOD_OPTS "origin sendmail\nsender app\nfullname \nenvid a%20b\n"
	    GOOD_RCPT "data\n",
	"SMTPRELAY-SUBMIT 1\n" GOOD_OPTS "origin sendmail%0A\nsender app\nfullname \nenvid \n"
	    GOOD_RCPT "data\n",
	"SMTPRELAY-SUBMIT 1\n" GOOD_OPTS "origin smtp\nsender app\nfullname \nenvid \n"
	    GOOD_RCPT "data\n",
	"SMTPRELAY-SUBMIT 1\n" GOOD_OPTS "origin sendmail\nsender a>b\nfullname \nenvid \n"
	    GOOD_RCPT "data\n",
	"SMTPRELAY-SUBMIT 1\n" GOOD_OPTS "origin sendmail\nsender app\nfullname A%0D%0AB\n"
	    "envid \n" GOOD_RCPT "data\n",
	"SMTPRELAY-SUBMIT 1\n" GOOD_OPTS GOOD_TEXT "rcpts 1\nrcpt 0 bob@example.com "
	    "rfc822;b%0D%0ARSET\ndata\n",
	"SMTPRELAY-SUBMIT 1\n" GOOD_OPTS GOOD_TEXT "rcpts 1\nrcpt 0 bob@example.com "
	    "rfc822;a%20b\ndata\n",
	"SMTPRELAY-SUBMIT 1\n" GOOD_OPTS GOOD_TEXT "rcpts 1\nrcpt 0 bob@example.com b@c\ndata\n",
	"SMTPRELAY-SUBMIT 1\n" GOOD_OPTS GOOD_TEXT "rcpts 1\nrcpt 0 bob@example.com rfc822;\ndata\n",
};

START_TEST(test_bad_records)
{
	const char *rec = bad_records[_i];
	char why[128] = "";
	FILE *f = rawsub_file(rec, strlen(rec));
	struct rawsub *r = rawsub_read_header(f, why, sizeof(why));

	ck_assert_msg(r == NULL, "accepted bad record %d", _i);
	ck_assert_msg(strstr(why, "SMTPRELAY-SUBMIT") != NULL, "%d: %s", _i, why);
	fclose(f);
}
END_TEST

START_TEST(test_good_minimal)
{
	static const char rec[] = "SMTPRELAY-SUBMIT 1\n" GOOD_OPTS GOOD_TEXT GOOD_RCPT "data\n";
	char why[128];
	FILE *f = rawsub_file(rec, sizeof(rec) - 1);
	struct rawsub *r = rawsub_read_header(f, why, sizeof(why));

	ck_assert_msg(r != NULL, "%s", why);
	ck_assert_ptr_null(rawsub_params(r)->full_name);
	ck_assert_ptr_null(rawsub_params(r)->envid);
	rawsub_free(r);
	fclose(f);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("rawsub");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, test_round_trip);
	tcase_add_test(tc, test_good_minimal);
	tcase_add_loop_test(tc, test_bad_records, 0, sizeof(bad_records) / sizeof(bad_records[0]));
	suite_add_tcase(s, tc);
	return ckrun(s);
}
