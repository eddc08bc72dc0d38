/* `smtprelay probe`'s report: the engine's results (relay/probe.h) as text
 * or JSON, and the exit status. */
#include "config.h"
#include "frontend/probe.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "relay/probe.h"

/* ---- output ---- */

static void probe_host_port(FILE *out, const struct probe_result *r)
{
	const struct conf_port *port = probe_port(r);
	bool v6 = strchr(r->sh->host, ':') != NULL;

	fprintf(out, "%s%s%s:%u/%s", v6 ? "[" : "", r->sh->host, v6 ? "]" : "", port->port,
	    probe_mode_name(port->mode));
}

static void probe_print_text(FILE *out, const struct probe_result *r)
{
	fprintf(out, "%s ", r->sh->name);
	probe_host_port(out, r);
	fprintf(out, ": %s %s\n", r->verdict, r->summary);
	for (size_t i = 0; i < r->nnotes; i++)
		fprintf(out, "    %s\n", r->notes[i]);
	/* With senders = {...} the section is not everyone's (smtprelay.conf(5) "senders"). */
	for (size_t i = 0; i < r->sh->nsenders; i++)
		fprintf(out, "%s%s", i ? ", " : "    serves senders: ", r->sh->senders[i]);
	if (r->sh->nsenders)
		fputc('\n', out);
}

/* Length of the valid UTF-8 sequence at s (1..4), 0 when invalid. */
static size_t probe_utf8_len(const unsigned char *s)
{
	size_t n = s[0] >= 0xf0 && s[0] <= 0xf4 ? 4 : s[0] >= 0xe0 ? 3 : s[0] >= 0xc2 ? 2 : 0;

	if (s[0] >= 0xf5)
		return 0;
	for (size_t i = 1; i < n; i++)
		if ((s[i] & 0xc0) != 0x80)
			return 0;
	return n;
}

/* A JSON string; bytes that are not UTF-8 become '?' (server text may be
 * anything). */
static void probe_json_str(FILE *out, const char *str)
{
	const unsigned char *s = (const unsigned char *)str;

	fputc('"', out);
	while (*s) {
		size_t n;

		if (*s == '"' || *s == '\\') {
			fprintf(out, "\\%c", *s++);
		} else if (*s == '\n') {
			fputs("\\n", out);
			s++;
		} else if (*s < 0x20 || *s == 0x7f) {
			fprintf(out, "\\u%04x", *s++);
		} else if (*s < 0x80) {
			fputc(*s++, out);
		} else if ((n = probe_utf8_len(s)) > 0) {
			fwrite(s, 1, n, out);
			s += n;
		} else {
			fputc('?', out);
			s++;
		}
	}
	fputc('"', out);
}

static void probe_json_opt(FILE *out, const char *s, bool present)
{
	if (present)
		probe_json_str(out, s);
	else
		fputs("null", out);
}

static void probe_json_mechs(FILE *out, const char *mechs)
{
	char buf[256], *tok, *save = NULL;
	bool first = true;

	snprintf(buf, sizeof(buf), "%s", mechs);
	fputc('[', out);
	for (tok = strtok_r(buf, " ", &save); tok; tok = strtok_r(NULL, " ", &save)) {
		fputs(first ? "" : ", ", out);
		probe_json_str(out, tok);
		first = false;
	}
	fputc(']', out);
}

/* detail: the summary, then the detail lines, one a line. */
static void probe_json_detail(FILE *out, const struct probe_result *r)
{
	char buf[PROBE_TEXT_MAX * (PROBE_NOTES_MAX + 1) + PROBE_NOTES_MAX];
	size_t used = (size_t)snprintf(buf, sizeof(buf), "%s", r->summary);

	for (size_t i = 0; i < r->nnotes && used < sizeof(buf); i++)
		used += (size_t)snprintf(buf + used, sizeof(buf) - used, "\n%s", r->notes[i]);
	probe_json_str(out, buf);
}

static void probe_print_json(FILE *out, const struct probe_result *r, bool last)
{
	const struct conf_port *port = probe_port(r);

	fputs("  {\"smarthost\": ", out);
	probe_json_str(out, r->sh->name);
	fputs(", \"host\": ", out);
	probe_json_str(out, r->sh->host);
	fprintf(out, ", \"port\": %u, \"mode\": \"%s\", \"verdict\": ", port->port,
	    probe_mode_name(port->mode));
	probe_json_str(out, r->verdict);
	fputs(", \"detail\": ", out);
	probe_json_detail(out, r);
	fputs(", \"tls_version\": ", out);
	probe_json_opt(out, r->tls_version, r->tls);
	fputs(", \"cipher\": ", out);
	probe_json_opt(out, r->cipher, r->tls);
	fputs(", \"auth_mechanisms\": ", out);
	probe_json_mechs(out, r->auth);
	fprintf(out, ", \"elapsed_ms\": %ld}%s\n", r->elapsed_ms, last ? "" : ",");
}

/* Delivery tries smarthosts in order, each one's ports in order. */
static const struct probe_result *probe_usable(const struct probe_result *res, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(res[i].verdict, "ok") == 0)
			return &res[i];
	return NULL;
}

/* "Mail will stay queued" only when it will: not when a port went untested. */
static bool probe_unchecked(const struct probe_result *res, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (res[i].unchecked)
			return true;
	return false;
}

static void probe_report(FILE *out, const struct probe_result *res, size_t n, bool json)
{
	const struct probe_result *use = probe_usable(res, n);

	if (json) {
		fputs("[\n", out);
		for (size_t i = 0; i < n; i++)
			probe_print_json(out, &res[i], i + 1 == n);
		fputs("]\n", out);
		return;
	}
	for (size_t i = 0; i < n; i++)
		probe_print_text(out, &res[i]);
	if (!use && probe_unchecked(res, n)) {
		fputs("no usable port found, but some could not be checked without the secret: "
		    "run smtprelay probe as root or as the service user\n", out);
		return;
	}
	if (!use) {
		fputs("no usable port: mail will stay queued\n", out);
		return;
	}
	fprintf(out, "delivery will use %s ", use->sh->name);
	probe_host_port(out, use);
	fputc('\n', out);
}

/* ---- driver ---- */

static int probe_all(const struct config *c, bool json, FILE *out)
{
	struct probe_result *res;
	size_t n;
	int status;

	if (probe_ports(c, &res, &n) < 0) {
		fprintf(stderr, "smtprelay probe: cannot set up the event loop: %s\n",
		    strerror(errno ? errno : ENOMEM));
		return 1;
	}
	probe_report(out, res, n, json);
	fflush(out);
	status = probe_usable(res, n) ? 0 : 1;
	free(res);
	return status;
}

int probe_run(const struct config *c, bool json, FILE *out)
{
	struct sigaction ign, old;
	size_t n = probe_count(c);
	int status;

	if (n == 0) {
		fprintf(stderr, "no smarthost configured in %s\n", c->path ? c->path : "the config");
		if (json)
			fputs("[]\n", out);
		return 1;
	}
	/* A server hanging up while we write must not kill the tool. */
	memset(&ign, 0, sizeof(ign));
	ign.sa_handler = SIG_IGN;
	sigemptyset(&ign.sa_mask);
	sigaction(SIGPIPE, &ign, &old);
	status = probe_all(c, json, out);
	sigaction(SIGPIPE, &old, NULL);
	return status;
}
