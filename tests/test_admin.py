"""smtprelay, the admin tool, end to end: against a running smtprelayd (its
control socket) with the test smarthost where delivery matters, and against
the spool directly when the daemon is down."""
import datetime
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import testlib  # noqa: E402
from test_daemon import PASSWORD, Smarthost  # noqa: E402
from test_listener import Daemon, wait_for  # noqa: E402

SRC = testlib.SRC
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(Z|[+-]\d\d:\d\d)$")
NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]


def parse_time(s):
    return datetime.datetime.fromisoformat(s.replace("Z", "+00:00"))


class AdminTest(testlib.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.root = tempfile.mkdtemp(prefix="smtprelay-admin-")
        cls.certs = testlib.make_certs(cls.root)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.root, ignore_errors=True)

    # ---- fixtures ----

    def smarthost(self, rules=None, ports=None):
        fx = Smarthost(tempfile.mkdtemp(dir=self.root), self.certs,
                       ports or [{"name": "sub", "mode": "starttls"}], rules)
        self.addCleanup(fx.stop)
        return fx

    def config(self, fx=None, port_name="sub", retry_min=300, connect_timeout=2):
        body = "retry_min = %d\nretry_max = %d\nsmtpd_timeout = 30\n" % (retry_min, retry_min * 2)
        if fx:
            body += ('smarthost "fx" {\n  host = "127.0.0.1"\n  ports = {"%d/starttls"}\n'
                     '  username = "user"\n  password = "%s"\n  tls_ca_file = "%s"\n'
                     '  connect_timeout = %d\n  command_timeout = 5\n}\n'
                     % (fx.ports[port_name], PASSWORD, os.path.join(self.certs, "ca.crt"),
                        connect_timeout))
        return body

    def daemon(self, body, start=True):
        inst = self.new_instance()
        # Other users (nobody) must reach the config and the spool's sockets.
        os.chmod(inst.dir, 0o755)
        d = Daemon(inst, body)
        os.chmod(inst.conf, 0o644)
        self.addCleanup(d.stop_checked)
        if start:
            d.start()
        return d

    def admin(self, d, *args, nobody=False, timeout=60):
        cmd = [d.inst.path("smtprelay"), "-C", d.inst.conf, *args]
        if nobody:
            cmd = NOBODY + cmd
        env = dict(os.environ)
        env.pop("SMTPRELAY_CONF", None)
        r = subprocess.run(cmd, capture_output=True, env=env, timeout=timeout)
        for bad in (b"AddressSanitizer", b"LeakSanitizer", b"runtime error:"):
            self.assertNotIn(bad, r.stderr, r.stderr.decode("utf-8", "replace"))
        return r.returncode, r.stdout.decode("utf-8", "replace"), r.stderr.decode("utf-8", "replace")

    def need_root(self):
        if os.geteuid() != 0 or not shutil.which("setpriv"):
            self.skipTest("needs root and setpriv to run the tool as nobody")

    def send(self, d, *rcpts, sender="alice@example.com", subject="hello", body=b"body line\n"):
        msg = b"From: " + sender.encode() + b"\nSubject: " + subject.encode() + b"\n\n" + body
        r = d.inst.sendmail("-f", sender, *rcpts, input=msg)
        self.assertEqual(r.returncode, 0, r.stderr)

    def queued(self, d, n):
        return wait_for(lambda: len(d.queue_ids()) == n and d.queue_ids(), 10,
                        "%d message(s) in queue/" % n)

    def all_files(self, d):
        out = []
        for area in ("queue", "maildrop"):
            p = os.path.join(d.inst.spool, area)
            if os.path.isdir(p):
                out += os.listdir(p)
        return out

    def check_schema(self, msgs):
        self.assertIsInstance(msgs, list)
        for m in msgs:
            self.assertEqual(set(m), {"id", "size", "arrival", "sender", "state", "recipients"})
            self.assertIn(m["state"], ("queued", "held"))
            self.assertIsInstance(m["id"], str)
            self.assertIsInstance(m["size"], int)
            self.assertRegex(m["arrival"], RFC3339)
            parse_time(m["arrival"])
            self.assertIsInstance(m["sender"], str)
            for r in m["recipients"]:
                self.assertEqual(set(r), {"address", "state", "attempts", "last_reason", "next_attempt"})
                self.assertIn(r["state"], ("pending", "deferred", "delivered", "failed"))
                self.assertIsInstance(r["attempts"], int)
                self.assertTrue(r["last_reason"] is None or isinstance(r["last_reason"], str))
                if r["next_attempt"] is not None:
                    self.assertRegex(r["next_attempt"], RFC3339)
                    parse_time(r["next_attempt"])

    # ---- queue ----

    def test_queue_json_and_text_with_partial_delivery(self):
        # Quotes, a backslash and a tab in the reason: the JSON escapes them.
        fx = self.smarthost(rules={"rcpt": {"later@example.com":
                                            '451 4.2.0 mailbox busy "try" \\later\tplease'}})
        d = self.daemon(self.config(fx))
        self.send(d, "good@example.com", "later@example.com")
        fx.wait_messages(1)
        d.wait_log(r"to=<later@example\.com>.*status=deferred")
        qid = self.queued(d, 1)[0]
        rc, out, err = self.admin(d, "queue", "--json")
        self.assertEqual(rc, 0, err)
        msgs = json.loads(out)
        self.check_schema(msgs)
        self.assertEqual(len(msgs), 1)
        m = msgs[0]
        self.assertEqual(m["id"], qid)
        self.assertEqual(m["sender"], "alice@example.com")
        _, content = d.inst.read_message(qid, "queue")
        self.assertEqual(m["size"], len(content))
        self.assertLess(abs((parse_time(m["arrival"]) - datetime.datetime.now(datetime.timezone.utc))
                            .total_seconds()), 60)
        rcpts = {r["address"]: r for r in m["recipients"]}
        self.assertEqual(rcpts["good@example.com"]["state"], "delivered")
        self.assertEqual(rcpts["good@example.com"]["attempts"], 1)
        self.assertIsNone(rcpts["good@example.com"]["next_attempt"])
        later = rcpts["later@example.com"]
        self.assertEqual(later["state"], "deferred")
        self.assertEqual(later["attempts"], 1)
        self.assertIn("mailbox busy", later["last_reason"])
        self.assertRegex(later["last_reason"], r'"try" \\later[\t ?]please')
        self.assertGreater(parse_time(later["next_attempt"]), parse_time(m["arrival"]))
        rc, out, err = self.admin(d, "queue")
        self.assertEqual(rc, 0, err)
        self.assertIn("-Queue ID-", out)
        self.assertIn(qid, out)
        self.assertIn("later@example.com", out)
        self.assertIn("mailbox busy", out)
        self.assertNotIn("good@example.com", out)      # delivered: not queued any more (Postfix)
        self.assertIn("-- 0 Kbytes in 1 Request.", out)
        self.assertNotIn("not running", err)

    def test_queue_empty_running(self):
        d = self.daemon(self.config())
        rc, out, err = self.admin(d, "queue", "--json")
        self.assertEqual((rc, json.loads(out)), (0, []), err)
        rc, out, _ = self.admin(d, "queue")
        self.assertEqual(out, "Mail queue is empty\n")

    def test_queue_daemon_down_reads_spool(self):
        d = self.daemon(self.config(), start=False)
        self.send(d, "bob@example.com", sender="j\u00f6rg@example.com")
        self.send(d, "carol@example.com")
        rc, out, err = self.admin(d, "queue", "--json")
        self.assertEqual(rc, 0, err)
        self.assertIn("smtprelayd is not running: showing the spool directly", err)
        msgs = json.loads(out)
        self.check_schema(msgs)
        self.assertEqual(sorted(r["address"] for m in msgs for r in m["recipients"]),
                         ["bob@example.com", "carol@example.com"])
        self.assertIn("j\u00f6rg@example.com", [m["sender"] for m in msgs])
        self.assertTrue(all(r["state"] == "pending" and r["next_attempt"] is None
                            for m in msgs for r in m["recipients"]))
        rc, out, err = self.admin(d, "queue")
        self.assertEqual(rc, 0, err)
        self.assertIn("smtprelayd is not running", err)
        self.assertIn("-- 0 Kbytes in 2 Requests.", out)

    def test_queue_daemon_down_unprivileged(self):
        self.need_root()
        d = self.daemon(self.config())
        d.stop()
        self.send(d, "bob@example.com")
        rc, out, err = self.admin(d, "queue", nobody=True)
        self.assertEqual(rc, 77, err)
        self.assertIn("smtprelayd is not running and the queue is readable only by root and", err)
        self.assertEqual(out, "")

    def test_mailq_unprivileged_through_daemon(self):
        self.need_root()
        d = self.daemon(self.config())
        self.send(d, "bob@example.com")
        qid = self.queued(d, 1)[0]
        mailq = d.inst.path("mailq")
        r = subprocess.run(NOBODY + [mailq, "-C", d.inst.conf], capture_output=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(qid.encode(), r.stdout)
        self.assertIn(b"bob@example.com", r.stdout)
        rc, out, err = self.admin(d, "queue", "--json", nobody=True)
        self.assertEqual(rc, 0, err)
        self.assertEqual(json.loads(out)[0]["id"], qid)

    # ---- flush ----

    def test_flush_delivers_deferred_at_once(self):
        fx = self.smarthost(rules={"tempfail_data_first": 1})
        d = self.daemon(self.config(fx, retry_min=3600))
        self.send(d, "bob@example.com")
        d.wait_log(r"to=<bob@example\.com>.*status=deferred")
        self.assertEqual(fx.messages(), [])
        t0 = time.monotonic()
        rc, out, err = self.admin(d, "flush")
        self.assertEqual(rc, 0, err)
        self.assertIn("flushing 1 message", out)
        fx.wait_messages(1, timeout=10)
        self.assertLess(time.monotonic() - t0, 10)
        wait_for(lambda: not d.queue_ids(), 10, "empty queue")

    def test_flush_daemon_down(self):
        d = self.daemon(self.config(), start=False)
        rc, _, err = self.admin(d, "flush")
        self.assertEqual(rc, 69)
        self.assertIn("not running", err)

    # ---- delete ----

    def test_delete_ids_and_all(self):
        d = self.daemon(self.config())          # no smarthost: mail stays queued
        for i in range(4):
            self.send(d, "r%d@example.com" % i)
        ids = self.queued(d, 4)
        rc, out, err = self.admin(d, "delete", ids[0])
        self.assertEqual(rc, 0, err)
        self.assertIn("%s: removed" % ids[0], out)
        d.wait_log(r"%s: removed by uid %d" % (ids[0], os.getuid()))
        self.assertNotIn(ids[0], self.all_files(d))
        self.assertNotIn(ids[0] + ".state", self.all_files(d))
        unknown = "0" * len(ids[0])
        rc, out, err = self.admin(d, "delete", unknown, ids[1])
        self.assertEqual(rc, 1)
        self.assertIn(unknown, err)
        self.assertIn("%s: removed" % ids[1], out)
        self.assertNotIn(ids[1], self.all_files(d))
        rc, out, err = self.admin(d, "delete", "--all")
        self.assertEqual(rc, 0, err)
        self.assertIn("2 messages removed", out)
        self.assertEqual(self.all_files(d), [])
        for qid in ids[2:]:
            d.wait_log(r"%s: removed by uid" % qid)
        rc, out, _ = self.admin(d, "queue")
        self.assertEqual(out, "Mail queue is empty\n")

    def test_delete_unprivileged_refused(self):
        self.need_root()
        d = self.daemon(self.config())
        self.send(d, "bob@example.com")
        qid = self.queued(d, 1)[0]
        for args in ([qid], ["--all"]):
            rc, _, err = self.admin(d, "delete", *args, nobody=True)
            self.assertEqual(rc, 77, err)
            self.assertIn("permission denied: only root or root may delete mail", err)
        self.assertEqual(d.queue_ids(), [qid])
        self.assertNotIn("removed by", d.log())

    def test_delete_in_delivery_removed_when_it_ends(self):
        fx = self.smarthost(ports=[{"name": "stall", "mode": "stall"}])
        d = self.daemon(self.config(fx, port_name="stall", connect_timeout=3))
        self.send(d, "bob@example.com")
        qid = self.queued(d, 1)[0]
        # The connection stalls before the greeting: the message is in delivery.
        wait_for(lambda: (qid + "*") in self.admin(d, "queue")[1], 10, "message in delivery")
        rc, out, err = self.admin(d, "delete", qid)
        self.assertEqual(rc, 0, err)
        self.assertIn("removed when the delivery in progress ends", out)
        d.wait_log(r"%s: removed by uid %d" % (qid, os.getuid()), timeout=15)
        wait_for(lambda: qid not in self.all_files(d), 5, "message removed")
        self.assertNotIn("status=bounced", d.log())

    def test_delete_daemon_down(self):
        d = self.daemon(self.config())
        self.send(d, "bob@example.com")
        qid = self.queued(d, 1)[0]
        d.stop()
        self.send(d, "carol@example.com")          # stays in maildrop
        rc, out, err = self.admin(d, "delete", qid)
        self.assertEqual(rc, 0, err)
        self.assertIn("not running", err)
        self.assertIn("%s: removed" % qid, out)
        self.assertEqual(d.queue_ids(), [])
        self.assertEqual(len(d.inst.area_files("maildrop")), 1)
        rc, out, err = self.admin(d, "delete", "--all")
        self.assertEqual(rc, 0, err)
        self.assertEqual(self.all_files(d), [])

    # ---- show ----

    def test_show_headers_not_body(self):
        d = self.daemon(self.config())
        self.send(d, "bob@example.com", subject="quarterly report", body=b"SECRET-BODY-TEXT\n")
        qid = self.queued(d, 1)[0]
        # Without a smarthost the message is deferred at once, saying why.
        d.wait_log(r"%s: to=<bob@example.com>, .*status=deferred \(no smarthost configured" % qid)
        rc, out, err = self.admin(d, "show", qid)
        self.assertEqual(rc, 0, err)
        self.assertIn("id: %s" % qid, out)
        self.assertIn("sender: alice@example.com", out)
        self.assertRegex(out, r"arrival: \d{4}-\d\d-\d\dT")
        self.assertIn("origin: sendmail, uid %d" % os.getuid(), out)
        self.assertIn("recipient: bob@example.com\n  state: deferred, 1 attempt", out)
        self.assertIn("last reason: no smarthost configured in %s" % d.inst.conf, out)
        self.assertIn("Subject: quarterly report", out)
        self.assertIn("Message-ID: <", out)
        self.assertNotIn("SECRET-BODY-TEXT", out)
        self.assertNotIn("\r", out)
        rc, _, err = self.admin(d, "show", "0" * len(qid))
        self.assertEqual(rc, 1)
        self.assertIn("no such message", err)

    def test_show_unprivileged_non_submitter_refused(self):
        self.need_root()
        d = self.daemon(self.config())
        self.send(d, "bob@example.com", body=b"SECRET-BODY-TEXT\n")
        qid = self.queued(d, 1)[0]
        rc, out, err = self.admin(d, "show", qid, nobody=True)
        self.assertEqual(rc, 77, err)
        self.assertIn("permission denied", err)
        self.assertNotIn("Subject", out)

    def test_show_daemon_down(self):
        d = self.daemon(self.config(), start=False)
        self.send(d, "bob@example.com", subject="offline", body=b"SECRET-BODY-TEXT\n")
        qid = d.inst.area_files("maildrop")[0]
        rc, out, err = self.admin(d, "show", qid)
        self.assertEqual(rc, 0, err)
        self.assertIn("not running", err)
        self.assertIn("Subject: offline", out)
        self.assertNotIn("SECRET-BODY-TEXT", out)

    # ---- status ----

    def test_status_running(self):
        fx = self.smarthost()
        d = self.daemon(self.config(fx))
        self.send(d, "bob@example.com")
        fx.wait_messages(1)
        wait_for(lambda: not d.queue_ids(), 10, "empty queue")
        rc, out, err = self.admin(d, "status")
        self.assertEqual(rc, 0, err)
        self.assertIn("smtprelayd: running", out)
        self.assertIn("pid: %d" % d.proc.pid, out)
        self.assertRegex(out, r"version: \S+")
        self.assertRegex(out, r"uptime: \d+s")
        self.assertIn("queue: 0 messages (0 in delivery, 0 in maildrop)", out)
        self.assertIn("recipients: 0 pending, 0 deferred, 0 delivered, 0 failed", out)
        self.assertIn("listen: 127.0.0.1:%d" % d.port, out)
        self.assertIn("smarthost fx: 127.0.0.1, port %d/starttls" % fx.ports["sub"], out)
        self.assertRegex(out, r"last success: \d{4}-\d\d-\d\dT")

    def test_status_counts_deferred(self):
        fx = self.smarthost(rules={"rcpt": {"later@example.com": "451 4.2.0 mailbox busy"}})
        d = self.daemon(self.config(fx))
        self.send(d, "good@example.com", "later@example.com")
        d.wait_log(r"to=<later@example\.com>.*status=deferred")
        rc, out, err = self.admin(d, "status")
        self.assertEqual(rc, 0, err)
        self.assertIn("queue: 1 message (0 in delivery, 0 in maildrop)", out)
        self.assertIn("recipients: 0 pending, 1 deferred, 1 delivered, 0 failed", out)

    def test_status_down(self):
        fx = self.smarthost()
        d = self.daemon(self.config(fx), start=False)
        self.send(d, "bob@example.com")
        rc, out, err = self.admin(d, "status")
        self.assertEqual(rc, 3, err)
        self.assertIn("smtprelayd: not running", out)
        self.assertIn("queue: 1 message (0 in delivery, 1 in maildrop)", out)
        self.assertIn("smarthost fx (configured): 127.0.0.1, ports %d/starttls" % fx.ports["sub"], out)
        self.assertIn("listen (configured): 127.0.0.1:%d" % d.port, out)

    # ---- check-config ----

    def test_check_config(self):
        d = self.daemon(self.config(), start=False)
        rc, out, err = self.admin(d, "check-config")
        self.assertEqual(rc, 0, err)
        with open(d.inst.conf, "a") as f:
            f.write("retry_min = soon\nno_such_key = 1\n")
        rc, out, err = self.admin(d, "check-config")
        self.assertEqual(rc, 78)
        self.assertRegex(err, r"%s:\d+: " % re.escape(d.inst.conf))

    # ---- send-test ----

    def test_send_test_delivered(self):
        fx = self.smarthost()
        d = self.daemon(self.config(fx))
        rc, out, err = self.admin(d, "send-test", "--wait", "20", "ops@example.com")
        self.assertEqual(rc, 0, out + err)
        qid = re.search(r"queued as (\S+)", out).group(1)
        self.assertRegex(out, r"delivered to ops@example\.com via 127\.0\.0\.1\[127\.0\.0\.1\]:%d "
                              r"\(250 " % fx.ports["sub"])
        m = fx.wait_messages(1)[0]
        self.assertEqual(m["rcpt_tos"], ["ops@example.com"])
        self.assertIn(b"Subject: smtprelay test from relay.test\r\n", m["content"])
        for h in (b"\r\nDate: ", b"\r\nMessage-ID: <", b"\r\nFrom: ", b"\r\nTo: ops@example.com\r\n"):
            self.assertIn(h, m["content"])
        self.assertIn(d.inst.conf.encode(), m["content"])
        d.wait_log(r"%s: to=<ops@example\.com>.*status=sent" % qid)

    def test_send_test_unprivileged_through_handoff(self):
        """nobody cannot write the maildrop: the message goes over the handoff
        socket, and nobody may follow (show) a message it submitted."""
        self.need_root()
        fx = self.smarthost(rules={"rcpt": {"later@example.com": "451 4.2.0 mailbox busy"}})
        d = self.daemon(self.config(fx))
        rc, out, err = self.admin(d, "send-test", "--wait", "20", "later@example.com", nobody=True)
        self.assertEqual(rc, 75, out + err)
        qid = re.search(r"queued as (\S+)", out)
        self.assertTrue(qid, out + err)
        qid = qid.group(1)
        self.assertIn("deferred: later@example.com: ", out)
        rc, out, err = self.admin(d, "show", qid, nobody=True)
        self.assertEqual(rc, 0, err)
        self.assertIn("Subject: smtprelay test from relay.test", out)
        self.assertRegex(out, r"origin: .*, uid %d" % __import__("pwd").getpwnam("nobody").pw_uid)

    def test_send_test_deferred_and_bounced(self):
        fx = self.smarthost(rules={"rcpt": {"later@example.com": "451 4.2.0 mailbox busy",
                                            "bad@example.com": "550 5.1.1 no such user"}})
        d = self.daemon(self.config(fx))
        rc, out, err = self.admin(d, "send-test", "--wait=20", "later@example.com")
        self.assertEqual(rc, 75, out + err)
        self.assertIn("deferred: later@example.com: ", out)
        self.assertIn("mailbox busy", out)
        rc, out, err = self.admin(d, "send-test", "bad@example.com", "--wait", "20")
        self.assertEqual(rc, 1, out + err)
        self.assertIn("bounced: bad@example.com: ", out)
        self.assertIn("no such user", out)

    def test_send_test_daemon_down(self):
        d = self.daemon(self.config(), start=False)
        rc, out, err = self.admin(d, "send-test", "ops@example.com")
        self.assertEqual(rc, 73, out + err)     # no spool yet: nothing to queue into
        self.assertIn("start smtprelayd once to create the spool", err)
        self.send(d, "bob@example.com")          # sendmail makes a private spool
        rc, out, err = self.admin(d, "send-test", "ops@example.com")
        self.assertEqual(rc, 75, out + err)
        self.assertIn("queued as ", out)
        self.assertIn("smtprelayd is not running", out)
        self.assertEqual(len(d.inst.area_files("maildrop")), 2)

    # ---- probe (frontend/probe.c) ----

    def test_probe_dispatch(self):
        fx = self.smarthost()
        d = self.daemon(self.config(fx), start=False)
        rc, out, err = self.admin(d, "probe")
        self.assertEqual(rc, 0, out + err)
        self.assertIn("fx 127.0.0.1:%d/starttls: ok" % fx.ports["sub"], out)
        rc, out, err = self.admin(d, "probe", "--json")
        self.assertEqual(rc, 0, out + err)
        self.assertEqual(json.loads(out)[0]["verdict"], "ok")

    # ---- usage ----

    def test_usage_errors(self):
        d = self.daemon(self.config(), start=False)
        for args in ([], ["bogus"], ["-x", "queue"], ["queue", "--bogus"], ["show"],
                     ["show", "a", "b"], ["delete"], ["flush", "now"], ["send-test"],
                     ["send-test", "--wait", "x", "a@example.com"], ["status", "x"], ["-C"],
                     ["probe", "--bogus"]):
            with self.subTest(args=args):
                rc, out, err = self.admin(d, *args)
                self.assertEqual(rc, 64, (args, out, err))
                self.assertIn("usage: smtprelay", err)
        r = subprocess.run([d.inst.path("smtprelay"), "--help"], capture_output=True)
        self.assertEqual(r.returncode, 0)
        self.assertIn(b"send-test", r.stdout)
        r = subprocess.run([d.inst.path("smtprelay"), "-V"], capture_output=True)
        self.assertEqual(r.returncode, 0)
        self.assertRegex(r.stdout, rb"^smtprelay \S+\n$")


if __name__ == "__main__":
    unittest.main()
