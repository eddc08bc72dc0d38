#include "config.h"
#include "daemon/metrics.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "relay/relay.h"
#include "daemon/sched.h"
#include "relay/stats.h"
#include "lib/rfc3339.h"
#include "queue/mailq.h"
#include "queue/qjson.h"
#include "daemon/durable.h"
#include "lib/fsutil.h"
#include "lib/log.h"

#define METRICS_MAXSH 64

/* Message states of smtprelay_queue_messages: not yet picked up, in
 * delivery, waiting with some recipient deferred, waiting for a first try,
 * kept on hold (a failure whose DSN failed or was suppressed). */
enum metrics_qstate { MQ_PENDING, MQ_DEFERRED, MQ_ACTIVE, MQ_MAILDROP, MQ_HELD, MQ_N };
static const char *const metrics_qstates[MQ_N] = { "pending", "deferred", "active", "maildrop",
	"held" };
static const char *const metrics_rstates[] = { "pending", "deferred", "delivered", "failed" };
static const char *const metrics_sources[STATS_NSOURCES] = { "sendmail", "smtp" };

struct metrics {
	struct daemon *d;
	struct evhttp *http;
	struct evhttp_bound_socket *bound;
	char *spec;			/* what bound is bound to */
	struct event *timer;
	bool writing;			/* a textfile snapshot or write is in flight */
	bool again;			/* asked for meanwhile (a reload): write once more */
	char last_error[4096 + 512];	/* of the textfile: logged once per change */
};

/* One consistent view.  The spool part (queue counts) is read on a commit
 * worker; the rest (relay state, counters, names) is loop state, added on
 * the loop when the read is over. */
struct metrics_snap {
	struct daemon *d;
	struct queue *q;
	char (*busy)[QID_SIZE];		/* in delivery when the request was made, sorted */
	size_t nbusy;
	metrics_ready_fn ready;
	void *arg;
	double now;
	bool queue_ok;
	char queue_err[256];
	unsigned long msgs[MQ_N];
	unsigned long rcpts[Q_FAILED + 1];
	double oldest_age;
	struct mailq_counts counts;	/* those of `smtprelay status`, same pass */
	struct relay_smarthost_status sh[METRICS_MAXSH];
	size_t nsh;
	const char *names[METRICS_MAXSH * 2];	/* configured ones first */
	size_t nnames;
};

/* ---- one consistent view ---- */

static int metrics_id_cmp(const void *a, const void *b)
{
	return strcmp(a, b);
}

/* On the worker: sched_busy() as it was when the request was made. */
static bool metrics_busy(void *arg, const char *id)
{
	const struct metrics_snap *s = arg;

	return s->nbusy && bsearch(id, s->busy, s->nbusy, sizeof(*s->busy), metrics_id_cmp);
}

static void metrics_count_one(void *arg, enum q_area area, const struct q_envelope *env)
{
	struct metrics_snap *s = arg;
	double arrival = env->arrival_us ? (double)env->arrival_us / 1e6 : s->now;
	bool deferred = false;
	enum metrics_qstate st;

	for (size_t i = 0; i < env->nrcpts; i++) {
		if ((unsigned)env->rcpts[i].state <= Q_FAILED)
			s->rcpts[env->rcpts[i].state]++;
		deferred |= env->rcpts[i].state == Q_DEFERRED;
	}
	s->counts.messages++;
	s->counts.bytes += env->size;
	s->counts.held += env->held;
	if (area == Q_MAILDROP)
		st = MQ_MAILDROP;
	else if (env->held)
		st = MQ_HELD;
	else if (metrics_busy(s, env->id))
		st = MQ_ACTIVE;
	else
		st = deferred ? MQ_DEFERRED : MQ_PENDING;
	/* As mailq_count counts them: a held message in delivery is active. */
	s->counts.maildrop += area == Q_MAILDROP;
	s->counts.active += area == Q_QUEUE && metrics_busy(s, env->id);
	s->msgs[st]++;
	if (s->now - arrival > s->oldest_age)
		s->oldest_age = s->now - arrival;
}

static void metrics_add_name(struct metrics_snap *s, const char *name)
{
	for (size_t i = 0; i < s->nnames; i++)
		if (strcmp(s->names[i], name) == 0)
			return;
	if (s->nnames < sizeof(s->names) / sizeof(s->names[0]))
		s->names[s->nnames++] = name;
}

