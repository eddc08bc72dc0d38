"""smtprelayd end to end with the real test smarthost (tests/smarthost.py):
pickup, delivery, retries, DSNs, expiry, crash safety, flush, reload, stop."""
import array
import base64
import email
import email.policy
import os
import pwd
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import testlib  # noqa: E402
from test_listener import Daemon, free_port, wait_for  # noqa: E402

SRC = testlib.SRC
PASSWORD = "Pa55-w0rd-n0t-in-l0gs"


def Smarthost(*a, **kw):
    return testlib.Smarthost(*a, password=PASSWORD, **kw)


class DaemonTest(testlib.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.root = tempfile.mkdtemp(prefix="smtprelay-daemon-")
        cls.certs = testlib.make_certs(cls.root)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.root, ignore_errors=True)

    def smarthost(self, rules=None, ports=None):
        fx = Smarthost(self.new_dir(), self.certs, ports or [{"name": "sub", "mode": "starttls"}], rules)
        self.addCleanup(fx.stop)
        return fx

    def new_dir(self):
        d = tempfile.mkdtemp(dir=self.root)
        return d

    def config(self, port, extra="", mode="starttls"):
        return ('retry_min = 1\nretry_max = 2\nsmtpd_timeout = 30\n%s\n'
                'smarthost "fx" {\n  host = "127.0.0.1"\n  ports = {"%s/%s"}\n'
                '  username = "user"\n  password = "%s"\n  tls_ca_file = "%s"\n'
                '  connect_timeout = 2\n  command_timeout = 5\n}\n'
                % (extra, port, mode, PASSWORD, os.path.join(self.certs, "ca.crt")))

    def daemon(self, body, start=True):
        inst = self.new_instance()
        d = Daemon(inst, body)
        self.addCleanup(self.check_logs, d)
        self.addCleanup(d.stop_checked)
        if start:
            d.start()
        return d

    def check_logs(self, d):
        log = d.log()
        self.assertNotIn(PASSWORD, log)
        self.assertNotIn(base64.b64encode(b"\0user\0" + PASSWORD.encode()).decode(), log)
        self.assertNotIn(base64.b64encode(PASSWORD.encode()).decode(), log)

    def send(self, d, *rcpts, sender="alice@example.com", subject="hello", body=b"body line\n"):
        msg = b"From: " + sender.encode() + b"\nSubject: " + subject.encode() + b"\n\n" + body
        r = d.inst.sendmail("-f", sender, *rcpts, input=msg)
        self.assertEqual(r.returncode, 0, r.stderr)

    def queue_empty(self, d):
        return not os.listdir(os.path.join(d.inst.spool, "queue"))

    # ---- delivery ----

    def test_sendmail_delivered_at_once_with_log_line(self):
        fx = self.smarthost()
        port = fx.ports["sub"]
        d = self.daemon(self.config(port))
        t0 = time.monotonic()
        self.send(d, "bob@example.com")
        m = fx.wait_messages(1)[0]
        self.assertLess(time.monotonic() - t0, 10)
        self.assertEqual(m["rcpt_tos"], ["bob@example.com"])
        self.assertEqual(m["mail_from"], "alice@example.com")
        self.assertTrue(m["tls"])
        self.assertIn(b"Subject: hello", m["content"])
        ids = d.wait_log(r"smtprelay/smtp\[\d+\]: (\w+): to=<bob@example\.com>, "
                         r"relay=127\.0\.0\.1\[127\.0\.0\.1\]:%d, delay=[\d.]+, "
                         r"delays=[\d.]+/[\d.]+/[\d.]+/[\d.]+, dsn=2\.0\.0, status=sent \(250 " % port)
        d.wait_log(r"smtprelay/smtp\[\d+\]: Verified TLS connection established to "
                   r"127\.0\.0\.1\[127\.0\.0\.1\]:%d: TLSv1\.3 with cipher \S+ \(\d+/\d+ bits\)" % port)
        d.wait_log(r"%s: removed" % ids[0])
        wait_for(lambda: self.queue_empty(d), 10, "empty queue")
        self.assertEqual(d.stop(), 0)

    def test_listener_mail_delivered(self):
        fx = self.smarthost()
        d = self.daemon(self.config(fx.ports["sub"]))
        r = subprocess.run(["swaks", "--server", "127.0.0.1:%d" % d.port, "--from", "a@example.com",
                            "--to", "b@example.com", "--timeout", "10"], capture_output=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stdout)
        m = fx.wait_messages(1)[0]
        self.assertIn(b"Received: from ", m["content"])

    def test_queued_while_down(self):
        fx = self.smarthost()
        d = self.daemon(self.config(fx.ports["sub"]), start=False)
        self.send(d, "bob@example.com", subject="while down")
        self.send(d, "carol@example.com", subject="while down 2")
        self.assertEqual(len(d.inst.area_files("maildrop")), 2)
        d.start()
        msgs = fx.wait_messages(2)
        self.assertEqual(sorted(m["rcpt_tos"][0] for m in msgs), ["bob@example.com", "carol@example.com"])

    def test_tempfail_then_retry(self):
        fx = self.smarthost(rules={"tempfail_data_first": 1})
        d = self.daemon(self.config(fx.ports["sub"]))
        self.send(d, "bob@example.com")
        d.wait_log(r"to=<bob@example\.com>.*status=deferred")
        fx.wait_messages(1)
        wait_for(lambda: self.queue_empty(d), 10, "empty queue")
        self.assertEqual(len(fx.messages()), 1)

    def test_dropped_mid_data_delivered_later(self):
        fx = self.smarthost(rules={"drop_data_first": 1})
        d = self.daemon(self.config(fx.ports["sub"]))
        self.send(d, "bob@example.com")
        fx.wait_messages(1)
        wait_for(lambda: self.queue_empty(d), 10, "empty queue")
        self.assertTrue([e for e in fx.events() if e["event"] == "drop"])

    # ---- failures and DSNs ----

    def test_one_rcpt_rejected_dsn(self):
        fx = self.smarthost(rules={"rcpt": {"bad@example.com": "550 5.1.1 no such user"}})
        d = self.daemon(self.config(fx.ports["sub"]))
        self.send(d, "bad@example.com", "good@example.com", subject="report Q3",
                  body=b"SECRET-BODY-TEXT\n")
        msgs = fx.wait_messages(2)
        wait_for(lambda: self.queue_empty(d), 10, "empty queue")
        msgs = fx.messages()
        orig = [m for m in msgs if m["mail_from"] == "alice@example.com"]
        dsns = [m for m in msgs if m["mail_from"] in ("", "<>")]
        self.assertEqual(len(orig), 1)
        self.assertEqual(orig[0]["rcpt_tos"], ["good@example.com"])
        self.assertEqual(len(dsns), 1)
        self.assertEqual(dsns[0]["rcpt_tos"], ["alice@example.com"])
        self.check_dsn(dsns[0]["content"], "bad@example.com", "5.1.1", b"report Q3")
        d.wait_log(r"\w+: sender non-delivery notification: \w+")

    def check_dsn(self, content, rcpt, status, subject):
        self.assertNotIn(b"SECRET-BODY-TEXT", content)
        msg = email.message_from_bytes(content, policy=email.policy.default)
        self.assertEqual(msg.get_content_type(), "multipart/report")
        self.assertEqual(msg.get_param("report-type"), "delivery-status")
        self.assertEqual(msg["Subject"], "Undelivered Mail Returned to Sender")
        self.assertEqual(msg["Auto-Submitted"], "auto-replied")
        self.assertIn("MAILER-DAEMON@relay.test", msg["From"])
        parts = list(msg.iter_parts())
        self.assertEqual([p.get_content_type() for p in parts],
                         ["text/plain", "message/delivery-status", "text/rfc822-headers"])
        self.assertIn(rcpt, parts[0].get_content())
        raw = content.decode("utf-8", "replace")
        self.assertIn("Final-Recipient: rfc822; " + rcpt, raw)
        self.assertIn("Action: failed", raw)
        self.assertIn("Status: " + status, raw)
        self.assertIn("Reporting-MTA: dns; relay.test", raw)
        headers_part = content[content.index(b"Content-Type: text/rfc822-headers"):]
        self.assertIn(b"Subject: " + subject, headers_part)

    def test_expiry_bounces(self):
        refused = free_port()
        d = self.daemon(self.config(refused, extra="queue_lifetime = 3"))
        self.send(d, "bob@example.com", subject="will expire", body=b"SECRET-BODY-TEXT\n")
        qid = d.wait_log(r"smtprelay/qmgr\[\d+\]: (\w+): to=<bob@example\.com>, relay=none, "
                         r"delay=[\d.]+, delays=0/[\d.]+/0/0, dsn=4\.4\.7, status=bounced "
                         r"\(message expired after 3 seconds in the queue: ", timeout=20)[0]
        d.wait_log(r"%s: sender non-delivery notification: \w+" % qid)
        d.wait_log(r"%s: removed" % qid)
        # the DSN waits in the queue (the smarthost is unreachable), from <>
        ids = d.queue_ids()
        self.assertEqual(len(ids), 1)
        env, content = d.inst.read_message(ids[0], "queue")
        self.assertIn("alice@example.com", env["rcpt"][0])
        self.assertIn(b"Status: 4.4.7", content)
        self.assertNotIn(b"SECRET-BODY-TEXT", content)

    def test_null_sender_failure_held(self):
        # Never bounced again, never deleted silently (README "Running it"): on hold.
        fx = self.smarthost(rules={"rcpt": {"bad@example.com": "550 5.1.1 no such user"}})
        d = self.daemon(self.config(fx.ports["sub"]))
        self.send(d, "bad@example.com", sender="<>")
        qid = d.wait_log(r"(\w+): sender is null: not returning a DSN")[0]
        d.wait_log(r"%s: held: failed and no DSN was sent" % qid)
        self.assertEqual(d.queue_ids(), [qid])
        self.assertNotIn("%s: removed" % qid, d.log())
        self.assertEqual(fx.messages(), [])

    # ---- crash safety, flush, reload, stop ----

    def test_kill9_during_delivery_loses_nothing(self):
        fx = self.smarthost()
        d = self.daemon(self.config(fx.ports["sub"]), start=False)
        n = 30
        for i in range(n):
            self.send(d, "r%d@example.com" % i, subject="crash %d" % i)
        d.start()
        fx.wait_messages(1)
        d.kill9()
        d.start()
        want = {"r%d@example.com" % i for i in range(n)}
        wait_for(lambda: want <= {m["rcpt_tos"][0] for m in fx.messages()}, 30,
                 "every message delivered after the restart")
        wait_for(lambda: self.queue_empty(d) and not d.inst.area_files("maildrop"), 10, "empty queue")

    def test_flush_retries_deferred_at_once(self):
        fx = self.smarthost(rules={"tempfail_data_first": 1})
        d = self.daemon(self.config(fx.ports["sub"]).replace("retry_min = 1\nretry_max = 2",
                                                             "retry_min = 3600\nretry_max = 7200"))
        self.send(d, "bob@example.com")
        d.wait_log(r"to=<bob@example\.com>.*status=deferred")
        self.assertEqual(fx.messages(), [])
        r = d.inst.sendmail("-q")
        self.assertEqual(r.returncode, 0, r.stderr)
        fx.wait_messages(1, timeout=10)
        wait_for(lambda: self.queue_empty(d), 10, "empty queue")

    def test_sighup_new_port_takes_effect(self):
        fx = self.smarthost()
        refused = free_port()
        slow = lambda port: self.config(port).replace("retry_min = 1\nretry_max = 2",  # noqa: E731
                                                      "retry_min = 3600\nretry_max = 7200")
        d = self.daemon(slow(refused))
        self.send(d, "bob@example.com")
        d.wait_log(r"to=<bob@example\.com>.*status=deferred")
        d.write_config(slow(fx.ports["sub"]))
        d.proc.send_signal(signal.SIGHUP)
        d.wait_log(r"configuration reloaded")
        self.assertEqual(d.inst.sendmail("-q").returncode, 0)
        fx.wait_messages(1)
        wait_for(lambda: self.queue_empty(d), 10, "empty queue")

    def test_sighup_broken_config_keeps_running(self):
        fx = self.smarthost()
        d = self.daemon(self.config(fx.ports["sub"]))
        good = open(d.inst.conf).read()
        with open(d.inst.conf, "w") as f:
            f.write(good + "\nno_such_key = 1\n")
        d.proc.send_signal(signal.SIGHUP)
        d.wait_log(r"not reloaded: still running on the previous configuration")
        self.assertRegex(d.log(), r"%s:\d+: " % d.inst.conf)
        self.assertIsNone(d.proc.poll())
        # still serving on the old configuration (sendmail would refuse the broken file)
        with smtplib.SMTP("127.0.0.1", d.port, timeout=10) as c:
            c.sendmail("alice@example.com", ["bob@example.com"], b"Subject: after\r\n\r\nhi\r\n")
        fx.wait_messages(1)

    def test_sigterm_exits_0_and_queue_survives(self):
        d = self.daemon(self.config(free_port()).replace("retry_min = 1\nretry_max = 2",
                                                         "retry_min = 3600\nretry_max = 7200"))
        self.send(d, "bob@example.com")
        d.wait_log(r"to=<bob@example\.com>.*status=deferred")
        t0 = time.monotonic()
        self.assertEqual(d.stop(), 0)
        self.assertLess(time.monotonic() - t0, 10)
        self.assertEqual(len(d.queue_ids()), 1)

    def test_sigterm_during_stalled_delivery(self):
        fx = self.smarthost(ports=[{"name": "stall", "mode": "stall"}])
        d = self.daemon(self.config(fx.ports["stall"]).replace("connect_timeout = 2",
                                                               "connect_timeout = 30"))
        self.send(d, "bob@example.com")
        wait_for(lambda: d.queue_ids(), 10, "message in queue/")
        t0 = time.monotonic()
        self.assertEqual(d.stop(), 0)
        self.assertLess(time.monotonic() - t0, 10)
        self.assertEqual(len(d.queue_ids()), 1)

    # ---- sendmail without its setgid privilege (NoNewPrivileges) hands the
    # message to the daemon over public/submit ----

    @unittest.skipUnless(os.geteuid() == 0 and shutil.which("setpriv"), "needs root and setpriv")
    def test_no_new_privileges_submission(self):
        fx = self.smarthost()
        d = self.daemon(self.config(fx.ports["sub"]))
        # nobody may reach the spool and config, but not write the maildrop.
        for p in (self.root, os.path.dirname(d.inst.dir), d.inst.dir, d.inst.prefix,
                  os.path.join(d.inst.prefix, "sbin")):
            os.chmod(p, 0o755)
        os.chmod(d.inst.conf, 0o644)
        md = os.path.join(d.inst.spool, "maildrop")
        self.assertNotEqual(os.stat(md).st_mode & 0o002, 0o002)
        cmd = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--no-new-privs",
               d.inst.path("sendmail"), "-C", d.inst.conf, "-f", "app@example.com", "bob@example.com"]
        r = subprocess.run(cmd, input=b"Subject: from a hardened unit\n\nhello\n",
                           capture_output=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(d.inst.area_files("maildrop"), [])
        m = fx.wait_messages(1)[0]
        self.assertEqual(m["rcpt_tos"], ["bob@example.com"])
        self.assertIn(b"from a hardened unit", m["content"])
        qid = d.wait_log(r"smtprelay/pickup\[\d+\]: (\w+): uid=%d from=<[^>]*> \(handed over by pid "
                         % pwd.getpwnam("nobody").pw_uid)[0]
        d.wait_log(r"smtprelay/qmgr\[\d+\]: %s: from=<[^>]*>, size=\d+, nrcpt=1 \(queue active\)" % qid)

    def test_submit_socket_refuses_garbage(self):
        d = self.daemon("")
        path = os.path.join(d.inst.spool, "public", "submit")
        for payload, fds in ((b"submit\n", []), (b"hello\n", []), (b"submit\n", [0, 1])):
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(10)
                s.connect(path)
                s.sendmsg([payload], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                       array.array("i", fds))] if fds else [])
                self.assertTrue(s.recv(600).startswith(b"error "), payload)
        self.assertEqual(d.queue_ids(), [])
        d.inst.sendmail("bob@example.com", input=b"still fine\n")
        wait_for(lambda: d.queue_ids(), 10, "pickup after refused handovers")

    @unittest.skipUnless(os.geteuid() == 0 and shutil.which("setpriv"), "needs root and setpriv")
    def test_no_new_privileges_bs_session(self):
        fx = self.smarthost()
        d = self.daemon(self.config(fx.ports["sub"]))
        for p in (self.root, os.path.dirname(d.inst.dir), d.inst.dir, d.inst.prefix,
                  os.path.join(d.inst.prefix, "sbin")):
            os.chmod(p, 0o755)
        os.chmod(d.inst.conf, 0o644)
        session = (b"EHLO app\r\nMAIL FROM:<app@example.com>\r\nRCPT TO:<carol@example.com>\r\n"
                   b"DATA\r\nSubject: symfony\r\n\r\nhi\r\n.\r\nQUIT\r\n")
        cmd = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--no-new-privs",
               d.inst.path("sendmail"), "-C", d.inst.conf, "-bs"]
        r = subprocess.run(cmd, input=session, capture_output=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertRegex(r.stdout.decode(), r"250 2\.0\.0 Ok: queued as \w+")
        m = fx.wait_messages(1)[0]
        self.assertEqual(m["rcpt_tos"], ["carol@example.com"])

    @unittest.skipUnless(os.geteuid() == 0 and shutil.which("setpriv"), "needs root and setpriv")
    def test_no_new_privileges_without_daemon_is_temporary(self):
        d = self.daemon("", start=False)
        d.inst.sendmail("root", input=b"creates the spool\n")
        for p in (self.root, os.path.dirname(d.inst.dir), d.inst.dir, d.inst.prefix,
                  os.path.join(d.inst.prefix, "sbin")):
            os.chmod(p, 0o755)
        os.chmod(d.inst.conf, 0o644)
        os.chmod(os.path.join(d.inst.spool, "maildrop"), 0o3770)
        cmd = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--no-new-privs",
               d.inst.path("sendmail"), "-C", d.inst.conf, "bob@example.com"]
        r = subprocess.run(cmd, input=b"x\n", capture_output=True, timeout=30)
        self.assertEqual(r.returncode, 75, r.stderr)
        self.assertIn(b"smtprelayd does not answer", r.stderr)
        self.assertEqual(len(d.inst.area_files("maildrop")), 1)


if __name__ == "__main__":
    unittest.main(verbosity=2)
