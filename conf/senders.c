/* Sender-dependent smarthosts (smtprelay.conf(5) "senders"): which smarthost sections may
 * carry mail from a given envelope sender.  Pure functions over a loaded
 * config; conf.c validates the patterns, the relay and probe ask here. */
#include "config.h"
#include "conf/conf.h"

#include <string.h>
#include <strings.h>

static bool senders_domain_ok(const char *d)
{
	if (!*d || *d == '.' || d[strlen(d) - 1] == '.' || strstr(d, ".."))
		return false;
	return strcspn(d, "*@ \t<>") == strlen(d);
}

const char *conf_sender_pattern_error(const char *p)
{
	const char *at = strrchr(p, '@');
	const char *dom = at ? at + 1 : NULL;

	if (!at || at == p || !*dom)
		return "not a sender pattern (use LOCAL@DOMAIN, e.g. \"*@example.org\", "
		    "\"billing@example.com\", \"*@*.example.net\")";
	if (memchr(p, '*', (size_t)(at - p)) && !(at - p == 1 && *p == '*'))
		return "'*' stands for a whole local part (\"*@DOMAIN\"), not part of one";
	if (strcmp(dom, "*") == 0)
		return NULL;
	if (strncmp(dom, "*.", 2) == 0)
		dom += 2;
	if (!senders_domain_ok(dom))
		return "the domain must be a domain name, \"*\" or \"*.DOMAIN\"";
	return NULL;
}

/* "*.example.org" matches "a.example.org" and "a.b.example.org". */
static bool senders_domain_match(const char *pat, const char *dom)
{
	size_t lp, ld;

	if (strcmp(pat, "*") == 0)
		return true;
	if (strncmp(pat, "*.", 2) != 0)
		return strcasecmp(pat, dom) == 0;
	pat += 1;	/* ".example.org" */
	lp = strlen(pat);
	ld = strlen(dom);
	return ld > lp && strcasecmp(dom + ld - lp, pat) == 0;
}

bool conf_sender_match(const char *pattern, const char *sender)
{
	const char *pat_at = strrchr(pattern, '@'), *at;
	size_t llen;

	if (!pat_at)
		return false;
	if (strcmp(pattern, "*@*") == 0)
		return true;
	if (!sender || !(at = strrchr(sender, '@')))
		return false;	/* <> and unqualified senders: only "*@*" */
	llen = (size_t)(pat_at - pattern);
	if (!(llen == 1 && pattern[0] == '*') &&
	    (llen != (size_t)(at - sender) || strncasecmp(pattern, sender, llen) != 0))
		return false;
	return senders_domain_match(pat_at + 1, at + 1);
}

static bool senders_section_matches(const struct conf_smarthost *sh, const char *sender)
{
	for (size_t i = 0; i < sh->nsenders; i++)
		if (conf_sender_match(sh->senders[i], sender))
			return true;
	return false;
}

bool conf_smarthost_serves(const struct config *c, const struct conf_smarthost *sh,
    const char *sender)
{
	for (size_t i = 0; i < c->nsmarthosts; i++)
		if (senders_section_matches(&c->smarthosts[i], sender))
			return senders_section_matches(sh, sender);
	return sh->nsenders == 0;
}

bool conf_senders_cover_all(const struct config *c)
{
	if (c->nsmarthosts == 0)
		return true;	/* no smarthost at all is reported on its own */
	for (size_t i = 0; i < c->nsmarthosts; i++) {
		const struct conf_smarthost *sh = &c->smarthosts[i];

		if (sh->nsenders == 0)
			return true;
		for (size_t j = 0; j < sh->nsenders; j++)
			if (strcmp(sh->senders[j], "*@*") == 0)
				return true;
	}
	return false;
}
