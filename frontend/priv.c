#include "config.h"
#include "frontend/priv.h"

#include <pwd.h>
#include <sys/types.h>
#include <unistd.h>

static gid_t priv_rgid, priv_egid;
static bool priv_setgid;

void priv_init(void)
{
	priv_rgid = getgid();
	priv_egid = getegid();
	priv_setgid = priv_rgid != priv_egid;
	/* Run without it by default: only the maildrop write needs it. */
	if (priv_setgid && setresgid(priv_rgid, priv_rgid, priv_egid) < 0)
		_exit(71);
}

bool priv_have(void)
{
	return priv_setgid;
}

int priv_raise(void)
{
	return priv_setgid ? setresgid(-1, priv_egid, -1) : 0;
}

int priv_lower(void)
{
	return priv_setgid ? setresgid(-1, priv_rgid, -1) : 0;
}

int priv_drop(void)
{
	if (!priv_setgid)
		return 0;
	if (setresgid(priv_rgid, priv_rgid, priv_rgid) < 0)
		return -1;
	priv_setgid = false;
	return 0;
}

bool priv_caller_trusted(void)
{
	uid_t uid = getuid();
	struct passwd *pw;

	if (uid == 0)
		return true;
	pw = getpwnam(SMTPRELAY_USER);
	return pw && pw->pw_uid == uid;
}
