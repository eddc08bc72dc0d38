/* Inside the OAuth2 modules only (relay/oauth2*.c): limits and helpers they
 * share.  Everyone else includes relay/oauth2.h. */
#ifndef SMTPRELAY_OAUTH2INT_H
#define SMTPRELAY_OAUTH2INT_H

#include <stdbool.h>
#include <stddef.h>

#include "lib/buf.h"

#define OAUTH2_ERR_MAX 512
#define OAUTH2_TEXT_MAX 200		/* server-supplied text quoted in messages */

/* Wipe, then free (NULL is fine). */
void oauth2_free_secret(char *s);
void oauth2_buf_wipe(struct buf *b);
/* A token goes into SASL messages: printable, no framing characters. */
bool oauth2_token_ok(const char *t);
/* Server text for a message: printable ASCII only, first line, bounded. */
void oauth2_clean(char *dst, size_t len, const char *src);

#endif
