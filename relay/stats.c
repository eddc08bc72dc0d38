#include "config.h"
#include "relay/stats.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Delivery through a smarthost takes a second; a queue run, minutes to
 * hours; queue_lifetime is days. */
const double stats_bucket_bounds[STATS_NBUCKETS] = {
	0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 14400, 86400,
};

static struct stats stats;

static const char *const stats_reason_names[STATS_NREASONS] = {
	[STATS_R_CONNECTION] = "connection", [STATS_R_AUTH] = "auth",
	[STATS_R_REPLY] = "reply", [STATS_R_THROTTLED] = "throttled",
	[STATS_R_LOST] = "lost", [STATS_R_SHUTDOWN] = "shutdown",
	[STATS_R_NO_SMARTHOST] = "no_smarthost", [STATS_R_OTHER] = "other",
};

const char *stats_reason_name(enum stats_reason r)
{
	return (unsigned)r < STATS_NREASONS ? stats_reason_names[r] : "other";
}

enum stats_reason stats_reason_of(const char *relay, const char *reason)
{
	bool none = !relay || strcmp(relay, "none") == 0;

	if (!reason)
		reason = "";
	if (strstr(reason, "configuration error") || strstr(reason, "authentication failed"))
		return STATS_R_AUTH;
	if (strstr(reason, "interrupted by shutdown"))
		return STATS_R_SHUTDOWN;
	if (strstr(reason, "no smarthost configured") || strstr(reason, "no smarthost serves"))
		return STATS_R_NO_SMARTHOST;
	if (strcasestr(reason, "throttl"))
		return STATS_R_THROTTLED;
	if (strncmp(reason, "lost connection", 15) == 0)
		return STATS_R_LOST;
	if (strncmp(reason, "host ", 5) == 0 && strstr(reason, " said: "))
		return STATS_R_REPLY;
	if (strncmp(reason, "cannot ", 7) == 0)
		return STATS_R_OTHER;
	return none ? STATS_R_CONNECTION : STATS_R_REPLY;
}

void stats_start(void)
{
	stats.started = time(NULL);
}

const struct stats *stats_get(void)
{
	return &stats;
}

const struct stats_sh *stats_find(const char *smarthost)
{
	for (size_t i = 0; i < stats.nsh; i++)
		if (strcmp(stats.sh[i].name, smarthost) == 0)
			return &stats.sh[i];
	return NULL;
}

static struct stats_sh *stats_sh_get(const char *smarthost)
{
	const char *name = smarthost && *smarthost ? smarthost : "none";
	struct stats_sh *sh = (struct stats_sh *)stats_find(name), *grown;

	if (sh)
		return sh;
	if (!(grown = realloc(stats.sh, (stats.nsh + 1) * sizeof(*grown))))
		return NULL;
	stats.sh = grown;
	sh = &stats.sh[stats.nsh++];
	memset(sh, 0, sizeof(*sh));
	snprintf(sh->name, sizeof(sh->name), "%s", name);
	return sh;
}

static void stats_pair_add(struct stats_pair **v, size_t *n, unsigned port, const char *key)
{
	struct stats_pair *grown;

	for (size_t i = 0; i < *n; i++)
		if ((*v)[i].port == port && strcmp((*v)[i].key, key) == 0) {
			(*v)[i].n++;
			return;
		}
	if (!(grown = realloc(*v, (*n + 1) * sizeof(*grown))))
		return;
	*v = grown;
	memset(&grown[*n], 0, sizeof(*grown));
	snprintf(grown[*n].key, sizeof(grown[*n].key), "%s", key);
	grown[*n].port = port;
	grown[(*n)++].n = 1;
}

static void stats_observe(double seconds)
{
	if (seconds < 0)
		seconds = 0;
	for (size_t i = 0; i < STATS_NBUCKETS; i++)
		if (seconds <= stats_bucket_bounds[i]) {
			stats.buckets[i]++;
			break;
		}
	stats.duration_count++;
	stats.duration_sum += seconds;
}

void stats_received(enum stats_source src)
{
	if ((unsigned)src < STATS_NSOURCES)
		stats.received[src]++;
}

void stats_outcome(const char *smarthost, enum q_rcpt_state st, const char *relay,
    const char *reason, double delay)
{
	struct stats_sh *sh = stats_sh_get(smarthost);

	if (!sh)
		return;
	if (st == Q_DELIVERED) {
		sh->delivered++;
		stats_observe(delay);
	} else if (st == Q_FAILED) {
		sh->bounced++;
	} else {
		sh->deferred[stats_reason_of(relay, reason)]++;
	}
}

void stats_conn_failure(const char *smarthost, unsigned port, const char *verdict)
{
	struct stats_sh *sh = stats_sh_get(smarthost);

	if (sh)
		stats_pair_add(&sh->fail, &sh->nfail, port, verdict);
}

void stats_tls(const char *smarthost, const char *version)
{
	struct stats_sh *sh = stats_sh_get(smarthost);

	if (sh && version && *version)
		stats_pair_add(&sh->tls, &sh->ntls, 0, version);
}

void stats_reset(void)
{
	for (size_t i = 0; i < stats.nsh; i++) {
		free(stats.sh[i].fail);
		free(stats.sh[i].tls);
	}
	free(stats.sh);
	memset(&stats, 0, sizeof(stats));
}
