/* Test driver for relay/conn: one connection to one smarthost port.
 *
 * usage: conn-driver CONFIG SMARTHOST_NAME PORT_INDEX [send FROM TO CONTENT_FILE]
 *
 * Prints one JSON line with the verdict, reason, TLS details, peer, the AUTH
 * mechanisms offered, (with send) the recipient and message reply codes, and
 * the peak resident memory.
 * Exit 0 when the verdict is ok, 1 otherwise, 2 on usage or config errors.
 * $CONN_DEBUG set: debug log lines on stderr.  $CONN_SEND_COUNT=N: send the
 * message N times on the one connection (RSET between them).
 * $CONN_NAMESERVER=IP:PORT: use only that DNS server.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/dns.h>
#include <event2/event.h>

#include "conf/conf.h"
#include "relay/conn.h"
#include "relay/tls.h"
#include "lib/log.h"

struct drv {
	const char *from, *to, *file;
	bool done;
	enum conn_verdict verdict;
	char reason[1024];
	char peer[320];
	struct conn_tls_info tls;
	char auth[256];
	int rcpt_code;
	int msg_code;
	bool sent;
	int count;			/* messages left to send on this connection */
	struct event_base *base;
};

static void drv_json_str(const char *s)
{
	putchar('"');
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;

		if (ch == '"' || ch == '\\')
			printf("\\%c", ch);
		else if (ch < 0x20)
			printf("\\u%04x", ch);
		else
			putchar(ch);
	}
	putchar('"');
}

static void drv_json_opt(const char *s, bool present)
{
	if (present)
		drv_json_str(s);
	else
		fputs("null", stdout);
}

/* Peak resident memory of this process (kB), to show content is streamed. */
static long drv_peak_rss(void)
{
	char line[128];
	long kb = -1;
	FILE *f = fopen("/proc/self/status", "r");

	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "VmHWM: %ld", &kb) == 1)
			break;
	if (f)
		fclose(f);
	return kb;
}

static void drv_print(const struct drv *d)
{
	char mechs[256], *tok, *save = NULL;
	bool first = true;

	printf("{\"verdict\": ");
	drv_json_str(conn_verdict_name(d->verdict));
	printf(", \"reason\": ");
	drv_json_str(d->reason);
	printf(", \"tls_version\": ");
	drv_json_opt(d->tls.version, d->tls.active);
	printf(", \"cipher\": ");
	drv_json_opt(d->tls.cipher, d->tls.active);
	printf(", \"verified\": %s, \"peer\": ", d->tls.verified ? "true" : "false");
	drv_json_str(d->peer);
	printf(", \"auth_mechs\": [");
	snprintf(mechs, sizeof(mechs), "%s", d->auth);
	for (tok = strtok_r(mechs, " ", &save); tok; tok = strtok_r(NULL, " ", &save)) {
		printf("%s", first ? "" : ", ");
		drv_json_str(tok);
		first = false;
	}
	printf("], \"rcpt_codes\": [");
	if (d->sent && d->rcpt_code)
		printf("%d", d->rcpt_code);
	printf("], \"msg_code\": ");
	if (d->sent)
		printf("%d", d->msg_code);
	else
		printf("null");
	printf(", \"peak_rss_kb\": %ld}\n", drv_peak_rss());
}

