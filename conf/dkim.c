/* conf/dkim.c: value checks for dkim "DOMAIN" { } sections (smtprelay.conf(5) "DKIM SECTIONS"). */
#include "config.h"
#include "conf/conf.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* No Message-ID: some smarthosts (Amazon SES) replace it in transit. */
const char *const conf_dkim_default_headers[] = {
	"from", "to", "cc", "subject", "date", "reply-to", "in-reply-to", "references",
	"mime-version", "content-type", "content-transfer-encoding", NULL
};

/* A selector is one or more DNS labels (RFC 6376 §3.1). */
bool conf_dkim_selector_ok(const char *s)
{
	size_t label = 0;

	if (!s || !*s || strlen(s) > 63)
		return false;
	for (const char *p = s; *p; p++) {
		if (*p == '.') {
			if (label == 0)
				return false;
			label = 0;
		} else if (isalnum((unsigned char)*p) || *p == '-' || *p == '_') {
			label++;
		} else {
			return false;
		}
	}
	return label > 0;
}

/* A header field name (RFC 5322 ftext): printable ASCII except ':'.
 * Received (ours is prepended, relays add theirs) and DKIM-Signature change
 * in transit: signing them would only make signatures fail. */
bool conf_dkim_header_ok(const char *s)
{
	if (!s || !*s || strcasecmp(s, "received") == 0 || strcasecmp(s, "dkim-signature") == 0)
		return false;
	for (const char *p = s; *p; p++)
		if ((unsigned char)*p < 33 || (unsigned char)*p > 126 || *p == ':')
			return false;
	return true;
}

void conf_dkim_free(struct conf_dkim *d)
{
	free(d->domain);
	free(d->selector);
	free(d->key_file);
	conf_strv_free(d->headers, d->nheaders);
}
