#!/usr/bin/python3
"""A real SMTP smarthost for tests and the try-it demo (Debian's aiosmtpd).

usage: smarthost.py SPEC.json

SPEC = {
  "certs": DIR,                       # from tests/mkcerts.sh
  "outdir": DIR,                      # each message -> OUTDIR/NNNN.json; events -> OUTDIR/events.jsonl
  "users": {"user": "password"},      # AUTH PLAIN/LOGIN (only over TLS); XOAUTH2 tokens in "tokens"
  "tokens": {"user": "access-token"},  # XOAUTH2/OAUTHBEARER; a list: any of them
  "ports": [{"name": "sub", "mode": "starttls|tls|plain|stall|close",
             "cert": "good|wronghost|expired|untrusted", "auth": true,
             "max_tls": "1.2",                  # optional: TLS 1.2 at most
             "no_mechs": ["XOAUTH2"]}],          # optional: mechanisms not offered
  "rules": {"rcpt": {"bad@example.com": "550 5.1.1 no such user"},
            "tempfail_rcpt_first": N,   # first N RCPTs get 451
            "tempfail_data_first": N,   # first N DATAs get 451
            "drop_data_first": N,       # first N DATAs: connection closed instead of 250
            "throttle_first": N,        # first N MAILs get 454 Throttling failure
            "throttle_ehlo_first": N,   # first N EHLOs get 421 Too many concurrent connections
            "replies": {"mail": "530 5.7.0 Authentication required",
                        "rcpt": "...", "data": "550 5.4.5 Daily user sending quota exceeded"}},
                                        # that reply to every MAIL/RCPT/DATA (end of data)
  "replies_file": PATH                  # optional: JSON like "replies", read for each
                                        # command while it exists (tests change it at run time)
}
When listening, prints one JSON line {"ports": {NAME: PORT}} on stdout.
Events (one JSON object a line): connect, starttls, ehlo, auth (with mech and
ok; for the token mechanisms also the token's 8-character "tag"), mail, drop,
quit (QUIT received), disconnect (connection gone) with the port name and a
connection number "conn".
"""
import asyncio
import base64
import itertools
import json
import logging
import os
import signal
import ssl
import sys
import time
import warnings

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

warnings.filterwarnings("ignore")
logging.getLogger("mail.log").setLevel(logging.ERROR)


class Recorder:
    def __init__(self, outdir):
        self.outdir = outdir
        self.count = itertools.count(1)
        self.conn = itertools.count(1)
        os.makedirs(outdir, exist_ok=True)
        self.events = open(os.path.join(outdir, "events.jsonl"), "a", buffering=1)

    def event(self, **kw):
        kw.setdefault("t", time.monotonic())    # for rate checks (CLOCK_MONOTONIC)
        self.events.write(json.dumps(kw) + "\n")

    def message(self, rec):
        n = next(self.count)
        tmp = os.path.join(self.outdir, ".%04d.tmp" % n)
        with open(tmp, "w") as f:
            json.dump(rec, f)
        os.rename(tmp, os.path.join(self.outdir, "%04d.json" % n))


