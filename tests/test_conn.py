"""relay/conn against the real test smarthost (tests/smarthost.py), through
tests/conn-driver: verdicts for every failure class, and delivery over
STARTTLS and implicit TLS."""
import base64
import json
import os
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

DRIVER = os.path.join(BUILD, "tests", "conn-driver")
PASSWORD = "s3cret-Pa55-word"
PORTS = [
    {"name": "sub", "mode": "starttls"},
    {"name": "smtps", "mode": "tls"},
    {"name": "plain", "mode": "plain"},
    {"name": "stall", "mode": "stall"},
    {"name": "wronghost", "mode": "starttls", "cert": "wronghost"},
    {"name": "expired", "mode": "starttls", "cert": "expired"},
    {"name": "untrusted", "mode": "starttls", "cert": "untrusted"},
    {"name": "tls12", "mode": "tls", "max_tls": "1.2"},
]


class ScriptServer(threading.Thread):
    """One scripted SMTP conversation on a loopback port: ("send", bytes),
    ("expect", line prefix) and ("close", None) steps; records the lines it
    received."""

    def __init__(self, steps):
        super().__init__(daemon=True)
        self.steps = steps
        self.lines = []
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1)
        self.sock.settimeout(10)
        self.port = self.sock.getsockname()[1]
        self.start()

    def run(self):
        try:
            conn, _ = self.sock.accept()
        except OSError:
            return
        conn.settimeout(10)
        f = conn.makefile("rb")
        try:
            for kind, arg in self.steps:
                if kind == "send":
                    conn.sendall(arg)
                    continue
                if kind == "close":
                    return
                line = f.readline()
                self.lines.append(line)
                if not line.startswith(arg):
                    break
            while True:  # until the client hangs up
                line = f.readline()
                if not line:
                    break
                self.lines.append(line)
        except OSError:
            pass
        finally:
            f.close()
            conn.close()
            self.sock.close()


class ConnTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="smtprelay-conn-")
        cls.certs = testlib.make_certs(cls.dir)
        cls.fx = testlib.Smarthost(cls.dir, cls.certs, PORTS, rules={"rcpt": {"bad@example.com": "550 5.1.1 no such user"}}, password=PASSWORD)
        cls.out, cls.ports = cls.fx.out, cls.fx.ports
        cls.n = 0

    @classmethod
    def tearDownClass(cls):
        cls.fx.stop()
        shutil.rmtree(cls.dir, ignore_errors=True)

    # ---- helpers ----

    def config(self, port, mode, host="localhost", password=PASSWORD, extra="", cmd_timeout=3):
        ConnTest.n += 1
        path = os.path.join(self.dir, "c%d.conf" % self.n)
        with open(path, "w") as f:
            f.write('hostname = "relay.test"\nspool_dir = "%s"\nlisten = {}\n'
                    'smarthost "sh" {\n  host = "%s"\n  ports = {"%d/%s"}\n'
                    '  username = "user"\n  password = "%s"\n  tls_ca_file = "%s"\n'
                    '  connect_timeout = 2\n  command_timeout = %d\n%s}\n'
                    % (os.path.join(self.dir, "spool"), host, port, mode, password,
                       os.path.join(self.certs, "ca.crt"), cmd_timeout, extra))
        os.chmod(path, 0o600)
        return path

    def drive(self, conf, *send, limit=8, env=None):
        t0 = time.monotonic()
        # e.g. CONN_DRIVER_WRAPPER="valgrind -q --leak-check=full --error-exitcode=99"
        wrapper = os.environ.get("CONN_DRIVER_WRAPPER", "").split()
        if wrapper:
            limit *= 10
        p = subprocess.run([*wrapper, DRIVER, conf, "sh", "0", *(("send",) + send if send else ())],
                           capture_output=True, timeout=300, env=dict(os.environ, **(env or {})))
        self.assertLess(time.monotonic() - t0, limit, p.stderr)
        self.assertIn(p.returncode, (0, 1), p.stderr)
        out = p.stdout.decode()
        res = json.loads(out)
        self.assertEqual(p.returncode, 0 if res["verdict"] == "ok" else 1)
        res["_raw"] = out + p.stderr.decode()
        return res

    def run_port(self, name, mode, **kw):
        return self.drive(self.config(self.ports[name], mode, **kw))

    def test_system_store_hashed_directory(self):
        """Without tls_ca_file the system store is used: a hashed CA
        directory (read on demand) verifies, and a CA not in it does not."""
        store = os.path.join(self.dir, "store")
        os.makedirs(store, exist_ok=True)
        shutil.copy(os.path.join(self.certs, "ca.crt"), os.path.join(store, "test-ca.pem"))
        subprocess.run(["openssl", "rehash", store], check=True)
        conf = self.config(self.ports["sub"], "starttls")
        with open(conf) as f:
            text = f.read()
        with open(conf, "w") as f:
            f.write("\n".join(line for line in text.splitlines() if "tls_ca_file" not in line))
        env = {"SSL_CERT_DIR": store, "SSL_CERT_FILE": ""}  # the directory alone
        self.assertEqual(self.drive(conf, env=env)["verdict"], "ok")
        os.unlink(os.path.join(store, "test-ca.pem"))
        subprocess.run(["openssl", "rehash", store], check=True)
        self.assertEqual(self.drive(conf, env=env)["verdict"], "cert-untrusted")

    def events(self):
        with open(os.path.join(self.out, "events.jsonl")) as f:
            return [json.loads(line) for line in f]

    def messages(self):
        return sorted(f for f in os.listdir(self.out) if f.endswith(".json"))

    def pin(self, cert="good"):
        pem = subprocess.run(["openssl", "x509", "-pubkey", "-noout", "-in",
                              os.path.join(self.certs, cert + ".crt")],
                             capture_output=True, check=True).stdout
        der = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "der"], input=pem,
                             capture_output=True, check=True).stdout
        import hashlib
        return "sha256:" + hashlib.sha256(der).hexdigest()

    def deliver(self, name, mode):
        content = (b"Subject: conn test\r\nFrom: a@relay.test\r\n\r\n"
                   b"line one\r\n.leading dot\r\n..two dots\r\n.\r\nlast line\r\n")
        path = os.path.join(self.dir, "msg-%s.eml" % name)
        with open(path, "wb") as f:
            f.write(content)
        before = set(self.messages())
        res = self.drive(self.config(self.ports[name], mode), "sender@relay.test",
                         "rcpt@example.com", path)
        self.assertEqual(res["verdict"], "ok", res)
        self.assertEqual(res["rcpt_codes"], [250])
        self.assertEqual(res["msg_code"], 250)
        self.assertTrue(res["tls_version"].startswith("TLSv1."), res)
        self.assertIn("PLAIN", res["auth_mechs"])
        self.assertTrue(res["peer"].startswith("localhost[127.0.0.1]:"), res)
        new = sorted(set(self.messages()) - before)
        self.assertEqual(len(new), 1)
        with open(os.path.join(self.out, new[0])) as f:
            rec = json.load(f)
        self.assertEqual(rec["mail_from"], "sender@relay.test")
        self.assertEqual(rec["rcpt_tos"], ["rcpt@example.com"])
        self.assertTrue(rec["tls"])
        self.assertEqual(rec["auth_user"], "user")
        evs = [e for e in self.events() if e.get("port") == name and e.get("conn") == rec["conn"]]
        self.assertTrue(any(e["event"] == "auth" and e["ok"] and e["tls"] for e in evs), evs)
        self.assertTrue(any(e["event"] == "mail" and e["auth"] and e["tls"] for e in evs), evs)
        self.assertEqual(base64.b64decode(rec["data"]), content)
        self.assertNotIn(PASSWORD, res["_raw"])

    # ---- delivery ----

    def test_deliver_starttls(self):
        self.deliver("sub", "starttls")

    def test_deliver_implicit_tls(self):
        self.deliver("smtps", "tls")

    def test_probe_ok_ip_literal(self):
        res = self.run_port("sub", "starttls", host="127.0.0.1")
        self.assertEqual(res["verdict"], "ok", res)
        self.assertTrue(res["peer"].startswith("127.0.0.1[127.0.0.1]:"), res)

    def test_large_message_streamed(self):
        # 24 MiB through TLS: delivered intact, never held in memory.
        line = b"x" * 998 + b"\r\n"
        body = b"Subject: big\r\n\r\n" + (b"." + line[1:]) * 10 + line * (24 * 1024 * 1024 // 1000)
        path = os.path.join(self.dir, "big.eml")
        with open(path, "wb") as f:
            f.write(body)
        before = set(self.messages())
        # The smarthost (Python) takes a while over 24 MiB before its 250: on
        # a loaded machine (make -j) that took longer than command_timeout
        # = 3 s.  This test is about streaming, not timing.
        conf = self.config(self.ports["smtps"], "tls", cmd_timeout=120)
        res = self.drive(conf, "s@relay.test", "r@example.com", path, limit=240)
        with open(DRIVER, "rb") as f:
            sanitized = b"__asan_init" in f.read()
        if not sanitized and not os.environ.get("CONN_DRIVER_WRAPPER"):  # ASan, valgrind blur it
            self.assertLess(res["peak_rss_kb"] * 1024, len(body) // 2, "peak RSS")
        self.assertEqual(res["verdict"], "ok", res)
        self.assertEqual(res["msg_code"], 250)
        new = sorted(set(self.messages()) - before)
        with open(os.path.join(self.out, new[0])) as f:
            self.assertEqual(base64.b64decode(json.load(f)["data"]), body)

    def write_msg(self, content=b"Subject: t\r\n\r\nhello\r\n"):
        path = os.path.join(self.dir, "m%d.eml" % self.n)
        with open(path, "wb") as f:
            f.write(content)
        return path

    def test_reuse_with_rset(self):
        before = set(self.messages())
        res = self.drive(self.config(self.ports["sub"], "starttls"), "s@relay.test",
                         "r@example.com", self.write_msg(), env={"CONN_SEND_COUNT": "3"})
        self.assertEqual(res["verdict"], "ok", res)
        new = sorted(set(self.messages()) - before)
        self.assertEqual(len(new), 3)
        conns = set()
        for name in new:
            with open(os.path.join(self.out, name)) as f:
                conns.add(json.load(f)["conn"])
        self.assertEqual(len(conns), 1)

    def test_rcpt_refused(self):
        res = self.drive(self.config(self.ports["sub"], "starttls"), "s@relay.test",
                         "bad@example.com", self.write_msg())
        self.assertEqual(res["verdict"], "ok", res)
        self.assertEqual(res["rcpt_codes"], [550])
        self.assertEqual(res["msg_code"], 550)

    # ---- scripted servers ----

    def script(self, steps, mode="starttls", send=(), **kw):
        srv = ScriptServer(steps)
        res = self.drive(self.config(srv.port, mode, **kw), *send)
        srv.join(10)
        return res, srv

    def test_starttls_injection(self):
        res, srv = self.script([
            ("send", b"220 hi ESMTP\r\n"), ("expect", b"EHLO"),
            ("send", b"250-hi\r\n250 STARTTLS\r\n"), ("expect", b"STARTTLS"),
            ("send", b"220 go ahead\r\n250-injected\r\n250 AUTH PLAIN\r\n")])
        self.assertEqual(res["verdict"], "protocol-error", res)
        self.assertIn("injection", res["reason"])
        self.assertFalse(any(line.startswith(b"AUTH") for line in srv.lines), srv.lines)

    def test_tls_record_at_greeting(self):
        res, _ = self.script([("send", b"\x15\x03\x01\x00\x02\x02\x46")])
        self.assertEqual(res["verdict"], "tls-mode-mismatch", res)
        self.assertIn("implicit TLS", res["reason"])

    def test_greeting_421(self):
        res, _ = self.script([("send", b"421 4.3.2 busy, try later\r\n")])
        self.assertEqual(res["verdict"], "temporary-failure", res)
        self.assertIn("421 4.3.2 busy", res["reason"])

    def test_none_port_no_auth(self):
        res, srv = self.script([
            ("send", b"220 hi ESMTP\r\n"), ("expect", b"EHLO relay.test"),
            ("send", b"250-hi\r\n250 AUTH PLAIN\r\n"), ("expect", b"QUIT"),
            ("send", b"221 bye\r\n")], mode="none")
        self.assertEqual(res["verdict"], "ok", res)
        self.assertIsNone(res["tls_version"])
        self.assertEqual(srv.lines, [b"EHLO relay.test\r\n", b"QUIT\r\n"])

    def test_lost_mid_session(self):
        res, _ = self.script([
            ("send", b"220 hi ESMTP\r\n"), ("expect", b"EHLO"),
            ("send", b"250 hi\r\n"), ("expect", b"MAIL"), ("close", None)], mode="none",
            send=("s@relay.test", "r@example.com", self.write_msg()))
        self.assertEqual(res["verdict"], "lost", res)
        self.assertIn("lost connection", res["reason"])

    def test_command_timeout(self):
        t0 = time.monotonic()
        res, _ = self.script([
            ("send", b"220 hi ESMTP\r\n"), ("expect", b"EHLO"),
            ("send", b"250 hi\r\n"), ("expect", b"MAIL"), ("expect", b"never")], mode="none",
            send=("s@relay.test", "r@example.com", self.write_msg()), cmd_timeout=1)
        self.assertEqual(res["verdict"], "lost", res)
        self.assertIn("timed out", res["reason"])
        self.assertLess(time.monotonic() - t0, 4)

    # ---- connection failures ----

    def test_refused(self):
        port = free_port()
        res = self.drive(self.config(port, "starttls"))
        self.assertEqual(res["verdict"], "refused", res)
        self.assertIn("connect to localhost[127.0.0.1]:%d: Connection refused" % port, res["reason"])

    def test_timeout_stall(self):
        res = self.run_port("stall", "starttls")
        self.assertEqual(res["verdict"], "timeout", res)
        self.assertIn("no greeting from localhost[127.0.0.1]:%d within 2s" % self.ports["stall"],
                      res["reason"])

    def test_dns(self):
        t0 = time.monotonic()
        res = self.drive(self.config(25, "starttls", host="nonexistent.invalid"), limit=5)
        # Without a working resolver the lookup runs into connect_timeout.
        self.assertIn(res["verdict"], ("dns", "timeout"), res)
        self.assertIn("nonexistent.invalid", res["reason"])
        self.assertLess(time.monotonic() - t0, 5)

    def test_dns_no_answer(self):
        # A DNS server that never answers: connect_timeout ends the lookup.
        blackhole = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        blackhole.bind(("127.0.0.1", 0))
        self.addCleanup(blackhole.close)
        t0 = time.monotonic()
        res = self.drive(self.config(587, "starttls", host="smtp.example.com"), limit=5,
                         env={"CONN_NAMESERVER": "127.0.0.1:%d" % blackhole.getsockname()[1]})
        self.assertEqual(res["verdict"], "dns", res)
        self.assertIn("cannot resolve smtp.example.com: no answer within 2s", res["reason"])
        self.assertGreater(time.monotonic() - t0, 1.5)

    # ---- TLS mode ----

    def test_implicit_tls_on_starttls_port(self):
        res = self.run_port("sub", "tls")
        self.assertEqual(res["verdict"], "tls-mode-mismatch", res)
        self.assertIn("answered in plaintext", res["reason"])
        self.assertIn("use %d/starttls" % self.ports["sub"], res["reason"])

    def test_starttls_on_implicit_tls_port(self):
        res = self.run_port("smtps", "starttls")
        self.assertEqual(res["verdict"], "timeout", res)
        self.assertIn("implicit TLS", res["reason"])

    def test_starttls_missing(self):
        before = len(self.events())
        res = self.run_port("plain", "starttls")
        self.assertEqual(res["verdict"], "starttls-missing", res)
        self.assertIn("does not offer STARTTLS", res["reason"])
        evs = [e for e in self.events()[before:] if e.get("port") == "plain"]
        self.assertTrue(any(e["event"] == "ehlo" for e in evs), evs)
        self.assertFalse(any(e["event"] in ("auth", "mail") for e in evs), evs)
        self.assertNotIn(PASSWORD, res["_raw"])

    # ---- certificates ----

    def test_cert_untrusted(self):
        res = self.run_port("untrusted", "starttls")
        self.assertEqual(res["verdict"], "cert-untrusted", res)
        self.assertIn("some other CA", res["reason"])

    def test_cert_hostname(self):
        res = self.run_port("wronghost", "starttls")
        self.assertEqual(res["verdict"], "cert-hostname", res)
        self.assertIn("wrong.example", res["reason"])

    def test_cert_expired(self):
        res = self.run_port("expired", "starttls")
        self.assertEqual(res["verdict"], "cert-expired", res)
        self.assertIn("2020-02-01", res["reason"])

    def test_tls_version(self):
        res = self.run_port("tls12", "tls", extra='  tls_min_version = "1.3"\n')
        self.assertEqual(res["verdict"], "tls-version", res)
        res = self.run_port("tls12", "tls")
        self.assertEqual(res["verdict"], "ok", res)
        self.assertEqual(res["tls_version"], "TLSv1.2")

    # ---- pin ----

    def test_pin_right(self):
        res = self.run_port("sub", "starttls", extra='  tls_fingerprint = "%s"\n' % self.pin().upper())
        self.assertEqual(res["verdict"], "ok", res)

    def test_pin_alone_authenticates(self):
        # Untrusted chain, but tls_verify = false and the pin matches.
        extra = '  tls_verify = false\n  tls_fingerprint = "%s"\n' % self.pin("untrusted")
        res = self.run_port("untrusted", "starttls", extra=extra)
        self.assertEqual(res["verdict"], "ok", res)
        self.assertFalse(res["verified"])

    def test_pin_wrong(self):
        want = "sha256:" + "ab" * 32
        res = self.run_port("sub", "starttls", extra='  tls_fingerprint = "%s"\n' % want)
        self.assertEqual(res["verdict"], "tls-failed", res)
        self.assertIn(want, res["reason"])
        self.assertIn(self.pin(), res["reason"])

    # ---- AUTH ----

    def test_auth_failed(self):
        wrong = "Wr0ng-Pa55-zz"
        res = self.run_port("sub", "starttls", password=wrong)
        self.assertEqual(res["verdict"], "auth-failed", res)
        self.assertIn("535", res["reason"])
        self.assertIn("check the username and password", res["reason"])
        self.assertNotIn(wrong, res["_raw"])
        self.assertNotIn(base64.b64encode(b"\0user\0" + wrong.encode()).decode(), res["_raw"])


if __name__ == "__main__":
    unittest.main(verbosity=2)
