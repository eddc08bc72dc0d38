#!/usr/bin/python3
"""A local HTTPS OAuth2 token endpoint and device authorization endpoint for
tests (Microsoft/Google-style answers).

usage: tokenserver.py SPEC.json

SPEC = {
  "certs": DIR, "cert": "good",        # from tests/mkcerts.sh
  "outdir": DIR,                       # requests.jsonl: one {"path", "form"} per request
  "client_id": "cid",
  "client_secret": "csec",             # optional: then required in every token request
  "refresh_token": "rt-0",             # the only refresh token accepted
  "access_tokens": ["at-1", "at-2"],   # issued in this order (the last one repeats)
  "expires_in": 3600,
  "rotate": ["rt-1", "rt-2"],          # optional: each refresh grant answers the next one
                                       # as a new refresh_token, which becomes the only
                                       # one accepted
  "fail": null,                        # "http500" | "badjson" | "invalid_client": every
                                       # refresh grant fails that way
  "device": {"device_code": "dc-1", "user_code": "WDJB-MJHT", "pending": 2,
             "slow_down": 0, "interval": 1, "expires_in": 60,
             "refresh_token": "rt-dev", "deny": false}
}
Paths: /token (refresh_token and device_code grants), /devicecode.
A refresh token that is not the current one gets 400 invalid_grant with an
AADSTS70008-style description.  When listening, prints {"port": N}.
"""
import json
import os
import signal
import ssl
import sys
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


class State:
    def __init__(self, spec):
        self.spec = spec
        self.lock = threading.Lock()
        self.issued = 0
        self.refresh = spec.get("refresh_token")
        self.rotations = list(spec.get("rotate") or [])
        dev = spec.get("device") or {}
        self.pending = dev.get("pending", 0)
        self.slow = dev.get("slow_down", 0)
        os.makedirs(spec["outdir"], exist_ok=True)
        self.log = open(os.path.join(spec["outdir"], "requests.jsonl"), "a", buffering=1)

    def next_access(self):
        tokens = self.spec.get("access_tokens") or ["at-default"]
        tok = tokens[min(self.issued, len(tokens) - 1)]
        self.issued += 1
        return tok


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def reply(self, code, obj=None, raw=None):
        body = raw if raw is not None else json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
        self.close_connection = True

    def error(self, code, err, desc=None):
        obj = {"error": err}
        if desc:
            obj["error_description"] = desc
        self.reply(code, obj)

    def do_POST(self):
        st = self.server.state
        n = int(self.headers.get("Content-Length", "0"))
        raw = self.rfile.read(n).decode()
        form = {k: v[0] for k, v in urllib.parse.parse_qs(raw, keep_blank_values=True).items()}
        with st.lock:
            st.log.write(json.dumps({"path": self.path, "form": form,
                                     "content_type": self.headers.get("Content-Type")}) + "\n")
            if self.path == "/devicecode":
                return self.devicecode(st, form)
            if self.path != "/token":
                return self.error(404, "not_found")
            if self.headers.get("Content-Type") != "application/x-www-form-urlencoded":
                return self.error(400, "invalid_request", "wrong content type")
            if form.get("client_id") != st.spec.get("client_id"):
                return self.error(401, "invalid_client", "AADSTS700016: Application not found.")
            secret = st.spec.get("client_secret")
            if secret is not None and form.get("client_secret") != secret:
                return self.error(401, "invalid_client", "The client secret is wrong.")
            if form.get("grant_type") == "refresh_token":
                return self.refresh(st, form)
            if form.get("grant_type") == DEVICE_GRANT:
                return self.device_token(st, form)
            return self.error(400, "unsupported_grant_type")

    def refresh(self, st, form):
        fail = st.spec.get("fail")
        if fail == "http500":
            return self.reply(500, raw=b"<html>Internal Server Error</html>")
        if fail == "badjson":
            return self.reply(200, raw=b'{"access_token": "unterminated')
        if fail == "invalid_client":
            return self.error(401, "invalid_client", "AADSTS7000215: Invalid client secret provided.")
        if form.get("refresh_token") != st.refresh:
            return self.error(400, "invalid_grant",
                              "AADSTS70008: The provided authorization code or refresh token has "
                              "expired due to inactivity.\r\nTrace ID: 0000\r\nCorrelation ID: 1111")
        obj = {"token_type": "Bearer", "scope": form.get("scope", ""),
               "expires_in": st.spec.get("expires_in", 3600), "ext_expires_in": 3600,
               "access_token": st.next_access()}
        if st.rotations:
            st.refresh = st.rotations.pop(0)
            obj["refresh_token"] = st.refresh
        self.reply(200, obj)

    def devicecode(self, st, form):
        dev = st.spec.get("device") or {}
        if form.get("client_id") != st.spec.get("client_id"):
            return self.error(400, "invalid_client", "AADSTS700016: Application not found.")
        port = self.server.server_address[1]
        self.reply(200, {"device_code": dev.get("device_code", "dc-1"),
                         "user_code": dev.get("user_code", "WDJB-MJHT"),
                         "verification_uri": "https://127.0.0.1:%d/verify" % port,
                         "expires_in": dev.get("expires_in", 60),
                         "interval": dev.get("interval", 1),
                         "message": "To sign in, use a web browser..."})

    def device_token(self, st, form):
        dev = st.spec.get("device") or {}
        if form.get("device_code") != dev.get("device_code", "dc-1"):
            return self.error(400, "invalid_grant", "AADSTS70000: unknown device code")
        if dev.get("deny"):
            return self.error(400, "access_denied", "The user declined.")
        if st.slow > 0:
            st.slow -= 1
            return self.error(400, "slow_down")
        if st.pending > 0:
            st.pending -= 1
            return self.error(400, "authorization_pending",
                              "AADSTS70016: OAuth 2.0 device flow error. Authorization is pending.")
        st.refresh = dev.get("refresh_token", "rt-dev")
        self.reply(200, {"token_type": "Bearer", "expires_in": st.spec.get("expires_in", 3600),
                         "access_token": st.next_access(), "refresh_token": st.refresh})


def main():
    with open(sys.argv[1]) as f:
        spec = json.load(f)
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    srv.state = State(spec)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert = spec.get("cert", "good")
    ctx.load_cert_chain(os.path.join(spec["certs"], cert + ".crt"),
                        os.path.join(spec["certs"], cert + ".key"))
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    signal.signal(signal.SIGTERM, lambda *a: threading.Thread(target=srv.shutdown).start())
    print(json.dumps({"port": srv.server_address[1]}), flush=True)
    srv.serve_forever()
    srv.server_close()


if __name__ == "__main__":
    main()
