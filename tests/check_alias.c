#include "config.h"

#include <check.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "conf/conf.h"
#include "tests/ckutil.h"
#include "lib/log.h"
#include "tests/ckrun.h"

static char tmpdir[64];
static char conf_path[128];
static char aliases_path[128];

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st; (void)flag; (void)ftw;
	return remove(path);
}

static void setup(void)
{
	strcpy(tmpdir, "/tmp/check_alias.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(tmpdir));
	snprintf(conf_path, sizeof(conf_path), "%s/smtprelay.conf", tmpdir);
	snprintf(aliases_path, sizeof(aliases_path), "%s/aliases", tmpdir);
	log_init("check_alias", LOG_TARGET_STDERR, false);
}

static void teardown(void)
{
	nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	ck_assert_ptr_nonnull(f);
	fputs(text, f);
	ck_assert_int_eq(fclose(f), 0);
}

static struct config *load_ok(const char *text)
{
	char *errors = NULL;
	struct config *c;

	write_file(conf_path, text);
	c = conf_load(conf_path, &errors);
	ck_assert_msg(c != NULL, "errors: %s", errors ? errors : "");
	return c;
}

static char log_path[160];

static void capture_start(void)
{
	snprintf(log_path, sizeof(log_path), "%s/stderr.log", tmpdir);
	ckutil_capture_start(log_path);
}

static char *capture_stop(void)
{
	return ckutil_capture_stop(log_path);
}

/* Resolve addr and compare with the expected comma-joined list. */
static void assert_resolves(const struct config *c, const char *addr, const char *want)
{
	char err[256] = "", got[2048] = "";
	struct strv out = { 0 };
	int n = conf_resolve(c, addr, &out, err, sizeof(err));

	ck_assert_msg(n >= 0, "resolving %s failed: %s", addr, err);
	for (int i = 0; i < n; i++) {
		if (i)
			strcat(got, ", ");
		strncat(got, out.v[i], sizeof(got) - strlen(got) - 3);
	}
	strv_free(&out);
	ck_assert_str_eq(got, want);
}

static const struct conf_alias *find(const struct config *c, const char *name)
{
	const struct conf_alias *a = conf_alias_find(c, name);

	ck_assert_msg(a != NULL, "no alias %s", name);
	return a;
}

START_TEST(test_block)
{
	struct config *c = load_ok(
		"hostname = \"vm1.example.com\"\n"
		"aliases {\n"
		"  Root = \"ops@example.com\"\n"
		"  \"www-data\" = \"web@example.com,  dev@example.com ,admin\"\n"
		"  'single' = \"x@example.com\"\n"
		"}\n");
	const struct conf_alias *a;

	ck_assert_uint_eq(c->naliases, 3);
	a = find(c, "root");
	ck_assert_str_eq(a->name, "root");
	ck_assert(a->from_block);
	ck_assert_uint_eq(a->ntargets, 1);
	ck_assert_str_eq(a->targets[0], "ops@example.com");
	a = find(c, "WWW-DATA");
	ck_assert_uint_eq(a->ntargets, 3);
	ck_assert_str_eq(a->targets[0], "web@example.com");
	ck_assert_str_eq(a->targets[1], "dev@example.com");
	ck_assert_str_eq(a->targets[2], "admin");
	find(c, "single");
	ck_assert_ptr_null(conf_alias_find(c, "nobody"));
	conf_free(c);
}
END_TEST

static const char aliases_file_text[] =
	"# /etc/aliases\n"				/* 1 */
	"\n"
	"postmaster: root\n"				/* 3 */
	"root: ops@example.com,\n"			/* 4 */
	"\tdev@example.com\n"				/* 5: continuation */
	"  # an indented comment\n"
	"\"quoted name\": q@example.com\n"		/* 7 */
	"pipe: |/usr/bin/procmail, p@example.com\n"	/* 8 */
	"file: /var/mail/file\n"			/* 9 */
	"inc: :include:/etc/list\n"			/* 10 */
	"qpipe: \"|/bin/cat\"\n"			/* 11 */
	"bad: not an address\n"				/* 12 */
	"no colon here\n"				/* 13 */
	"postmaster: other@example.com\n"		/* 14: duplicate */
	"www: file@example.com\n"			/* 15: the block wins */
	"MixedCase: m@example.com\n";

START_TEST(test_aliases_file)
{
	char text[512], *log;
	struct config *c;
	const struct conf_alias *a;

	write_file(aliases_path, aliases_file_text);
	snprintf(text, sizeof(text), "hostname = vm1.example.com\naliases_file = \"%s\"\n"
	    "aliases { www = \"block@example.com\" }\n", aliases_path);
	capture_start();
	c = load_ok(text);
	log = capture_stop();

	a = find(c, "postmaster");
	ck_assert_uint_eq(a->ntargets, 1);
	ck_assert_str_eq(a->targets[0], "root");
	ck_assert(!a->from_block);
	a = find(c, "root");
	ck_assert_uint_eq(a->ntargets, 2);
	ck_assert_str_eq(a->targets[1], "dev@example.com");
	find(c, "quoted name");
	a = find(c, "pipe");
	ck_assert_uint_eq(a->ntargets, 1);
	ck_assert_str_eq(a->targets[0], "p@example.com");
	ck_assert_ptr_null(conf_alias_find(c, "file"));
	ck_assert_ptr_null(conf_alias_find(c, "inc"));
	ck_assert_ptr_null(conf_alias_find(c, "qpipe"));
	ck_assert_ptr_null(conf_alias_find(c, "bad"));
	a = find(c, "www");
	ck_assert(a->from_block);
	ck_assert_str_eq(a->targets[0], "block@example.com");
	ck_assert_str_eq(find(c, "mixedcase")->name, "mixedcase");

	/* Each skipped target is a warning naming FILE:LINE. */
	snprintf(text, sizeof(text), "%s:8: alias \"pipe\": ignoring command target", aliases_path);
	ck_assert_msg(strstr(log, text) != NULL, "log: %s", log);
	snprintf(text, sizeof(text), "%s:9: alias \"file\": ignoring file target", aliases_path);
	ck_assert_ptr_nonnull(strstr(log, text));
	snprintf(text, sizeof(text), "%s:10: alias \"inc\": ignoring :include: target", aliases_path);
	ck_assert_ptr_nonnull(strstr(log, text));
	snprintf(text, sizeof(text), "%s:11: alias \"qpipe\": ignoring command target", aliases_path);
	ck_assert_ptr_nonnull(strstr(log, text));
	snprintf(text, sizeof(text), "%s:12:", aliases_path);
	ck_assert_ptr_nonnull(strstr(log, text));
	snprintf(text, sizeof(text), "%s:13: ignoring line", aliases_path);
	ck_assert_ptr_nonnull(strstr(log, text));
	snprintf(text, sizeof(text), "%s:14: duplicate alias \"postmaster\"", aliases_path);
	ck_assert_ptr_nonnull(strstr(log, text));
	free(log);
	conf_free(c);
}
END_TEST

START_TEST(test_aliases_file_missing)
{
	char text[256], *errors = NULL;

	snprintf(text, sizeof(text), "# x\n\naliases_file = \"%s/none\"\n", tmpdir);
	write_file(conf_path, text);
	ck_assert_ptr_null(conf_load(conf_path, &errors));
	ck_assert_ptr_nonnull(errors);
	snprintf(text, sizeof(text), "%s:3: aliases_file: cannot read", conf_path);
	ck_assert_msg(strstr(errors, text) != NULL, "errors: %s", errors);
	free(errors);
}
END_TEST

START_TEST(test_resolve_basic)
{
	struct config *c = load_ok(
		"hostname = \"vm1.example.com\"\n"
		"aliases {\n"
		"  root = \"ops@example.com, dev@example.com\"\n"
		"  postmaster = root\n"
		"  abuse = \"postmaster, ops@example.com, security@example.com\"\n"
		"}\n");

	/* Non-local addresses pass unchanged. */
	assert_resolves(c, "someone@example.org", "someone@example.org");
	assert_resolves(c, "Root@Example.ORG", "Root@Example.ORG");
	/* Local forms: bare, @localhost, @localhost.localdomain, @hostname; any case. */
	assert_resolves(c, "root", "ops@example.com, dev@example.com");
	assert_resolves(c, "ROOT@localhost", "ops@example.com, dev@example.com");
	assert_resolves(c, "root@localhost.localdomain", "ops@example.com, dev@example.com");
	assert_resolves(c, "root@VM1.example.com", "ops@example.com, dev@example.com");
	/* Recursion, and duplicates removed in order. */
	assert_resolves(c, "postmaster", "ops@example.com, dev@example.com");
	assert_resolves(c, "abuse", "ops@example.com, dev@example.com, security@example.com");
	/* No alias, no admin_address: qualified with hostname. */
	assert_resolves(c, "fred", "fred@vm1.example.com");
	assert_resolves(c, "fred@localhost", "fred@vm1.example.com");
	conf_free(c);
}
END_TEST

START_TEST(test_resolve_admin_and_self)
{
	struct config *c = load_ok(
		"hostname = \"vm1.example.com\"\n"
		"admin_address = \"admin@example.com\"\n"
		"aliases {\n"
		"  root = \"root, ops@example.com\"\n"
		"  www = \"www@vm1.example.com\"\n"
		"  team = \"nobody, ADMIN@example.com\"\n"
		"}\n");

	assert_resolves(c, "fred", "admin@example.com");
	assert_resolves(c, "fred@vm1.example.com", "admin@example.com");
	/* A name aliased to itself is terminal: admin_address, no loop. */
	assert_resolves(c, "root", "admin@example.com, ops@example.com");
	assert_resolves(c, "www", "admin@example.com");
	/* nobody -> admin, and ADMIN@example.com is the same address. */
	assert_resolves(c, "team", "admin@example.com");
	conf_free(c);
}
END_TEST

START_TEST(test_resolve_loop)
{
	struct config *c = load_ok(
		"hostname = \"vm1.example.com\"\n"
		"aliases {\n"
		"  a = \"b\"\n"
		"  b = \"c@localhost, x@example.com\"\n"
		"  c = \"a\"\n"
		"  d = \"d1\"  d1 = \"d2\"  d2 = \"d3\"  d3 = \"d4\"  d4 = \"d5\"  d5 = \"d6\"\n"
		"  d6 = \"d7\"  d7 = \"d8\"  d8 = \"d9\"  d9 = \"d10\"  d10 = \"d11\"  d11 = \"end@example.com\"\n"
		"  e = \"d5\"\n"
		"}\n");
	char err[256] = "";
	struct strv out = { 0 };

	ck_assert_int_eq(conf_resolve(c, "a", &out, err, sizeof(err)), -1);
	ck_assert_ptr_null(out.v);
	ck_assert_str_eq(err, "alias loop: a -> b -> c -> a");
	ck_assert_int_eq(conf_resolve(c, "d", &out, err, sizeof(err)), -1);
	ck_assert_ptr_nonnull(strstr(err, "nested more than 10"));
	assert_resolves(c, "e", "end@example.com");
	/* A tiny err buffer is still NUL-terminated and not overrun. */
	memset(err, 'x', sizeof(err));
	ck_assert_int_eq(conf_resolve(c, "a", &out, err, 8), -1);
	ck_assert_uint_eq(strlen(err), 7);
	ck_assert_int_eq(err[8], 'x');
	ck_assert_int_eq(conf_resolve(c, "", &out, err, sizeof(err)), -1);
	conf_free(c);
}
END_TEST

START_TEST(test_rewrite_sender)
{
	struct config *c = load_ok("hostname = \"vm1.example.com\"\n");
	char *s;

	s = conf_rewrite_sender(c, "");
	ck_assert_str_eq(s, "");
	free(s);
	s = conf_rewrite_sender(c, "cron");
	ck_assert_str_eq(s, "cron@vm1.example.com");
	free(s);
	s = conf_rewrite_sender(c, "www-data@localhost");
	ck_assert_str_eq(s, "www-data@vm1.example.com");
	free(s);
	s = conf_rewrite_sender(c, "me@example.org");
	ck_assert_str_eq(s, "me@example.org");
	free(s);
	conf_free(c);

	c = load_ok("hostname = \"vm1.example.com\"\nfrom_address = \"alerts@example.com\"\n");
	s = conf_rewrite_sender(c, "root@vm1.example.com");
	ck_assert_str_eq(s, "alerts@example.com");
	free(s);
	s = conf_rewrite_sender(c, "me@example.org");
	ck_assert_str_eq(s, "me@example.org");
	free(s);
	s = conf_rewrite_sender(c, "");
	ck_assert_str_eq(s, "");
	free(s);
	conf_free(c);
}
END_TEST

START_TEST(test_split)
{
	char err[256];
	struct strv t = { 0 };

	ck_assert_int_eq(conf_alias_split(" a@b.example ,c, \"x y\"@d.example ", &t, err, sizeof(err)), 0);
	ck_assert_uint_eq(t.n, 3);
	ck_assert_str_eq(t.v[0], "a@b.example");
	ck_assert_str_eq(t.v[1], "c");
	ck_assert_str_eq(t.v[2], "\"x y\"@d.example");
	strv_free(&t);
	ck_assert_int_eq(conf_alias_split("", &t, err, sizeof(err)), -1);
	ck_assert_int_eq(conf_alias_split("a@b.example,", &t, err, sizeof(err)), -1);
	ck_assert_int_eq(conf_alias_split("a@@b", &t, err, sizeof(err)), -1);
	ck_assert_ptr_nonnull(strstr(err, "not a valid address"));
	ck_assert_int_eq(conf_alias_split(":include:/etc/x", &t, err, sizeof(err)), -1);
	ck_assert_ptr_nonnull(strstr(err, ":include: targets are not supported"));
	ck_assert_int_eq(conf_alias_split("/var/mail/x", &t, err, sizeof(err)), -1);
	ck_assert_ptr_nonnull(strstr(err, "file targets"));
}
END_TEST

static Suite *alias_suite(void)
{
	Suite *s = suite_create("alias");
	TCase *t = tcase_create("alias");

	tcase_add_checked_fixture(t, setup, teardown);
	tcase_add_test(t, test_block);
	tcase_add_test(t, test_aliases_file);
	tcase_add_test(t, test_aliases_file_missing);
	tcase_add_test(t, test_resolve_basic);
	tcase_add_test(t, test_resolve_admin_and_self);
	tcase_add_test(t, test_resolve_loop);
	tcase_add_test(t, test_rewrite_sender);
	tcase_add_test(t, test_split);
	suite_add_tcase(s, t);
	return s;
}

int main(void)
{
	return ckrun(alias_suite());
}
