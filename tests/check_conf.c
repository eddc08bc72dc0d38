#include "config.h"

#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "conf/conf.h"
#include "tests/ckutil.h"
#include "lib/log.h"
#include "tests/ckrun.h"

static char tmpdir[64];
static char conf_path[128];

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st; (void)flag; (void)ftw;
	return remove(path);
}

static void setup(void)
{
	strcpy(tmpdir, "/tmp/check_conf.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(tmpdir));
	snprintf(conf_path, sizeof(conf_path), "%s/smtprelay.conf", tmpdir);
	unsetenv("CREDENTIALS_DIRECTORY");
	unsetenv("SMTPRELAY_CONF");
	log_init("check_conf", LOG_TARGET_STDERR, false);
}

static void teardown(void)
{
	nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static void write_file(const char *path, const char *text, mode_t mode)
{
	FILE *f = fopen(path, "w");

	ck_assert_ptr_nonnull(f);
	ck_assert_int_eq(fputs(text, f) >= 0, 1);
	ck_assert_int_eq(fclose(f), 0);
	ck_assert_int_eq(chmod(path, mode), 0);
}

static char *tmp_path(const char *name)
{
	static char buf[4][256];
	static int n;
	char *p = buf[n++ % 4];

	snprintf(p, sizeof(buf[0]), "%s/%s", tmpdir, name);
	return p;
}

/* Load text as the config; errors (if any) in *errors. */
static struct config *load(const char *text, char **errors)
{
	*errors = NULL;
	write_file(conf_path, text, 0640);
	return conf_load(conf_path, errors);
}

static struct config *load_ok(const char *text)
{
	char *errors = NULL;
	struct config *c = load(text, &errors);

	ck_assert_msg(c != NULL, "unexpected errors: %s", errors ? errors : "(none)");
	ck_assert_ptr_null(errors);
	return c;
}

/* The error for line must be reported as "PATH:LINE: ...needle..." */
static void assert_error_at(const char *errors, int line, const char *needle)
{
	char prefix[200];
	const char *p;

	ck_assert_ptr_nonnull(errors);
	snprintf(prefix, sizeof(prefix), "%s:%d: ", conf_path, line);
	p = strstr(errors, prefix);
	ck_assert_msg(p != NULL, "no error at line %d in:\n%s", line, errors);
	for (; p; p = strstr(p + 1, prefix)) {
		const char *eol = strchr(p, '\n');
		size_t len = eol ? (size_t)(eol - p) : strlen(p);
		char *one = strndup(p, len);
		bool found = strstr(one, needle) != NULL;
		free(one);
		if (found)
			return;
	}
	ck_abort_msg("line %d has no error containing \"%s\":\n%s", line, needle, errors);
}

static void assert_fails(const char *text, int line, const char *needle)
{
	char *errors = NULL;
	struct config *c = load(text, &errors);

	ck_assert_msg(c == NULL, "config unexpectedly valid:\n%s", text);
	assert_error_at(errors, line, needle);
	free(errors);
}

/* ---- log capture: stderr to a file ---- */


static void capture_start(void)
{
	ckutil_capture_start(tmp_path("stderr.log"));
}

static char *capture_stop(void)
{
	return ckutil_capture_stop(tmp_path("stderr.log"));
}

/* ---- defaults and every key ---- */

START_TEST(test_defaults)
{
	struct config *c = load_ok("# nothing but a comment\n");
	const struct sockaddr_in *v4;
	const struct sockaddr_in6 *v6;

	ck_assert_str_eq(c->path, conf_path);
	ck_assert_ptr_nonnull(c->hostname);
	ck_assert_int_gt(strlen(c->hostname), 0);
	ck_assert_uint_eq(c->nlisten, 2);
	ck_assert_str_eq(c->listen[0].spec, "127.0.0.1:25");
	v4 = (const struct sockaddr_in *)&c->listen[0].addr;
	ck_assert_int_eq(v4->sin_family, AF_INET);
	ck_assert_uint_eq(ntohs(v4->sin_port), 25);
	ck_assert_uint_eq(ntohl(v4->sin_addr.s_addr), 0x7f000001);
	ck_assert_str_eq(c->listen[1].spec, "[::1]:25");
	v6 = (const struct sockaddr_in6 *)&c->listen[1].addr;
	ck_assert_int_eq(v6->sin6_family, AF_INET6);
	ck_assert(IN6_IS_ADDR_LOOPBACK(&v6->sin6_addr));
	ck_assert_uint_eq(c->nallow, 2);
	ck_assert_int_eq(c->allow[0].family, AF_INET);
	ck_assert_uint_eq(c->allow[0].prefix, 8);
	ck_assert_int_eq(c->allow[1].family, AF_INET6);
	ck_assert_uint_eq(c->allow[1].prefix, 128);
	ck_assert_str_eq(c->spool_dir, SPOOLDIR);
	ck_assert_str_eq(c->user, SMTPRELAY_USER);
	ck_assert_uint_eq(c->smtpd_timeout, 300);
	ck_assert_uint_eq(c->max_message_size, 36700160);
	ck_assert_uint_eq(c->max_recipients, 1000);
	ck_assert_uint_eq(c->max_connections, 64);
	ck_assert_ptr_null(c->admin_address);
	ck_assert_ptr_null(c->from_address);
	ck_assert_ptr_null(c->aliases_file);
	ck_assert(!c->rewrite_from_header);
	ck_assert_uint_eq(c->retry_min, 300);
	ck_assert_uint_eq(c->retry_max, 3600);
	ck_assert_uint_eq(c->queue_lifetime, 432000);
	ck_assert_uint_eq(c->nsmarthosts, 0);
	ck_assert_uint_eq(c->naliases, 0);
	conf_free(c);
}
END_TEST

static const char full_config[] =
	"hostname = \"vm1.example.com\"\n"
	"listen = {\"127.0.0.1:2525\", \"[::1]:2526\", \"0.0.0.0:25\"}\n"
	"allow_networks = {\"10.0.0.0/8\", \"2001:db8::/32\", \"192.0.2.7\"}\n"
	"spool_dir = \"/var/tmp/spool\"\n"
	"user = \"mailrelay\"\n"
	"smtpd_timeout = 2m\n"
	"max_message_size = 10M\n"
	"max_recipients = 50\n"
	"max_connections = 8\n"
	"admin_address = \"ops@example.com\"\n"
	"from_address = \"alerts@example.com\"\n"
	"rewrite_from_header = true\n"
	"retry_min = 60\n"
	"retry_max = 2h\n"
	"queue_lifetime = 3d\n"
	"aliases { root = \"ops@example.com\" }\n"
	"smarthost \"primary\" {\n"
	"  host = \"email-smtp.eu-west-1.amazonaws.com\"\n"
	"  ports = {\"587\", \"465\", \"2525\", \"26/tls\", \"25/none\", \"2587/STARTTLS\"}\n"
	"  username = \"AKIAEXAMPLE\"\n"
	"  password = \"s3cret\"\n"
	"  auth = {\"PLAIN\", \"login\"}\n"
	"  tls_verify = false\n"
	"  tls_ca_file = \"/etc/ssl/private-ca.pem\"\n"
	"  tls_min_version = \"1.3\"\n"
	"  tls_fingerprint = \"sha256:00112233445566778899AABBCCDDEEFF00112233445566778899aabbccddeeff\"\n"
	"  connect_timeout = 10\n"
	"  command_timeout = 1m\n"
	"  max_connections = 2\n"
	"  max_messages_per_connection = 20\n"
	"  rate_limit = \"30/min\"\n"
	"}\n"
	"smarthost \"m365\" {\n"
	"  host = \"smtp.office365.com\"\n"
	"  username = \"me@example.com\"\n"
	"  oauth2_token_url = \"https://login.microsoftonline.com/T/oauth2/v2.0/token\"\n"
	"  oauth2_client_id = \"cid\"\n"
	"  oauth2_client_secret_file = \"m365.secret\"\n"
	"  oauth2_refresh_token_file = \"/var/lib/smtprelay/m365.refresh\"\n"
	"  oauth2_scope = \"https://outlook.office.com/SMTP.Send offline_access\"\n"
	"}\n";

START_TEST(test_every_key)
{
	struct config *c = load_ok(full_config);
	const struct conf_smarthost *p, *m;
	static const unsigned char fp[32] = {
		0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff,
		0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff,
	};

	ck_assert_str_eq(c->hostname, "vm1.example.com");
	ck_assert_uint_eq(c->nlisten, 3);
	ck_assert_str_eq(c->listen[1].spec, "[::1]:2526");
	ck_assert_uint_eq(ntohs(((struct sockaddr_in6 *)&c->listen[1].addr)->sin6_port), 2526);
	ck_assert_uint_eq(c->nallow, 3);
	ck_assert_uint_eq(c->allow[1].prefix, 32);
	ck_assert_uint_eq(c->allow[2].prefix, 32);
	ck_assert_str_eq(c->spool_dir, "/var/tmp/spool");
	ck_assert_str_eq(c->user, "mailrelay");
	ck_assert_uint_eq(c->smtpd_timeout, 120);
	ck_assert_uint_eq(c->max_message_size, 10 * 1024 * 1024);
	ck_assert_uint_eq(c->max_recipients, 50);
	ck_assert_uint_eq(c->max_connections, 8);
	ck_assert_str_eq(c->admin_address, "ops@example.com");
	ck_assert_str_eq(c->from_address, "alerts@example.com");
	ck_assert(c->rewrite_from_header);
	ck_assert_uint_eq(c->retry_min, 60);
	ck_assert_uint_eq(c->retry_max, 7200);
	ck_assert_uint_eq(c->queue_lifetime, 3 * 86400);
	ck_assert_uint_eq(c->naliases, 1);
	ck_assert_uint_eq(c->nsmarthosts, 2);

	p = &c->smarthosts[0];
	ck_assert_str_eq(p->name, "primary");
	ck_assert_int_eq(p->line, 17);
	ck_assert_str_eq(p->host, "email-smtp.eu-west-1.amazonaws.com");
	ck_assert_uint_eq(p->nports, 6);
	ck_assert_uint_eq(p->ports[0].port, 587);
	ck_assert_int_eq(p->ports[0].mode, CONF_TLS_STARTTLS);
	ck_assert_uint_eq(p->ports[1].port, 465);
	ck_assert_int_eq(p->ports[1].mode, CONF_TLS_IMPLICIT);
	ck_assert_int_eq(p->ports[2].mode, CONF_TLS_STARTTLS);
	ck_assert_int_eq(p->ports[3].mode, CONF_TLS_IMPLICIT);
	ck_assert_int_eq(p->ports[4].mode, CONF_TLS_NONE);
	ck_assert_int_eq(p->ports[5].mode, CONF_TLS_STARTTLS);
	ck_assert_str_eq(p->username, "AKIAEXAMPLE");
	ck_assert_str_eq(p->password, "s3cret");
	ck_assert_uint_eq(p->auth_mechs, SASL_PLAIN | SASL_LOGIN);
	ck_assert(!p->tls_verify);
	ck_assert_str_eq(p->tls_ca_file, "/etc/ssl/private-ca.pem");
	ck_assert_int_eq(p->tls_min_version, 0x0304);
	ck_assert(p->has_fingerprint);
	ck_assert_mem_eq(p->fingerprint, fp, 32);
	ck_assert_uint_eq(p->connect_timeout, 10);
	ck_assert_uint_eq(p->command_timeout, 60);
	ck_assert_uint_eq(p->max_connections, 2);
	ck_assert_uint_eq(p->max_messages_per_connection, 20);
	ck_assert_double_eq_tol(p->rate_per_sec, 0.5, 1e-9);

	m = &c->smarthosts[1];
	ck_assert_str_eq(m->name, "m365");
	ck_assert_int_eq(m->line, 33);
	ck_assert_str_eq(m->oauth2_token_url, "https://login.microsoftonline.com/T/oauth2/v2.0/token");
	ck_assert_str_eq(m->oauth2_client_id, "cid");
	ck_assert_str_eq(m->oauth2_client_secret_file, "m365.secret");
	ck_assert_str_eq(m->oauth2_refresh_token_file, "/var/lib/smtprelay/m365.refresh");
	ck_assert_str_eq(m->oauth2_scope, "https://outlook.office.com/SMTP.Send offline_access");
	/* Built-in OAuth2 implies the OAuth mechanisms. */
	ck_assert_uint_eq(m->auth_mechs, SASL_XOAUTH2 | SASL_OAUTHBEARER);
	ck_assert_ptr_null(m->password);
	conf_free(c);
}
END_TEST

START_TEST(test_smarthost_defaults)
{
	struct config *c = load_ok("smarthost relay {\n host = relay.example.net\n}\n");
	const struct conf_smarthost *s = &c->smarthosts[0];

	ck_assert_uint_eq(c->nsmarthosts, 1);
	ck_assert_str_eq(s->name, "relay");
	ck_assert_int_eq(s->line, 1);
	ck_assert_str_eq(s->host, "relay.example.net");
	ck_assert_uint_eq(s->nports, 2);
	ck_assert_uint_eq(s->ports[0].port, 587);
	ck_assert_int_eq(s->ports[0].mode, CONF_TLS_STARTTLS);
	ck_assert_uint_eq(s->ports[1].port, 465);
	ck_assert_int_eq(s->ports[1].mode, CONF_TLS_IMPLICIT);
	ck_assert_ptr_null(s->username);
	ck_assert_uint_eq(s->auth_mechs, 0);
	ck_assert(s->tls_verify);
	ck_assert_ptr_null(s->tls_ca_file);
	ck_assert_int_eq(s->tls_min_version, 0x0303);
	ck_assert(!s->has_fingerprint);
	ck_assert_uint_eq(s->connect_timeout, 30);
	ck_assert_uint_eq(s->command_timeout, 300);
	ck_assert_uint_eq(s->max_connections, 4);
	ck_assert_uint_eq(s->max_messages_per_connection, 100);
	ck_assert_double_eq(s->rate_per_sec, 0);
	conf_free(c);
}
END_TEST

START_TEST(test_smarthost_order)
{
	struct config *c = load_ok(
		"smarthost \"c\" { host = \"c.example\" }\n"
		"\n"
		"smarthost \"a\" {\n host = \"a.example\"\n}\n"
		"smarthost \"b\" { host = \"b.example\" }\n");

	ck_assert_uint_eq(c->nsmarthosts, 3);
	ck_assert_str_eq(c->smarthosts[0].name, "c");
	ck_assert_str_eq(c->smarthosts[1].name, "a");
	ck_assert_str_eq(c->smarthosts[2].name, "b");
	ck_assert_int_eq(c->smarthosts[0].line, 1);
	ck_assert_int_eq(c->smarthosts[1].line, 3);
	ck_assert_int_eq(c->smarthosts[2].line, 6);
	conf_free(c);
}
END_TEST

START_TEST(test_listen_disabled)
{
	struct config *c = load_ok("listen = {}\nallow_networks = {\"192.0.2.0/24\"}\n");

	ck_assert_uint_eq(c->nlisten, 0);
	ck_assert_uint_eq(c->nallow, 1);
	conf_free(c);
}
END_TEST

START_TEST(test_comments_and_literals)
{
	struct config *c;
	char *errors = NULL;

	setenv("CHECK_CONF_VAR", "expanded", 1);
	c = load_ok(
		"/* block\n comment */ hostname = \"h1.example\" // trailing\n"
		"admin_address = \"a#b@example.com\"  # not a comment inside quotes\n"
		"from_address = \"u${CHECK_CONF_VAR}@example.com\"\n"
		"smarthost s {\n"
		"  host = \"smtp.example.com\"\n"
		"  username = 'it\\'s ${X} # x'\n"
		"  password = \"p${CHECK_CONF_VAR}\\\"q\"\n"
		"  tls_ca_file = \"/etc/ssl//ca#1.pem\"\n"
		"}\n"
		"user = ${CHECK_CONF_VAR}\n");
	ck_assert_str_eq(c->hostname, "h1.example");
	ck_assert_str_eq(c->admin_address, "a#b@example.com");
	/* ${VAR} is literal: the caller's environment never changes the config. */
	ck_assert_str_eq(c->from_address, "u${CHECK_CONF_VAR}@example.com");
	ck_assert_str_eq(c->smarthosts[0].password, "p${CHECK_CONF_VAR}\"q");
	ck_assert_str_eq(c->smarthosts[0].username, "it's ${X} # x");
	ck_assert_str_eq(c->smarthosts[0].tls_ca_file, "/etc/ssl//ca#1.pem");
	ck_assert_str_eq(c->user, "${CHECK_CONF_VAR}");
	conf_free(c);
	/* An unquoted ${VAR} is a literal string too (oauth2_scope then is
	 * reported as unused, on its own line). */
	ck_assert_ptr_null(load("smarthost s {\n host = h.example\n"
	    " oauth2_scope = ${CHECK_CONF_VAR}\n}\n", &errors));
	assert_error_at(errors, 3, "oauth2_scope: only used with oauth2_token_url");
	free(errors);
	unsetenv("CHECK_CONF_VAR");
}
END_TEST

/* ---- errors: one per class, with the right line ---- */

static const struct {
	const char *text;
	int line;
	const char *needle;
} bad_configs[] = {
	{ "\n\nbogus = 1\n", 3, "unknown key \"bogus\"" },
	{ "smarthost a {\n host = h.example\n prots = {\"587\"}\n}\n", 3, "unknown key \"prots\" in smarthost \"a\"" },
	{ "frobnicate {\n x = 1\n}\n", 1, "unknown key \"frobnicate\"" },
	{ "\nmax_recipients = \"abc\"\n", 2, "max_recipients: \"abc\": not a positive whole number" },
	{ "max_connections = 0\n", 1, "max_connections: \"0\"" },
	{ "max_recipients = -5\n", 1, "max_recipients: \"-5\"" },
	{ "smtpd_timeout = 5x\n", 1, "smtpd_timeout: \"5x\": not a duration" },
	{ "retry_max = 0\n", 1, "retry_max: \"0\": must be more than 0" },
	{ "max_message_size = 12Q\n", 1, "max_message_size: \"12Q\"" },
	{ "rewrite_from_header = maybe\n", 1, "rewrite_from_header: \"maybe\": use true or false" },
	{ "hostname = \"bad_host..name\"\n", 1, "hostname: \"bad_host..name\": not a valid host name" },
	{ "listen = {\"127.0.0.1:25\",\n  \"127.0.0.1\"}\n", 2, "listen: \"127.0.0.1\": missing port" },
	{ "listen = {\"::1:25\"}\n", 1, "IPv6 addresses go in brackets" },
	{ "listen = {\"localhost:25\"}\n", 1, "not a numeric IPv4 address" },
	{ "listen = {\"[::1]:0\"}\n", 1, "port must be a number 1-65535" },
	{ "listen = {\"127.0.0.1:65536\"}\n", 1, "port must be a number 1-65535" },
	{ "allow_networks = {\"10.0.0.0/33\"}\n", 1, "prefix length must be 0-32" },
	{ "allow_networks = {\"::1/129\"}\n", 1, "prefix length must be 0-128" },
	{ "allow_networks = {\"example.com/8\"}\n", 1, "not an IPv4 or IPv6 network" },
	{ "spool_dir = \"spool\"\n", 1, "spool_dir: \"spool\": must be an absolute path" },
	{ "user = \"\"\n", 1, "user: \"\": must not be empty" },
	{ "\nuser = \"mail relay\"\n", 2, "user: \"mail relay\": not a user name" },
	{ "admin_address = \"not an address\"\n", 1, "admin_address: \"not an address\": not a valid address" },
	{ "admin_address = \"root\"\n", 1, "admin_address: \"root\": not a valid address" },
	{ "admin_address = \"root@localhost\"\n", 1, "must be a remote address" },
	{ "from_address = \"a@@b\"\n", 1, "from_address: \"a@@b\"" },
	{ "retry_min = 2h\nretry_max = 1h\n", 1, "retry_min (7200 s) is more than retry_max (3600 s)" },
	{ "aliases_file = \"/nonexistent/aliases\"\n", 1, "aliases_file: cannot read \"/nonexistent/aliases\"" },
	{ "aliases_file = \"aliases\"\n", 1, "must be an absolute path" },
	{ "smarthost a {\n ports = {\"587\"}\n}\n", 1, "smarthost \"a\": host is missing" },
	{ "smarthost \"a b\" {\n host = h.example\n}\n", 1, "use a name of letters" },
	{ "smarthost a {\n host = \"bad host\"\n}\n", 2, "host: \"bad host\": not a valid host name" },
	{ "smarthost a {\n host = h.example\n ports = {\"587\",\n \"587/ssl\"}\n}\n", 4,
	  "ports: \"587/ssl\": unknown TLS mode \"ssl\" (use starttls, tls or none)" },
	{ "smarthost a {\n host = h.example\n ports = {\"0\"}\n}\n", 3, "ports: \"0\": not a port number" },
	{ "smarthost a {\n host = h.example\n ports = {\"x587\"}\n}\n", 3, "ports: \"x587\"" },
	{ "smarthost a {\n host = h.example\n ports = {\"587\", \"587/tls\"}\n}\n", 3, "port 587 is listed twice" },
	/* libconfuse reports no line for an empty list: the section's is used. */
	{ "smarthost a {\n host = h.example\n ports = {}\n}\n", 1, "ports: empty" },
	{ "smarthost a {\n host = h.example\n username = u\n password = p\n auth = {\"cram-md5\"}\n}\n", 5,
	  "auth: \"cram-md5\": unknown mechanism (use plain, login, xoauth2 or oauthbearer)" },
	{ "smarthost a {\n host = h.example\n tls_min_version = \"1.1\"\n}\n", 3, "use \"1.2\" or \"1.3\"" },
	{ "smarthost a {\n host = h.example\n tls_verify = sometimes\n}\n", 3, "tls_verify: \"sometimes\"" },
	{ "smarthost a {\n host = h.example\n tls_fingerprint = \"sha256:abcd\"\n}\n", 3, "64 hex digits" },
	{ "smarthost a {\n host = h.example\n tls_ca_file = \"ca.pem\"\n}\n", 3, "tls_ca_file: \"ca.pem\": must be an absolute path" },
	{ "smarthost a {\n host = h.example\n rate_limit = \"14\"\n}\n", 3, "rate_limit: \"14\": use N/s, N/min or N/h" },
	{ "smarthost a {\n host = h.example\n connect_timeout = soon\n}\n", 3, "connect_timeout: \"soon\"" },
	{ "smarthost a {\n host = h.example\n max_messages_per_connection = 0\n}\n", 3, "max_messages_per_connection" },
	{ "smarthost a {\n host = h.example\n username = u\n password = p\n password_file = \"/x\"\n}\n", 5,
	  "more than one of password, password_file and password_command" },
	{ "smarthost a {\n host = h.example\n username = u\n}\n", 3, "username: \"u\": no password" },
	{ "smarthost a {\n host = h.example\n password_file = \"/x\"\n}\n", 3, "password_file: needs username" },
	{ "smarthost a {\n host = h.example\n auth = {\"plain\"}\n}\n", 3, "auth: needs username" },
	{ "smarthost a {\n host = h.example\n username = u\n oauth2_token_url = \"https://t.example/token\"\n}\n", 4,
	  "needs oauth2_client_id and oauth2_refresh_token_file" },
	{ "smarthost a {\n host = h.example\n username = u\n oauth2_token_url = \"http://t.example/\"\n"
	  " oauth2_client_id = c\n oauth2_refresh_token_file = \"/r\"\n}\n", 4, "must be an https:// URL" },
	{ "smarthost a {\n host = h.example\n oauth2_client_id = c\n}\n", 3, "oauth2_client_id: only used with oauth2_token_url" },
	{ "smarthost a {\n host = h.example\n username = u\n password_command = \"x\"\n"
	  " oauth2_token_url = \"https://t/\"\n oauth2_client_id = c\n oauth2_refresh_token_file = \"/r\"\n}\n", 5,
	  "either built-in OAuth2 refresh or password_command" },
	{ "smarthost a {\n host = h.example\n username = u\n auth = {\"plain\"}\n oauth2_token_url = \"https://t/\"\n"
	  " oauth2_client_id = c\n oauth2_refresh_token_file = \"/r\"\n}\n", 4, "auth: OAuth2 needs xoauth2 or oauthbearer" },
	{ "smarthost a { host = x.example }\nsmarthost a { host = y.example }\n", 2, "duplicate title 'a'" },
	{ "aliases {\n root = \"ops@example.com\"\n www = \"a@b.example, |/bin/cat\"\n}\n", 3,
	  "aliases: www: \"|/bin/cat\": command targets are not supported" },
	{ "aliases {\n root = \"ops@example.com,,x@y.example\"\n}\n", 2, "aliases: root: empty element" },
	{ "aliases {\n \"root@localhost\" = \"ops@example.com\"\n}\n", 2, "alias name is a local name without @domain" },
	{ "hostname = {\"a\", \"b\"}\n", 1, "unexpected token" },
	{ "\n\nhostname = \"unterminated\n", 4, "premature end of file" },
};

START_TEST(test_error_classes)
{
	assert_fails(bad_configs[_i].text, bad_configs[_i].line, bad_configs[_i].needle);
}
END_TEST

START_TEST(test_all_errors_collected)
{
	char *errors = NULL;
	struct config *c = load(
		"# a comment line\n"
		"max_recipients = abc\n"			/* 2 */
		"bogus = 1\n"					/* 3 */
		"listen = {\"127.0.0.1:25\", # comment in a list\n"
		"   \"1.2.3.4\"}\n"				/* 5 */
		"/* a C comment\n   over two lines */\n"
		"smarthost \"x\" {\n"				/* 8 */
		"  // comment\n"
		"  ports = {\"587/ssl\"}\n"			/* 10 */
		"  tls_fingerprint = \"sha256:zz\"\n"		/* 11 */
		"}\n"
		"retry_min = 1h\nretry_max = 5m\n",		/* 13 */
		&errors);

	ck_assert_ptr_null(c);
	assert_error_at(errors, 2, "max_recipients: \"abc\"");
	assert_error_at(errors, 3, "unknown key \"bogus\"");
	assert_error_at(errors, 5, "listen: \"1.2.3.4\"");
	assert_error_at(errors, 8, "smarthost \"x\": host is missing");
	assert_error_at(errors, 10, "unknown TLS mode \"ssl\"");
	assert_error_at(errors, 11, "tls_fingerprint");
	assert_error_at(errors, 13, "retry_min");
	/* In file order. */
	ck_assert(strstr(errors, ":2: ") < strstr(errors, ":3: "));
	ck_assert(strstr(errors, ":11: ") < strstr(errors, ":13: "));
	free(errors);
}
END_TEST

START_TEST(test_errors_appended)
{
	char *errors = strdup("earlier\n");

	write_file(conf_path, "bogus = 1\n", 0600);
	ck_assert_ptr_null(conf_load(conf_path, &errors));
	ck_assert(strncmp(errors, "earlier\n", 8) == 0);
	ck_assert_ptr_nonnull(strstr(errors + 8, ":1: unknown key"));
	free(errors);
}
END_TEST

START_TEST(test_missing_file)
{
	char *errors = NULL;

	ck_assert_ptr_null(conf_load(tmp_path("nope.conf"), &errors));
	ck_assert_ptr_nonnull(errors);
	ck_assert_ptr_nonnull(strstr(errors, tmp_path("nope.conf")));
	ck_assert_ptr_nonnull(strstr(errors, "No such file or directory"));
	free(errors);
	errors = NULL;
	ck_assert_ptr_null(conf_load(tmpdir, &errors));
	ck_assert_ptr_nonnull(strstr(errors, "not a regular file"));
	free(errors);
}
END_TEST

START_TEST(test_unknown_list_key_in_smarthost)
{
	/* A typo with a list value: the parse stops there, but the report
	 * names the key rather than libconfuse's "unexpected token". */
	char *errors = NULL;

	ck_assert_ptr_null(load("smarthost a {\n host = h.example\n portz = {\"587\"}\n}\n", &errors));
	assert_error_at(errors, 3, "unknown key \"portz\"");
	ck_assert_ptr_null(strstr(errors, "unexpected token"));
	free(errors);
}
END_TEST

/* ---- value parsers ---- */

START_TEST(test_durations)
{
	ck_assert_int_eq(conf_parse_duration("300"), 300);
	ck_assert_int_eq(conf_parse_duration("0"), 0);
	ck_assert_int_eq(conf_parse_duration("30s"), 30);
	ck_assert_int_eq(conf_parse_duration("5m"), 300);
	ck_assert_int_eq(conf_parse_duration("1h"), 3600);
	ck_assert_int_eq(conf_parse_duration("2d"), 172800);
	ck_assert_int_eq(conf_parse_duration("2D"), 172800);
	ck_assert_int_eq(conf_parse_duration(""), -1);
	ck_assert_int_eq(conf_parse_duration("m"), -1);
	ck_assert_int_eq(conf_parse_duration("-5"), -1);
	ck_assert_int_eq(conf_parse_duration("+5"), -1);
	ck_assert_int_eq(conf_parse_duration("5 m"), -1);
	ck_assert_int_eq(conf_parse_duration("5mm"), -1);
	ck_assert_int_eq(conf_parse_duration("5w"), -1);
	ck_assert_int_eq(conf_parse_duration("0x10"), -1);
	ck_assert_int_eq(conf_parse_duration("99999999999999999999"), -1);
	ck_assert_int_eq(conf_parse_duration("9223372036854775807d"), -1);
	ck_assert_int_eq(conf_parse_duration(NULL), -1);
}
END_TEST

START_TEST(test_rates)
{
	ck_assert_double_eq(conf_parse_rate("0"), 0);
	ck_assert_double_eq(conf_parse_rate("14/s"), 14);
	ck_assert_double_eq(conf_parse_rate("14/sec"), 14);
	ck_assert_double_eq_tol(conf_parse_rate("30/min"), 0.5, 1e-12);
	ck_assert_double_eq_tol(conf_parse_rate("30/m"), 0.5, 1e-12);
	ck_assert_double_eq_tol(conf_parse_rate("1800/h"), 0.5, 1e-12);
	ck_assert_double_eq_tol(conf_parse_rate("3600/hour"), 1, 1e-12);
	ck_assert_double_eq_tol(conf_parse_rate("86400/day"), 1, 1e-12);
	ck_assert_double_eq(conf_parse_rate("14"), -1);
	ck_assert_double_eq(conf_parse_rate("14/"), -1);
	ck_assert_double_eq(conf_parse_rate("14/fortnight"), -1);
	ck_assert_double_eq(conf_parse_rate("/s"), -1);
	ck_assert_double_eq(conf_parse_rate("-1/s"), -1);
	ck_assert_double_eq(conf_parse_rate(""), -1);
	ck_assert_double_eq(conf_parse_rate(NULL), -1);
}
END_TEST

START_TEST(test_fingerprints)
{
	static const char hex[] = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
	unsigned char fp[32], want[32];
	char s[200];

	for (int i = 0; i < 32; i++)
		want[i] = (unsigned char)((i % 8) * 0x22 + 0x01);
	snprintf(s, sizeof(s), "sha256:%s", hex);
	ck_assert_int_eq(conf_parse_fingerprint(s, fp), 0);
	ck_assert_mem_eq(fp, want, 32);
	/* Colons between every byte pair, upper case, upper-case prefix. */
	strcpy(s, "SHA256:");
	for (int i = 0; i < 32; i++)
		snprintf(s + strlen(s), sizeof(s) - strlen(s), i ? ":%02X" : "%02X", want[i]);
	memset(fp, 0, sizeof(fp));
	ck_assert_int_eq(conf_parse_fingerprint(s, fp), 0);
	ck_assert_mem_eq(fp, want, 32);
	/* Colons only in some places. */
	snprintf(s, sizeof(s), "sha256:0123:456789abcdef0123456789abcdef0123456789abcdef0123456789ab:cdef");
	ck_assert_int_eq(conf_parse_fingerprint(s, fp), 0);
	ck_assert_mem_eq(fp, want, 32);

	snprintf(s, sizeof(s), "%s", hex);
	ck_assert_int_eq(conf_parse_fingerprint(s, fp), -1);		/* no prefix */
	snprintf(s, sizeof(s), "sha256:%.62s", hex);
	ck_assert_int_eq(conf_parse_fingerprint(s, fp), -1);		/* 31 bytes */
	snprintf(s, sizeof(s), "sha256:%s00", hex);
	ck_assert_int_eq(conf_parse_fingerprint(s, fp), -1);		/* 33 bytes */
	snprintf(s, sizeof(s), "sha256:%s0", hex);
	ck_assert_int_eq(conf_parse_fingerprint(s, fp), -1);		/* odd digits */
	snprintf(s, sizeof(s), "sha256:0:123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef");
	ck_assert_int_eq(conf_parse_fingerprint(s, fp), -1);		/* colon inside a pair */
	snprintf(s, sizeof(s), "sha256:%s:", hex);
	ck_assert_int_eq(conf_parse_fingerprint(s, fp), -1);		/* trailing colon */
	snprintf(s, sizeof(s), "sha256::%s", hex);
	ck_assert_int_eq(conf_parse_fingerprint(s, fp), -1);		/* leading colon */
	snprintf(s, sizeof(s), "sha256:01::23%s", hex + 4);
	ck_assert_int_eq(conf_parse_fingerprint(s, fp), -1);		/* double colon */
	snprintf(s, sizeof(s), "sha256:%.62sgg", hex);
	ck_assert_int_eq(conf_parse_fingerprint(s, fp), -1);		/* not hex */
	ck_assert_int_eq(conf_parse_fingerprint("sha1:00", fp), -1);
}
END_TEST

START_TEST(test_ports)
{
	struct conf_port p;
	char err[256];

	ck_assert_int_eq(conf_parse_port("587", &p, err, sizeof(err)), 0);
	ck_assert_uint_eq(p.port, 587);
	ck_assert_int_eq(p.mode, CONF_TLS_STARTTLS);
	ck_assert_int_eq(conf_parse_port("465", &p, err, sizeof(err)), 0);
	ck_assert_int_eq(p.mode, CONF_TLS_IMPLICIT);
	ck_assert_int_eq(conf_parse_port("2525", &p, err, sizeof(err)), 0);
	ck_assert_int_eq(p.mode, CONF_TLS_STARTTLS);
	ck_assert_int_eq(conf_parse_port("465/starttls", &p, err, sizeof(err)), 0);
	ck_assert_int_eq(p.mode, CONF_TLS_STARTTLS);
	ck_assert_int_eq(conf_parse_port("2465/tls", &p, err, sizeof(err)), 0);
	ck_assert_uint_eq(p.port, 2465);
	ck_assert_int_eq(p.mode, CONF_TLS_IMPLICIT);
	ck_assert_int_eq(conf_parse_port("25/None", &p, err, sizeof(err)), 0);
	ck_assert_int_eq(p.mode, CONF_TLS_NONE);
	ck_assert_int_eq(conf_parse_port("65535", &p, err, sizeof(err)), 0);
	ck_assert_int_eq(conf_parse_port("65536", &p, err, sizeof(err)), -1);
	ck_assert_int_eq(conf_parse_port("0", &p, err, sizeof(err)), -1);
	ck_assert_int_eq(conf_parse_port("", &p, err, sizeof(err)), -1);
	ck_assert_int_eq(conf_parse_port("/tls", &p, err, sizeof(err)), -1);
	ck_assert_int_eq(conf_parse_port("587/", &p, err, sizeof(err)), -1);
	ck_assert_int_eq(conf_parse_port("smtp", &p, err, sizeof(err)), -1);
	ck_assert_ptr_nonnull(strstr(err, "1-65535"));
	ck_assert_int_eq(conf_parse_port("587/ssl", &p, err, sizeof(err)), -1);
	ck_assert_str_eq(err, "unknown TLS mode \"ssl\" (use starttls, tls or none)");
}
END_TEST

START_TEST(test_listen_parse)
{
	struct conf_listen l;
	char err[256];
	const struct sockaddr_in6 *v6 = (const struct sockaddr_in6 *)&l.addr;
	const struct sockaddr_in *v4 = (const struct sockaddr_in *)&l.addr;

	ck_assert_int_eq(conf_parse_listen("192.0.2.1:2525", &l, err, sizeof(err)), 0);
	ck_assert_int_eq(v4->sin_family, AF_INET);
	ck_assert_uint_eq(ntohs(v4->sin_port), 2525);
	ck_assert_uint_eq(ntohl(v4->sin_addr.s_addr), 0xc0000201);
	ck_assert_uint_eq(l.addrlen, sizeof(struct sockaddr_in));
	ck_assert_int_eq(conf_parse_listen("[2001:db8::1]:25", &l, err, sizeof(err)), 0);
	ck_assert_int_eq(v6->sin6_family, AF_INET6);
	ck_assert_uint_eq(ntohs(v6->sin6_port), 25);
	ck_assert_uint_eq(v6->sin6_addr.s6_addr[0], 0x20);
	ck_assert_uint_eq(v6->sin6_addr.s6_addr[15], 0x01);
	ck_assert_uint_eq(l.addrlen, sizeof(struct sockaddr_in6));
	ck_assert_int_eq(conf_parse_listen("[::]:25", &l, err, sizeof(err)), 0);

	ck_assert_int_eq(conf_parse_listen("127.0.0.1", &l, err, sizeof(err)), -1);
	ck_assert_int_eq(conf_parse_listen(":25", &l, err, sizeof(err)), -1);
	ck_assert_int_eq(conf_parse_listen("[::1]", &l, err, sizeof(err)), -1);
	ck_assert_int_eq(conf_parse_listen("[::1]25", &l, err, sizeof(err)), -1);
	ck_assert_int_eq(conf_parse_listen("[127.0.0.1]:25", &l, err, sizeof(err)), -1);
	ck_assert_int_eq(conf_parse_listen("::1:25", &l, err, sizeof(err)), -1);
	ck_assert_ptr_nonnull(strstr(err, "brackets"));
	ck_assert_int_eq(conf_parse_listen("localhost:25", &l, err, sizeof(err)), -1);
	ck_assert_ptr_nonnull(strstr(err, "not resolved"));
	ck_assert_int_eq(conf_parse_listen("127.0.0.1:smtp", &l, err, sizeof(err)), -1);
	ck_assert_int_eq(conf_parse_listen("127.0.0.1:99999", &l, err, sizeof(err)), -1);
	ck_assert_int_eq(conf_parse_listen("256.0.0.1:25", &l, err, sizeof(err)), -1);
}
END_TEST

static struct sockaddr_storage sa_of(const char *ip)
{
	struct sockaddr_storage ss;

	memset(&ss, 0, sizeof(ss));
	if (strchr(ip, ':')) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
		s6->sin6_family = AF_INET6;
		ck_assert_int_eq(inet_pton(AF_INET6, ip, &s6->sin6_addr), 1);
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
		s4->sin_family = AF_INET;
		ck_assert_int_eq(inet_pton(AF_INET, ip, &s4->sin_addr), 1);
	}
	return ss;
}

static bool match(const struct conf_cidr *n, const char *ip)
{
	struct sockaddr_storage ss = sa_of(ip);

	return conf_cidr_match(n, (struct sockaddr *)&ss);
}

START_TEST(test_cidr)
{
	struct conf_cidr n;
	bool hb;
	char err[256];

	ck_assert_int_eq(conf_parse_cidr("127.0.0.0/8", &n, &hb, err, sizeof(err)), 0);
	ck_assert_int_eq(n.family, AF_INET);
	ck_assert_uint_eq(n.prefix, 8);
	ck_assert(!hb);
	ck_assert(match(&n, "127.1.2.3"));
	ck_assert(!match(&n, "128.0.0.1"));
	ck_assert(match(&n, "::ffff:127.0.0.1"));	/* v4-mapped */
	ck_assert(!match(&n, "::1"));

	ck_assert_int_eq(conf_parse_cidr("10.1.2.3/20", &n, &hb, err, sizeof(err)), 0);
	ck_assert(hb);
	ck_assert_uint_eq(n.addr[0], 10);
	ck_assert_uint_eq(n.addr[1], 1);
	ck_assert_uint_eq(n.addr[2], 0);
	ck_assert_uint_eq(n.addr[3], 0);
	ck_assert(match(&n, "10.1.15.255"));
	ck_assert(!match(&n, "10.1.16.0"));

	ck_assert_int_eq(conf_parse_cidr("::1/128", &n, &hb, err, sizeof(err)), 0);
	ck_assert_int_eq(n.family, AF_INET6);
	ck_assert(match(&n, "::1"));
	ck_assert(!match(&n, "::2"));
	ck_assert(!match(&n, "127.0.0.1"));
	ck_assert_int_eq(conf_parse_cidr("2001:db8::/33", &n, &hb, err, sizeof(err)), 0);
	ck_assert(match(&n, "2001:db8:7fff::1"));
	ck_assert(!match(&n, "2001:db8:8000::1"));
	ck_assert_int_eq(conf_parse_cidr("0.0.0.0/0", &n, &hb, err, sizeof(err)), 0);
	ck_assert(match(&n, "203.0.113.9"));
	ck_assert_int_eq(conf_parse_cidr("192.0.2.7", &n, &hb, err, sizeof(err)), 0);
	ck_assert_uint_eq(n.prefix, 32);
	ck_assert(match(&n, "192.0.2.7"));
	ck_assert(!match(&n, "192.0.2.8"));

	ck_assert_int_eq(conf_parse_cidr("10.0.0.0/", &n, &hb, err, sizeof(err)), -1);
	ck_assert_int_eq(conf_parse_cidr("10.0.0.0/x", &n, &hb, err, sizeof(err)), -1);
	ck_assert_int_eq(conf_parse_cidr("10.0.0/8", &n, &hb, err, sizeof(err)), -1);
	ck_assert_int_eq(conf_parse_cidr("/8", &n, &hb, err, sizeof(err)), -1);
	ck_assert_int_eq(conf_parse_cidr("::/129", &n, &hb, err, sizeof(err)), -1);
}
END_TEST

START_TEST(test_host_bits_warning)
{
	struct config *c;
	char *log;

	capture_start();
	c = load_ok("\nallow_networks = {\"127.0.0.1/8\"}\n");
	log = capture_stop();
	ck_assert_uint_eq(c->nallow, 1);
	ck_assert_uint_eq(c->allow[0].addr[3], 0);
	ck_assert_ptr_nonnull(strstr(log, ":2: allow_networks: \"127.0.0.1/8\" has host bits set; using 127.0.0.0/8"));
	free(log);
	conf_free(c);
}
END_TEST

START_TEST(test_default_path)
{
	ck_assert_str_eq(conf_default_path("/x.conf"), "/x.conf");
	ck_assert_str_eq(conf_default_path(NULL), SYSCONFDIR "/smtprelay.conf");
	setenv("SMTPRELAY_CONF", "", 1);
	ck_assert_str_eq(conf_default_path(NULL), SYSCONFDIR "/smtprelay.conf");
	setenv("SMTPRELAY_CONF", "/env.conf", 1);
	ck_assert_str_eq(conf_default_path(NULL), "/env.conf");
	ck_assert_str_eq(conf_default_path("/given.conf"), "/given.conf");
	unsetenv("SMTPRELAY_CONF");
}
END_TEST

/* ---- secrets ---- */

static struct config *load_secret_conf(const char *password_file)
{
	char text[512];

	snprintf(text, sizeof(text), "smarthost s {\n host = h.example\n username = u\n"
	    " password_file = \"%s\"\n}\n", password_file);
	return load_ok(text);
}

START_TEST(test_secret_newline_stripped)
{
	struct config *c;
	char *errors = NULL;

	write_file(tmp_path("pw"), "hunter2\n\n", 0640);
	c = load_secret_conf(tmp_path("pw"));
	ck_assert_ptr_null(c->smarthosts[0].password);
	ck_assert_int_eq(conf_load_secrets(c, NULL, &errors), 0);
	ck_assert_ptr_null(errors);
	/* Only one newline is stripped. */
	ck_assert_str_eq(c->smarthosts[0].password, "hunter2\n");
	conf_free(c);

	write_file(tmp_path("pw"), "hunter2\r\n", 0600);
	c = load_secret_conf(tmp_path("pw"));
	ck_assert_int_eq(conf_load_secrets(c, NULL, &errors), 0);
	ck_assert_str_eq(c->smarthosts[0].password, "hunter2");
	conf_free(c);

	write_file(tmp_path("pw"), "no-newline", 0600);
	c = load_secret_conf(tmp_path("pw"));
	ck_assert_int_eq(conf_load_secrets(c, NULL, &errors), 0);
	ck_assert_str_eq(c->smarthosts[0].password, "no-newline");
	conf_free(c);
}
END_TEST

START_TEST(test_secret_world_readable)
{
	struct config *c;
	char *errors = NULL, *log;

	write_file(tmp_path("pw"), "hunter2\n", 0644);
	c = load_secret_conf(tmp_path("pw"));
	capture_start();
	ck_assert_int_eq(conf_load_secrets(c, NULL, &errors), 0);
	log = capture_stop();
	ck_assert_ptr_nonnull(strstr(log, tmp_path("pw")));
	ck_assert_ptr_nonnull(strstr(log, "readable by others"));
	ck_assert_ptr_nonnull(strstr(log, "chmod o-r"));
	ck_assert_ptr_null(strstr(log, "hunter2"));
	ck_assert_str_eq(c->smarthosts[0].password, "hunter2");
	free(log);
	conf_free(c);

	/* 0640 is fine. */
	chmod(tmp_path("pw"), 0640);
	c = load_secret_conf(tmp_path("pw"));
	capture_start();
	ck_assert_int_eq(conf_load_secrets(c, NULL, &errors), 0);
	log = capture_stop();
	ck_assert_ptr_null(strstr(log, "readable by others"));
	free(log);
	conf_free(c);
}
END_TEST

START_TEST(test_config_with_password_world_readable)
{
	struct config *c;
	char *log, *errors = NULL;

	write_file(conf_path, "smarthost s {\n host = h.example\n username = u\n password = \"pw1\"\n}\n", 0644);
	capture_start();
	c = conf_load(conf_path, &errors);
	log = capture_stop();
	ck_assert_ptr_nonnull(c);
	ck_assert_ptr_nonnull(strstr(log, "contains a password and is readable by others"));
	ck_assert_ptr_null(strstr(log, "pw1"));
	free(log);
	conf_free(c);

	chmod(conf_path, 0640);
	capture_start();
	c = conf_load(conf_path, &errors);
	log = capture_stop();
	ck_assert_ptr_null(strstr(log, "readable by others"));
	free(log);
	conf_free(c);
}
END_TEST

START_TEST(test_secret_credentials_directory)
{
	struct config *c;
	char *errors = NULL;

	ck_assert_int_eq(mkdir(tmp_path("creds"), 0700), 0);
	write_file(tmp_path("creds/primary.secret"), "from-creds\n", 0400);
	write_file(tmp_path("primary.secret"), "next-to-config\n", 0600);
	write_file(tmp_path("client.secret"), "client-secret\n", 0600);

	/* Without $CREDENTIALS_DIRECTORY: next to the config file. */
	c = load_secret_conf("primary.secret");
	ck_assert_int_eq(conf_load_secrets(c, NULL, &errors), 0);
	ck_assert_str_eq(c->smarthosts[0].password, "next-to-config");
	conf_free(c);

	setenv("CREDENTIALS_DIRECTORY", tmp_path("creds"), 1);
	c = load_secret_conf("primary.secret");
	ck_assert_int_eq(conf_load_secrets(c, NULL, &errors), 0);
	ck_assert_str_eq(c->smarthosts[0].password, "from-creds");
	conf_free(c);

	/* An absolute name ignores the credentials directory. */
	c = load_secret_conf(tmp_path("primary.secret"));
	ck_assert_int_eq(conf_load_secrets(c, NULL, &errors), 0);
	ck_assert_str_eq(c->smarthosts[0].password, "next-to-config");
	conf_free(c);

	/* The OAuth2 client secret is read the same way. */
	c = load_ok("smarthost m {\n host = h.example\n username = u\n"
	    " oauth2_token_url = \"https://t.example/token\"\n oauth2_client_id = id\n"
	    " oauth2_client_secret_file = \"client.secret\"\n oauth2_refresh_token_file = \"/r\"\n}\n");
	rename(tmp_path("client.secret"), tmp_path("creds/client.secret"));
	ck_assert_int_eq(conf_load_secrets(c, NULL, &errors), 0);
	ck_assert_str_eq(c->smarthosts[0].oauth2_client_secret, "client-secret");
	conf_free(c);
	unsetenv("CREDENTIALS_DIRECTORY");
}
END_TEST

START_TEST(test_secret_errors_and_reload)
{
	struct config *old, *c;
	char *errors = NULL, *log;

	write_file(tmp_path("pw"), "first\n", 0600);
	old = load_secret_conf(tmp_path("pw"));
	ck_assert_int_eq(conf_load_secrets(old, NULL, &errors), 0);
	ck_assert_str_eq(old->smarthosts[0].password, "first");

	/* Unreadable at start: an error naming the file. */
	unlink(tmp_path("pw"));
	c = load_secret_conf(tmp_path("pw"));
	ck_assert_int_eq(conf_load_secrets(c, NULL, &errors), -1);
	ck_assert_ptr_nonnull(errors);
	ck_assert_ptr_nonnull(strstr(errors, conf_path));
	ck_assert_ptr_nonnull(strstr(errors, ":1: smarthost \"s\": password_file"));
	ck_assert_ptr_nonnull(strstr(errors, tmp_path("pw")));
	ck_assert_ptr_nonnull(strstr(errors, "No such file"));
	free(errors);
	errors = NULL;

	/* Unreadable on reload: the old value stays, with a warning. */
	capture_start();
	ck_assert_int_eq(conf_load_secrets(c, old, &errors), 0);
	log = capture_stop();
	ck_assert_ptr_null(errors);
	ck_assert_str_eq(c->smarthosts[0].password, "first");
	ck_assert_ptr_nonnull(strstr(log, "keeping the previous value"));
	ck_assert_ptr_null(strstr(log, "first"));
	free(log);

	/* Readable on reload: the new value wins. */
	write_file(tmp_path("pw"), "second\n", 0600);
	ck_assert_int_eq(conf_load_secrets(c, old, &errors), 0);
	ck_assert_str_eq(c->smarthosts[0].password, "second");

	/* An empty secret file is an error. */
	write_file(tmp_path("pw"), "\n", 0600);
	ck_assert_int_eq(conf_load_secrets(c, NULL, &errors), -1);
	ck_assert_ptr_nonnull(strstr(errors, "empty"));
	free(errors);
	conf_free(c);
	conf_free(old);
}
END_TEST

/* ---- the shipped example and smtprelayd -t ---- */

START_TEST(test_example_config_loads)
{
	const char *top = getenv("top_srcdir");
	char path[1024], *errors = NULL;
	struct config *c;

	snprintf(path, sizeof(path), "%s/conf/smtprelay.conf.example", top ? top : "..");
	c = conf_load(path, &errors);
	ck_assert_msg(c != NULL, "example config: %s", errors ? errors : "");
	ck_assert_uint_eq(c->nsmarthosts, 1);
	ck_assert_str_eq(c->smarthosts[0].name, "primary");
	ck_assert_str_eq(c->smarthosts[0].host, "smtp.example.com");
	ck_assert_ptr_nonnull(c->smarthosts[0].password_file);
	ck_assert_uint_eq(c->nlisten, 2);
	conf_free(c);
}
END_TEST

/* Run smtprelayd with args; returns the exit status, stderr in *err. */
static int run_smtprelayd(const char *const *args, char **err)
{
	const char *top = getenv("top_builddir");
	char prog[1024];
	const char *argv[8];
	int status, n = 0;
	pid_t pid;

	snprintf(prog, sizeof(prog), "%s/smtprelayd", top ? top : "..");
	argv[n++] = prog;
	while (*args && n < 7)
		argv[n++] = *args++;
	argv[n] = NULL;
	capture_start();
	pid = fork();
	if (pid == 0) {
		int null = open("/dev/null", O_WRONLY);
		dup2(null, 1);
		execv(prog, (char *const *)argv);
		_exit(127);
	}
	waitpid(pid, &status, 0);
	*err = capture_stop();
	ck_assert(WIFEXITED(status));
	return WEXITSTATUS(status);
}

START_TEST(test_smtprelayd_t)
{
	const char *good[] = { "-t", "-C", conf_path, NULL };
	const char *version[] = { "-V", NULL };
	const char *bogus[] = { "-x", NULL };
	char *err, expect[256];

	write_file(conf_path, "hostname = \"vm1.example.com\"\n", 0640);
	ck_assert_int_eq(run_smtprelayd(good, &err), 0);
	ck_assert_ptr_nonnull(strstr(err, "no smarthost configured: mail will stay queued"));
	free(err);

	write_file(conf_path, "# bad\nhostname = \"vm1.example.com\"\nmax_recipients = lots\n", 0640);
	ck_assert_int_eq(run_smtprelayd(good, &err), 78);
	snprintf(expect, sizeof(expect), "%s:3: max_recipients: \"lots\"", conf_path);
	ck_assert_msg(strstr(err, expect) != NULL, "stderr: %s", err);
	free(err);

	/* -c works as -C; $SMTPRELAY_CONF is used without either. */
	good[1] = "-c";
	ck_assert_int_eq(run_smtprelayd(good, &err), 78);
	free(err);
	setenv("SMTPRELAY_CONF", conf_path, 1);
	good[1] = NULL;
	ck_assert_int_eq(run_smtprelayd(good, &err), 78);
	ck_assert_ptr_nonnull(strstr(err, expect));
	free(err);
	unsetenv("SMTPRELAY_CONF");

	ck_assert_int_eq(run_smtprelayd(bogus, &err), 64);
	ck_assert_ptr_nonnull(strstr(err, "usage:"));
	free(err);
	ck_assert_int_eq(run_smtprelayd(version, &err), 0);
	free(err);
}
END_TEST

START_TEST(test_smtprelayd_version_output)
{
	int fds[2], status;
	char out[128] = "", prog[1024];
	const char *top = getenv("top_builddir");
	ssize_t n;
	pid_t pid;

	snprintf(prog, sizeof(prog), "%s/smtprelayd", top ? top : "..");
	ck_assert_int_eq(pipe(fds), 0);
	pid = fork();
	if (pid == 0) {
		dup2(fds[1], 1);
		execl(prog, prog, "-V", (char *)NULL);
		_exit(127);
	}
	close(fds[1]);
	n = read(fds[0], out, sizeof(out) - 1);
	close(fds[0]);
	waitpid(pid, &status, 0);
	ck_assert_int_gt(n, 0);
	out[n] = '\0';
	ck_assert_str_eq(out, "smtprelayd " PACKAGE_VERSION "\n");
}
END_TEST

/* dkim sections (smtprelay.conf(5) "DKIM SECTIONS"): parsed here, keys loaded by relay/signer.c. */
START_TEST(test_dkim_sections)
{
	struct config *c = load_ok(
	    "dkim \"Example.COM\" {\n"
	    "  selector = \"rsa2026\"\n"
	    "  key_file = \"/etc/smtprelay/dkim/a.key\"\n"
	    "}\n"
	    "dkim \"example.com\" {\n"
	    "  selector = \"ed.2026\"\n"
	    "  key_file = \"/etc/smtprelay/dkim/b.key\"\n"
	    "  headers = {\"From\", \"Subject\", \"X-Custom\"}\n"
	    "}\n");

	ck_assert_uint_eq(c->ndkim, 2);
	ck_assert_str_eq(c->dkim[0].domain, "example.com");
	ck_assert_int_eq(c->dkim[0].line, 1);
	ck_assert_str_eq(c->dkim[0].selector, "rsa2026");
	ck_assert_uint_eq(c->dkim[0].nheaders, 11);
	ck_assert_str_eq(c->dkim[0].headers[0], "from");
	for (size_t i = 0; i < c->dkim[0].nheaders; i++)
		ck_assert_str_ne(c->dkim[0].headers[i], "message-id");
	ck_assert_int_eq(c->dkim[1].line, 5);
	ck_assert_uint_eq(c->dkim[1].nheaders, 3);
	ck_assert_str_eq(c->dkim[1].headers[2], "x-custom");
	conf_free(c);
}
END_TEST

static const struct {
	const char *text;
	int line;
	const char *needle;
} bad_dkim[] = {
	{ "dkim \"example.com\" {\n  key_file = \"/k\"\n}\n", 1, "selector is missing" },
	{ "dkim \"example.com\" {\n  selector = \"s\"\n}\n", 1, "key_file is missing" },
	{ "dkim \"example.com\" {\n  selector = \"a b\"\n  key_file = \"/k\"\n}\n", 2, "DNS labels" },
	{ "dkim \"example.com\" {\n  selector = \"s\"\n  key_file = \"k.key\"\n}\n", 3,
	  "absolute path" },
	{ "dkim \"not a domain\" {\n  selector = \"s\"\n  key_file = \"/k\"\n}\n", 1,
	  "signing domain" },
	{ "dkim \"example.com\" {\n  selector = \"s\"\n  key_file = \"/k\"\n"
	  "  headers = {\"from\", \"bad:name\"}\n}\n", 4, "not a header field name" },
	{ "dkim \"example.com\" {\n  selector = \"s\"\n  key_file = \"/k\"\n"
	  "  headers = {\"Received\"}\n}\n", 4, "not received or dkim-signature" },
	{ "dkim \"example.com\" {\n  selector = \"s\"\n  key_file = \"/k\"\n  l = \"1\"\n}\n", 4,
	  "unknown key \"l\" in dkim" },
	{ "dkim \"example.com\" {\n  selector = \"s\"\n  key_file = \"/k\"\n}\n"
	  "dkim \"EXAMPLE.com\" {\n  selector = \"s\"\n  key_file = \"/j\"\n}\n", 5,
	  "selector \"s\" already used at line 1" },
};

START_TEST(test_dkim_errors)
{
	assert_fails(bad_dkim[_i].text, bad_dkim[_i].line, bad_dkim[_i].needle);
}
END_TEST

static Suite *conf_suite(void)
{
	Suite *s = suite_create("conf");
	TCase *t = tcase_create("conf");

	tcase_add_checked_fixture(t, setup, teardown);
	tcase_add_test(t, test_defaults);
	tcase_add_test(t, test_every_key);
	tcase_add_test(t, test_smarthost_defaults);
	tcase_add_test(t, test_smarthost_order);
	tcase_add_test(t, test_listen_disabled);
	tcase_add_test(t, test_comments_and_literals);
	tcase_add_loop_test(t, test_error_classes, 0, sizeof(bad_configs) / sizeof(bad_configs[0]));
	tcase_add_test(t, test_all_errors_collected);
	tcase_add_test(t, test_errors_appended);
	tcase_add_test(t, test_missing_file);
	tcase_add_test(t, test_unknown_list_key_in_smarthost);
	tcase_add_test(t, test_durations);
	tcase_add_test(t, test_rates);
	tcase_add_test(t, test_fingerprints);
	tcase_add_test(t, test_ports);
	tcase_add_test(t, test_listen_parse);
	tcase_add_test(t, test_cidr);
	tcase_add_test(t, test_host_bits_warning);
	tcase_add_test(t, test_default_path);
	tcase_add_test(t, test_secret_newline_stripped);
	tcase_add_test(t, test_secret_world_readable);
	tcase_add_test(t, test_config_with_password_world_readable);
	tcase_add_test(t, test_secret_credentials_directory);
	tcase_add_test(t, test_secret_errors_and_reload);
	tcase_add_test(t, test_example_config_loads);
	tcase_add_test(t, test_dkim_sections);
	tcase_add_loop_test(t, test_dkim_errors, 0, sizeof(bad_dkim) / sizeof(bad_dkim[0]));
	tcase_add_test(t, test_smtprelayd_t);
	tcase_add_test(t, test_smtprelayd_version_output);
	suite_add_tcase(s, t);
	return s;
}

int main(void)
{
	return ckrun(conf_suite());
}
