/* Postfix's append_at_myorigin for header fields: in an address-list field
 * body (From:, To:, Cc:, Reply-To: ...), every mailbox whose addr-spec is a
 * bare local part ("root", "<root>", "Cron Daemon <root>", "root (Cron)")
 * gets "@DOMAIN" appended, so cron's "From: root" does not reach the world
 * unqualified.
 *
 * The field body is rewritten in place byte for byte: display names,
 * comments, quoted strings, groups ("Team: a, b;"), routes and folding
 * (CRLF + WSP) are kept exactly; only "@DOMAIN" is inserted after each bare
 * addr-spec.  Addresses that already have a domain, empty groups
 * ("undisclosed-recipients:;"), and anything that does not parse as one
 * address (a display name without <>, an unterminated quote, comment or
 * bracket) are left alone: never guess, never break a header.
 */
#ifndef SMTPRELAY_QUALIFY_H
#define SMTPRELAY_QUALIFY_H

#include <stdbool.h>
#include <stddef.h>

struct buf;

/* Rewrite the n bytes of body v into out (appended).  Returns the number
 * of addresses qualified (0: out holds an exact copy), or -1 when out
 * cannot grow (errno from buf_append). */
int qualify_field_body(const char *v, size_t n, const char *domain, struct buf *out);

/* true if a header field named name (n bytes) holds addresses that
 * qualify_field_body should see: From, Sender, Reply-To, To, Cc and their
 * Resent- forms. */
bool qualify_field_wanted(const char *name, size_t n);

#endif
