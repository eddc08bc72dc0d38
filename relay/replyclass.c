#include "config.h"
#include "relay/replyclass.h"

#include <string.h>

/* Account-level refusals (RFC 3463, RFC 4954, Gmail's 5.7.14): before DATA
 * they speak about the sender's account, not about this message. */
static const char *const replyclass_account_codes[] = {
	"5.7.0", "5.7.1", "5.7.8", "5.7.9", "5.7.14",
};

static bool replyclass_before_data(enum smtp_client_stage stage)
{
	return stage == SMTP_CLIENT_STAGE_EHLO || stage == SMTP_CLIENT_STAGE_HELO ||
	    stage == SMTP_CLIENT_STAGE_AUTH || stage == SMTP_CLIENT_STAGE_MAIL;
}

bool replyclass_is_config(int code, const char *enhanced, enum smtp_client_stage stage)
{
	const char *e = enhanced ? enhanced : "";

	if (code == 530 || code == 535)
		return true;
	if (code / 100 != 5)
		return false;
	if (strcmp(e, "5.4.5") == 0)
		return true;
	if (!replyclass_before_data(stage))
		return false;
	for (size_t i = 0; i < sizeof(replyclass_account_codes) / sizeof(*replyclass_account_codes); i++)
		if (strcmp(e, replyclass_account_codes[i]) == 0)
			return true;
	return false;
}

bool replyclass_result_is_config(const struct smtp_client_result *r)
{
	return r && !r->local && replyclass_is_config(r->code, r->enhanced, r->stage);
}
