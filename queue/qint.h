/* Queue internals shared by the queue/ sources; not for other modules. */
#ifndef SMTPRELAY_QINT_H
#define SMTPRELAY_QINT_H

#include "lib/buf.h"
#include "queue/queue.h"

#include <stdarg.h>
#include <sys/stat.h>

/* Bounds on what a queue file may hold; the writer enforces the same ones
 * so that whatever it writes the reader accepts. */
#define Q_MAX_RCPTS 100000
#define Q_MAX_STR 1000		/* decoded orcpt, origin, envid, reason */
#define Q_MAX_LINE 4096		/* encoded header/state line, without LF */
#define Q_MAX_HEADER ((size_t)256 << 20)
#define Q_WBUF_SIZE ((size_t)64 << 10)

struct queue {
	char *path;
	int dirfd;		/* spool_dir */
	int areafd[2];		/* maildrop/, queue/; -1 until first use */
};

/* queue/store.c */
int store_area_fd(struct queue *q, enum q_area area, char *err, size_t errlen);
const char *store_area_name(enum q_area area);
const char *store_safe_name(const char *name, char *out, size_t outlen);
void store_err(char *err, size_t errlen, const struct queue *q, enum q_area area,
    const char *name, const char *fmt, ...) __attribute__((format(printf, 6, 7)));
int store_open_msg(struct queue *q, enum q_area area, const char *id, struct stat *st,
    char *err, size_t errlen);
struct qwriter *store_writer_open(struct queue *q, enum q_area area, struct q_envelope *env,
    bool replace_tmp, char *err, size_t errlen);

/* queue/envelope.c: the on-disk formats. */
int envelope_check(const struct q_envelope *env, char *err, size_t errlen);
int envelope_encode(const struct q_envelope *env, struct buf *b);
size_t envelope_size_offset(void);
#define ENVELOPE_SIZE_WIDTH 20
void envelope_size_field(char out[ENVELOPE_SIZE_WIDTH + 1], uint64_t size);
int envelope_parse(int fd, const char *id, uint64_t file_size, struct q_envelope **env,
    char *err, size_t errlen);
int envelope_encode_state(const struct q_envelope *env, struct buf *b);
int envelope_parse_state(int fd, struct q_envelope *env, char *err, size_t errlen);

#endif
