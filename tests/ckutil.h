/* Shared helpers for the Check suites. */
#ifndef SMTPRELAY_CKUTIL_H
#define SMTPRELAY_CKUTIL_H

/* Send stderr (the log, in tests) to path until ckutil_capture_stop, which
 * returns what was written (malloc'd, NUL-terminated, at most 64 KiB). */
void ckutil_capture_start(const char *path);
char *ckutil_capture_stop(const char *path);

#endif
