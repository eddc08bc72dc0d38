"""Admin and monitoring work off the event loop (smtprelayd(8), "Queue guarantees"): with
thousands of queued messages, scrapes of /metrics, `smtprelay status` and
`smtprelay delete --all` read and remove the spool on the commit threads
while the listener keeps greeting new connections at once; their answers
are unchanged (counts right after the work).  A message found corrupt at
run time is moved to corrupt/ by a commit thread."""
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import testlib  # noqa: E402
from test_listener import Daemon, free_port, wait_for  # noqa: E402

SHIM = os.path.join(testlib.BUILD, "tests", "fsshim.so")
CONTENT = b"From: alice@example.com\r\nSubject: backlog\r\n\r\nbody\r\n"


def greeting_time(port):
    t0 = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=30) as c:
        line = c.makefile("rb").readline()
    assert line.startswith(b"220"), line
    return time.monotonic() - t0


def write_message(qdir, qid, due):
    """queue/ID and queue/ID.state (queue/envelope.c, version 1): one
    recipient, deferred until `due`, so the scheduler leaves it alone."""
    head = ("SMTPRELAY-QUEUE 1\nsize %020d\nid %s\narrival %d\nuid -1\norigin test\n"
            "sender alice@example.com\nret default\nsmtputf8 0\n8bitmime 0\nrcpts 1\n"
            "rcpt 0 bob@example.com\ndata\n" % (len(CONTENT), qid, int(time.time() * 1e6) - 60000000))
    with open(os.path.join(qdir, qid), "wb") as f:
        f.write(head.encode() + CONTENT)
    state = ("SMTPRELAY-STATE 1\nid %s\ndsn_count 0\nrcpts 1\nrcpt deferred 1 %d %d\n"
             "reason 451%%204.3.0%%20try%%20later\nend\n" % (qid, due, int(time.time()) - 60))
    with open(os.path.join(qdir, qid + ".state"), "wb") as f:
        f.write(state.encode())


class Greeter(threading.Thread):
    """Connects again and again while the work runs: the slowest 220 seen."""

    def __init__(self, port):
        super().__init__(daemon=True)
        self.port, self.times, self.stop = port, [], threading.Event()

    def run(self):
        while not self.stop.is_set():
            self.times.append(greeting_time(self.port))
            time.sleep(0.005)

    def finish(self):
        self.stop.set()
        self.join(30)
        return max(self.times) if self.times else None


