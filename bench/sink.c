/*
 * A counting SMTP sink for bench/relay-throughput: PIPELINING, STARTTLS,
 * any AUTH PLAIN/LOGIN accepted, every message answered 250 and counted.
 * It keeps nothing, so it costs a small fraction of what the relays it
 * measures spend.
 *
 * usage: sink -c CERT -k KEY [-n TARGET] [-p PORT]
 * stdout: "READY PORT" once listening on 127.0.0.1; "DONE ..." when TARGET
 * messages have arrived; "STOP ..." on SIGTERM/SIGINT, then it exits.
 * The lines carry n= (messages), first= and last= (CLOCK_MONOTONIC seconds
 * of the first and last end of data), conns= and tls= (connections and
 * STARTTLS handshakes begun).
 *
 * Built by bench/relay-throughput: cc -O2 sink.c -levent_openssl -levent
 * -lssl -lcrypto.  Not part of the product.
 */
#define _POSIX_C_SOURCE 200809L

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#define SINK_MAX_LINE 4096	/* a longer command line drops the client */

enum sink_mode { SINK_CMD, SINK_DATA, SINK_AUTH, SINK_QUIT };

struct sink_conn {
	struct bufferevent *bev;
	enum sink_mode mode;
	int auth_lines;		/* AUTH LOGIN/PLAIN continuation lines still due */
	bool tls;
	bool data_start;	/* nothing of the content read yet */
};

struct sink {
	struct event_base *base;
	SSL_CTX *ssl;
	long target;
	long count;
	long conns;
	long tls;
	double first, last;
};

static struct sink sink;

static double sink_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sink_report(const char *what)
{
	printf("%s n=%ld first=%.6f last=%.6f conns=%ld tls=%ld\n", what,
	    sink.count, sink.first, sink.last, sink.conns, sink.tls);
	fflush(stdout);
}

static void sink_close(struct sink_conn *c)
{
	bufferevent_free(c->bev);
	free(c);
}

static void sink_reply(struct sink_conn *c, const char *s)
{
	evbuffer_add(bufferevent_get_output(c->bev), s, strlen(s));
}

static void sink_message(struct sink_conn *c)
{
	double t = sink_now();

	if (sink.count++ == 0)
		sink.first = t;
	sink.last = t;
	c->mode = SINK_CMD;
	sink_reply(c, "250 2.0.0 Ok: counted\r\n");
	if (sink.count == sink.target)
		sink_report("DONE");
}

/* Consume message content up to CRLF.CRLF without copying it out.  Returns
 * false while the end of data has not arrived yet. */
static bool sink_data(struct sink_conn *c, struct evbuffer *in)
{
	struct evbuffer_ptr p;
	size_t len = evbuffer_get_length(in);
	unsigned char head[3];

	if (c->data_start) {	/* an empty body: "." right after 354 */
		if (len < 3)
			return false;
		evbuffer_copyout(in, head, 3);
		if (memcmp(head, ".\r\n", 3) == 0) {
			evbuffer_drain(in, 3);
			sink_message(c);
			return true;
		}
		c->data_start = false;
	}
	p = evbuffer_search(in, "\r\n.\r\n", 5, NULL);
	if (p.pos >= 0) {
		evbuffer_drain(in, (size_t)p.pos + 5);
		sink_message(c);
		return true;
	}
	if (len > 4)	/* keep what could be the start of the marker */
		evbuffer_drain(in, len - 4);
	return false;
}

static void sink_readcb(struct bufferevent *bev, void *arg);
static void sink_eventcb(struct bufferevent *bev, short what, void *arg);