/* On a commit worker: every envelope of queue/ and maildrop/ is read
 * here, not on the loop (10,000 queued messages are 10,000 file reads). */
static int metrics_scan_work(void *arg, char *err, size_t errlen)
{
	struct metrics_snap *s = arg;
	struct timeval tv;

	(void)err;
	(void)errlen;
	gettimeofday(&tv, NULL);
	s->now = (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
	s->queue_ok = mailq_foreach(s->q, Q_QUEUE, metrics_count_one, s, s->queue_err,
	    sizeof(s->queue_err)) == 0 && mailq_foreach(s->q, Q_MAILDROP, metrics_count_one,
	    s, s->queue_err, sizeof(s->queue_err)) == 0;
	memcpy(s->counts.rcpts, s->rcpts, sizeof(s->counts.rcpts));
	return 0;
}

/* Back on the loop: the relay's and the counters' part, then the caller. */
static void metrics_scan_done(void *arg, int error, const char *err)
{
	struct metrics_snap *s = arg;
	struct daemon *d = s->d;
	const struct stats *st = stats_get();

	if (error) {			/* the job itself could not run */
		s->queue_ok = false;
		snprintf(s->queue_err, sizeof(s->queue_err), "%s", err);
	}
	if (d->relay && d->conf->nsmarthosts)
		s->nsh = relay_status(d->relay, s->sh, METRICS_MAXSH);
	for (size_t i = 0; i < d->conf->nsmarthosts; i++)
		metrics_add_name(s, d->conf->smarthosts[i].name);
	for (size_t i = 0; i < st->nsh; i++)
		metrics_add_name(s, st->sh[i].name);
	s->ready(s->arg, s);
	free(s->busy);
	free(s);
}

void metrics_request(struct daemon *d, metrics_ready_fn ready, void *arg)
{
	struct metrics_snap *s = calloc(1, sizeof(*s));

	if (!s || (d->sched && sched_busy_ids(d->sched, &s->busy, &s->nbusy) < 0)) {
		free(s);
		ready(arg, NULL);
		return;
	}
	s->d = d;
	s->q = d->queue;
	s->ready = ready;
	s->arg = arg;
	s->queue_ok = true;
	durable_run(d->durable, metrics_scan_work, metrics_scan_done, s, false);
}

static const struct relay_smarthost_status *metrics_relay_sh(const struct metrics_snap *s,
    const char *name)
{
	for (size_t i = 0; i < s->nsh; i++)
		if (strcmp(s->sh[i].name, name) == 0)
			return &s->sh[i];
	return NULL;
}

static bool metrics_throttled(const struct relay_smarthost_status *rs)
{
	return rs && rs->held_until > 0;
}

/* ---- Prometheus text format 0.0.4 ---- */

void metrics_label(FILE *f, const char *name, const char *v)
{
	fprintf(f, "%s=\"", name);
	for (; *v; v++) {
		if (*v == '\\' || *v == '"')
			fprintf(f, "\\%c", *v);
		else if (*v == '\n')
			fputs("\\n", f);
		else
			fputc(*v, f);
	}
	fputc('"', f);
}

static void metrics_family(FILE *f, const char *name, const char *type, const char *help)
{
	fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* name{smarthost="N"[,extra="V"]} value */
static void metrics_sh_sample(FILE *f, const char *family, const char *sh, const char *extra,
    const char *extra_value, unsigned long long n)
{
	fprintf(f, "%s{", family);
	metrics_label(f, "smarthost", sh);
	if (extra) {
		fputc(',', f);
		metrics_label(f, extra, extra_value);
	}
	fprintf(f, "} %llu\n", n);
}

static void metrics_prom_queue(FILE *f, const struct metrics_snap *s)
{
	metrics_family(f, "smtprelay_build_info", "gauge", "The running smtprelayd's version.");
	fputs("smtprelay_build_info{", f);
	metrics_label(f, "version", PACKAGE_VERSION);
	fputs("} 1\n", f);
	metrics_family(f, "smtprelay_queue_messages", "gauge",
	    "Messages in the queue by state (maildrop: not yet picked up).");
	for (size_t i = 0; s->queue_ok && i < MQ_N; i++)
		fprintf(f, "smtprelay_queue_messages{state=\"%s\"} %lu\n", metrics_qstates[i],
		    s->msgs[i]);
	metrics_family(f, "smtprelay_queue_oldest_age_seconds", "gauge",
	    "Age of the oldest message in the queue (0 when empty).");
	if (s->queue_ok)
		fprintf(f, "smtprelay_queue_oldest_age_seconds %.3f\n", s->oldest_age);
	metrics_family(f, "smtprelay_received_messages_total", "counter",
	    "Messages accepted since the daemon started, by source.");
	for (size_t i = 0; i < STATS_NSOURCES; i++)
		fprintf(f, "smtprelay_received_messages_total{source=\"%s\"} %llu\n",
		    metrics_sources[i], (unsigned long long)stats_get()->received[i]);
}

static void metrics_prom_outcomes(FILE *f, const struct metrics_snap *s)
{
	static const struct stats_sh zero;

	metrics_family(f, "smtprelay_delivered_recipients_total", "counter",
	    "Recipients the smarthost accepted since the daemon started.");
	for (size_t i = 0; i < s->nnames; i++) {
		const struct stats_sh *c = stats_find(s->names[i]);
		metrics_sh_sample(f, "smtprelay_delivered_recipients_total", s->names[i], NULL,
		    NULL, (c ? c : &zero)->delivered);
	}
	metrics_family(f, "smtprelay_deferred_recipients_total", "counter",
	    "Recipients deferred since the daemon started, by reason.");
	for (size_t i = 0; i < s->nnames; i++) {
		const struct stats_sh *c = stats_find(s->names[i]);
		for (size_t r = 0; r < STATS_NREASONS; r++)
			metrics_sh_sample(f, "smtprelay_deferred_recipients_total", s->names[i],
			    "reason", stats_reason_name(r), (c ? c : &zero)->deferred[r]);
	}
	metrics_family(f, "smtprelay_bounced_recipients_total", "counter",
	    "Recipients failed (bounced) since the daemon started.");
	for (size_t i = 0; i < s->nnames; i++) {
		const struct stats_sh *c = stats_find(s->names[i]);
		metrics_sh_sample(f, "smtprelay_bounced_recipients_total", s->names[i], NULL,
		    NULL, (c ? c : &zero)->bounced);
	}
}

static void metrics_prom_conns(FILE *f)
{
	const struct stats *st = stats_get();
	char port[16];

	metrics_family(f, "smtprelay_connection_failures_total", "counter",
	    "Connections to a smarthost port that failed before the session was up, by "
	    "verdict (as smtprelay probe names them).");
	for (size_t i = 0; i < st->nsh; i++)
		for (size_t j = 0; j < st->sh[i].nfail; j++) {
			const struct stats_pair *p = &st->sh[i].fail[j];
			fprintf(f, "smtprelay_connection_failures_total{");
			metrics_label(f, "smarthost", st->sh[i].name);
			snprintf(port, sizeof(port), "%u", p->port);
			fputc(',', f);
			metrics_label(f, "port", port);
			fputc(',', f);
			metrics_label(f, "verdict", p->key);
			fprintf(f, "} %llu\n", (unsigned long long)p->n);
		}
	metrics_family(f, "smtprelay_tls_connections_total", "counter",
	    "Sessions with a smarthost established over TLS, by protocol version.");
	for (size_t i = 0; i < st->nsh; i++)
		for (size_t j = 0; j < st->sh[i].ntls; j++)
			metrics_sh_sample(f, "smtprelay_tls_connections_total", st->sh[i].name,
			    "version", st->sh[i].tls[j].key, st->sh[i].tls[j].n);
}

static void metrics_prom_duration(FILE *f)
{
	const struct stats *st = stats_get();
	unsigned long long cum = 0;

	metrics_family(f, "smtprelay_delivery_duration_seconds", "histogram",
	    "Time from a message's arrival until the smarthost accepted a recipient.");
	for (size_t i = 0; i < STATS_NBUCKETS; i++) {
		cum += st->buckets[i];
		fprintf(f, "smtprelay_delivery_duration_seconds_bucket{le=\"%g\"} %llu\n",
		    stats_bucket_bounds[i], cum);
	}
	fprintf(f, "smtprelay_delivery_duration_seconds_bucket{le=\"+Inf\"} %llu\n",
	    (unsigned long long)st->duration_count);
	fprintf(f, "smtprelay_delivery_duration_seconds_sum %.6f\n", st->duration_sum);
	fprintf(f, "smtprelay_delivery_duration_seconds_count %llu\n",
	    (unsigned long long)st->duration_count);
}

static void metrics_prom_throttled(FILE *f, const struct metrics_snap *s)
{
	metrics_family(f, "smtprelay_throttled", "gauge",
	    "1 while the smarthost is held after a throttling reply, else 0.");
	for (size_t i = 0; i < s->nsh; i++)
		metrics_sh_sample(f, "smtprelay_throttled", s->sh[i].name, NULL, NULL,
		    metrics_throttled(&s->sh[i]));
}

int metrics_write_prom(FILE *out, const struct metrics_snap *s)
{
	metrics_prom_queue(out, s);
	metrics_prom_outcomes(out, s);
	metrics_prom_conns(out);
	metrics_prom_duration(out);
	metrics_prom_throttled(out, s);
	return ferror(out) ? -1 : 0;
}

/* ---- JSON (status --json) ---- */

static void metrics_json_time(FILE *f, const char *key, time_t t)
{
	char buf[40];

	fprintf(f, ", \"%s\": ", key);
	if (t <= 0) {
		fputs("null", f);
		return;
	}
	rfc3339_local(t, buf, sizeof(buf));
	qjson_string(f, buf);
}

static void metrics_json_queue(FILE *f, const struct metrics_snap *s)
{
	fputs(", \"queue\": {", f);
	if (!s->queue_ok) {
		fputs("\"error\": ", f);
		qjson_string(f, s->queue_err);
		fputc('}', f);
		return;
	}
	fputs("\"messages\": {", f);
	for (size_t i = 0; i < MQ_N; i++)
		fprintf(f, "%s\"%s\": %lu", i ? ", " : "", metrics_qstates[i], s->msgs[i]);
	fputs("}, \"recipients\": {", f);
	for (size_t i = 0; i <= Q_FAILED; i++)
		fprintf(f, "%s\"%s\": %lu", i ? ", " : "", metrics_rstates[i], s->rcpts[i]);
	fprintf(f, "}, \"oldest_age_seconds\": %.3f}", s->oldest_age);
}

static const struct conf_smarthost *metrics_conf_sh(const struct config *c, const char *name)
{
	for (size_t i = 0; i < c->nsmarthosts; i++)
		if (strcmp(c->smarthosts[i].name, name) == 0)
			return &c->smarthosts[i];
	return NULL;
}

static void metrics_json_counts(FILE *f, const struct stats_sh *c)
{
	static const struct stats_sh zero;

	if (!c)
		c = &zero;
	fprintf(f, ", \"delivered_recipients\": %llu, \"bounced_recipients\": %llu, "
	    "\"deferred_recipients\": {", (unsigned long long)c->delivered,
	    (unsigned long long)c->bounced);
	for (size_t r = 0; r < STATS_NREASONS; r++)
		fprintf(f, "%s\"%s\": %llu", r ? ", " : "", stats_reason_name(r),
		    (unsigned long long)c->deferred[r]);
	fputs("}, \"connection_failures\": [", f);
	for (size_t j = 0; j < c->nfail; j++) {
		fprintf(f, "%s{\"port\": %u, \"verdict\": ", j ? ", " : "", c->fail[j].port);
		qjson_string(f, c->fail[j].key);
		fprintf(f, ", \"count\": %llu}", (unsigned long long)c->fail[j].n);
	}
	fputs("], \"tls_connections\": {", f);
	for (size_t j = 0; j < c->ntls; j++) {
		fputs(j ? ", " : "", f);
		qjson_string(f, c->tls[j].key);
		fprintf(f, ": %llu", (unsigned long long)c->tls[j].n);
	}
	fputc('}', f);
}

static void metrics_json_senders(FILE *f, const struct conf_smarthost *ch)
{
	fputs(", \"senders\": ", f);
	if (!ch || ch->nsenders == 0) {
		fputs("null", f);
		return;
	}
	fputc('[', f);
	for (size_t j = 0; j < ch->nsenders; j++) {
		fputs(j ? ", " : "", f);
		qjson_string(f, ch->senders[j]);
	}
	fputc(']', f);
}

static void metrics_json_relay(FILE *f, const struct relay_smarthost_status *rs)
{
	fputs(", \"port\": ", f);
	if (rs && rs->port && *rs->port)
		qjson_string(f, rs->port);
	else
		fputs("null", f);
	fprintf(f, ", \"connections\": %u, \"throttled\": %s, \"rate_per_sec\": %.3f",
	    rs ? rs->connections : 0, metrics_throttled(rs) ? "true" : "false",
	    rs ? rs->rate_per_sec : 0.0);
	metrics_json_time(f, "last_success", rs ? rs->last_success : 0);
	fputs(", \"last_error\": ", f);
	if (rs && rs->last_error[0])
		qjson_string(f, rs->last_error);
	else
		fputs("null", f);
	metrics_json_time(f, "last_error_time", rs && rs->last_error[0] ? rs->last_error_time : 0);
}

static void metrics_json_smarthost(FILE *f, const struct metrics_snap *s, const char *name)
{
	const struct conf_smarthost *ch = metrics_conf_sh(s->d->conf, name);

	fputs("{\"name\": ", f);
	qjson_string(f, name);
	fputs(", \"host\": ", f);
	if (ch)
		qjson_string(f, ch->host);
	else
		fputs("null", f);
	fprintf(f, ", \"configured\": %s", ch ? "true" : "false");
	metrics_json_senders(f, ch);
	metrics_json_relay(f, metrics_relay_sh(s, name));
	metrics_json_counts(f, stats_find(name));
	fputc('}', f);
}

void metrics_write_json(FILE *out, const struct metrics_snap *s)
{
	const struct stats *st = stats_get();

	fprintf(out, "{\"running\": true, \"pid\": %ld, \"version\": ", (long)getpid());
	qjson_string(out, PACKAGE_VERSION);
	metrics_json_time(out, "started", st->started);
	fprintf(out, ", \"uptime_seconds\": %lld", (long long)(time(NULL) - st->started));
	metrics_json_queue(out, s);
	fprintf(out, ", \"received\": {\"sendmail\": %llu, \"smtp\": %llu}",
	    (unsigned long long)st->received[STATS_SRC_SENDMAIL],
	    (unsigned long long)st->received[STATS_SRC_SMTP]);
	fprintf(out, ", \"delivery_duration_seconds\": {\"count\": %llu, \"sum\": %.6f}",
	    (unsigned long long)st->duration_count, st->duration_sum);
	fputs(", \"smarthosts\": [", out);
	for (size_t i = 0; i < s->nnames; i++) {
		fputs(i ? ", " : "", out);
		metrics_json_smarthost(out, s, s->names[i]);
	}
	fputs("]}\n", out);
}

/* ---- status text ---- */

void metrics_status_counts(FILE *out, const struct metrics_snap *s)
{
	if (s->queue_ok)
		mailq_counts_print(out, &s->counts);
	else
		fprintf(out, "queue: %s\n", s->queue_err);
}

void metrics_status_head(FILE *out, const struct metrics_snap *s)
{
	const struct stats *st = stats_get();

	fprintf(out, "received since start: %llu from sendmail, %llu over SMTP\n",
	    (unsigned long long)st->received[STATS_SRC_SENDMAIL],
	    (unsigned long long)st->received[STATS_SRC_SMTP]);
	if (s->queue_ok)
		fprintf(out, "oldest message: %.0f s\n", s->oldest_age);
}

static void metrics_status_senders(FILE *out, const struct conf_smarthost *ch)
{
	if (!ch)
		return;
	if (ch->nsenders == 0) {
		fputs("  senders: any not matched by another smarthost's senders\n", out);
		return;
	}
	fputs("  senders:", out);
	for (size_t j = 0; j < ch->nsenders; j++)
		fprintf(out, "%s%s", j ? ", " : " ", ch->senders[j]);
	fputc('\n', out);
}

static bool metrics_sh_throttled(struct daemon *d, const char *name)
{
	struct relay_smarthost_status st[16];
	size_t n = d->relay && d->conf->nsmarthosts ? relay_status(d->relay, st, 16) : 0;

	for (size_t i = 0; i < n; i++)
		if (strcmp(st[i].name, name) == 0)
			return metrics_throttled(&st[i]);
	return false;
}

void metrics_status_smarthost(FILE *out, struct daemon *d, const char *name)
{
	static const struct stats_sh zero;
	const struct stats_sh *c = stats_find(name);
	uint64_t deferred = 0;

	metrics_status_senders(out, metrics_conf_sh(d->conf, name));
	fprintf(out, "  throttled: %s\n", metrics_sh_throttled(d, name) ? "yes" : "no");
	if (!c)
		c = &zero;
	for (size_t r = 0; r < STATS_NREASONS; r++)
		deferred += c->deferred[r];
	fprintf(out, "  since start (recipients): %llu sent, %llu deferred, %llu bounced\n",
	    (unsigned long long)c->delivered, (unsigned long long)deferred,
	    (unsigned long long)c->bounced);
	for (size_t r = 0; r < STATS_NREASONS; r++)
		if (c->deferred[r])
			fprintf(out, "  deferred (%s): %llu\n", stats_reason_name(r),
			    (unsigned long long)c->deferred[r]);
	for (size_t j = 0; j < c->nfail; j++)
		fprintf(out, "  connection failures on port %u (%s): %llu\n", c->fail[j].port,
		    c->fail[j].key, (unsigned long long)c->fail[j].n);
	for (size_t j = 0; j < c->ntls; j++)
		fprintf(out, "  TLS connections (%s): %llu\n", c->tls[j].key,
		    (unsigned long long)c->tls[j].n);
}

/* ---- HTTP (metrics_listen) ---- */

/* A scrape waiting for its snapshot.  When the client goes away
 * meanwhile, libevent frees the connection (conn is then NULL) but keeps
 * the request, detached, for the reply we still owe: evhttp_send_reply on
 * a detached request only frees it.  No scrape is pending at metrics_free
 * (main.c frees the commit stage first, which runs every done callback). */
struct metrics_scrape {
	struct evhttp_request *req;
	struct evhttp_connection *conn;
};

static void metrics_http_closed(struct evhttp_connection *conn, void *arg)
{
	struct metrics_scrape *w = arg;

	(void)conn;
	w->conn = NULL;
}

static void metrics_http_reply(void *arg, const struct metrics_snap *s)
{
	struct metrics_scrape *w = arg;
	struct evhttp_request *req = w->req;
	struct evbuffer *body = NULL;
	char *text = NULL;
	size_t len = 0;
	FILE *f;

	if (!w->conn) {
		free(w);
		evhttp_send_reply(req, HTTP_SERVUNAVAIL, "Client went away", NULL);
		return;
	}
	/* The connection outlives this scrape (keep-alive): forget w. */
	evhttp_connection_set_closecb(w->conn, NULL, NULL);
	free(w);
	if (!s || !(f = open_memstream(&text, &len)) || metrics_write_prom(f, s) < 0 ||
	    fclose(f) != 0 || !(body = evbuffer_new())) {
		free(text);
		evhttp_send_error(req, HTTP_INTERNAL, "out of memory");
		return;
	}
	evbuffer_add(body, text, len);
	free(text);
	evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
	    "text/plain; version=0.0.4; charset=utf-8");
	evhttp_send_reply(req, HTTP_OK, "OK", body);
	evbuffer_free(body);
}

/* The queue is read on a commit worker; the reply follows from there. */
static void metrics_http_cb(struct evhttp_request *req, void *arg)
{
	struct metrics *m = arg;
	const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));
	struct metrics_scrape *w;

	if (!path || strcmp(path, "/metrics") != 0) {
		evhttp_send_error(req, HTTP_NOTFOUND, "Not Found: metrics are at /metrics");
		return;
	}
	if (!(evhttp_request_get_command(req) & (EVHTTP_REQ_GET | EVHTTP_REQ_HEAD))) {
		evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", "GET, HEAD");
		evhttp_send_error(req, 405, "Method Not Allowed");
		return;
	}
	if (!(w = calloc(1, sizeof(*w)))) {
		evhttp_send_error(req, HTTP_INTERNAL, "out of memory");
		return;
	}
	w->req = req;
	w->conn = evhttp_request_get_connection(req);
	evhttp_connection_set_closecb(w->conn, metrics_http_closed, w);
	metrics_request(m->d, metrics_http_reply, w);
}

