"""`smtprelay probe` (frontend/probe.c, through the smtprelay-probe test
program) against the real test smarthost (tests/smarthost.py): every verdict
in the port line and in --json, the "delivery will use" line, exit codes.
$PROBE_WRAPPER (e.g. "valgrind -q --error-exitcode=99 --leak-check=full")
runs the program under a checker."""
import base64
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import testlib  # noqa: E402
from testlib import BUILD  # noqa: E402
from testlib import free_port  # noqa: E402

PROBE = os.path.join(BUILD, "smtprelay-probe")
WRAPPER = shlex.split(os.environ.get("PROBE_WRAPPER", ""))
PASSWORD = "s3cret-Pr0be-word"
PORTS = [
    {"name": "sub", "mode": "starttls"},
    {"name": "smtps", "mode": "tls"},
    {"name": "plain", "mode": "plain", "auth": False},  # an internal relay: by IP, no AUTH
    {"name": "stall", "mode": "stall"},
    {"name": "wronghost", "mode": "starttls", "cert": "wronghost"},
    {"name": "expired", "mode": "starttls", "cert": "expired"},
    {"name": "untrusted", "mode": "starttls", "cert": "untrusted"},
    {"name": "close", "mode": "close"},
]
KEYS = {"smarthost", "host", "port", "mode", "verdict", "detail", "tls_version", "cipher",
        "auth_mechanisms", "elapsed_ms"}


