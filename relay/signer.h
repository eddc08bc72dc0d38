/* DKIM keys of a configuration and the signing of a queued message
 * (smtprelay.conf(5) "DKIM SECTIONS"): the glue between conf/ (dkim sections) and lib/dkim.
 *
 * Keys are loaded once, at start and on SIGHUP, by whoever calls
 * signer_load (as the service user in the daemon, so a key it cannot read
 * stops the start or the reload instead of mail going out unsigned).
 * Signing reads the queued content once more, before it is sent: the
 * signature must precede the content, and the body hash needs all of it.
 */
#ifndef SMTPRELAY_SIGNER_H
#define SMTPRELAY_SIGNER_H

#include <stddef.h>
#include <time.h>

#include "conf/conf.h"

struct signer;

/* Every dkim section's key.  NULL with one "FILE:LINE: dkim ...: why\n"
 * line per bad key appended to *errors (malloc'd, caller frees), or on
 * ENOMEM.  A config without dkim sections gives an empty signer. */
struct signer *signer_load(const struct config *c, char **errors);
size_t signer_count(const struct signer *s);
void signer_free(struct signer *s);
/* -t and check-config: load every key once and print what fails on stderr;
 * 0 when all load, else -1. */
int signer_check(const struct config *c);

/* Sign the message in fd (from its offset to EOF; the offset stays):
 * *hdr gets the DKIM-Signature fields to send before it ("" when no
 * section has the From: domain); malloc'd.  0, or -1 with err. */
int signer_sign_fd(const struct signer *s, int fd, time_t now, char **hdr, size_t *len,
    char *err, size_t errlen);

#endif
