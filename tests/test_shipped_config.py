"""The config a fresh install ships (conf/built/smtprelay.conf, installed as
/etc/smtprelay.conf by `make install` and by the Debian package): it is
valid, configures no smarthost, and with it the daemon runs, accepts mail and
keeps it deferred ("no smarthost configured"), saying so at start, in
`smtprelayd -t` and in `smtprelay status`."""
import json
import os
import re
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import testlib  # noqa: E402
from test_listener import Daemon, wait_for  # noqa: E402

SHIPPED = os.path.join(testlib.BUILD, "conf", "built", "smtprelay.conf")
WARNING = "no smarthost configured: mail will stay queued"


def shipped_body():
    """The shipped file minus the keys the private instance sets itself."""
    with open(SHIPPED) as f:
        text = f.read()
    return re.sub(r"(?m)^(listen|hostname|spool_dir|user)\s*=.*$", "", text)


class ShippedConfigTest(testlib.TestCase):
    def test_no_smarthost_block_active(self):
        with open(SHIPPED) as f:
            text = f.read()
        self.assertIsNone(re.search(r"(?m)^smarthost\s", text), "an active smarthost block")
        self.assertIn('#smarthost "primary" {', text)

    def test_check_says_no_smarthost(self):
        inst = self.new_instance()
        r = inst.run("smtprelayd", "-t", "-C", SHIPPED)
        self.assertEqual(r.returncode, 0, r.stderr.decode())
        self.assertIn("%s: %s" % (SHIPPED, WARNING), r.stderr.decode())

    def test_daemon_keeps_mail_deferred(self):
        inst = self.new_instance()
        d = Daemon(inst, shipped_body())
        self.addCleanup(d.stop)
        d.start()
        self.assertIn("%s: %s" % (inst.conf, WARNING), d.log())
        r = inst.sendmail("-i", "ops@example.com", input=b"Subject: hi\n\nhello\n")
        self.assertEqual(r.returncode, 0, r.stderr.decode())

        def deferred():
            q = inst.run("smtprelay", "-C", inst.conf, "queue", "--json")
            msgs = json.loads(q.stdout or b"[]")
            rcpts = [rc for m in msgs for rc in m["recipients"]]
            return rcpts and rcpts[0]["state"] == "deferred" and rcpts[0]
        rcpt = wait_for(deferred, 15, "the message deferred")
        self.assertEqual(rcpt["last_reason"], "no smarthost configured in %s" % inst.conf)
        st = inst.run("smtprelay", "-C", inst.conf, "status")
        self.assertEqual(st.returncode, 0, st.stderr.decode())
        self.assertIn("smtprelayd: running", st.stdout.decode())
        self.assertIn("smarthosts: none configured (mail stays queued)", st.stdout.decode())
        self.assertEqual(d.stop(), 0)


if __name__ == "__main__":
    unittest.main()