static int drv_send(struct conn *c, struct drv *d)
{
	const char *rcpts[1] = { d->to };
	struct smtp_client_msg m;
	struct stat st;
	int fd = open(d->file, O_RDONLY | O_CLOEXEC);

	if (fd < 0 || fstat(fd, &st) < 0) {
		fprintf(stderr, "conn-driver: %s: %s\n", d->file, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	memset(&m, 0, sizeof(m));
	m.sender = d->from;
	m.rcpts = rcpts;
	m.nrcpts = 1;
	m.size = (uint64_t)st.st_size;
	m.eightbit = true;
	if (conn_send(c, &m, fd) < 0) {
		fprintf(stderr, "conn-driver: conn_send: %s\n", strerror(errno));
		close(fd);
		return -1;
	}
	d->sent = true;
	d->count--;
	return 0;
}

static void drv_ready(struct conn *c, void *arg)
{
	struct drv *d = arg;

	if (d->file && d->count > 0 && drv_send(c, d) == 0)
		return;
	conn_quit(c);
}

static void drv_msg_done(struct conn *c, void *arg)
{
	struct drv *d = arg;
	const struct smtp_client *cl = conn_client(c);
	const struct smtp_client_result *r = smtp_client_msg_result(cl);

	if (smtp_client_nrcpts(cl) > 0)
		d->rcpt_code = smtp_client_rcpt_result(cl, 0)->code;
	d->msg_code = r ? r->code : 0;
	/* Connection reuse: RSET, then ready() sends the next one. */
	if (d->count > 0 && d->msg_code / 100 == 2)
		conn_reset(c);
	else
		conn_quit(c);
}

static void drv_closed(struct conn *c, enum conn_verdict v, const char *reason, void *arg)
{
	struct drv *d = arg;

	d->done = true;
	d->verdict = v;
	snprintf(d->reason, sizeof(d->reason), "%s", reason);
	snprintf(d->peer, sizeof(d->peer), "%s", conn_peer(c));
	snprintf(d->auth, sizeof(d->auth), "%s", smtp_client_ehlo(conn_client(c))->auth_raw);
	d->tls = *conn_tls(c);
	event_base_loopexit(d->base, NULL);
}

static const struct conf_smarthost *drv_smarthost(const struct config *conf, const char *name)
{
	for (size_t i = 0; i < conf->nsmarthosts; i++)
		if (strcmp(conf->smarthosts[i].name, name) == 0)
			return &conf->smarthosts[i];
	return NULL;
}

static struct config *drv_config(const char *path)
{
	char *errors = NULL;
	struct config *conf = conf_load(path, &errors);

	if (conf && conf_load_secrets(conf, NULL, &errors) < 0) {
		conf_free(conf);
		conf = NULL;
	}
	if (!conf)
		fprintf(stderr, "%s", errors ? errors : "conn-driver: cannot load the config\n");
	free(errors);
	return conf;
}

/* System resolver, or only $CONN_NAMESERVER ("IP:PORT") when set. */
static struct evdns_base *drv_dns(struct event_base *base)
{
	const char *ns = getenv("CONN_NAMESERVER");
	struct evdns_base *dns;

	if (ns) {
		dns = evdns_base_new(base, EVDNS_BASE_DISABLE_WHEN_INACTIVE);
		if (dns && evdns_base_nameserver_ip_add(dns, ns) != 0) {
			evdns_base_free(dns, 0);
			dns = NULL;
		}
		return dns;
	}
	dns = evdns_base_new(base, EVDNS_BASE_INITIALIZE_NAMESERVERS | EVDNS_BASE_DISABLE_WHEN_INACTIVE);
	/* No usable resolv.conf: /etc/hosts still answers. */
	return dns ? dns : evdns_base_new(base, EVDNS_BASE_DISABLE_WHEN_INACTIVE);
}

static int drv_run(const struct config *conf, const struct conf_smarthost *sh, size_t port,
    struct drv *d)
{
	static const struct conn_events ev = { drv_ready, drv_msg_done, drv_closed };
	struct conn_params p = { sh, port, conf->hostname, sh->password, NULL };
	struct evdns_base *dns;
	struct conn *c;
	char err[512];

	p.ssl_ctx = tls_client_ctx(sh, err, sizeof(err));
	if (!p.ssl_ctx) {
		fprintf(stderr, "conn-driver: %s\n", err);
		return 2;
	}
	d->base = event_base_new();
	dns = d->base ? drv_dns(d->base) : NULL;
	c = dns ? conn_new(d->base, dns, &p, &ev, d) : NULL;
	if (!c) {
		fprintf(stderr, "conn-driver: cannot start: %s\n", strerror(errno));
		return 2;
	}
	event_base_dispatch(d->base);
	if (!d->done)
		conn_abort(c);
	evdns_base_free(dns, 0);
	event_base_free(d->base);
	SSL_CTX_free(p.ssl_ctx);
	return d->done ? 0 : 2;
}

int main(int argc, char **argv)
{
	struct drv d;
	struct config *conf;
	const struct conf_smarthost *sh;
	char *end;
	unsigned long port;
	int r;

	if (argc != 4 && !(argc == 8 && strcmp(argv[4], "send") == 0)) {
		fprintf(stderr, "usage: conn-driver CONFIG SMARTHOST_NAME PORT_INDEX "
		    "[send FROM TO CONTENT_FILE]\n");
		return 2;
	}
	log_init("conn-driver", LOG_TARGET_STDERR, getenv("CONN_DEBUG") != NULL);
	memset(&d, 0, sizeof(d));
	if (argc == 8) {
		d.from = argv[5];
		d.to = argv[6];
		d.file = argv[7];
		d.count = getenv("CONN_SEND_COUNT") ? atoi(getenv("CONN_SEND_COUNT")) : 1;
	}
	conf = drv_config(argv[1]);
	if (!conf)
		return 2;
	sh = drv_smarthost(conf, argv[2]);
	port = strtoul(argv[3], &end, 10);
	if (!sh || *end || port >= sh->nports) {
		fprintf(stderr, "conn-driver: no smarthost \"%s\" with port index %s\n", argv[2], argv[3]);
		conf_free(conf);
		return 2;
	}
	r = drv_run(conf, sh, (size_t)port, &d);
	if (r == 0) {
		drv_print(&d);
		r = d.verdict == CONN_OK ? 0 : 1;
	}
	conf_free(conf);
	return r;
}