/* RFC 3207: discard anything pipelined after STARTTLS, then the handshake. */
static void sink_starttls(struct sink_conn *c)
{
	struct bufferevent *tls;
	SSL *ssl = SSL_new(sink.ssl);

	evbuffer_drain(bufferevent_get_input(c->bev),
	    evbuffer_get_length(bufferevent_get_input(c->bev)));
	if (!ssl) {
		sink_close(c);
		return;
	}
	tls = bufferevent_openssl_filter_new(sink.base, c->bev, ssl,
	    BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
	if (!tls) {
		SSL_free(ssl);
		sink_close(c);
		return;
	}
	bufferevent_openssl_set_allow_dirty_shutdown(tls, 1);
	c->bev = tls;
	c->tls = true;
	sink.tls++;
	bufferevent_setcb(tls, sink_readcb, NULL, sink_eventcb, c);
	bufferevent_enable(tls, EV_READ | EV_WRITE);
}

static void sink_ehlo(struct sink_conn *c)
{
	sink_reply(c, "250-sink.test\r\n250-PIPELINING\r\n250-SIZE 104857600\r\n"
	    "250-8BITMIME\r\n250-ENHANCEDSTATUSCODES\r\n250-SMTPUTF8\r\n");
	if (!c->tls)
		sink_reply(c, "250-STARTTLS\r\n");
	sink_reply(c, "250 AUTH PLAIN LOGIN\r\n");
}

static void sink_auth(struct sink_conn *c, const char *arg)
{
	bool login = strncasecmp(arg, "LOGIN", 5) == 0;
	bool initial = strchr(arg, ' ') != NULL;

	c->auth_lines = login ? (initial ? 1 : 2) : (initial ? 0 : 1);
	if (c->auth_lines == 0) {
		sink_reply(c, "235 2.7.0 Authentication successful\r\n");
		return;
	}
	c->mode = SINK_AUTH;
	sink_reply(c, login && !initial ? "334 VXNlcm5hbWU6\r\n" : "334 \r\n");
}

static void sink_auth_line(struct sink_conn *c)
{
	if (--c->auth_lines > 0) {
		sink_reply(c, "334 UGFzc3dvcmQ6\r\n");
		return;
	}
	c->mode = SINK_CMD;
	sink_reply(c, "235 2.7.0 Authentication successful\r\n");
}

/* Returns false when the connection changed (STARTTLS) or is closing. */
static bool sink_command(struct sink_conn *c, const char *line)
{
	if (c->mode == SINK_AUTH) {
		sink_auth_line(c);
	} else if (!strncasecmp(line, "EHLO", 4)) {
		sink_ehlo(c);
	} else if (!strncasecmp(line, "HELO", 4)) {
		sink_reply(c, "250 sink.test\r\n");
	} else if (!strncasecmp(line, "MAIL", 4) || !strncasecmp(line, "RCPT", 4)
	    || !strncasecmp(line, "RSET", 4) || !strncasecmp(line, "NOOP", 4)) {
		sink_reply(c, "250 2.0.0 Ok\r\n");
	} else if (!strncasecmp(line, "DATA", 4)) {
		c->mode = SINK_DATA;
		c->data_start = true;
		sink_reply(c, "354 End data with <CR><LF>.<CR><LF>\r\n");
	} else if (!strncasecmp(line, "AUTH ", 5)) {
		sink_auth(c, line + 5);
	} else if (!strncasecmp(line, "STARTTLS", 8) && !c->tls) {
		sink_reply(c, "220 2.0.0 Ready to start TLS\r\n");
		sink_starttls(c);
		return false;
	} else if (!strncasecmp(line, "QUIT", 4)) {
		sink_reply(c, "221 2.0.0 Bye\r\n");
		c->mode = SINK_QUIT;
		return false;
	} else {
		sink_reply(c, "502 5.5.2 Not implemented\r\n");
	}
	return true;
}

static void sink_readcb(struct bufferevent *bev, void *arg)
{
	struct sink_conn *c = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	size_t len;
	char *line;

	for (;;) {
		if (c->mode == SINK_QUIT) {
			evbuffer_drain(in, evbuffer_get_length(in));
			return;
		}
		if (c->mode == SINK_DATA) {
			if (!sink_data(c, in))
				return;
			continue;
		}
		line = evbuffer_readln(in, &len, EVBUFFER_EOL_CRLF);
		if (!line) {
			if (evbuffer_get_length(in) > SINK_MAX_LINE)
				sink_close(c);
			return;
		}
		if (!sink_command(c, line)) {
			free(line);
			return;
		}
		free(line);
	}
}

static void sink_writecb(struct bufferevent *bev, void *arg)
{
	struct sink_conn *c = arg;

	if (c->mode == SINK_QUIT && evbuffer_get_length(bufferevent_get_output(bev)) == 0)
		sink_close(c);
}

static void sink_eventcb(struct bufferevent *bev, short what, void *arg)
{
	(void)bev;
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT))
		sink_close(arg);
}

static void sink_accept(struct evconnlistener *l, evutil_socket_t fd,
    struct sockaddr *sa, int salen, void *arg)
{
	struct sink_conn *c = calloc(1, sizeof(*c));

	(void)l; (void)sa; (void)salen; (void)arg;
	if (!c) {
		close(fd);
		return;
	}
	c->bev = bufferevent_socket_new(sink.base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (!c->bev) {
		close(fd);
		free(c);
		return;
	}
	sink.conns++;
	bufferevent_setcb(c->bev, sink_readcb, sink_writecb, sink_eventcb, c);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
	sink_reply(c, "220 sink.test ESMTP counting sink\r\n");
}

static void sink_signal(evutil_socket_t sig, short what, void *arg)
{
	(void)sig; (void)what; (void)arg;
	sink_report("STOP");
	event_base_loopbreak(sink.base);
}

static SSL_CTX *sink_ssl(const char *cert, const char *key)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());

	if (!ctx || SSL_CTX_use_certificate_chain_file(ctx, cert) != 1
	    || SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
		ERR_print_errors_fp(stderr);
		exit(1);
	}
	return ctx;
}

static struct evconnlistener *sink_listen(int port)
{
	struct sockaddr_in sin;
	struct evconnlistener *l;
	socklen_t len = sizeof(sin);

	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_port = htons((unsigned short)port);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	l = evconnlistener_new_bind(sink.base, sink_accept, NULL,
	    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE, 128, (struct sockaddr *)&sin, sizeof(sin));
	if (!l) {
		perror("sink: bind");
		exit(1);
	}
	getsockname(evconnlistener_get_fd(l), (struct sockaddr *)&sin, &len);
	printf("READY %d\n", ntohs(sin.sin_port));
	fflush(stdout);
	return l;
}

int main(int argc, char **argv)
{
	const char *cert = NULL, *key = NULL;
	struct evconnlistener *l;
	struct event *term, *intr;
	int ch, port = 0;

	while ((ch = getopt(argc, argv, "c:k:n:p:")) != -1) {
		switch (ch) {
		case 'c': cert = optarg; break;
		case 'k': key = optarg; break;
		case 'n': sink.target = atol(optarg); break;
		case 'p': port = atoi(optarg); break;
		default: cert = NULL; optind = argc; break;
		}
	}
	if (!cert || !key) {
		fputs("usage: sink -c CERT -k KEY [-n TARGET] [-p PORT]\n", stderr);
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	sink.base = event_base_new();
	sink.ssl = sink_ssl(cert, key);
	l = sink_listen(port);
	term = evsignal_new(sink.base, SIGTERM, sink_signal, NULL);
	intr = evsignal_new(sink.base, SIGINT, sink_signal, NULL);
	event_add(term, NULL);
	event_add(intr, NULL);
	event_base_dispatch(sink.base);
	event_free(term);
	event_free(intr);
	evconnlistener_free(l);
	SSL_CTX_free(sink.ssl);
	event_base_free(sink.base);
	return 0;
}
