/* `smtprelay dkim-keygen [--rsa BITS | --ed25519] [-o FILE] DOMAIN SELECTOR`
 * (smtprelay.conf(5) "DKIM SECTIONS"): a new DKIM private key and the DNS record that publishes it.
 *
 * The key goes to -o FILE or SYSCONFDIR/smtprelay/dkim/DOMAIN.SELECTOR.key
 * (missing directories are created, mode 0755), PKCS#8 PEM, mode 0640,
 * group of the service user (a warning when that cannot be done, e.g. not
 * run as root); an existing file is never overwritten.  stdout: the path,
 * then `SELECTOR._domainkey.DOMAIN. IN TXT "v=DKIM1; k=...; p=..."`, the
 * value split into strings of at most 255 bytes (RFC 1035 character-strings;
 * only RSA keys need more than one).  RSA 2048 unless told otherwise: every
 * verifier knows RSA, and Ed25519 (RFC 8463) alone is not yet verified
 * everywhere, so Ed25519 is for dual signing next to RSA.
 */
#ifndef SMTPRELAY_KEYGEN_H
#define SMTPRELAY_KEYGEN_H

#include "conf/conf.h"

#define KEYGEN_RSA_DEFAULT 2048
#define KEYGEN_RSA_MAX 8192

/* argv[0] is the subcommand.  Exit status (sysexits.h): 0 written; 64
 * usage; 73 the file exists or cannot be created; 70 key generation failed. */
int keygen_main(const struct config *c, int argc, char **argv);

/* The TXT record line for a public key value (no newline); malloc'd. */
char *keygen_txt_record(const char *domain, const char *selector, const char *value);

#endif
