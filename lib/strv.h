/* A growable vector of owned strings. */
#ifndef SMTPRELAY_STRV_H
#define SMTPRELAY_STRV_H

#include <stddef.h>

struct strv {
	char **v;
	size_t n, cap;
};

/* Append s, taking ownership on success; -1 (s untouched) on ENOMEM. */
int strv_push(struct strv *l, char *s);
/* Free every string and the vector; l is empty again. */
void strv_free(struct strv *l);

#endif
