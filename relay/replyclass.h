/* Which smarthost replies blame our account or configuration (smtprelayd(8) "Delivery").
 *
 * 530 or 535 at any stage; a 5xx to EHLO/HELO, AUTH or MAIL FROM with
 * enhanced code 5.7.0, 5.7.1, 5.7.8, 5.7.9 or 5.7.14; 5.4.5 (quota) at any
 * stage.  Such a reply is the same for every message until the admin acts,
 * so the relay defers (never bounces) and pauses that smarthost.  The code
 * and enhanced code come as data from the SMTP client; reply text is never
 * parsed here.
 */
#ifndef SMTPRELAY_REPLYCLASS_H
#define SMTPRELAY_REPLYCLASS_H

#include <stdbool.h>

#include "smtp/client.h"

#define REPLYCLASS_PREFIX "configuration error: "

bool replyclass_is_config(int code, const char *enhanced, enum smtp_client_stage stage);
/* The same for a client result; a local one (not said by the server) never is. */
bool replyclass_result_is_config(const struct smtp_client_result *r);

#endif
