"""Messages over 64 KiB through the listener (issue 11; smtprelayd(8),
"Queue guarantees"): their full buffers are written by the commit stage's
threads as they arrive, so a slow disk does not hold the event loop; a
disk error in the middle costs that message a 452, a client that goes away
in the middle leaves nothing behind, and a DSN of a big message is still
built (off the loop) with only its header section.  The real daemon runs
with tests/fsshim.so preloaded."""
import hashlib
import os
import shutil
import smtplib
import socket
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


def big_body(size, tag):
    """A message of about size bytes whose lines differ (a hash checks it)."""
    head = b"From: alice@example.com\r\nSubject: %s\r\n\r\n" % tag.encode()
    lines = [b"%08d %s\r\n" % (i, b"q" * 66) for i in range(size // 78)]
    return head + b"".join(lines)


def body_of(content):
    """What follows the header section, as the smarthost received it."""
    return content.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in content else content.split(b"\n\n", 1)[1]


def smtp_data(port, body, rcpt="bob@example.com", mail_opts=()):
    """(code, text) of the end of data."""
    with smtplib.SMTP("127.0.0.1", port, timeout=60) as s:
        s.ehlo("big.test")
        s.mail("alice@example.com", list(mail_opts))
        s.rcpt(rcpt)
        try:
            code, text = s.data(body)
        except smtplib.SMTPResponseException as e:
            return e.smtp_code, e.smtp_error.decode()
        return code, text.decode()


def greet_and_ehlo(port):
    """Seconds from connect to the end of the EHLO reply."""
    t0 = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=30) as c:
        f = c.makefile("rb")
        line = f.readline()
        assert line.startswith(b"220"), line
        c.sendall(b"EHLO probe.test\r\n")
        while True:
            line = f.readline()
            assert line.startswith(b"250"), line
            if line[3:4] == b" ":
                break
        c.sendall(b"QUIT\r\n")
    return time.monotonic() - t0


def tmp_files(spool):
    return [f for f in os.listdir(os.path.join(spool, "queue")) if f.startswith("tmp.")]


class BigDataTest(testlib.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.root = tempfile.mkdtemp(prefix="smtprelay-bigdata-")
        cls.certs = testlib.make_certs(cls.root)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.root, ignore_errors=True)

    def smarthost(self, rules=None):
        fx = Smarthost(tempfile.mkdtemp(dir=self.root), self.certs, [{"name": "sub", "mode": "starttls"}],
                       rules=rules)
        self.addCleanup(fx.stop)
        return fx

    def daemon(self, fx_port, shim_env):
        body = ('retry_min = 1\nretry_max = 2\nsmtpd_timeout = 30\n'
                'smarthost "fx" {\n  host = "127.0.0.1"\n  ports = {"%s/starttls"}\n'
                '  username = "user"\n  password = "%s"\n  tls_ca_file = "%s"\n}\n'
                % (fx_port, PASSWORD, os.path.join(self.certs, "ca.crt")))
        d = Daemon(self.new_instance(), body)
        d.extra_env = dict(shim_env, LD_PRELOAD=SHIM,
                           ASAN_OPTIONS=os.environ.get("ASAN_OPTIONS", "") + ":verify_asan_link_order=0")
        self.addCleanup(d.stop)
        return d.start()

    def delivered(self, fx, tag):
        return [m for m in fx.messages() if b"Subject: %s\r\n" % tag.encode() in m["content"]
                or b"Subject: %s\n" % tag.encode() in m["content"]]

    def test_slow_disk_does_not_hold_other_sessions(self):
        # 250 ms per 64 KiB write of a queue file: 2 MB take 8 s of writing.
        # Written on the event loop, a greeting would wait up to a write.
        delay = 0.25
        fx = self.smarthost()
        d = self.daemon(fx.ports["sub"], {"FSSHIM_WRITE_DELAY_US": str(int(delay * 1e6)),
                                          "FSSHIM_WRITE_DELAY_PATH": "*/queue/tmp.*"})
        body = big_body(2 << 20, "big slow")
        result = []
        t = threading.Thread(target=lambda: result.append(smtp_data(d.port, body)))
        t.start()
        wait_for(lambda: tmp_files(d.inst.spool), 20, "the big message's file created")
        probes = []
        while t.is_alive() and len(probes) < 8:
            probes.append(greet_and_ehlo(d.port))
            time.sleep(0.1)
        t.join()
        self.assertEqual(result[0][0], 250, result)
        self.assertGreaterEqual(len(probes), 4, "the message was written too fast to probe")
        self.assertLess(max(probes), delay / 2, "220 + EHLO took %s s while the disk was slow" % probes)
        m = wait_for(lambda: self.delivered(fx, "big slow"), 30, "the big message delivered")[0]
        self.assertEqual(hashlib.sha256(body_of(m["content"])).hexdigest(),
                         hashlib.sha256(body_of(body)).hexdigest())

    def test_disk_full_in_the_middle_costs_that_message(self):
        fx = self.smarthost()
        d = self.daemon(fx.ports["sub"], {"FSSHIM_FAIL": "write:ENOSPC:3:*/queue/tmp.*"})
        code, text = smtp_data(d.port, big_body(1 << 20, "full"))
        self.assertEqual((code, text[:5]), (452, "4.3.1"), text)
        wait_for(lambda: not tmp_files(d.inst.spool), 10, "the failed message's file removed")
        body = big_body(1 << 20, "after full")
        self.assertEqual(smtp_data(d.port, body)[0], 250)
        m = wait_for(lambda: self.delivered(fx, "after full"), 30, "the next message delivered")[0]
        self.assertEqual(body_of(m["content"]), body_of(body))
        self.assertEqual(self.delivered(fx, "full"), [])
        d.wait_log(r"452 .*No space left on device")

    def test_client_gone_in_the_middle(self):
        # Slow writes keep spills in flight when the client goes away.
        fx = self.smarthost()
        d = self.daemon(fx.ports["sub"], {"FSSHIM_WRITE_DELAY_US": "50000",
                                          "FSSHIM_WRITE_DELAY_PATH": "*/queue/tmp.*"})
        for k in range(3):
            c = socket.create_connection(("127.0.0.1", d.port), timeout=30)
            f = c.makefile("rb")
            f.readline()
            c.sendall(b"EHLO gone.test\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n")
            for _ in range(4):
                f.readline()
            while not f.readline().startswith(b"354"):
                pass
            c.sendall(big_body(600 << 10, "gone %d" % k))
            if k == 0:
                c.shutdown(socket.SHUT_WR)  # an end of input with data still unread
            f.close()
            c.close()
        wait_for(lambda: d.log().count("disconnect from") >= 3, 20, "3 sessions closed")
        wait_for(lambda: not tmp_files(d.inst.spool), 20, "no temporary file left")
        self.assertEqual(smtp_data(d.port, big_body(300 << 10, "still here"))[0], 250)
        wait_for(lambda: self.delivered(fx, "still here"), 30, "the next message delivered")
        self.assertEqual(d.stop(), 0)
        self.assertEqual([m for m in fx.messages() if b"Subject: gone" in m["content"]], [])

    def test_dsn_of_a_big_message_with_ret_full(self):
        fx = self.smarthost(rules={"rcpt": {"bad@example.com": "550 5.1.1 no such user"}})
        d = self.daemon(fx.ports["sub"], {})
        body = big_body(3 << 20, "big bounced") + b"SECRET-BODY-TEXT\r\n"
        self.assertEqual(smtp_data(d.port, body, rcpt="bad@example.com", mail_opts=("RET=FULL",))[0], 250)
        dsn = wait_for(lambda: [m for m in fx.messages() if m["mail_from"] in ("", "<>")], 30, "the DSN")[0]
        self.assertEqual(dsn["rcpt_tos"], ["alice@example.com"])
        content = dsn["content"]
        self.assertIn(b"Final-Recipient: rfc822; bad@example.com", content)
        self.assertIn(b"Status: 5.1.1", content)
        headers = content[content.index(b"Content-Type: text/rfc822-headers"):]
        self.assertIn(b"Subject: big bounced", headers)
        self.assertNotIn(b"SECRET-BODY-TEXT", content)
        self.assertLess(len(content), 64 << 10)
        wait_for(lambda: not os.listdir(os.path.join(d.inst.spool, "queue")), 20, "empty queue")


if __name__ == "__main__":
    unittest.main(verbosity=2)
