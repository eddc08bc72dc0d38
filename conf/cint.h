/* Internal to conf/: shared between conf.c (schema and load), value.c
 * (value parsers) and secret.c (secrets). */
#ifndef SMTPRELAY_CINT_H
#define SMTPRELAY_CINT_H

#include <stdbool.h>
#include <stddef.h>

/* Digits only (no sign, spaces or 0x); -1 if not a number or > max. */
int conf_parse_ulong(const char *s, const char **end, unsigned long long max,
    unsigned long long *out);
/* Bytes with an optional k/M/G suffix (powers of 1024). */
int conf_parse_size(const char *s, size_t *out);
/* true/false, yes/no, on/off, 1/0. */
int conf_parse_bool(const char *s, bool *out);
#define CONF_MAX_ERRORS (64 * 1024)

struct buf;
/* Append b's messages to the caller's *errors (malloc'd, may be NULL). */
void conf_errors_out(struct buf *b, char **errors);
/* Wipe and free a secret. */
void conf_free_secret(char *s);

#endif
