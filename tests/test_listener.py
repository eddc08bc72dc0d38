"""smtprelayd's SMTP listener, end to end: a real daemon on a loopback port.

Also home of the Daemon helper that tests/test_daemon.py uses.
No smarthost is configured here, so accepted mail simply stays queued.
"""
import os
import pwd
import re
import resource
import signal
import smtplib
import socket
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import testlib  # noqa: E402
from testlib import free_port, wait_for  # noqa: E402


class Daemon:
    """smtprelayd -d -C CONF in the foreground, stderr to a log file."""

    def __init__(self, inst, config_body, preexec_fn=None):
        self.inst = inst
        self.port = free_port()
        self.log_path = os.path.join(inst.dir, "smtprelayd.log")
        self.proc = None
        self.sockets = []
        self.extra_env = {}
        self.preexec_fn = preexec_fn
        self.write_config(config_body)

    def write_config(self, body):
        user = pwd.getpwuid(os.geteuid()).pw_name
        with open(self.inst.conf, "w") as f:
            f.write('hostname = "%s"\nspool_dir = "%s"\nuser = "%s"\n'
                    'listen = {"127.0.0.1:%d"}\n%s\n'
                    % (self.inst.hostname, self.inst.spool, user, self.port, body))

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def start(self, wait=True):
        ready_before = self.log().count(" ready\n")
        env = dict(os.environ)
        env.pop("SMTPRELAY_CONF", None)
        env.pop("NOTIFY_SOCKET", None)
        env.update(self.extra_env)
        with open(self.log_path, "ab") as err:
            # SMTPRELAYD_WRAPPER="valgrind --log-file=..." runs the daemon under a checker.
            wrapper = os.environ.get("SMTPRELAYD_WRAPPER", "").split()
            self.proc = subprocess.Popen(wrapper + [self.inst.path("smtprelayd"), "-d", "-C", self.inst.conf],
                                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                         stderr=err, env=env, preexec_fn=self.preexec_fn)
        if wait:
            def ready():
                if self.proc.poll() is not None:
                    raise AssertionError("smtprelayd exited %s:\n%s" % (self.proc.returncode, self.log()))
                return self.log().count(" ready\n") > ready_before
            wait_for(ready, 15, "smtprelayd ready")
        return self

    def stop(self, timeout=10):
        for s in self.sockets:
            s.close()
        self.sockets = []
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("smtprelayd did not exit within %d s after SIGTERM" % timeout)

    def stop_checked(self):
        """Cleanup: a daemon still running must stop cleanly, and no
        sanitizer may have complained in any run."""
        running = self.proc is not None and self.proc.poll() is None
        rc = self.stop()
        log = self.log()
        for bad in ("AddressSanitizer", "LeakSanitizer", "runtime error:"):
            if bad in log:
                raise AssertionError("%s in the daemon's log:\n%s" % (bad, log))
        if running and rc != 0:
            raise AssertionError("smtprelayd exited %s on SIGTERM:\n%s" % (rc, log))

    def kill9(self):
        self.proc.kill()
        self.proc.wait()

    def wait_log(self, pattern, timeout=15, count=1):
        rx = re.compile(pattern)
        return wait_for(lambda: len(rx.findall(self.log())) >= count and rx.findall(self.log()),
                        timeout, "log line /%s/\n--- log:\n%s" % (pattern, self.log()))

    def connect(self, timeout=10):
        s = socket.create_connection(("127.0.0.1", self.port), timeout=timeout)
        self.sockets.append(s)
        return s

    def queue_ids(self):
        return self.inst.area_files("queue")


def read_reply(sock, buf=b""):
    """Read one complete (possibly multi-line) SMTP reply; returns (code, text, rest)."""
    while True:
        m = re.match(rb"((?:\d{3}-[^\r\n]*\r\n)*)(\d{3}) ([^\r\n]*)\r\n", buf)
        if m:
            return int(m.group(2)), (m.group(1) + m.group(2) + b" " + m.group(3)).decode(), buf[m.end():]
        data = sock.recv(65536)
        if not data:
            raise EOFError("connection closed; got %r" % buf)
        buf += data


