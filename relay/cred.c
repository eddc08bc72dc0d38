#include "config.h"
#include "relay/cred.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "relay/oauth2.h"
#include "relay/secret.h"

struct cred_req {
	struct secret_job *job;
	struct oauth2_req *token;
	cred_done_fn done;
	void *arg;
	char sh_name[128];		/* sh may go away (reload) while the command runs */
};

enum cred_kind cred_kind(const struct conf_smarthost *sh, size_t port)
{
	if (!sh->username || sh->ports[port].mode == CONF_TLS_NONE)
		return CRED_NONE;
	if (sh->password_command)
		return CRED_COMMAND;
	if (sh->oauth2_token_url)
		return CRED_OAUTH2;
	return sh->password ? CRED_PASSWORD : CRED_MISSING;
}

static void cred_on_secret(const char *secret, size_t len, const char *status,
    const char *detail, void *arg)
{
	struct cred_req *r = arg;
	char why[512];

	r->job = NULL;
	if (!secret)
		snprintf(why, sizeof(why), "password_command for smarthost %s failed (%s)%s%s",
		    r->sh_name, status, detail && *detail ? ": " : "", detail ? detail : "");
	r->done(secret, -1, secret ? NULL : why, r->arg);
	free(r);
}

static void cred_on_token(const char *token, long expires_in, const char *error, void *arg)
{
	struct cred_req *r = arg;

	r->token = NULL;
	r->done(token, expires_in, token ? NULL : error, r->arg);
	free(r);
}

struct cred_req *cred_get(struct event_base *base, struct oauth2 *o,
    const struct conf_smarthost *sh, size_t port, unsigned timeout_sec,
    cred_done_fn done, void *arg, char *err, size_t errlen)
{
	enum cred_kind kind = cred_kind(sh, port);
	struct cred_req *r;

	errno = 0;	/* no token manager sets none: then it is memory */
	r = calloc(1, sizeof(*r));
	if (r) {
		r->done = done;
		r->arg = arg;
		snprintf(r->sh_name, sizeof(r->sh_name), "%s", sh->name);
		if (kind == CRED_COMMAND)
			r->job = secret_run(base, sh->password_command, timeout_sec, cred_on_secret, r);
		else if (kind == CRED_OAUTH2 && o)
			r->token = oauth2_get(o, sh, cred_on_token, r);
		if (r->job || r->token)
			return r;
	}
	if (kind == CRED_COMMAND)
		snprintf(err, errlen, "password_command for smarthost %s failed (cannot run it: %s)",
		    sh->name, strerror(errno ? errno : ENOMEM));
	else
		snprintf(err, errlen, "smarthost %s: cannot request an OAuth2 access token: %s",
		    sh->name, strerror(errno ? errno : ENOMEM));
	free(r);
	return NULL;
}

void cred_cancel(struct cred_req *r)
{
	if (!r)
		return;
	if (r->job)
		secret_cancel(r->job);
	oauth2_cancel(r->token);
	free(r);
}
