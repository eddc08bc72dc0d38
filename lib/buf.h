/* Bounded growable byte buffer: every append is checked against a hard cap. */
#ifndef SMTPRELAY_BUF_H
#define SMTPRELAY_BUF_H

#include <stdarg.h>
#include <stddef.h>

struct buf {
	char *data;	/* always NUL-terminated after len when data != NULL */
	size_t len;
	size_t cap;
	size_t max;	/* hard limit on len */
};

void buf_init(struct buf *b, size_t max);
void buf_free(struct buf *b);
void buf_reset(struct buf *b);
/* 0 on success; -1 with errno ENOBUFS when max would be exceeded, ENOMEM. */
int buf_append(struct buf *b, const void *data, size_t len);
int buf_puts(struct buf *b, const char *s);
int buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int buf_vprintf(struct buf *b, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
/* Drop the first n bytes. */
void buf_consume(struct buf *b, size_t n);
/* Hand over the contents (caller frees); the buffer becomes empty. */
char *buf_steal(struct buf *b);

#endif