def read_replies(sock, n):
    codes, buf = [], b""
    for _ in range(n):
        code, text, buf = read_reply(sock, buf)
        codes.append((code, text))
    return codes


def read_all(sock):
    out = b""
    while True:
        try:
            data = sock.recv(65536)
        except ConnectionResetError:
            break
        if not data:
            break
        out += data
    return out


class ListenerTest(testlib.TestCase):
    CONFIG = "smtpd_timeout = 30\n"

    def daemon(self, body=None, **kw):
        inst = self.new_instance()
        d = Daemon(inst, self.CONFIG if body is None else body, **kw)
        d.start()
        self.addCleanup(d.stop_checked)
        return d

    def queued_content(self, d, qid):
        env, content = d.inst.read_message(qid, "queue")
        return env, content

    def assert_crlf_only(self, content):
        self.assertNotRegex(content, rb"[^\r]\n")
        self.assertNotRegex(content, rb"\r[^\n]")

    def test_ehlo_data_queue_file_exists_at_250(self):
        d = self.daemon()
        with smtplib.SMTP("127.0.0.1", d.port, local_hostname="client.test", timeout=10) as c:
            code, _ = c.ehlo()
            self.assertEqual(code, 250)
            for ext in ("pipelining", "size", "8bitmime", "enhancedstatuscodes", "smtputf8"):
                self.assertTrue(c.has_extn(ext), ext)
            self.assertEqual(c.mail("alice@example.com")[0], 250)
            self.assertEqual(c.rcpt("bob@example.com")[0], 250)
            code, text = c.data(b"Subject: hi\r\nFrom: alice@example.com\r\n\r\nline one\r\n.dotted\r\n")
            self.assertEqual(code, 250, text)
            m = re.search(rb"queued as (\S+)", text)
            self.assertTrue(m, text)
            qid = m.group(1).decode()
            # durably queued before the 250 was sent
            self.assertIn(qid, d.queue_ids())
        env, content = self.queued_content(d, qid)
        self.assertTrue(content.startswith(b"Received: from client.test (localhost [127.0.0.1])\r\n"
                                           b"\tby relay.test (smtprelay) with ESMTP id " + qid.encode()),
                        content[:200])
        self.assertIn(b"\r\n.dotted\r\n", content)
        self.assertIn(b"Subject: hi\r\n", content)
        self.assert_crlf_only(content)
        self.assertIn("bob@example.com", env["rcpt"][0])
        d.wait_log(r"%s: client=localhost\[127\.0\.0\.1\]" % qid)
        d.wait_log(r"%s: from=<alice@example.com>, size=\d+, nrcpt=1 \(queue active\)" % qid)

    def test_helo_is_smtp(self):
        d = self.daemon()
        s = d.connect()
        s.sendall(b"HELO old.test\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n")
        self.assertEqual([c for c, _ in read_replies(s, 5)], [220, 250, 250, 250, 354])
        s.sendall(b"Subject: x\r\n\r\nhi\r\n.\r\nQUIT\r\n")
        self.assertEqual([c for c, _ in read_replies(s, 2)], [250, 221])
        s.close()
        _, content = self.queued_content(d, d.queue_ids()[0])
        self.assertIn(b"from old.test (localhost [127.0.0.1])", content)
        self.assertIn(b"with SMTP id", content)

    def test_dsn_parameters_per_recipient(self):
        d = self.daemon()
        s = d.connect()
        s.sendall(b"EHLO dsn.test\r\nMAIL FROM:<a@example.com> RET=HDRS ENVID=job+2D42\r\n"
                  b"RCPT TO:<b@example.com> NOTIFY=NEVER\r\n"
                  b"RCPT TO:<c@example.com> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;list+40example.org\r\n"
                  b"DATA\r\n")
        self.assertEqual([c for c, _ in read_replies(s, 6)], [220, 250, 250, 250, 250, 354])
        s.sendall(b"Subject: d\r\n\r\nx\r\n.\r\nQUIT\r\n")
        self.assertEqual([c for c, _ in read_replies(s, 2)], [250, 221])
        s.close()
        env, _ = self.queued_content(d, d.queue_ids()[0])
        # NOTIFY bits: NEVER=1, SUCCESS=2, FAILURE=4; each recipient keeps its own.
        self.assertEqual(env["rcpt"], ["1 b@example.com", "6 c@example.com"])
        self.assertEqual(env["orcpt"], ["rfc822;list@example.org"])
        self.assertEqual(env["envid"], "job-42")
        self.assertEqual(env["ret"], "hdrs")

    def test_swaks_pipelining(self):
        d = self.daemon()
        r = subprocess.run(["swaks", "--server", "127.0.0.1:%d" % d.port, "--pipeline",
                            "--ehlo", "client.test", "--from", "a@example.com",
                            "--to", "b@example.com,c@example.com", "--timeout", "10"],
                           capture_output=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stdout.decode() + r.stderr.decode())
        self.assertRegex(r.stdout.decode(), r"250 2\.0\.0 Ok: queued as")
        self.assertEqual(len(d.queue_ids()), 1)

    def test_raw_pipelined_session(self):
        d = self.daemon()
        s = d.connect()
        s.sendall(b"EHLO p.test\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\n"
                  b"RCPT TO:<c@example.com>\r\nDATA\r\n")
        codes = [c for c, _ in read_replies(s, 6)]
        self.assertEqual(codes, [220, 250, 250, 250, 250, 354])
        s.sendall(b"Subject: p\r\n\r\nbody\r\n.\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<d@example.com>\r\n"
                  b"DATA\r\nSubject: q\r\n\r\nsecond\r\n.\r\nQUIT\r\n")
        codes = [c for c, _ in read_replies(s, 6)]
        self.assertEqual(codes, [250, 250, 250, 354, 250, 221])
        s.close()
        self.assertEqual(len(d.queue_ids()), 2)

    def test_denied_network(self):
        d = self.daemon('allow_networks = {"10.0.0.0/8"}\n')
        s = d.connect()
        code, text, buf = read_reply(s)
        self.assertEqual(code, 554, text)
        s.sendall(b"EHLO x.test\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\nQUIT\r\n")
        replies = read_replies(s, 5)
        self.assertEqual([c for c, _ in replies], [503, 503, 503, 503, 221])
        s.close()
        self.assertEqual(d.queue_ids(), [])

    def test_denied_peer_dropped_after_10s(self):
        d = self.daemon('allow_networks = {"10.0.0.0/8"}\n')
        s = d.connect(timeout=20)
        t0 = time.monotonic()
        self.assertEqual(read_reply(s)[0], 554)
        read_all(s)  # the daemon closes the connection
        self.assertLess(time.monotonic() - t0, 14)

    def test_long_command_line(self):
        d = self.daemon()
        s = d.connect()
        s.sendall(b"EHLO x.test\r\nMAIL FROM:<" + b"a" * 600 + b"@example.com>\r\nNOOP\r\nQUIT\r\n")
        replies = read_replies(s, 5)
        self.assertEqual(replies[2][0], 500)
        self.assertIn("5.5.2", replies[2][1])
        self.assertEqual([c for c, _ in replies[3:]], [250, 221])

    def test_oversize(self):
        d = self.daemon("max_message_size = 10000\n")
        s = d.connect()
        s.sendall(b"EHLO x.test\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n")
        self.assertEqual(read_replies(s, 5)[-1][0], 354)
        s.sendall(b"Subject: big\r\n\r\n" + (b"x" * 70 + b"\r\n") * 400 + b".\r\nQUIT\r\n")
        replies = read_replies(s, 2)
        self.assertEqual(replies[0][0], 552, replies)
        self.assertIn("5.3.4", replies[0][1])
        self.assertEqual(replies[1][0], 221)
        self.assertEqual(d.queue_ids(), [])
        self.assertEqual(os.listdir(os.path.join(d.inst.spool, "queue")), [])

    def test_max_recipients(self):
        d = self.daemon("max_recipients = 2\n")
        s = d.connect()
        s.sendall(b"EHLO x.test\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\n"
                  b"RCPT TO:<c@example.com>\r\nRCPT TO:<d@example.com>\r\nQUIT\r\n")
        replies = read_replies(s, 7)
        self.assertEqual([c for c, _ in replies], [220, 250, 250, 250, 250, 452, 221])

    def test_smuggling_attempts(self):
        variants = [b"\n.\n", b"\n.\r\n", b"\r\n.\n", b"\r.\r\n"]
        for v in variants:
            with self.subTest(variant=v):
                d = self.daemon()
                s = d.connect()
                s.sendall(b"EHLO x.test\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n")
                self.assertEqual(read_replies(s, 5)[-1][0], 354)
                s.sendall(b"Subject: s\r\n\r\nhello" + v +
                          b"MAIL FROM:<evil@example.com>\r\nRCPT TO:<victim@example.com>\r\nDATA\r\n"
                          b"Subject: smuggled\r\n\r\nsmuggled body\r\n.\r\nQUIT\r\n")
                replies = read_replies(s, 2)
                self.assertEqual([c for c, _ in replies], [250, 221], replies)
                s.close()
                ids = d.queue_ids()
                self.assertEqual(len(ids), 1, ids)
                env, content = d.inst.read_message(ids[0], "queue")
                self.assertIn(b"MAIL FROM:<evil@example.com>", content)
                self.assertIn(b"smuggled body", content)
                self.assertEqual(len(env["rcpt"]), 1)
                self.assertNotIn("victim", env["rcpt"][0])
                self.assert_crlf_only(content)
                d.stop()

    def test_idle_timeout(self):
        d = self.daemon("smtpd_timeout = 2\n")
        s = d.connect(timeout=15)
        t0 = time.monotonic()
        self.assertEqual(read_reply(s)[0], 220)
        s.sendall(b"EHLO x.test\r\n")
        code, text, buf = read_reply(s)
        self.assertEqual(code, 250)
        code, text, buf = read_reply(s, buf)
        self.assertEqual(code, 421, text)
        self.assertGreater(time.monotonic() - t0, 1.5)
        self.assertEqual(read_all(s), b"")

    def test_max_connections(self):
        d = self.daemon("max_connections = 2\n")
        a, b = d.connect(), d.connect()
        self.assertEqual(read_reply(a)[0], 220)
        self.assertEqual(read_reply(b)[0], 220)
        c = d.connect()
        code, text, _ = read_reply(c)
        self.assertEqual(code, 421)
        self.assertIn("4.7.0 relay.test Error: too many connections", text)
        c.close()
        a.sendall(b"QUIT\r\n")
        self.assertEqual(read_reply(a)[0], 221)
        read_all(a)
        # a slot is free again
        def accepted():
            e = d.connect()
            code = read_reply(e)[0]
            e.close()
            return code == 220
        wait_for(accepted, 10, "a free connection slot")
        b.close()

    def test_disk_full_452(self):
        def limit():
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (8192, 8192))
        d = self.daemon(preexec_fn=limit)
        s = d.connect()
        s.sendall(b"EHLO x.test\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n")
        self.assertEqual(read_replies(s, 5)[-1][0], 354)
        s.sendall(b"Subject: big\r\n\r\n" + (b"y" * 70 + b"\r\n") * 2000 + b".\r\n")
        code, text, buf = read_reply(s)
        self.assertEqual(code, 452, text)
        self.assertIn("4.3.1", text)
        # a small message still fits and the daemon is fine
        s.sendall(b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n")
        self.assertEqual([c for c, _ in read_replies(s, 3)], [250, 250, 354])
        s.sendall(b"Subject: small\r\n\r\nok\r\n.\r\nQUIT\r\n")
        self.assertEqual([c for c, _ in read_replies(s, 2)], [250, 221])
        self.assertEqual(len(d.queue_ids()), 1)
        # No leftover of the refused message; the small one's deferral
        # ("no smarthost configured") may be writing a tmp.*.state just now.
        wait_for(lambda: not [f for f in os.listdir(os.path.join(d.inst.spool, "queue"))
                              if f.startswith("tmp.")], 10, "no tmp. files in the queue")

    def test_sigterm_drops_sessions_exit_0(self):
        d = self.daemon()
        s = socket.create_connection(("127.0.0.1", d.port), timeout=10)
        self.addCleanup(s.close)
        s.sendall(b"EHLO x.test\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\nhalf a message\r\n")
        self.assertEqual(read_replies(s, 5)[-1][0], 354)
        t0 = time.monotonic()
        self.assertEqual(d.stop(), 0)
        self.assertLess(time.monotonic() - t0, 10)
        read_all(s)
        self.assertEqual(d.queue_ids(), [])
        self.assertFalse(os.path.exists(os.path.join(d.inst.spool, "public", "control")))

    def test_bind_conflict_is_fatal(self):
        inst = self.new_instance()
        blocker = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        blocker.bind(("127.0.0.1", 0))
        blocker.listen(1)
        d = Daemon(inst, "")
        d.port = blocker.getsockname()[1]
        d.write_config("")
        d.start(wait=False)
        rc = d.proc.wait(10)
        blocker.close()
        self.assertNotEqual(rc, 0)
        self.assertIn("cannot listen on 127.0.0.1:%d: Address already in use (is another MTA running? "
                      "stop it or change listen)" % d.port, d.log())

    def test_control_ping_and_flush(self):
        d = self.daemon()
        r = d.inst.sendmail("-q")
        self.assertEqual(r.returncode, 0, r.stderr)
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(10)
        s.connect(os.path.join(d.inst.spool, "public", "control"))
        s.sendall(b"ping\n")
        self.assertEqual(read_all(s), b"ok smtprelayd " + self.version().encode() + b"\n")
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(10)
        s.connect(os.path.join(d.inst.spool, "public", "control"))
        s.sendall(b"bogus\n")
        self.assertEqual(read_all(s), b"error unknown request\n")

    def version(self):
        inst = self.new_instance()
        return inst.run("smtprelayd", "-V").stdout.decode().split()[1]

    def test_pickup_from_sendmail_at_once(self):
        d = self.daemon()
        r = d.inst.sendmail("root", input=b"Subject: dropped\n\nhi\n")
        self.assertEqual(r.returncode, 0, r.stderr)
        wait_for(lambda: len(d.queue_ids()) == 1 and not d.inst.area_files("maildrop"), 5,
                 "pickup into queue/")
        d.wait_log(r"\w+: uid=\d+ from=<")

    def test_sd_notify(self):
        inst = self.new_instance()
        for abstract in (False, True):
            with self.subTest(abstract=abstract):
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                self.addCleanup(sock.close)
                if abstract:
                    name = "\0smtprelay-test-%d" % os.getpid()
                    sock.bind(name)
                    path = "@" + name[1:]
                else:
                    path = os.path.join(inst.dir, "notify.sock")
                    sock.bind(path)
                sock.settimeout(15)
                d = Daemon(inst, "")
                d.extra_env = {"NOTIFY_SOCKET": path}
                d.start()
                self.assertEqual(sock.recv(4096), b"READY=1")
                d.proc.send_signal(signal.SIGHUP)
                msg = sock.recv(4096)
                self.assertRegex(msg, rb"^RELOADING=1\nMONOTONIC_USEC=\d+$")
                self.assertEqual(sock.recv(4096), b"READY=1")
                self.assertEqual(d.stop(), 0)
                self.assertEqual(sock.recv(4096), b"STOPPING=1")


if __name__ == "__main__":
    unittest.main(verbosity=2)
