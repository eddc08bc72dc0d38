/* Test driver for OAuth2 (until `smtprelay` dispatches oauth2-login):
 *
 *   oauth2-login-driver CONFIG oauth2-login [--device-url URL] [--timeout S] NAME
 *     loads CONFIG and its secrets, then runs oauth2_login_main on the rest;
 *   oauth2-login-driver CONFIG token NAME PARALLEL ROUNDS DELAY_MS [-d]
 *     asks the token manager for NAME's access token ROUNDS times, each time
 *     PARALLEL requests at once, DELAY_MS apart; prints one line per answer:
 *     "ROUND ok SHA256-PREFIX EXPIRES_IN" or "ROUND error MESSAGE" (never
 *     the token itself).
 */
#include "config.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>

#include <event2/dns.h>
#include <event2/event.h>
#include <openssl/evp.h>

#include "conf/conf.h"
#include "relay/oauth2.h"
#include "frontend/oauth2_login.h"
#include "lib/log.h"

struct tok_run {
	struct event_base *base;
	struct oauth2 *o;
	const struct conf_smarthost *sh;
	long parallel, rounds, delay_ms, round, left;
	struct event *timer;
};

static void tok_round(struct tok_run *t);

static void tok_done(const char *token, long expires_in, const char *error, void *arg)
{
	struct tok_run *t = arg;
	unsigned char md[32];
	unsigned int n = 0;

	if (token) {
		EVP_Digest(token, strlen(token), md, &n, EVP_sha256(), NULL);
		printf("%ld ok %02x%02x%02x%02x %ld\n", t->round, md[0], md[1], md[2], md[3],
		    expires_in);
	} else {
		printf("%ld error %s\n", t->round, error);
	}
	fflush(stdout);
	if (--t->left > 0)
		return;
	if (++t->round >= t->rounds) {
		event_base_loopexit(t->base, NULL);
		return;
	}
	struct timeval tv = { t->delay_ms / 1000, (t->delay_ms % 1000) * 1000 };
	evtimer_add(t->timer, &tv);
}

static void tok_on_timer(evutil_socket_t fd, short what, void *arg)
{
	tok_round(arg);
}

static void tok_round(struct tok_run *t)
{
	t->left = t->parallel;
	for (long i = 0; i < t->parallel; i++)
		if (!oauth2_get(t->o, t->sh, tok_done, t))
			abort();
}

static int tok_main(const struct config *c, int argc, char **argv)
{
	struct tok_run t = { 0 };
	struct evdns_base *dns;

	if (argc < 5)
		return EX_USAGE;
	for (size_t i = 0; i < c->nsmarthosts; i++)
		if (strcmp(c->smarthosts[i].name, argv[1]) == 0)
			t.sh = &c->smarthosts[i];
	if (!t.sh)
		return EX_CONFIG;
	t.parallel = atol(argv[2]);
	t.rounds = atol(argv[3]);
	t.delay_ms = atol(argv[4]);
	t.base = event_base_new();
	dns = evdns_base_new(t.base, 0);
	t.o = oauth2_new(t.base, dns);
	t.timer = evtimer_new(t.base, tok_on_timer, &t);
	tok_round(&t);
	event_base_dispatch(t.base);
	oauth2_free(t.o);
	event_free(t.timer);
	evdns_base_free(dns, 0);
	event_base_free(t.base);
	return 0;
}

int main(int argc, char **argv)
{
	char *errors = NULL;
	struct config *c;
	bool debug = argc > 0 && strcmp(argv[argc - 1], "-d") == 0;
	int rc;

	if (argc < 3) {
		fputs("usage: oauth2-login-driver CONFIG oauth2-login [OPTIONS] NAME\n"
		    "       oauth2-login-driver CONFIG token NAME PARALLEL ROUNDS DELAY_MS [-d]\n",
		    stderr);
		return EX_USAGE;
	}
	log_init("oauth2-driver", LOG_TARGET_STDERR, debug);
	c = conf_load(argv[1], &errors);
	if (c && conf_load_secrets(c, NULL, &errors) < 0) {
		conf_free(c);
		c = NULL;
	}
	if (!c) {
		fputs(errors ? errors : "configuration error\n", stderr);
		free(errors);
		return EX_CONFIG;
	}
	free(errors);
	if (strcmp(argv[2], "token") == 0)
		rc = tok_main(c, argc - 2 - debug, argv + 2);
	else
		rc = oauth2_login_main(c, argc - 2, argv + 2);
	conf_free(c);
	return rc;
}
