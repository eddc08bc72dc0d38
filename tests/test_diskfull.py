"""Disk full and I/O errors (issue 12): a tiny tmpfs spool in a private
mount namespace, and an LD_PRELOAD shim (tests/faultshim.so) failing
write/fsync/rename on spool files at chosen moments.

Promised: the listener answers 452 4.3.1 (without naming spool files),
sendmail exits 75, nothing already queued is harmed, no half-written file is
ever picked up or delivered, delivery of queued mail continues, and
acceptance resumes once space comes back."""
import ctypes
import os
import shutil
import smtplib
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import testlib  # noqa: E402
from testlib import BUILD, wait_for  # noqa: E402
from test_listener import Daemon  # noqa: E402
import test_daemon  # noqa: E402

SHIM = os.path.join(BUILD, "tests", "faultshim.so")
CLONE_NEWNS = 0x00020000


def private_mounts():
    """Our own mount namespace, so the tmpfs spools are nobody else's."""
    if os.geteuid() != 0:
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNS) != 0:
        return False
    return subprocess.run(["mount", "--make-rprivate", "/"]).returncode == 0


IN_NS = private_mounts()


def leftovers(spool):
    """Temporary or partial files in the spool areas."""
    out = []
    for area in ("maildrop", "queue"):
        d = os.path.join(spool, area)
        if os.path.isdir(d):
            out += [area + "/" + f for f in os.listdir(d) if f.startswith("tmp.")]
    return out


def smtp_send(port, subject, size=0, rcpt="b@example.com"):
    """(code, text) of the end of data, or of the first refusal."""
    body = ("Subject: %s\r\n\r\n" % subject + ("z" * 76 + "\r\n") * (size // 78)).encode()
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as s:
            s.ehlo("client.test")
            s.mail("a@example.com")
            s.rcpt(rcpt)
            code, text = s.data(body)
            return code, text.decode()
    except smtplib.SMTPResponseException as e:
        return e.smtp_code, e.smtp_error.decode()


class FaultShimTest(testlib.TestCase):
    """ENOSPC/EIO from write, fsync and rename on the spool, switched on and off."""

    def daemon(self, errno_name="ENOSPC"):
        inst = self.new_instance()
        self.switch = os.path.join(inst.dir, "disk-full")
        self.env = {"LD_PRELOAD": SHIM, "FAULTSHIM_CALLS": "", "FAULTSHIM_ERRNO": errno_name,
                    "FAULTSHIM_PATH": inst.spool + "/", "FAULTSHIM_SWITCH": self.switch,
                    "ASAN_OPTIONS": os.environ.get("ASAN_OPTIONS", "") + ":verify_asan_link_order=0"}
        d = Daemon(inst, "smtpd_timeout = 30\n")
        d.extra_env = self.env
        self.addCleanup(d.stop_checked)
        return d

    def fault(self, calls):
        self.env["FAULTSHIM_CALLS"] = calls
        with open(self.switch, "w"):
            pass

    def clear(self):
        os.unlink(self.switch)

    def check_call(self, call, errno_name, code, enhanced, exit_code):
        d = self.daemon(errno_name)
        self.fault(call)        # before start: the daemon reads its environment once
        self.clear()
        d.start()
        self.assertEqual(smtp_send(d.port, "before")[0], 250)
        before = d.queue_ids()
        with open(self.switch, "w"):
            pass
        got, text = smtp_send(d.port, "refused", 100000)
        self.assertEqual((got, text.split(" ")[0]), (code, enhanced), text)
        self.assertNotIn(d.inst.spool, text)
        r = d.inst.sendmail("x@example.com", input=b"Subject: refused\n\nx\n", env=self.env)
        self.assertEqual(r.returncode, exit_code, r.stderr)
        self.assertEqual(d.queue_ids(), before)
        self.assertEqual(d.inst.area_files("maildrop"), [])
        # State writes run off the daemon's loop: a failed one is cleaned up
        # by its worker, maybe a moment after the replies above.
        testlib.wait_for(lambda: leftovers(d.inst.spool) == [], what="no temporary files")
        env, content = d.inst.read_message(before[0], "queue")
        self.assertIn(b"Subject: before", content)
        self.clear()
        self.assertEqual(smtp_send(d.port, "after")[0], 250)
        self.assertEqual(len(d.queue_ids()), 2)
        testlib.wait_for(lambda: leftovers(d.inst.spool) == [], what="no temporary files")

    def test_enospc_on_write(self):
        self.check_call("write", "ENOSPC", 452, "4.3.1", 75)

    def test_enospc_on_fsync(self):
        self.check_call("fsync", "ENOSPC", 452, "4.3.1", 75)

    def test_enospc_on_rename(self):
        self.check_call("rename", "ENOSPC", 452, "4.3.1", 75)

    def test_eio_on_fsync(self):
        self.check_call("fsync", "EIO", 451, "4.3.0", 75)


@unittest.skipUnless(IN_NS, "needs root and a private mount namespace (unshare)")
class TmpfsTest(testlib.TestCase):
    """A 2 MiB tmpfs spool filled up for real while mail is queued."""
    _D = test_daemon.DaemonTest
    setUpClass = classmethod(_D.setUpClass.__func__)
    tearDownClass = classmethod(_D.tearDownClass.__func__)
    smarthost, new_dir, config, send, queue_empty, check_logs = (
        _D.smarthost, _D.new_dir, _D.config, _D.send, _D.queue_empty, _D.check_logs)

    def daemon(self, body, start=True):
        d = self._D.daemon(self, body, start=False)
        os.makedirs(d.inst.spool)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m,mode=0755", "smtprelay-test",
                        d.inst.spool], check=True)
        self.addCleanup(subprocess.run, ["umount", "-l", d.inst.spool])
        if start:
            d.start()
        return d

    def fill(self, spool):
        path = os.path.join(spool, "filler")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            while True:
                os.write(fd, b"\0" * 4096)
        except OSError:
            pass
        os.close(fd)
        return path

    def test_disk_full_then_space_back(self):
        fx = self.smarthost(rules={"tempfail_data_first": 1})
        d = self.daemon(self.config(fx.ports["sub"], "retry_min = 3\nretry_max = 3\n"))
        self.send(d, "queued@example.com", subject="queued before")
        d.wait_log(r"to=<queued@example\.com>.*status=deferred")
        filler = self.fill(d.inst.spool)
        code, text = smtp_send(d.port, "while full", 300000)
        self.assertEqual(code, 452, text)
        self.assertTrue(text.startswith("4.3.1 "), text)
        self.assertNotIn(d.inst.spool, text)
        r = d.inst.sendmail("-f", "a@example.com", "full@example.com",
                            input=b"Subject: while full\n\n" + b"y" * 300000 + b"\n")
        self.assertEqual(r.returncode, 75, r.stderr)
        # Delivery of what was queued goes on while the disk is full.
        msgs = fx.wait_messages(1, timeout=30)
        self.assertIn(b"Subject: queued before", msgs[0]["content"])
        self.assertEqual(leftovers(d.inst.spool), [])
        os.unlink(filler)
        self.assertEqual(smtp_send(d.port, "space back")[0], 250)
        msgs = fx.wait_messages(2, timeout=30)
        subjects = sorted(m["content"].split(b"Subject: ")[1].split(b"\r\n")[0] for m in msgs)
        self.assertEqual(subjects, [b"queued before", b"space back"])
        wait_for(lambda: self.queue_empty(d), 15, "empty queue")
        self.assertEqual(leftovers(d.inst.spool), [])


