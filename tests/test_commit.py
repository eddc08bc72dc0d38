"""Durable acceptance off the event loop (queue/commit.c; smtprelayd(8), "Queue guarantees") with the
real daemon on a slow or failing disk (tests/fsshim.so preloaded):
concurrent sessions share flushes while new connections are greeted at
once, a disk error costs one message a 451/452 and nothing else, and a
kill -9 in the middle of commits loses nothing that got its 250."""
import os
import shutil
import smtplib
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import testlib  # noqa: E402
from test_daemon import PASSWORD, Smarthost  # noqa: E402
from test_listener import Daemon, wait_for  # noqa: E402

SHIM = os.path.join(testlib.BUILD, "tests", "fsshim.so")
MSG = b"From: alice@example.com\r\nSubject: %s\r\n\r\nbody\r\n"


def send_one(port, subject, timeout=30):
    """One message on its own connection: (reply code, seconds until the reply)."""
    with smtplib.SMTP("127.0.0.1", port, timeout=timeout) as s:
        s.ehlo("client.test")
        s.mail("alice@example.com")
        s.rcpt("bob@example.com")
        code, _ = s.docmd("DATA")
        assert code == 354, code
        t0 = time.monotonic()
        s.send(MSG % subject.encode() + b".\r\n")
        code, text = s.getreply()
        return code, time.monotonic() - t0, text


def greeting_time(port):
    t0 = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=30) as c:
        line = c.makefile("rb").readline()
    assert line.startswith(b"220"), line
    return time.monotonic() - t0


