/* The setgid front end's privilege: the service group, used only to write
 * into maildrop/ (Postfix's postdrop model). */
#ifndef SMTPRELAY_PRIV_H
#define SMTPRELAY_PRIV_H

#include <stdbool.h>

/* Call first thing in main(): remembers and suspends the setgid privilege. */
void priv_init(void);
/* true while the setgid privilege can still be regained. */
bool priv_have(void);
/* Regain / suspend the privilege around maildrop writes. */
int priv_raise(void);
int priv_lower(void);
/* Give it up for good (real, effective and saved gid). */
int priv_drop(void);
/* true for root and for the service user: they may choose another config. */
bool priv_caller_trusted(void);

#endif