class BounceUnderEnospcTest(testlib.TestCase):
    """Finding 7: when the failure notice cannot be queued (ENOSPC) the
    recipient stays deferred, but the log only said status=bounced."""
    _D = test_daemon.DaemonTest
    setUpClass = classmethod(_D.setUpClass.__func__)
    tearDownClass = classmethod(_D.tearDownClass.__func__)
    smarthost, new_dir, config, daemon, check_logs = (
        _D.smarthost, _D.new_dir, _D.config, _D.daemon, _D.check_logs)

    def test_log_says_deferred_when_dsn_not_queued(self):
        fx = self.smarthost(rules={"rcpt": {"bad@example.com": "550 5.1.1 no such user"}})
        d = self.daemon(self.config(fx.ports["sub"], "retry_min = 60\nretry_max = 120\n"), start=False)
        switch = os.path.join(d.inst.dir, "disk-full")
        open(switch, "w").close()
        # The first fsync in queue/ (the message itself) succeeds, the DSN's fails.
        d.extra_env = {"LD_PRELOAD": SHIM, "FAULTSHIM_CALLS": "fsync", "FAULTSHIM_SKIP": "1",
                       "FAULTSHIM_PATH": os.path.join(d.inst.spool, "queue") + "/",
                       "FAULTSHIM_SWITCH": switch,
                       "ASAN_OPTIONS": os.environ.get("ASAN_OPTIONS", "") + ":verify_asan_link_order=0"}
        d.start()
        self.assertEqual(smtp_send(d.port, "to a bad address", rcpt="bad@example.com")[0], 250)
        ids = d.wait_log(r"(\w+): to=<bad@example\.com>.*status=deferred \(the failure notice "
                         r"could not be queued; failing again in 60 s\)")
        self.assertEqual(d.queue_ids(), [ids[0]])


if __name__ == "__main__":
    unittest.main(verbosity=2)