static int metrics_socket(const struct conf_listen *l, char *err, size_t errlen)
{
	int one = 1, fd = socket(l->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	if (fd < 0) {
		snprintf(err, errlen, "metrics_listen %s: socket: %s", l->spec, strerror(errno));
		return -1;
	}
	(void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (l->addr.ss_family == AF_INET6)
		(void)setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (bind(fd, (const struct sockaddr *)&l->addr, l->addrlen) < 0 || listen(fd, 16) < 0) {
		snprintf(err, errlen, "metrics_listen %s: cannot listen: %s (is another "
		    "program using the port? choose another in metrics_listen)", l->spec,
		    strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

/* Bind d->conf's metrics_listen; the old binding stays until this works. */
static int metrics_bind(struct metrics *m, char *err, size_t errlen)
{
	const struct conf_listen *l = &m->d->conf->metrics_listen;
	struct evhttp_bound_socket *b;
	char *spec;
	int fd;

	if ((fd = metrics_socket(l, err, errlen)) < 0)
		return -1;
	if (!(spec = strdup(l->spec)) || !(b = evhttp_accept_socket_with_handle(m->http, fd))) {
		free(spec);
		close(fd);
		snprintf(err, errlen, "metrics_listen %s: out of memory", l->spec);
		return -1;
	}
	if (m->bound)
		evhttp_del_accept_socket(m->http, m->bound);
	free(m->spec);
	m->bound = b;
	m->spec = spec;
	log_info("metrics on http://%s/metrics", spec);
	return 0;
}

static void metrics_unbind(struct metrics *m)
{
	if (m->bound)
		evhttp_del_accept_socket(m->http, m->bound);
	m->bound = NULL;
	free(m->spec);
	m->spec = NULL;
}

static int metrics_http_new(struct metrics *m)
{
	if (!(m->http = evhttp_new(m->d->base)))
		return -1;
	/* A scraper is a GET every few seconds: anything bigger or slower is
	 * not one, and must not hold resources the delivery loop shares. */
	/* Every method reaches metrics_http_cb, which answers 405 (libevent
	 * itself would say 501) to all but GET and HEAD. */
	evhttp_set_allowed_methods(m->http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD | EVHTTP_REQ_POST |
	    EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE | EVHTTP_REQ_OPTIONS | EVHTTP_REQ_TRACE |
	    EVHTTP_REQ_CONNECT | EVHTTP_REQ_PATCH);
	evhttp_set_max_headers_size(m->http, METRICS_HTTP_MAX_HEADERS);
	evhttp_set_max_body_size(m->http, METRICS_HTTP_MAX_HEADERS);
	evhttp_set_timeout(m->http, METRICS_HTTP_TIMEOUT);
	evhttp_set_gencb(m->http, metrics_http_cb, m);
	return 0;
}

/* ---- metrics_textfile ---- */

/* One write of the file, on a commit worker: the text is rendered on the
 * loop, the open, write, rename and unlink happen here. */
struct metrics_file {
	struct metrics *m;
	char *path;
	char *text;
	size_t len;
	char failed[4096];		/* the file the failing step concerned */
	const char *what;		/* the failing step */
};

/* Written beside the target, then renamed over it: the collector reads
 * *.prom only, and never sees half a file. */
static int metrics_file_work(void *arg, char *err, size_t errlen)
{
	struct metrics_file *w = arg;
	char tmp[4096];
	int fd, e;

	(void)err;
	(void)errlen;
	snprintf(tmp, sizeof(tmp), "%s.%ld.tmp", w->path, (long)getpid());
	snprintf(w->failed, sizeof(w->failed), "%s", tmp);
	w->what = "cannot create";
	if ((fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644)) < 0)
		return errno;
	(void)fchmod(fd, 0644);	/* node_exporter runs as another user */
	w->what = "cannot write";
	if (fs_write_all(fd, w->text, w->len) < 0) {
		e = errno;
		close(fd);
		unlink(tmp);
		return e;
	}
	if (close(fd) < 0) {
		e = errno;
		unlink(tmp);
		return e;
	}
	if (rename(tmp, w->path) < 0) {
		e = errno;
		snprintf(w->failed, sizeof(w->failed), "%s", w->path);
		w->what = "cannot rename the new file to";
		unlink(tmp);
		return e;
	}
	return 0;
}

static void metrics_timer_cb(evutil_socket_t fd, short what, void *arg);

/* The write in flight is over; a reload that came meanwhile gets its own. */
static void metrics_file_finished(struct metrics *m)
{
	m->writing = false;
	if (m->again) {
		m->again = false;
		metrics_timer_cb(-1, 0, m);
	}
}

static void metrics_file_done(void *arg, int error, const char *err)
{
	struct metrics_file *w = arg;
	struct metrics *m = w->m;
	char msg[sizeof(m->last_error)];

	(void)err;
	if (error) {
		snprintf(msg, sizeof(msg), "metrics_textfile: %s %s: %s (check that the directory "
		    "exists and is writable by user %s)", w->what, w->failed, strerror(error),
		    m->d->conf->user);
		if (strcmp(msg, m->last_error) != 0)
			log_warn("%s", msg);
		snprintf(m->last_error, sizeof(m->last_error), "%s", msg);
	} else {
		if (m->last_error[0])
			log_info("metrics_textfile: %s written again", w->path);
		m->last_error[0] = '\0';
	}
	free(w->path);
	free(w->text);
	free(w);
	metrics_file_finished(m);
}

/* The snapshot is here: render it, then write it off the loop. */
static void metrics_file_ready(void *arg, const struct metrics_snap *s)
{
	struct metrics *m = arg;
	const char *path = m->d->conf->metrics_textfile;
	struct metrics_file *w = calloc(1, sizeof(*w));
	FILE *f = w ? open_memstream(&w->text, &w->len) : NULL;
	bool ok = f && s && metrics_write_prom(f, s) == 0;

	if (f && fclose(f) != 0)
		ok = false;
	if (!path || !ok || !(w->path = strdup(path))) {
		if (path)	/* (a reload may have turned the file off meanwhile) */
			log_warn("metrics_textfile: %s not written this time: out of memory", path);
		if (w)
			free(w->text);
		free(w);
		metrics_file_finished(m);
		return;
	}
	w->m = m;
	durable_run(m->d->durable, metrics_file_work, metrics_file_done, w, false);
}

static void metrics_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct metrics *m = arg;

	(void)fd;
	/* A write still in flight (a slow disk): a period is skipped; a reload
	 * (what 0, not a timer event) is written once that write is over. */
	if (!m->d->conf->metrics_textfile)
		return;
	if (m->writing) {
		m->again = m->again || what == 0;
		return;
	}
	m->writing = true;
	metrics_request(m->d, metrics_file_ready, m);
}

/* ---- life cycle ---- */

struct metrics *metrics_new(struct daemon *d, char *err, size_t errlen)
{
	static const struct timeval period = { METRICS_TEXTFILE_PERIOD, 0 };
	struct metrics *m = calloc(1, sizeof(*m));

	if (!m || !(m->d = d) || metrics_http_new(m) < 0 ||
	    !(m->timer = event_new(d->base, -1, EV_PERSIST, metrics_timer_cb, m))) {
		snprintf(err, errlen, "metrics: out of memory");
		metrics_free(m);
		return NULL;
	}
	if (d->conf->metrics_listen.spec && metrics_bind(m, err, errlen) < 0) {
		metrics_free(m);
		return NULL;
	}
	event_add(m->timer, &period);
	/* First file once the loop runs: after privileges are dropped, so
	 * that an unwritable directory shows at once, not 15 s later. */
	event_active(m->timer, EV_TIMEOUT, 1);
	return m;
}

void metrics_reload(struct metrics *m)
{
	const char *want;
	char err[512];

	if (!m)
		return;
	want = m->d->conf->metrics_listen.spec;
	if (!want)
		metrics_unbind(m);
	else if ((!m->spec || strcmp(m->spec, want) != 0) && metrics_bind(m, err, sizeof(err)) < 0)
		log_err("%s: keeping %s", err, m->spec ? m->spec : "metrics off");
	metrics_timer_cb(-1, 0, m);
}

void metrics_free(struct metrics *m)
{
	if (!m)
		return;
	if (m->timer)
		event_free(m->timer);
	if (m->http)
		evhttp_free(m->http);
	free(m->spec);
	free(m);
}
