"""valgrind memcheck on the daemon for one integration scenario (issue 12):
SMTP and sendmail submissions, a message of 1 MB (written by the commit
threads as it arrives) and a client that goes away in the middle of one,
a rejected recipient with its DSN, a
temporary failure retried, delivery over STARTTLS with AUTH, a control
request, SIGHUP and SIGTERM.  No error and no definite leak.

valgrind is required (tools/install-deps installs it); only a sanitizer
build, which valgrind cannot run, skips this."""
import os
import re
import smtplib
import socket
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import testlib  # noqa: E402
from testlib import BUILD, wait_for  # noqa: E402
import test_daemon  # noqa: E402


def sanitized():
    with open(os.path.join(BUILD, "smtprelayd"), "rb") as f:
        return b"__asan_init" in f.read()


@unittest.skipIf(sanitized(), "an ASan build: valgrind cannot run it (the sanitizers check it)")
class ValgrindTest(testlib.TestCase):
    _D = test_daemon.DaemonTest
    setUpClass = classmethod(_D.setUpClass.__func__)
    tearDownClass = classmethod(_D.tearDownClass.__func__)
    smarthost, new_dir, config, daemon, check_logs, send, queue_empty = (
        _D.smarthost, _D.new_dir, _D.config, _D.daemon, _D.check_logs, _D.send, _D.queue_empty)

    def test_memcheck_clean(self):
        vlog = os.path.join(self.new_dir(), "valgrind.log")
        os.environ["SMTPRELAYD_WRAPPER"] = (
            "valgrind --tool=memcheck --error-exitcode=99 --leak-check=full "
            "--errors-for-leak-kinds=definite --track-fds=no --log-file=%s" % vlog)
        self.addCleanup(os.environ.pop, "SMTPRELAYD_WRAPPER", None)
        fx = self.smarthost(rules={"rcpt": {"bad@example.com": "550 5.1.1 no such user"},
                                   "tempfail_data_first": 1})
        d = self.daemon(self.config(fx.ports["sub"]), start=False)
        d.start()
        self.send(d, "bob@example.com", subject="via sendmail")
        with smtplib.SMTP("127.0.0.1", d.port, timeout=60) as s:
            s.sendmail("alice@example.com", ["carol@example.com", "bad@example.com"],
                       b"Subject: via smtp\r\n\r\n" + b"x" * 2000 + b"\r\n")
            s.sendmail("alice@example.com", ["dave@example.com"],
                       b"Subject: big\r\n\r\n" + (b"y" * 998 + b"\r\n") * 1000)
        with socket.create_connection(("127.0.0.1", d.port), timeout=60) as c, c.makefile("rb") as f:
            c.sendall(b"EHLO gone.test\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\n"
                      b"DATA\r\n")
            while not f.readline().startswith(b"354"):
                pass
            c.sendall((b"z" * 998 + b"\r\n") * 500)
        wait_for(lambda: d.log().count("disconnect from") >= 2, 60, "the second session closed")
        # Three messages and the DSN for bad@ (to alice@), one retry after 451.
        fx.wait_messages(4, timeout=90)
        wait_for(lambda: self.queue_empty(d), 60, "empty queue")
        r = d.inst.run("smtprelay", "-C", d.inst.conf, "status", timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        d.proc.send_signal(1)
        d.wait_log(r"configuration reloaded", timeout=60)
        rc = d.stop(timeout=60)
        with open(vlog) as f:
            text = f.read()
        self.assertEqual(rc, 0, text)
        self.assertRegex(text, r"ERROR SUMMARY: 0 errors", text)
        self.assertNotRegex(text, r"definitely lost: [1-9]", text)


if __name__ == "__main__":
    unittest.main(verbosity=2)
