/* Configuration: /etc/smtprelay.conf (libconfuse) -> one typed, validated struct. */
#ifndef SMTPRELAY_CONF_H
#define SMTPRELAY_CONF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <time.h>

#include "lib/strv.h"
#include "smtp/sasl.h"

#define CONF_DEFAULT_PATH SYSCONFDIR "/smtprelay.conf"

enum conf_tls_mode { CONF_TLS_STARTTLS, CONF_TLS_IMPLICIT, CONF_TLS_NONE };

struct conf_port {
	unsigned port;
	enum conf_tls_mode mode;
};

struct conf_listen {
	char *spec;			/* as written, e.g. "[::1]:25" */
	struct sockaddr_storage addr;
	socklen_t addrlen;
	bool optional;			/* the default's [::1]: skipped on a host without IPv6 */
};

struct conf_cidr {
	int family;			/* AF_INET or AF_INET6 */
	unsigned char addr[16];		/* network address, host bits zeroed */
	unsigned prefix;
};

struct conf_smarthost {
	char *name;
	int line;			/* config line of the section, for messages */
	char *host;
	struct conf_port *ports;
	size_t nports;
	char *username;
	char *password;			/* secret: from password or password_file; never logged */
	char *password_file;
	char *password_command;
	unsigned auth_mechs;		/* SASL_* bits (smtp/sasl.h); 0 = best offered */
	bool tls_verify;
	char *tls_ca_file;		/* NULL when unset */
	int tls_min_version;		/* OpenSSL constant value, e.g. 0x0303 for TLS 1.2 */
	bool has_fingerprint;
	unsigned char fingerprint[32];	/* sha256 of the leaf's DER SubjectPublicKeyInfo */
	unsigned connect_timeout;
	unsigned command_timeout;
	unsigned max_connections;
	unsigned max_messages_per_connection;
	double rate_per_sec;		/* 0 = unlimited */
	unsigned rate_count;		/* rate_limit "N/W": N, 0 = unlimited */
	double rate_window;		/* W in seconds */
	char *oauth2_token_url;
	char *oauth2_client_id;
	char *oauth2_client_secret_file;
	char *oauth2_client_secret;	/* secret, loaded with the others */
	char *oauth2_refresh_token_file;
	char *oauth2_scope;
	char **senders;			/* envelope sender patterns (smtprelay.conf(5) "senders"); NULL: any */
	size_t nsenders;
};

/* dkim "DOMAIN" { } (smtprelay.conf(5) "DKIM SECTIONS"): the key is loaded by relay/signer.c,
 * not here (the sendmail front end links conf/ without OpenSSL). */
struct conf_dkim {
	char *domain;			/* the title, lower case */
	int line;			/* config line of the section */
	char *selector;
	char *key_file;
	char **headers;			/* lower case; From is signed whether listed or not */
	size_t nheaders;
};

struct conf_alias {
	char *name;			/* local name, lower-cased */
	char **targets;			/* addresses or local names */
	size_t ntargets;
	bool from_block;		/* aliases { } block (wins over aliases_file) */
};

struct config {
	char *path;			/* as given */
	char *hostname;
	struct conf_listen *listen;
	size_t nlisten;
	struct conf_cidr *allow;
	size_t nallow;
	char *spool_dir;
	char *user;
	unsigned smtpd_timeout;
	size_t max_message_size;
	unsigned max_recipients;
	unsigned max_connections;
	char *admin_address;		/* NULL when unset */
	struct conf_alias *aliases;	/* merged: block entries win over the file's */
	size_t naliases;
	char *aliases_file;		/* NULL when unset */
	char *from_address;		/* NULL when unset */
	bool rewrite_from_header;
	unsigned retry_min;
	unsigned retry_max;
	unsigned queue_lifetime;
	struct conf_smarthost *smarthosts;
	size_t nsmarthosts;
	struct conf_listen metrics_listen;	/* spec NULL: off */
	char *metrics_textfile;		/* NULL: off */
	struct conf_dkim *dkim;		/* in config order */
	size_t ndkim;
};

/* Parse and validate.  On failure returns NULL and appends one
 * "FILE:LINE: message\n" per problem to *errors (NULL or malloc'd; caller
 * frees); problems with the file as a whole are "FILE: message\n".
 * Warnings (e.g. world-readable secrets) go to the log.  Secrets are not
 * read here: see conf_load_secrets.  ${VAR} in the file is literal text (no
 * environment substitution).  Not thread-safe (libconfuse is not). */
struct config *conf_load(const char *path, char **errors);
/* The compiled-in defaults, as if path were an empty file (for the sendmail
 * front end that may not read the system config, frontend/noconf.h). */
struct config *conf_load_defaults(const char *path, char **errors);
/* Read password_file / oauth2 secret files (before dropping privileges).
 * With old != NULL (SIGHUP), an unreadable secret keeps its old value with a
 * warning.  Returns 0, or -1 with messages appended to *errors. */
