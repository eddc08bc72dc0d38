/* RFC 5321 mailboxes and paths. */
#ifndef SMTPRELAY_ADDR_H
#define SMTPRELAY_ADDR_H

#include <stdbool.h>
#include <stddef.h>

#define ADDR_MAX_LOCAL 64
#define ADDR_MAX_DOMAIN 255
#define ADDR_MAX 320	/* local@domain incl. '@' is at most 64+1+255 */

enum addr_flags {
	ADDR_ALLOW_BARE = 1 << 0,	/* a local name without @domain ("root") */
	ADDR_ALLOW_UTF8 = 1 << 1,	/* RFC 6531 UTF-8 in local part and domain */
};

/* true iff s is a valid mailbox: dot-atom or quoted-string local part, '@',
 * a domain or an address literal; with ADDR_ALLOW_BARE also a bare local part. */
bool addr_valid(const char *s, unsigned flags);
/* true iff s is a syntactically valid domain name (not an address literal). */
bool addr_valid_domain(const char *s, bool utf8);
/* Pointer to the domain after the last '@' outside quotes, or NULL for a bare name. */
const char *addr_domain(const char *addr);
/* true for a bare name, name@localhost, name@localhost.localdomain or name@hostname. */
bool addr_is_local(const char *addr, const char *hostname);
/* Length of the local part (up to the '@' found by addr_domain). */
size_t addr_local_len(const char *addr);
/* New string: a bare name gets "@domain"; otherwise a copy. NULL on ENOMEM. */
char *addr_qualify(const char *addr, const char *domain);
/* true if any byte is >= 0x80 (needs SMTPUTF8 upstream). */
bool addr_is_utf8(const char *addr);

/* Parse the argument of MAIL FROM: / RCPT TO: ("<path> params").  Accepts an
 * optional source route (ignored, RFC 5321 §4.1.2).  On success *addr is a new
 * string ("" for the null path <>) and *params points at the parameters
 * (after spaces) inside arg.  flags as for addr_valid; bare names are allowed
 * only with ADDR_ALLOW_BARE.  Returns 0, or -1 for a syntax error. */
int addr_parse_path(const char *arg, unsigned flags, char **addr, const char **params);

#endif
