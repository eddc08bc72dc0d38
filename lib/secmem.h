/* Memory for secrets (passwords, tokens, a password_command's output):
 * whole pages of their own, excluded from core dumps (MADV_DONTDUMP) and
 * wiped before they are unmapped.  The daemon is non-dumpable with no core
 * limit anyway (daemon/harden.h); this keeps such buffers out of a dump
 * even if someone turns those back on (gcore, a changed limit).  Not for
 * small strings by the thousand: each allocation costs at least a page. */
#ifndef SMTPRELAY_SECMEM_H
#define SMTPRELAY_SECMEM_H

#include <stddef.h>

/* len zeroed bytes, or NULL with errno (ENOMEM). */
void *secmem_alloc(size_t len);
/* Wipe and release what secmem_alloc(len) returned; NULL is ignored. */
void secmem_free(void *p, size_t len);

#endif
