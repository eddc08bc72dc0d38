/* RFC 5322 header helpers: address lists (sendmail -t), unfolding, dates. */
#ifndef SMTPRELAY_RFC5322_H
#define SMTPRELAY_RFC5322_H

#include <stddef.h>

#include "lib/strv.h"
#include <time.h>

/* "Sun, 22 Nov 2026 11:08:59 +0000" plus NUL fits in this. */
#define RFC5322_DATE_MAX 40

/* Parse a header field body (To:, Cc:, Bcc:, Resent-To: ...; folded or not)
 * into its addr-specs, in order: "a@b", "Name <a@b>", "\"Q, N\" <a@b>",
 * comments, groups ("Team: a@b, c@d;", "undisclosed-recipients:;"),
 * obsolete routes ("<@r1,@r2:a@b>"), quoted local parts and bare local names
 * ("root").  Display names, comments and routes are dropped.  Reads exactly
 * len bytes (NULs included).  Empty members are ignored; a member that does
 * not yield a valid address (addr_valid with ADDR_ALLOW_BARE|ADDR_ALLOW_UTF8),
 * or has an unterminated quote, comment, domain literal or angle bracket, is
 * skipped and counted.
 * The addresses are appended to addrs (new strings, the caller's to free
 * with strv_free).  Returns the number of skipped members (>= 0; saturates
 * at INT_MAX), or -1 on ENOMEM (addrs may then hold some of them). */
int rfc5322_parse_addrlist(const char *value, size_t len, struct strv *addrs);

/* If value (unfolded) holds exactly one mailbox and nothing else that is not
 * ignorable (no group, no garbage), return 1 with *addr its addr-spec (new
 * string) and [*start, *end) the bytes to replace to change the address while
 * keeping display name and comments: the inside of <...> (route included),
 * or the addr-spec tokens of a bare address.  0 if not a single mailbox,
 * -1 on ENOMEM. */
int rfc5322_locate_mailbox(const char *value, size_t len, char **addr, size_t *start, size_t *end);

/* Unfold in place by deleting every CR and LF (folding is CRLF before WSP,
 * so the WSP stays).  Returns the new length; s is not NUL-terminated anew. */
size_t rfc5322_unfold(char *s, size_t len);

/* Format t in the local time zone as an RFC 5322 date-time with a numeric
 * offset and English names independent of the locale.  0, or -1 if outlen is
 * too small (use RFC5322_DATE_MAX) or the time cannot be converted. */
int rfc5322_date(time_t t, char *out, size_t outlen);

#endif