class OffLoopTest(testlib.TestCase):
    N = 3000

    def daemon(self, n, unlink_us=0):
        """A daemon whose queue/ holds n deferred messages (written while it was down)."""
        self.mport = free_port()
        body = ('retry_min = 3600\nretry_max = 3600\nmetrics_listen = "127.0.0.1:%d"\n'
                'smarthost "down" {\n  host = "127.0.0.1"\n  ports = {"%d/none"}\n}\n'
                % (self.mport, free_port()))
        d = Daemon(self.new_instance(), body)
        if unlink_us:
            d.extra_env = {"LD_PRELOAD": SHIM, "FSSHIM_UNLINK_US": str(unlink_us),
                           "ASAN_OPTIONS": os.environ.get("ASAN_OPTIONS", "") +
                           ":verify_asan_link_order=0"}
        self.addCleanup(d.stop)
        d.start()
        d.stop()
        qdir = os.path.join(d.inst.spool, "queue")
        due = int(time.time()) + 3600
        self.ids = ["T%017d" % i for i in range(n)]
        for qid in self.ids:
            write_message(qdir, qid, due)
        d.start()
        d.wait_log(r"queue: %d messages" % n)
        return d

    def admin(self, d, *args):
        return subprocess.run([d.inst.path("smtprelay"), "-C", d.inst.conf] + list(args),
                              capture_output=True, text=True, timeout=120)

    def scrape(self):
        with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % self.mport, timeout=60) as r:
            return r.read().decode()

    def while_greeting(self, d, work):
        """Run work() with a client connecting meanwhile: (result, seconds, slowest 220)."""
        g = Greeter(d.port)
        g.start()
        wait_for(lambda: g.times, 10, "a first greeting")
        t0 = time.monotonic()
        result = work()
        took = time.monotonic() - t0
        return result, took, g.finish()

    def test_scrapes_of_a_long_queue_leave_the_loop_free(self):
        d = self.daemon(self.N)
        scrapes = []

        def eight_scrapes():
            ts = [threading.Thread(target=lambda: scrapes.append(self.scrape())) for _ in range(8)]
            for t in ts:
                t.start()
            for t in ts:
                t.join()
            return len(scrapes)

        n, took, slowest = self.while_greeting(d, eight_scrapes)
        self.assertEqual(n, 8)
        for text in scrapes:
            self.assertIn('smtprelay_queue_messages{state="deferred"} %d\n' % self.N, text)
            self.assertIn('smtprelay_queue_messages{state="active"} 0\n', text)
        # On the loop, 8 scans of 3,000 messages (2 files each) held every
        # other client for nearly all of their time.
        self.assertLess(slowest, min(0.25, took / 3), "220 took %.3f s during scrapes "
                        "taking %.3f s" % (slowest, took))
        r = self.admin(d, "status")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("queue: %d messages (0 in delivery, 0 in maildrop)" % self.N, r.stdout)
        self.assertIn("recipients: 0 pending, %d deferred" % self.N, r.stdout)
        self.assertRegex(r.stdout, r"oldest message: \d+ s")
        r = self.admin(d, "queue")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertRegex(r.stdout, r"-- \d+ Kbytes in %d Requests\.\n$" % self.N)

    def test_clients_that_leave_before_the_answer(self):
        # The answer comes after the scan: a client gone by then costs nothing.
        d = self.daemon(self.N)
        ctl = os.path.join(d.inst.spool, "public", "control")
        for _ in range(5):
            with socket.create_connection(("127.0.0.1", self.mport), timeout=10) as c:
                c.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            for req in (b"status\n", b"queue\n", b"metrics\n"):
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as c:
                    c.connect(ctl)
                    c.sendall(req)
        self.assertIn('smtprelay_queue_messages{state="deferred"} %d\n' % self.N, self.scrape())
        r = self.admin(d, "status")
        self.assertIn("queue: %d messages" % self.N, r.stdout)
        self.assertIsNone(d.proc.poll())
        self.assertEqual(d.stop(), 0)

    def test_delete_all_on_a_slow_disk_leaves_the_loop_free(self):
        # 10 ms per unlink (a slow or FUSE file system): 2 per message.
        n = 100
        d = self.daemon(n, unlink_us=10000)
        r, took, slowest = self.while_greeting(d, lambda: self.admin(d, "delete", "--all"))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("%d messages removed, 0 more when their delivery ends" % n, r.stdout)
        self.assertGreater(took, n * 2 * 0.01, "the unlinks were slow")
        self.assertLess(slowest, min(0.25, took / 3), "220 took %.3f s during a delete "
                        "taking %.3f s" % (slowest, took))
        self.assertEqual(d.inst.area_files("queue"), [])
        self.assertEqual(d.log().count(": removed by uid %d" % os.getuid()), n)
        r = self.admin(d, "status")
        self.assertIn("queue: 0 messages", r.stdout)

    def test_delete_one_and_unknown(self):
        d = self.daemon(2)
        r = self.admin(d, "delete", self.ids[0])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("%s: removed" % self.ids[0], r.stdout)
        r = self.admin(d, "delete", self.ids[0])
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("%s: no such message in the queue" % self.ids[0], r.stderr)
        self.assertEqual(d.inst.area_files("queue"), [self.ids[1]])

    def test_corrupt_at_run_time_is_quarantined(self):
        d = self.daemon(2)
        qdir = os.path.join(d.inst.spool, "queue")
        with open(os.path.join(qdir, self.ids[0]), "r+b") as f:
            f.truncate(40)			# shorter than its header says
        r = self.admin(d, "flush")
        self.assertEqual(r.returncode, 0, r.stderr)
        d.wait_log(r"%s: moved to corrupt/" % self.ids[0])
        self.assertIn(self.ids[0], os.listdir(os.path.join(d.inst.spool, "corrupt")))
        self.assertNotIn(self.ids[0], os.listdir(qdir))
        r = self.admin(d, "status")
        self.assertIn("queue: 1 message ", r.stdout)


if __name__ == "__main__":
    unittest.main()
