"""Real callers of sendmail, invoked the way they invoke it (sendmail(8))."""
import os
import shutil
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import testlib  # noqa: E402


class Callers(testlib.TestCase):
    def queued(self, inst):
        ids = inst.area_files()
        self.assertEqual(len(ids), 1)
        env, content = inst.read_message(ids[0])
        return env, content.decode("utf-8", "replace")

    def test_cron(self):
        inst = self.new_instance()
        out = "From: root (Cron Daemon)\nTo: alice\nSubject: Cron <alice@vm> backup.sh\n" \
              "Content-Type: text/plain; charset=UTF-8\nAuto-Submitted: auto-generated\n\n" \
              "backup done: 3 files\n.\nnot the end for -i\n"
        r = inst.sendmail("-i", "-FCronDaemon", "-B8BITMIME", "-oem", "alice", input=out.encode())
        self.assertEqual(r.returncode, 0, r.stderr)
        env, c = self.queued(inst)
        self.assertIn("alice@relay.test", " ".join(env["rcpt"]))
        self.assertIn("not the end for -i", c)
        self.assertEqual(env.get("8bitmime"), "1")

    def test_php_mail(self):
        inst = self.new_instance()
        msg = "To: customer@example.com\nSubject: Your order\nFrom: shop@example.org\n" \
              "MIME-Version: 1.0\nContent-Type: text/html; charset=UTF-8\n\n<p>Thanks</p>\n"
        r = inst.sendmail("-t", "-i", input=msg.encode())
        self.assertEqual(r.returncode, 0, r.stderr)
        env, c = self.queued(inst)
        self.assertIn("customer@example.com", " ".join(env["rcpt"]))
        self.assertIn("From: shop@example.org", c)

    def test_unattended_upgrades(self):
        inst = self.new_instance('admin_address = "ops@example.com"\n')
        msg = "Subject: [reboot required] unattended-upgrades result for vm\nTo: root\n" \
              "Auto-Submitted: auto-generated\n\nPackages upgraded: openssl\n"
        r = inst.sendmail("-oi", "-t", input=msg.encode())
        self.assertEqual(r.returncode, 0, r.stderr)
        env, _ = self.queued(inst)
        self.assertEqual(env["rcpt"], ["0 ops@example.com"])

    def test_git_send_email(self):
        inst = self.new_instance()
        patch = "From: Dev <dev@example.org>\nTo: list@example.com\nSubject: [PATCH] fix\n" \
                "Message-ID: <patch-1@example.org>\nDate: Mon, 1 Jan 2024 00:00:00 +0000\n\n" \
                "---\n.gitignore | 1 +\n..leading dots stay\n"
        r = inst.sendmail("-i", "-f", "dev@example.org", "list@example.com", input=patch.encode())
        self.assertEqual(r.returncode, 0, r.stderr)
        env, c = self.queued(inst)
        self.assertIn("..leading dots stay\r\n", c)
        self.assertEqual(c.count("Message-ID:"), 1)

    @unittest.skipUnless(shutil.which("bsd-mailx") or os.path.exists("/usr/bin/bsd-mailx"),
                         "bsd-mailx not installed")
    def test_bsd_mailx(self):
        inst = self.new_instance()
        rc = os.path.join(inst.dir, "mailrc")
        with open(rc, "w") as f:
            f.write("set sendmail=%s\n" % inst.path("sendmail"))
        env = dict(os.environ, MAILRC=rc, SMTPRELAY_CONF=inst.conf)
        r = subprocess.run(["bsd-mailx", "-s", "smartd: disk failing", "-c", "cc@example.com",
                            "bob@example.com"], input="SMART error on /dev/sda\n".encode(),
                           env=env, capture_output=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        envl, c = self.queued(inst)
        rc_ = " ".join(envl["rcpt"])
        self.assertIn("bob@example.com", rc_)
        self.assertIn("cc@example.com", rc_)
        self.assertIn("Subject: smartd: disk failing", c)
        self.assertIn("SMART error on /dev/sda", c)


if __name__ == "__main__":
    unittest.main(verbosity=2)