class Handler:
    def __init__(self, spec, rec, port_name):
        self.spec = spec
        self.rec = rec
        self.port = port_name
        self.rules = spec.get("rules", {})
        self.counters = spec.setdefault("_counters", {})

    def _first(self, key):
        n = self.counters.get(key, 0)
        self.counters[key] = n + 1
        return n < self.rules.get(key, 0)

    def _reply(self, stage):
        """The reply a test chose for this stage, or None."""
        path = self.spec.get("replies_file")
        if path and os.path.exists(path):
            with open(path) as f:
                return json.load(f).get(stage)
        return self.rules.get("replies", {}).get(stage)

    def _tls(self, server):
        return server.transport.get_extra_info("ssl_object") is not None

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        self.rec.event(event="ehlo", port=self.port, tls=self._tls(server), conn=session.conn_id)
        if self._first("throttle_ehlo_first"):
            return ["421 4.7.0 Too many concurrent connections, try again later"]
        return responses

    async def handle_MAIL(self, server, session, envelope, address, options):
        self.rec.event(event="mail", port=self.port, tls=self._tls(server),
                       auth=bool(session.authenticated), conn=session.conn_id)
        if self._first("throttle_first"):
            return "454 4.7.0 Throttling failure: Maximum sending rate exceeded."
        if self._reply("mail"):
            return self._reply("mail")
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 2.1.0 OK"

    async def handle_QUIT(self, server, session, envelope):
        self.rec.event(event="quit", port=self.port, conn=session.conn_id)
        return "221 Bye"

    async def handle_RCPT(self, server, session, envelope, address, options):
        rule = self.rules.get("rcpt", {}).get(address.lower())
        if rule:
            return rule
        if self._reply("rcpt"):
            return self._reply("rcpt")
        if self._first("tempfail_rcpt_first"):
            return "451 4.3.0 try again later"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        if self._first("tempfail_data_first"):
            return "451 4.3.0 temporary problem"
        if self._reply("data"):
            self.rec.event(event="data-refused", port=self.port, conn=session.conn_id)
            return self._reply("data")
        if self._first("drop_data_first"):
            self.rec.event(event="drop", port=self.port, conn=session.conn_id)
            server.transport.close()
            return "421 4.3.0 dropped"
        self.rec.message({
            "port": self.port, "conn": session.conn_id, "tls": self._tls(server),
            "auth_user": session.auth_data.login.decode() if isinstance(session.auth_data, LoginPassword)
            else session.auth_data if isinstance(session.auth_data, str) else None,
            "mail_from": envelope.mail_from, "rcpt_tos": envelope.rcpt_tos,
            "mail_options": envelope.mail_options,
            "data": base64.b64encode(envelope.original_content).decode(),
        })
        return "250 2.0.0 OK queued"

    def _token_ok(self, user, token):
        valid = self.spec.get("tokens", {}).get(user)
        return bool(token) and (token == valid or (isinstance(valid, list) and token in valid))

    async def _token_auth(self, server, mech, user, token):
        """Check a bearer token; on failure the provider-style error exchange:
        334 base64 JSON, the client's answer (empty line or ^A), then 535."""
        ok = self._token_ok(user, token)
        self.rec.event(event="auth", port=self.port, mech=mech, ok=ok, tls=self._tls(server),
                       conn=server.session.conn_id, tag=(token or "")[:8])
        if ok:
            return AuthResult(success=True, auth_data=user)
        err = base64.b64encode(b'{"status":"401","schemes":"bearer","scope":"https://mail.google.com/"}')
        await server.push("334 " + err.decode())
        answer = await server._reader.readline()
        self.rec.event(event="auth-error-answer", port=self.port, mech=mech,
                       answer=answer.decode(errors="replace").strip(), conn=server.session.conn_id)
        return AuthResult(success=False, handled=False)

    async def auth_XOAUTH2(self, server, args):
        """SASL XOAUTH2 with the provider-style error exchange."""
        if len(args) < 2:
            return AuthResult(success=False, handled=False)
        try:
            raw = base64.b64decode(args[1]).decode()
            parts = dict(p.split("=", 1) for p in raw.split("\x01") if "=" in p)
            user, token = parts.get("user"), parts.get("auth", "")[len("Bearer "):]
        except Exception:
            return AuthResult(success=False, handled=False)
        return await self._token_auth(server, "XOAUTH2", user, token)

    async def auth_OAUTHBEARER(self, server, args):
        """SASL OAUTHBEARER (RFC 7628): "n,a=USER,^Ahost=..^Aauth=Bearer TOKEN^A^A"."""
        if len(args) < 2:
            return AuthResult(success=False, handled=False)
        try:
            raw = base64.b64decode(args[1]).decode()
            gs2, _, rest = raw.partition("\x01")
            user = next((f[2:] for f in gs2.split(",") if f.startswith("a=")), None)
            parts = dict(p.split("=", 1) for p in rest.split("\x01") if "=" in p)
            token = parts.get("auth", "")[len("Bearer "):]
        except Exception:
            return AuthResult(success=False, handled=False)
        return await self._token_auth(server, "OAUTHBEARER", user, token)