def tls_bytes_server():
    """A loopback port whose every connection gets a TLS alert record
    instead of a greeting; returns the port."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)
    srv.settimeout(30)

    def serve():
        with srv:
            for _ in range(2):  # text and --json
                try:
                    conn, _ = srv.accept()
                except OSError:
                    return
                with conn:
                    conn.sendall(b"\x15\x03\x01\x00\x02\x02\x46")
                    conn.settimeout(5)
                    try:
                        conn.recv(100)
                    except OSError:
                        pass
    threading.Thread(target=serve, daemon=True).start()
    return srv.getsockname()[1]


class ProbeTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="smtprelay-probe-")
        cls.certs = testlib.make_certs(cls.dir)
        cls.fx = testlib.Smarthost(cls.dir, cls.certs, PORTS, password=PASSWORD)
        cls.out, cls.ports = cls.fx.out, cls.fx.ports
        cls.n = 0

    @classmethod
    def tearDownClass(cls):
        cls.fx.stop()
        shutil.rmtree(cls.dir, ignore_errors=True)

    # ---- helpers ----

    def smarthost(self, name, ports, host="localhost", password=PASSWORD, extra=""):
        """One smarthost section; ports are "NAME/MODE" (fixture port names)
        or "NUMBER/MODE"."""
        specs = []
        for p in ports:
            port, mode = p.split("/")
            specs.append('"%s/%s"' % (self.ports.get(port, port), mode))
        auth = '  username = "user"\n  password = "%s"\n' % password if password else ""
        return ('smarthost "%s" {\n  host = "%s"\n  ports = {%s}\n%s  tls_ca_file = "%s"\n'
                '  connect_timeout = 2\n  command_timeout = 3\n%s}\n'
                % (name, host, ", ".join(specs), auth, os.path.join(self.certs, "ca.crt"), extra))

    def config(self, *sections):
        ProbeTest.n += 1
        path = os.path.join(self.dir, "c%d.conf" % self.n)
        with open(path, "w") as f:
            f.write('hostname = "relay.test"\nspool_dir = "%s"\nlisten = {}\n%s'
                    % (os.path.join(self.dir, "spool"), "".join(sections)))
        os.chmod(path, 0o600)
        return path

    def run_probe(self, conf, *args, limit=15):
        t0 = time.monotonic()
        p = subprocess.run(WRAPPER + [PROBE, "-C", conf, *args], capture_output=True, timeout=60)
        if not WRAPPER:
            self.assertLess(time.monotonic() - t0, limit, p.stderr)
        self.assertIn(p.returncode, (0, 1), p.stdout + p.stderr)
        return p

    def probe(self, *sections, limit=15):
        """Run text and --json; check they agree.  Returns (rc, port lines
        as (prefix, verdict, line) tuples, the whole text, the JSON list)."""
        conf = self.config(*sections)
        text = self.run_probe(conf, limit=limit)
        js = self.run_probe(conf, "--json", limit=limit)
        self.assertEqual(text.returncode, js.returncode)
        out = text.stdout.decode()
        res = json.loads(js.stdout)
        lines = [m.groups() + (m.group(0),) for m in
                 re.finditer(r"^(\S+ \S+:\d+/(?:starttls|tls|none)): (\S+)(?: .*)?$", out, re.M)]
        self.assertEqual(len(lines), len(res), out)
        for (prefix, verdict, _), obj in zip(lines, res):
            self.assertEqual(set(obj), KEYS)
            self.assertEqual(prefix, "%s %s:%d/%s" % (obj["smarthost"], obj["host"], obj["port"],
                                                     obj["mode"]))
            self.assertEqual(verdict, obj["verdict"])
            self.assertIsInstance(obj["elapsed_ms"], int)
            self.assertIsInstance(obj["auth_mechanisms"], list)
        self.raw = out + text.stderr.decode() + js.stdout.decode() + js.stderr.decode()
        self.assertEqual(text.returncode, 0 if any(o["verdict"] == "ok" for o in res) else 1)
        return text.returncode, lines, out, res

    def one(self, port, host="localhost", **kw):
        """A single port: returns (verdict, port line, JSON object, text)."""
        rc, lines, out, res = self.probe(self.smarthost("sh", [port], host=host, **kw))
        self.assertEqual(len(res), 1)
        self.assertEqual(rc, 0 if res[0]["verdict"] == "ok" else 1)
        if rc:
            self.assertIn("\nno usable port: mail will stay queued\n", "\n" + out)
        return res[0]["verdict"], lines[0][2], res[0], out

    def events(self):
        with open(os.path.join(self.out, "events.jsonl")) as f:
            return [json.loads(line) for line in f]

    # ---- connection failures ----

    def test_refused(self):
        port = free_port()
        verdict, line, obj, _ = self.one("%d/starttls" % port)
        self.assertEqual(verdict, "refused")
        self.assertIn("nothing listens there or a firewall rejects", line)
        self.assertIsNone(obj["tls_version"])
        self.assertIsNone(obj["cipher"])

    def test_stalled(self):
        t0 = time.monotonic()
        verdict, line, obj, out = self.one("stall/starttls")
        self.assertEqual(verdict, "timeout")
        self.assertIn("no greeting from localhost[127.0.0.1]:%d within 2s" % self.ports["stall"], line)
        self.assertIn("implicit TLS retry: no TLS either", out)
        # Two runs (text, JSON), each: greeting wait + the quick TLS retry.
        if not WRAPPER:
            self.assertLess(time.monotonic() - t0, 2 * (2 + 2) + 3)
        self.assertGreaterEqual(obj["elapsed_ms"], 2000)

    def test_dns(self):
        verdict, line, obj, _ = self.one("587/starttls", host="nonexistent.invalid")
        # Without a working resolver the lookup runs into connect_timeout.
        self.assertIn(verdict, ("dns", "timeout"), line)
        self.assertIn("nonexistent.invalid", obj["detail"])
        if verdict == "timeout":
            print("note: the resolver did not answer in time; got timeout instead of dns",
                  file=sys.stderr)

    # ---- TLS mode ----

    def test_implicit_tls_port_as_starttls(self):
        verdict, line, obj, _ = self.one("smtps/starttls")
        self.assertEqual(verdict, "tls-mode-mismatch")
        port = self.ports["smtps"]
        self.assertIn("localhost:%d speaks implicit TLS: use %d/tls" % (port, port), line)
        self.assertIn("handshake succeeded", obj["detail"])

    def test_starttls_port_as_tls(self):
        verdict, line, obj, _ = self.one("sub/tls")
        self.assertEqual(verdict, "tls-mode-mismatch")
        self.assertIn("answered in plaintext", line)
        self.assertIn("use %d/starttls" % self.ports["sub"], line)

    def test_implicit_tls_port_as_none(self):
        verdict, line, obj, _ = self.one("smtps/none")
        self.assertEqual(verdict, "tls-mode-mismatch")
        self.assertIn("use %d/tls" % self.ports["smtps"], line)

    def test_tls_bytes_at_greeting(self):
        port = tls_bytes_server()
        verdict, line, obj, _ = self.one("%d/starttls" % port)
        self.assertEqual(verdict, "tls-mode-mismatch")
        self.assertIn("use %d/tls" % port, line)

    def test_closed_at_greeting(self):
        verdict, line, obj, _ = self.one("close/starttls")
        self.assertEqual(verdict, "refused")
        self.assertIn("greeting", line)

    def test_starttls_missing(self):
        before = len(self.events())
        verdict, line, obj, out = self.one("plain/starttls")
        self.assertEqual(verdict, "starttls-missing")
        self.assertIn("does not offer STARTTLS", line)
        self.assertIn("STARTTLS: not offered", out)
        self.assertIn("banner: 220 smarthost.test", out)
        evs = [e for e in self.events()[before:] if e.get("port") == "plain"]
        self.assertFalse(any(e["event"] in ("auth", "mail") for e in evs), evs)
        self.assertNotIn(PASSWORD, self.raw)

    # ---- certificates ----

    def test_cert_untrusted(self):
        verdict, line, obj, _ = self.one("untrusted/starttls")
        self.assertEqual(verdict, "cert-untrusted")
        self.assertIn("some other CA", line)
        self.assertIn("tls_ca_file", line)

    def test_cert_hostname(self):
        verdict, line, obj, _ = self.one("wronghost/starttls")
        self.assertEqual(verdict, "cert-hostname")
        self.assertIn("wrong.example", line)

    def test_cert_expired(self):
        verdict, line, obj, _ = self.one("expired/starttls")
        self.assertEqual(verdict, "cert-expired")
        self.assertIn("2020-02-01", line)

    # ---- AUTH ----

    def test_bad_password(self):
        wrong = "Wr0ng-Pr0be-zz"
        verdict, line, obj, _ = self.one("sub/starttls", password=wrong)
        self.assertEqual(verdict, "auth-failed")
        self.assertIn("535", line)
        self.assertIn("check the username and password", line)
        self.assertNotIn(wrong, self.raw)
        self.assertNotIn(base64.b64encode(b"\0user\0" + wrong.encode()).decode(), self.raw)

    def test_password_command(self):
        cmd = '  password_command = "printf \'%%s\\\\n\' %s"\n' % PASSWORD
        verdict, line, obj, _ = self.one("sub/starttls", password=None,
                                         extra='  username = "user"\n' + cmd)
        self.assertEqual(verdict, "ok", line)
        self.assertNotIn(PASSWORD, self.raw)

    def test_token_failed(self):
        cmd = '  password_command = "echo no token here >&2; exit 3"\n'
        verdict, line, obj, _ = self.one("sub/starttls", password=None,
                                         extra='  username = "user"\n' + cmd)
        self.assertEqual(verdict, "token-failed")
        self.assertIn("exit 3", line)
        self.assertIn("no token here", line)

    # ---- success ----

    def test_good(self):
        before = len(self.events())
        verdict, line, obj, out = self.one("sub/starttls")
        self.assertEqual(verdict, "ok", out)
        self.assertTrue(obj["tls_version"].startswith("TLSv1."), obj)
        self.assertTrue(obj["cipher"], obj)
        self.assertIn("PLAIN", obj["auth_mechanisms"])
        self.assertIn("AUTH PLAIN as user accepted", line)
        self.assertIn(obj["tls_version"], line)
        self.assertIn("delivery will use sh localhost:%d/starttls\n" % self.ports["sub"], out)
        for what in ("banner: 220 smarthost.test", "STARTTLS: offered", "certificate: subject CN=good",
                     "issuer CN=smtprelay test CA", "host name matches localhost", "EHLO after TLS"):
            self.assertIn(what, out)
        self.assertRegex(out, r"connected to localhost\[127\.0\.0\.1\]:\d+ in \d+ ms")
        # No mail is ever sent; every session ends with QUIT.
        evs = [e for e in self.events()[before:] if e.get("port") == "sub"]
        self.assertFalse(any(e["event"] == "mail" for e in evs), evs)
        self.assertEqual(sum(e["event"] == "quit" for e in evs),
                         sum(e["event"] == "connect" for e in evs), evs)
        self.assertNotIn(PASSWORD, self.raw)

    def test_good_implicit_tls(self):
        verdict, line, obj, _ = self.one("smtps/tls")
        self.assertEqual(verdict, "ok", line)
        self.assertTrue(obj["tls_version"].startswith("TLSv1."), obj)
        self.assertIn("PLAIN", obj["auth_mechanisms"])

    def test_none_port(self):
        before = len(self.events())
        verdict, line, obj, out = self.one("plain/none")
        self.assertEqual(verdict, "ok", line)
        # Without AUTH the probe asks whether mail is taken: MAIL FROM only.
        self.assertIn("MAIL FROM without AUTH: 250", out)
        self.assertIsNone(obj["tls_version"])
        self.assertIsNone(obj["cipher"])
        evs = [e for e in self.events()[before:] if e.get("port") == "plain"]
        self.assertTrue(any(e["event"] == "ehlo" for e in evs), evs)
        self.assertFalse(any(e["event"] == "auth" for e in evs), evs)

    # ---- whole configs ----

    def test_mixed_refused_then_ok(self):
        refused = free_port()
        rc, lines, out, res = self.probe(self.smarthost("primary", ["%d/starttls" % refused,
                                                                    "sub/starttls", "smtps/tls"]))
        self.assertEqual(rc, 0)
        self.assertEqual([v for _, v, _ in lines], ["refused", "ok", "ok"])
        self.assertEqual([o["port"] for o in res], [refused, self.ports["sub"], self.ports["smtps"]])
        self.assertTrue(out.endswith("delivery will use primary localhost:%d/starttls\n"
                                     % self.ports["sub"]), out)

    def test_delivery_picks_first_ok_smarthost(self):
        rc, lines, out, res = self.probe(
            self.smarthost("a", ["%d/starttls" % free_port(), "plain/starttls"]),
            self.smarthost("b", ["untrusted/starttls", "smtps/tls", "sub/starttls"]),
            self.smarthost("c", ["sub/starttls"]))
        self.assertEqual(rc, 0)
        self.assertEqual([o["smarthost"] for o in res], ["a", "a", "b", "b", "b", "c"])
        self.assertEqual([v for _, v, _ in lines],
                         ["refused", "starttls-missing", "cert-untrusted", "ok", "ok", "ok"])
        self.assertTrue(out.endswith("delivery will use b localhost:%d/tls\n" % self.ports["smtps"]),
                        out)

    def test_none_usable(self):
        rc, lines, out, res = self.probe(
            self.smarthost("a", ["%d/starttls" % free_port(), "wronghost/starttls"]),
            self.smarthost("b", ["sub/starttls"], password="nope-Nope-1"))
        self.assertEqual(rc, 1)
        self.assertEqual([o["verdict"] for o in res], ["refused", "cert-hostname", "auth-failed"])
        self.assertTrue(out.endswith("no usable port: mail will stay queued\n"), out)

    def test_no_smarthost(self):
        conf = self.config()
        p = self.run_probe(conf)
        self.assertEqual(p.returncode, 1)
        self.assertIn("no smarthost configured in %s" % conf, p.stderr.decode())
        p = self.run_probe(conf, "--json")
        self.assertEqual(p.returncode, 1)
        self.assertEqual(json.loads(p.stdout), [])


if __name__ == "__main__":
    unittest.main(verbosity=2)
