/* smtprelayd: the pieces of the daemon and the context they share.
 *
 * One event loop runs everything: the SMTP listener, maildrop pickup, the
 * scheduler (which hands due messages to the relay), the control socket and
 * signal handling.  Modules reach each other through this struct; the
 * config pointer is replaced on SIGHUP, so a module reads d->conf each time
 * it needs a setting and never keeps a pointer into an old config beyond
 * one reload.
 */
#ifndef SMTPRELAY_DAEMON_H
#define SMTPRELAY_DAEMON_H

#include <stdbool.h>

#include <event2/dns.h>
#include <event2/event.h>

#include "conf/conf.h"
#include "queue/queue.h"

struct relay;
struct listener;
struct pickup;
struct sched;
struct ctl;
struct handover;
struct dsn_limit;
struct metrics;
struct signer;
struct durable;

struct daemon {
	struct event_base *base;
	struct evdns_base *dns;
	struct config *conf;		/* current configuration */
	struct config *prev_conf;	/* the one before the last reload (relay may still use it) */
	struct queue *queue;
	struct relay *relay;		/* NULL when no smarthost is configured */
	struct listener *listener;
	struct pickup *pickup;
	struct sched *sched;
	struct ctl *ctl;
	struct handover *handover;	/* public/submit for front ends without setgid */
	struct dsn_limit *dsn_limit;
	struct metrics *metrics;	/* metrics_listen, metrics_textfile (README "Monitoring") */
	struct signer *signer;		/* DKIM keys of conf (relay/signer.h) */
	struct durable *durable;	/* spool writes off the loop (daemon/durable.h) */
	bool stopping;
};

#endif
