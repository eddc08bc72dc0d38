"""The delivery engine (relay/relay.c) end to end, through tests/relay-driver,
against the real test smarthost (tests/smarthost.py): TLS modes, port
fallback and the sticky port, smarthost failover, per-recipient results,
connection reuse and limits, rate limit, throttling, password_command, and
no credentials on plain ports or in logs."""
import os
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from testlib import BUILD  # noqa: E402
import testlib  # noqa: E402
from testlib import free_port  # noqa: E402

DRIVER = os.path.join(BUILD, "tests", "relay-driver")
# e.g. RELAY_WRAPPER="valgrind -q --error-exitcode=99 --leak-check=full"
WRAPPER = os.environ.get("RELAY_WRAPPER", "").split()
SENDMAIL = os.path.join(BUILD, "sendmail")
PASSWORD = "Rel4y-s3cret-pw"
CONTENT = b"From: a@example.org\r\nTo: b@example.net\r\nSubject: hi\r\n\r\nbody\r\n"


def Smarthost(*a, **kw):
    return testlib.Smarthost(*a, password=PASSWORD, **kw)


class RelayTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.root = tempfile.mkdtemp(prefix="smtprelay-relay-")
        cls.certs = testlib.make_certs(cls.root)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.root, ignore_errors=True)

    def setUp(self):
        self.dir = tempfile.mkdtemp(dir=self.root)
        self.spool = os.path.join(self.dir, "spool")
        self.conf = os.path.join(self.dir, "smtprelay.conf")
        self.stderr_all = ""

    def tearDown(self):
        # No secret in any log line, whatever the test did.
        self.assertNotIn(PASSWORD, self.stderr_all)

    def smarthost(self, ports, rules=None, name="fx"):
        fx = Smarthost(self.dir, self.certs, ports, rules, name)
        self.addCleanup(fx.stop)
        return fx

    def section(self, name, ports, extra="", password=True):
        auth = '  username = "user"\n'
        if password is True:
            auth += '  password = "%s"\n' % PASSWORD
        elif password:
            auth += '  password_command = "%s"\n' % password.replace('"', '\\"')
        return ('smarthost "%s" {\n  host = "127.0.0.1"\n  ports = {%s}\n%s'
                '  tls_ca_file = "%s"\n  connect_timeout = 2\n  command_timeout = 5\n%s}\n'
                % (name, ", ".join('"%s"' % p for p in ports), auth,
                   os.path.join(self.certs, "ca.crt"), extra))

    def write_conf(self, *sections):
        with open(self.conf, "w") as f:
            f.write('hostname = "relay.test"\nspool_dir = "%s"\nlisten = {}\n%s'
                    % (self.spool, "".join(sections)))
        os.chmod(self.conf, 0o600)

    def inject(self, rcpts, sender="sender@example.org", content=CONTENT):
        p = subprocess.run([DRIVER, "--inject", self.spool, sender, *rcpts], input=content,
                           capture_output=True, timeout=10)
        self.assertEqual(p.returncode, 0, p.stderr)
        return p.stdout.decode().strip()

    def drive(self, *ids, opts=(), limit=30, rc=0):
        t0 = time.monotonic()
        p = subprocess.run([*WRAPPER, DRIVER, *opts, self.conf, self.spool, *ids],
                           capture_output=True, timeout=limit * (3 if WRAPPER else 1))
        elapsed = time.monotonic() - t0
        err = p.stderr.decode(errors="replace")
        self.stderr_all += err
        self.assertEqual(p.returncode, rc, err)
        results = {}
        for line in p.stdout.decode().splitlines():
            qid, rcpt, state, reason = (line.split(" ", 3) + [""])[:4]
            results[(qid, rcpt)] = (state, reason)
        return results, err, elapsed

    def state_attempts(self, qid):
        with open(os.path.join(self.spool, "queue", qid + ".state")) as f:
            return [int(line.split()[2]) for line in f if line.startswith("rcpt ")]

    # ---- TLS modes and AUTH ----

    def check_delivered(self, fx, port_name, mode):
        self.write_conf(self.section("sh", ["%d/%s" % (fx.ports[port_name], mode)]))
        qid = self.inject(["b@example.net"])
        res, err, _ = self.drive(qid)
        self.assertEqual(res[(qid, "b@example.net")][0], "delivered", err)
        msgs = fx.messages()
        self.assertEqual(len(msgs), 1)
        self.assertEqual(msgs[0]["auth_user"], "user")
        self.assertTrue(any(e["event"] == "auth" and e["ok"] and e["tls"] for e in fx.events()))
        self.assertTrue(msgs[0]["tls"])
        self.assertEqual(msgs[0]["rcpt_tos"], ["b@example.net"])
        line = [l for l in err.splitlines() if "status=sent" in l][0]
        self.assertRegex(line, r"%s: to=<b@example.net>, relay=127\.0\.0\.1\[127\.0\.0\.1\]:%d, "
                         r"delay=[\d.]+, delays=[\d.]+/[\d.]+/[\d.]+/[\d.]+, dsn=2\.0\.0, status=sent \(250 "
                         % (qid, fx.ports[port_name]))
        self.assertRegex(err, r"Verified TLS connection established to 127\.0\.0\.1\[127\.0\.0\.1\]:%d: "
                         r"TLSv1\.[23] with cipher [\w-]+ \(\d+/\d+ bits\)" % fx.ports[port_name])
        return msgs[0]

    def test_starttls_auth(self):
        fx = self.smarthost([{"name": "sub", "mode": "starttls"}])
        self.check_delivered(fx, "sub", "starttls")

    def test_implicit_tls_auth(self):
        fx = self.smarthost([{"name": "smtps", "mode": "tls"}])
        self.check_delivered(fx, "smtps", "tls")

    def test_no_credentials_on_plain_port(self):
        # STARTTLS expected but not offered: a failure, never plaintext AUTH.
        fx = self.smarthost([{"name": "plain", "mode": "plain"}])
        self.write_conf(self.section("sh", ["%d/starttls" % fx.ports["plain"]]))
        qid = self.inject(["b@example.net"])
        res, err, _ = self.drive(qid, opts=("--down", "0"))
        state, reason = res[(qid, "b@example.net")]
        self.assertEqual(state, "deferred")
        self.assertIn("STARTTLS", reason)
        self.assertIn(str(fx.ports["plain"]), reason)
        self.assertEqual([e for e in fx.events() if e["event"] in ("auth", "mail")], [])
        self.assertEqual(fx.messages(), [])

    def test_none_port_sends_no_auth(self):
        fx = self.smarthost([{"name": "plain", "mode": "plain", "auth": False}])
        self.write_conf(self.section("sh", ["%d/none" % fx.ports["plain"]]))
        qid = self.inject(["b@example.net"])
        res, err, _ = self.drive(qid)
        self.assertEqual(res[(qid, "b@example.net")][0], "delivered", err)
        self.assertIsNone(fx.messages()[0]["auth_user"])
        self.assertEqual([e for e in fx.events() if e["event"] == "auth"], [])
        self.assertRegex(err, r"dsn=2\.0\.0, status=sent \(250 ")
        self.assertNotIn("TLS connection established", err)

    # ---- ports and smarthosts ----

    def test_port_fallback_refused(self):
        fx = self.smarthost([{"name": "sub", "mode": "starttls"}])
        dead = free_port()
        self.write_conf(self.section("sh", ["%d/starttls" % dead, "%d/starttls" % fx.ports["sub"]]))
        qid = self.inject(["b@example.net"])
        res, err, _ = self.drive(qid)
        self.assertEqual(res[(qid, "b@example.net")][0], "delivered", err)
        self.assertIn("trying the next port", err)
        self.assertIn(":%d" % dead, err)

    def test_port_fallback_stall_then_sticky(self):
        fx = self.smarthost([{"name": "stall", "mode": "stall"}, {"name": "sub", "mode": "starttls"}])
        self.write_conf(self.section("sh", ["%d/starttls" % fx.ports["stall"],
                                            "%d/starttls" % fx.ports["sub"]],
                                     "  max_messages_per_connection = 1\n"))
        a = self.inject(["a@example.net"])
        b = self.inject(["b@example.net"])
        # Two batches in one process: the second starts with the port that worked.
        res, err, _ = self.drive(a, "--then", b)
        self.assertEqual(res[(a, "a@example.net")][0], "delivered", err)
        self.assertEqual(res[(b, "b@example.net")][0], "delivered", err)
        self.assertEqual(err.count("trying the next port"), 1, err)
        self.assertIn("within 2s", err)
        connects = [e for e in fx.events() if e["event"] == "connect"]
        self.assertEqual(len(connects), 2)
        self.assertTrue(all(e["port"] == "sub" for e in connects))

    def test_smarthost_failover(self):
        fx = self.smarthost([{"name": "sub", "mode": "starttls"}])
        self.write_conf(self.section("first", ["%d/starttls" % free_port(), "%d/tls" % free_port()]),
                        self.section("second", ["%d/starttls" % fx.ports["sub"]]))
        qid = self.inject(["b@example.net"])
        res, err, _ = self.drive(qid)
        self.assertEqual(res[(qid, "b@example.net")][0], "delivered", err)
        self.assertEqual(len(fx.messages()), 1)

    def test_all_smarthosts_fail_deferred_with_last_reason(self):
        p1, p2 = free_port(), free_port()
        self.write_conf(self.section("first", ["%d/starttls" % p1]),
                        self.section("second", ["%d/starttls" % p2]))
        qid = self.inject(["b@example.net", "c@example.net"])
        res, err, _ = self.drive(qid)
        for rcpt in ("b@example.net", "c@example.net"):
            state, reason = res[(qid, rcpt)]
            self.assertEqual(state, "deferred")
            self.assertIn(":%d" % p2, reason)
            self.assertIn("refused", reason.lower())
        self.assertIn("relay=none", err)
        self.assertEqual(self.state_attempts(qid), [1, 1])

    def test_no_smarthost(self):
        self.write_conf()
        qid = self.inject(["b@example.net"])
        res, err, _ = self.drive(qid)
        self.assertEqual(res[(qid, "b@example.net")],
                         ("deferred", "no smarthost configured in %s" % self.conf))

    # ---- results per recipient ----

    def test_rcpt_5xx_one_of_two(self):
        fx = self.smarthost([{"name": "sub", "mode": "starttls"}],
                            {"rcpt": {"bad@example.com": "550 5.1.1 no such user"}})
        self.write_conf(self.section("sh", ["%d/starttls" % fx.ports["sub"]]))
        qid = self.inject(["good@example.com", "bad@example.com"])
        res, err, _ = self.drive(qid)
        self.assertEqual(res[(qid, "good@example.com")][0], "delivered")
        state, reason = res[(qid, "bad@example.com")]
        self.assertEqual(state, "failed")
        self.assertIn("said: 550 5.1.1 no such user (in reply to RCPT TO command)", reason)
        self.assertIn("status=bounced", err)
        # Running it again sends nothing: no recipient is open any more.
        self.drive(qid)
        msgs = fx.messages()
        self.assertEqual(len(msgs), 1)
        self.assertEqual(msgs[0]["rcpt_tos"], ["good@example.com"])

    def test_tempfail_then_success(self):
        fx = self.smarthost([{"name": "sub", "mode": "starttls"}], {"tempfail_rcpt_first": 1})
        self.write_conf(self.section("sh", ["%d/starttls" % fx.ports["sub"]]))
        qid = self.inject(["b@example.net"])
        res, err, _ = self.drive(qid)
        state, reason = res[(qid, "b@example.net")]
        self.assertEqual(state, "deferred")
        self.assertIn("451", reason)
        self.assertEqual(fx.messages(), [])
        res, err, _ = self.drive(qid)
        self.assertEqual(res[(qid, "b@example.net")][0], "delivered", err)
        self.assertEqual(len(fx.messages()), 1)
        self.assertEqual(self.state_attempts(qid), [2])

    # ---- connections and rates ----

    def test_connection_reuse(self):
        fx = self.smarthost([{"name": "sub", "mode": "starttls"}])
        self.write_conf(self.section("sh", ["%d/starttls" % fx.ports["sub"]],
                                     "  max_connections = 2\n"))
        ids = [self.inject(["r%d@example.net" % i]) for i in range(20)]
        res, err, _ = self.drive(*ids)
        for i, qid in enumerate(ids):
            self.assertEqual(res[(qid, "r%d@example.net" % i)][0], "delivered")
        msgs = fx.messages()
        self.assertEqual(sorted(m["rcpt_tos"][0] for m in msgs),
                         sorted("r%d@example.net" % i for i in range(20)))
        connects = [e for e in fx.events() if e["event"] == "connect"]
        self.assertLessEqual(len(connects), 2)

    def test_max_connections(self):
        fx = self.smarthost([{"name": "sub", "mode": "starttls"}])
        self.write_conf(self.section("sh", ["%d/starttls" % fx.ports["sub"]],
                                     "  max_connections = 3\n  max_messages_per_connection = 2\n"))
        ids = [self.inject(["r%d@example.net" % i]) for i in range(12)]
        res, err, _ = self.drive(*ids)
        self.assertTrue(all(v[0] == "delivered" for v in res.values()), err)
        self.assertEqual(len(fx.messages()), 12)
        # A connection ends at its QUIT (the relay opens the next one only
        # after the reply to it) or when it is gone, whichever comes first.
        live, peak, ended = set(), 0, set()
        for e in fx.events():
            if e["event"] == "connect":
                live.add(e["conn"])
            elif e["event"] in ("quit", "disconnect") and e["conn"] not in ended:
                ended.add(e["conn"])
                live.discard(e["conn"])
            peak = max(peak, len(live))
        self.assertLessEqual(peak, 3)
        self.assertGreaterEqual(sum(e["event"] == "connect" for e in fx.events()), 6)

    def test_rate_limit(self):
        # Issue 9 item 7: "2/s" is a sliding window across all connections,
        # not a bucket that starts 4 within the first second.
        fx = self.smarthost([{"name": "sub", "mode": "starttls"}])
        self.write_conf(self.section("sh", ["%d/starttls" % fx.ports["sub"]],
                                     '  rate_limit = "2/s"\n  max_connections = 3\n'))
        ids = [self.inject(["r%d@example.net" % i]) for i in range(8)]
        res, err, elapsed = self.drive(*ids)
        self.assertTrue(all(v[0] == "delivered" for v in res.values()), err)
        mails = sorted(e["t"] for e in fx.events() if e["event"] == "mail")
        self.assertEqual(len(mails), 8)
        # The smarthost sees MAIL a little after we send it; 50 ms of slack
        # for that jitter, far less than the 1 s a bucket's burst gains.
        for i in range(len(mails) - 2):
            self.assertGreaterEqual(mails[i + 2] - mails[i], 0.95, mails)
        self.assertGreaterEqual(len({e["conn"] for e in fx.events() if e["event"] == "mail"}), 2)
        self.assertGreaterEqual(elapsed, 2.9)

    def test_throttling(self):
        fx = self.smarthost([{"name": "sub", "mode": "starttls"}], {"throttle_first": 1})
        self.write_conf(self.section("sh", ["%d/starttls" % fx.ports["sub"]]))
        qid = self.inject(["b@example.net"])
        res, err, _ = self.drive(qid, opts=("--hold", "300"))
        self.assertEqual(res[(qid, "b@example.net")][0], "delivered", err)
        self.assertRegex(err, r"smarthost sh throttling \(454 4\.7\.0 Throttling failure[^)]*\): "
                              r"rate now [0-9.e-]+/s, holding for 0\.3s")
        self.assertEqual(self.state_attempts(qid), [1])
        self.assertEqual(sum(e["event"] == "mail" for e in fx.events()), 2)
        self.assertEqual(len(fx.messages()), 1)
        self.assertNotIn("status=deferred", err)

    def test_throttling_before_the_session(self):
        # A throttling reply before the session is up (421 to EHLO) is
        # recognised from the reply's code and text as the SMTP client parsed
        # them, not from the reason sentence.
        fx = self.smarthost([{"name": "sub", "mode": "starttls"}], {"throttle_ehlo_first": 1})
        self.write_conf(self.section("sh", ["%d/starttls" % fx.ports["sub"]]))
        qid = self.inject(["b@example.net"])
        res, err, _ = self.drive(qid, opts=("--hold", "300"))
        self.assertEqual(res[(qid, "b@example.net")][0], "delivered", err)
        self.assertRegex(err, r"smarthost sh throttling \(.*\(in reply to EHLO\): 421 4\.7\.0 Too many "
                              r"concurrent connections, try again later\): rate now [0-9.e-]+/s, "
                              r"holding for 0\.3s")
        self.assertEqual(sum(e["event"] == "ehlo" for e in fx.events()), 3)
        self.assertEqual(len(fx.messages()), 1)

    def test_shutdown_defers(self):
        fx = self.smarthost([{"name": "stall", "mode": "stall"}])
        self.write_conf(self.section("sh", ["%d/starttls" % fx.ports["stall"]],
                                     "  connect_timeout = 20\n"))
        qid = self.inject(["b@example.net"])
        # --timeout: relay_shutdown after 1 s while the connection still waits.
        res, err, elapsed = self.drive(qid, opts=("--timeout", "1"), rc=1)
        self.assertEqual(res[(qid, "b@example.net")], ("deferred", "delivery interrupted by shutdown"))
        self.assertLess(elapsed, 10)

    # ---- password_command ----

    def test_password_command(self):
        fx = self.smarthost([{"name": "sub", "mode": "starttls"}])
        self.write_conf(self.section("sh", ["%d/starttls" % fx.ports["sub"]],
                                     password="printf '%s\\\\n'" % PASSWORD))
        qid = self.inject(["b@example.net"])
        res, err, _ = self.drive(qid)
        self.assertEqual(res[(qid, "b@example.net")][0], "delivered", err)
        self.assertEqual(fx.messages()[0]["auth_user"], "user")

    def test_password_command_fails(self):
        fx = self.smarthost([{"name": "sub", "mode": "starttls"}])
        self.write_conf(self.section("sh", ["%d/starttls" % fx.ports["sub"]],
                                     password="echo leaked-stdout-xyz; echo vault is sealed >&2; exit 3"))
        qid = self.inject(["b@example.net"])
        res, err, _ = self.drive(qid)
        state, reason = res[(qid, "b@example.net")]
        self.assertEqual(state, "deferred")
        self.assertEqual(reason, "configuration error: password_command for smarthost sh failed (exit 3): vault is sealed")
        self.assertNotIn("leaked-stdout-xyz", err)
        self.assertEqual([e for e in fx.events() if e["event"] == "connect"], [])

    def test_auth_failure_is_config_error(self):
        fx = self.smarthost([{"name": "sub", "mode": "starttls"}])
        self.write_conf(self.section("sh", ["%d/starttls" % fx.ports["sub"]],
                                     password="printf wrong-password"))
        qid = self.inject(["b@example.net"])
        res, err, _ = self.drive(qid)
        self.assertEqual(res[(qid, "b@example.net")][0], "deferred")
        self.assertIn("smarthost sh: authentication failed for user user:", err)
        self.assertIn("check username/password in", err)
        self.assertNotIn("wrong-password", err)

    # ---- the sendmail front end and pickup ----

    @unittest.skipUnless(os.path.exists(SENDMAIL), "sendmail not built")
    def test_sendmail_pickup(self):
        fx = self.smarthost([{"name": "sub", "mode": "starttls"}])
        self.write_conf(self.section("sh", ["%d/starttls" % fx.ports["sub"]]))
        os.makedirs(self.spool, exist_ok=True)
        p = subprocess.run([SENDMAIL, "-C", self.conf, "-f", "me@example.org", "you@example.net"],
                           input=b"Subject: via sendmail\n\nhello\n", capture_output=True, timeout=10)
        self.assertEqual(p.returncode, 0, p.stderr)
        res, err, _ = self.drive(opts=("--pickup",))
        self.assertEqual([v[0] for v in res.values()], ["delivered"], err)
        msgs = fx.messages()
        self.assertEqual(msgs[0]["mail_from"], "me@example.org")
        self.assertEqual(msgs[0]["rcpt_tos"], ["you@example.net"])


if __name__ == "__main__":
    unittest.main(verbosity=2)