int conf_load_secrets(struct config *c, const struct config *old, char **errors);
/* Where a secret file named in c is read from (relative: $CREDENTIALS_DIRECTORY,
 * else next to the config file).  0, or -1 when it does not fit. */
int conf_secret_file_path(const struct config *c, const char *file, char *out, size_t size);
void conf_free(struct config *c);

/* Config file to use: -C/-c value, else $SMTPRELAY_CONF, else the default. */
const char *conf_default_path(const char *given);

/* Alias resolution for one recipient: local names (bare, @localhost,
 * @hostname) go through aliases (recursively, loops detected), then to
 * admin_address; the result is a list of fully qualified addresses.
 * Returns the number of addresses, with out (given empty) holding them (the
 * caller's to strv_free), or -1 with a message in err and out still empty. */
int conf_resolve(const struct config *c, const char *addr, struct strv *out, char *err, size_t errlen);
/* Envelope sender rewriting: a local sender becomes from_address when set,
 * else is qualified with hostname.  "" (null sender) stays "".  New string. */
char *conf_rewrite_sender(const struct config *c, const char *sender);

/* Sender-dependent smarthosts (conf/senders.c, smtprelay.conf(5) "senders").  A pattern is
 * LOCAL@DOMAIN: LOCAL is a local part or "*" (any), DOMAIN a domain, "*"
 * (any) or "*.DOMAIN" (one or more labels in front of DOMAIN, not DOMAIN
 * itself); compared without regard to ASCII case.  "*@*" matches every
 * sender, the null sender <> included; nothing else matches <>.
 * NULL when p is a valid pattern, else what is wrong with it. */
const char *conf_sender_pattern_error(const char *p);
bool conf_sender_match(const char *pattern, const char *sender);
/* Whether mail from sender may go through sh (a section of c): through the
 * sections whose patterns match it, or, when none does, the sections
 * without senders. */
bool conf_smarthost_serves(const struct config *c, const struct conf_smarthost *sh,
    const char *sender);
/* Whether every sender has a section: some section has no senders or a "*@*". */
bool conf_senders_cover_all(const struct config *c);

/* The alias entry for a local name (case-insensitive), or NULL. */
const struct conf_alias *conf_alias_find(const struct config *c, const char *name);

/* Internal to conf/ (conf.c <-> alias.c); other modules use the functions above. */
/* Split "a@b.c, d@e.f" into targets (given empty, the caller's to free);
 * -1 with a message in err and targets still empty. */
int conf_alias_split(const char *value, struct strv *targets, char *err, size_t errlen);
/* Add an alias (name lower-cased; takes ownership of targets); replaces an
 * earlier entry of the same name.  -1 on ENOMEM. */
int conf_alias_add(struct config *c, const char *name, char **targets, size_t ntargets, bool from_block);
/* Merge an /etc/aliases-style file (block entries win); bad lines are
 * warnings naming FILE:LINE.  -1 with a message in err if unreadable. */
int conf_aliases_read(struct config *c, const char *path, char *err, size_t errlen);
void conf_aliases_free(struct config *c);
void conf_strv_free(char **v, size_t n);

/* Parse a duration "300", "5m", "1h", "2d", "30s" into seconds; -1 if bad. */
long conf_parse_duration(const char *s);
/* Parse a rate "14/s", "30/min", "1000/h", "0"; returns messages/second or -1. */
double conf_parse_rate(const char *s);
/* The same as N and W (seconds); "0" and "0/s" give 0, 0.  0 or -1. */
int conf_parse_rate_window(const char *s, unsigned *n, double *window);
/* "sha256:" then 64 hex digits, any case, a colon allowed between byte
 * pairs -> 32 bytes.  0, or -1 if malformed. */
int conf_parse_fingerprint(const char *s, unsigned char out[32]);
/* A ports entry: "587", "465", "PORT/starttls", "PORT/tls", "PORT/none"
 * (bare 465 means tls, any other bare port starttls).  0, or -1 with a
 * message in err. */
int conf_parse_port(const char *s, struct conf_port *out, char *err, size_t errlen);
/* "IPV4:PORT" or "[IPV6]:PORT", numeric only; sets addr/addrlen (not spec). */
int conf_parse_listen(const char *s, struct conf_listen *out, char *err, size_t errlen);
/* "ADDR/PREFIX" or a bare address (host route); host bits are zeroed and
 * reported in *host_bits. */
int conf_parse_cidr(const char *s, struct conf_cidr *out, bool *host_bits, char *err, size_t errlen);
/* conf/dkim.c: the dkim section's value checks (conf.c collects the errors). */
extern const char *const conf_dkim_default_headers[];
bool conf_dkim_selector_ok(const char *s);
bool conf_dkim_header_ok(const char *s);
void conf_dkim_free(struct conf_dkim *d);

/* true if sa (AF_INET, or AF_INET6 incl. v4-mapped) is inside the network. */
bool conf_cidr_match(const struct conf_cidr *n, const struct sockaddr *sa);

#endif
