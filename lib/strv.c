#include "config.h"
#include "lib/strv.h"

#include <stdint.h>
#include <stdlib.h>

int strv_push(struct strv *l, char *s)
{
	if (l->n == l->cap) {
		size_t ncap = l->cap ? l->cap * 2 : 8;
		char **nv;

		if (ncap > SIZE_MAX / sizeof(*nv) || !(nv = realloc(l->v, ncap * sizeof(*nv))))
			return -1;
		l->v = nv;
		l->cap = ncap;
	}
	l->v[l->n++] = s;
	return 0;
}

void strv_free(struct strv *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
	l->v = NULL;
	l->n = l->cap = 0;
}