class CommitTest(testlib.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.root = tempfile.mkdtemp(prefix="smtprelay-commit-")
        cls.certs = testlib.make_certs(cls.root)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.root, ignore_errors=True)

    def smarthost(self, rules=None):
        fx = Smarthost(tempfile.mkdtemp(dir=self.root), self.certs, [{"name": "sub", "mode": "starttls"}],
                       rules=rules)
        self.addCleanup(fx.stop)
        return fx

    def daemon(self, fx_port, delay_us=0, fail=""):
        body = ('retry_min = 1\nretry_max = 2\nsmtpd_timeout = 30\n'
                'smarthost "fx" {\n  host = "127.0.0.1"\n  ports = {"%s/starttls"}\n'
                '  username = "user"\n  password = "%s"\n  tls_ca_file = "%s"\n}\n'
                % (fx_port, PASSWORD, os.path.join(self.certs, "ca.crt")))
        d = Daemon(self.new_instance(), body)
        d.extra_env = {"LD_PRELOAD": SHIM, "FSSHIM_DELAY_US": str(delay_us), "FSSHIM_FAIL": fail,
                       # a --enable-sanitizers build: the shim precedes ASan's runtime
                       "ASAN_OPTIONS": os.environ.get("ASAN_OPTIONS", "") + ":verify_asan_link_order=0"}
        self.addCleanup(d.stop)
        return d.start()

    def delivered_subjects(self, fx):
        out = set()
        for m in fx.messages():
            for line in m["content"].split(b"\n"):
                if line.startswith(b"Subject: "):
                    out.add(line[9:].strip().decode())
        return out

    def test_concurrent_sessions_share_flushes_and_greetings_go_on(self):
        # 300 ms per flush: one commit alone is the file's and the directory's
        # flushes, made at the same time.
        flush = 0.3
        fx = self.smarthost()
        d = self.daemon(fx.ports["sub"], delay_us=int(flush * 1e6))
        code, single, _ = send_one(d.port, "single")
        self.assertEqual(code, 250)
        qdir = os.path.join(d.inst.spool, "queue")
        wait_for(lambda: os.listdir(qdir) == [], 20, "the single message delivered")
        results = []
        threads = [threading.Thread(target=lambda i=i: results.append(send_one(d.port, "c%d" % i)))
                   for i in range(16)]
        for t in threads:
            t.start()
        # the commits are under way once the writer threads create files
        # (renamed into place before their flushes)
        wait_for(lambda: len(os.listdir(qdir)) > 1, 10, "commits started")
        greet = greeting_time(d.port)
        for t in threads:
            t.join()
        self.assertEqual([r[0] for r in results], [250] * 16)
        slowest = max(r[1] for r in results)
        # Committed one after another they would take 16 single commits.
        self.assertLess(slowest, 4 * max(single, 2 * flush), "16 at once: %.2f s" % slowest)
        self.assertLess(greet, flush / 2, "220 took %.3f s while commits were flushing" % greet)
        wait_for(lambda: len(self.delivered_subjects(fx)) == 17, 20, "17 messages delivered")
        d.stop()
        self.assertRegex(d.log(), r"durable writes: \d+ in \d+ batches \(largest ([2-9]|1\d)")

    def test_flush_while_the_state_is_written(self):
        # The deferral is logged at once; its state reaches the disk 2 flushes
        # (0.8 s) later.  A flush asked for meanwhile must not be lost.
        fx = self.smarthost(rules={"tempfail_data_first": 1})
        d = self.daemon(fx.ports["sub"], delay_us=400000)
        code, _, _ = send_one(d.port, "deferred first")
        self.assertEqual(code, 250)
        d.wait_log(r"to=<bob@example\.com>.*status=deferred", timeout=30)
        r = subprocess.run([d.inst.path("smtprelay"), "-C", d.inst.conf, "flush"],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("flushing 1 message", r.stdout)
        # retry_min = 1 s but retry_max caps at 2 s: without the flush the
        # retry would still come; the flush line above is what is asserted.
        wait_for(lambda: "deferred first" in self.delivered_subjects(fx), 20, "delivered")

    def test_disk_error_costs_one_message_only(self):
        fx = self.smarthost()
        for rule, code, enh in (("write:ENOSPC:2:*/queue/tmp.*", 452, b"4.3.1"),
                                ("fsync:EIO:2:*/queue/?*", 451, b"4.3.0")):
            d = self.daemon(fx.ports["sub"], delay_us=20000, fail=rule)
            results = []
            threads = [threading.Thread(target=lambda i=i: results.append(
                send_one(d.port, "%s-%d" % (rule[:5], i)) + ("%s-%d" % (rule[:5], i),)))
                for i in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            codes = sorted(r[0] for r in results)
            self.assertEqual(codes, [250, 250, 250, code], results)
            failed = [r for r in results if r[0] == code][0]
            self.assertTrue(failed[2].startswith(enh), failed)
            ok = {r[3] for r in results if r[0] == 250}
            wait_for(lambda: ok <= self.delivered_subjects(fx), 20, "the accepted messages delivered")
            self.assertNotIn(failed[3], self.delivered_subjects(fx))
            qdir = os.path.join(d.inst.spool, "queue")
            wait_for(lambda: os.listdir(qdir) == [], 10, "empty queue, no temporary file left")
            d.stop()

    @unittest.skipUnless(os.geteuid() == 0 and shutil.which("setpriv"), "needs root and setpriv")
    def test_handover_disk_full_exit_75(self):
        # NoNewPrivileges: sendmail hands the message to the daemon, which
        # reads and queues it off the loop; a full disk is the caller's 75.
        fx = self.smarthost()
        d = self.daemon(fx.ports["sub"], fail="write:ENOSPC:1:*/queue/tmp.*")
        for p in (self.root, os.path.dirname(d.inst.dir), d.inst.dir, d.inst.prefix,
                  os.path.join(d.inst.prefix, "sbin")):
            os.chmod(p, 0o755)
        os.chmod(d.inst.conf, 0o644)
        cmd = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--no-new-privs",
               d.inst.path("sendmail"), "-C", d.inst.conf, "-f", "app@example.com", "bob@example.com"]
        full, fine = (subprocess.run(cmd, input=b"Subject: %s\n\nhello\n" % subject,
                                     capture_output=True, timeout=30) for subject in (b"full", b"fine"))
        self.assertEqual(full.returncode, 75, full.stderr)
        self.assertIn(b"No space left on device", full.stderr)
        self.assertEqual(fine.returncode, 0, fine.stderr)
        wait_for(lambda: self.delivered_subjects(fx) == {"fine"}, 20, "the second message delivered")
        d.wait_log(r"handed over by uid \d+ refused: .*tmp\.\w+.*No space left on device")

    def test_kill9_during_commits_loses_nothing_acknowledged(self):
        fx = self.smarthost()
        d = self.daemon(fx.ports["sub"], delay_us=20000)
        acked, lock, stop = set(), threading.Lock(), threading.Event()

        def client(k):
            i = 0
            while not stop.is_set():
                subject = "k%d-%d" % (k, i)
                i += 1
                try:
                    code, _, _ = send_one(d.port, subject, timeout=10)
                except (OSError, smtplib.SMTPException):
                    return
                if code == 250:
                    with lock:
                        acked.add(subject)

        threads = [threading.Thread(target=client, args=(k,)) for k in range(8)]
        for t in threads:
            t.start()
        wait_for(lambda: len(acked) >= 40, 30, "40 messages acknowledged")
        d.kill9()  # commits are in flight: 8 sessions keep sending
        stop.set()
        for t in threads:
            t.join()
        d.extra_env = {}
        d.start()
        wait_for(lambda: acked <= self.delivered_subjects(fx), 30,
                 "every acknowledged message delivered after the restart")


if __name__ == "__main__":
    unittest.main()