def make_authenticator(spec, rec, port_name):
    users = spec.get("users", {})

    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = (isinstance(auth_data, LoginPassword) and
              users.get(auth_data.login.decode()) == auth_data.password.decode())
        rec.event(event="auth", port=port_name, mech=mechanism, ok=ok,
                  tls=server.transport.get_extra_info("ssl_object") is not None,
                  conn=session.conn_id)
        # handled=False: aiosmtpd then answers 535 itself (the default,
        # handled=True, would leave the client waiting forever).
        return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)
    return authenticator


class RecordingSMTP(SMTP):
    """Logs every command with whether TLS was active (plaintext leak checks)."""

    def __init__(self, *a, rec=None, port_name=None, **kw):
        super().__init__(*a, **kw)
        self._rec = rec
        self._port_name = port_name

    def connection_made(self, transport):
        starttls = self.transport is not None and self._original_transport is not None
        old = getattr(self, "session", None)
        super().connection_made(transport)
        if starttls:  # RFC 3207 reset: a new session on the same connection
            self.session.conn_id = old.conn_id
            self._rec.event(event="starttls", port=self._port_name, conn=self.session.conn_id)
        else:
            self.session.conn_id = next(self._rec.conn)
            self._rec.event(event="connect", port=self._port_name, conn=self.session.conn_id)

    def connection_lost(self, exc):
        if getattr(self, "session", None) is not None and not getattr(self, "_lost_told", False):
            self._lost_told = True
            self._rec.event(event="disconnect", port=self._port_name, conn=self.session.conn_id)
        super().connection_lost(exc)



def tls_context(spec, cert):
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    d = spec["certs"]
    ctx.load_cert_chain(os.path.join(d, cert + ".crt"), os.path.join(d, cert + ".key"))
    return ctx


async def stall_server(host, port):
    conns = []

    async def on_conn(reader, writer):
        conns.append(writer)  # keep it open, never speak
        await reader.read()
    return await asyncio.start_server(on_conn, host, port)


async def close_server(host, port):
    async def on_conn(reader, writer):
        writer.close()
    return await asyncio.start_server(on_conn, host, port)


async def start_port(spec, rec, p, loop):
    host = p.get("host", "127.0.0.1")
    port = p.get("port", 0)
    mode = p["mode"]
    if mode == "stall":
        return await stall_server(host, port)
    if mode == "close":
        return await close_server(host, port)
    ctx = tls_context(spec, p.get("cert", "good")) if mode in ("starttls", "tls") else None
    if ctx and p.get("max_tls") == "1.2":
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    auth = p.get("auth", True)

    def factory():
        h = Handler(spec, rec, p["name"])
        return RecordingSMTP(h, rec=rec, port_name=p["name"], hostname="smarthost.test",
                             tls_context=ctx if mode == "starttls" else None,
                             require_starttls=False, auth_required=auth and bool(spec.get("users") or spec.get("tokens")),
                             auth_require_tls=(mode != "tls"), authenticator=make_authenticator(spec, rec, p["name"]),
                             enable_SMTPUTF8=True, timeout=30,
                             auth_exclude_mechanism=p.get("no_mechs"))
    return await loop.create_server(factory, host, port, ssl=ctx if mode == "tls" else None)


async def main():
    with open(sys.argv[1]) as f:
        spec = json.load(f)
    rec = Recorder(spec["outdir"])
    loop = asyncio.get_running_loop()
    servers, ports = [], {}
    for p in spec["ports"]:
        srv = await start_port(spec, rec, p, loop)
        servers.append(srv)
        ports[p["name"]] = srv.sockets[0].getsockname()[1]
    print(json.dumps({"ports": ports}), flush=True)
    stop = loop.create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set_result, None)
    await stop
    for s in servers:
        s.close()


if __name__ == "__main__":
    asyncio.run(main())
