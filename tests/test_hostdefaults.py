"""Debian defaults (issue 9 item 6), with the real sendmail, smtprelayd and
smtprelay programs: hostname from /etc/mailname else the FQDN, aliases_file
from /etc/aliases when present, bare addresses in From/To/Cc/Reply-To
qualified in the relayed headers (sendmail and the listener), and the
warnings about a dotless hostname and an unreachable root.

The mail name and aliases files are the test's own, named through
$SMTPRELAY_MAILNAME_FILE / $SMTPRELAY_ALIASES_FILE (conf/hostdefaults.h);
this machine's /etc/mailname and /etc/aliases are never read.
"""
import email
import email.policy
import os
import smtplib
import socket
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import testlib  # noqa: E402
from testlib import wait_for  # noqa: E402
from test_listener import Daemon  # noqa: E402

CRON_MSG = (b"From: root (Cron Daemon)\nTo: root\nCc: admin, \"Doe, J\" <jdoe>,\n"
            b" Team: alice, bob@example.com;\nReply-To: Ops <ops>\nBcc: hidden\n"
            b"Subject: Cron <root@vm> run-parts\n\nbody mentions root and <root>\n")


class HostDefaultsTest(testlib.TestCase):
    def setUp(self):
        self.inst = self.new_instance()
        self.mailname = os.path.join(self.inst.dir, "mailname")
        self.aliases = os.path.join(self.inst.dir, "aliases")
        self.env = {"SMTPRELAY_MAILNAME_FILE": self.mailname,
                    "SMTPRELAY_ALIASES_FILE": self.aliases}

    def write_config(self, body=""):
        """A config without hostname and aliases_file: the defaults apply."""
        with open(self.inst.conf, "w") as f:
            f.write('spool_dir = "%s"\nlisten = {}\n%s' % (self.inst.spool, body))

    def write(self, path, text):
        with open(path, "w") as f:
            f.write(text)

    def sendmail(self, *args, input=b""):
        return self.inst.sendmail(*args, input=input, env=self.env)

    def bv(self, name):
        r = self.sendmail("-bv", name)
        self.assertEqual(r.returncode, 0, r.stderr)
        return r.stdout.decode().strip()

    def queued_headers(self, area="maildrop"):
        ids = self.inst.area_files(area)
        self.assertEqual(len(ids), 1, ids)
        env, content = self.inst.read_message(ids[0], area)
        head = content.split(b"\r\n\r\n", 1)[0].decode()
        return env, head, email.message_from_bytes(content, policy=email.policy.compat32)

    # ---- hostname ----

    def test_hostname_from_mailname(self):
        self.write(self.mailname, "  mail.example.net \n")
        self.write_config()
        self.assertEqual(self.bv("root"), "root -> root@mail.example.net")
        r = self.sendmail("-i", "someone@example.org", input=b"Subject: s\n\nb\n")
        self.assertEqual(r.returncode, 0, r.stderr)
        _, head, _ = self.queued_headers()
        self.assertRegex(head, r"Message-ID: <\d{14}\.\w+@mail\.example\.net>")

    def test_hostname_fqdn_without_mailname(self):
        self.write_config()
        got = self.bv("root").split("@", 1)[1]
        name = socket.gethostname()
        self.assertIn(got, {name, socket.getfqdn(name)})
        self.assertNotEqual(got, "mail.example.net")

    def test_explicit_hostname_wins(self):
        self.write(self.mailname, "mail.example.net\n")
        self.write_config('hostname = "relay.example.com"\n')
        self.assertEqual(self.bv("root"), "root -> root@relay.example.com")

    def test_bad_mailname_falls_back_with_warning(self):
        self.write(self.mailname, "not a name!\n")
        self.write_config()
        r = self.sendmail("-v", "-bv", "root")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertNotIn("not a name", r.stdout.decode())
        r = self.inst.run("smtprelayd", "-t", "-C", self.inst.conf, env=self.env)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("%s: \"not a name!\" is not a valid host name" % self.mailname, r.stderr.decode())

    # ---- aliases ----

    def test_aliases_default_present(self):
        self.write(self.mailname, "mail.example.net\n")
        self.write(self.aliases, "# Debian\npostmaster: root\nroot: ops@example.com\n")
        self.write_config()
        self.assertEqual(self.bv("postmaster"), "postmaster -> ops@example.com")
        r = self.sendmail("-i", "root", input=b"Subject: s\n\nb\n")
        self.assertEqual(r.returncode, 0, r.stderr)
        env, _, _ = self.queued_headers()
        self.assertEqual([r.split(" ", 1)[1] for r in env["rcpt"]], ["ops@example.com"])

    def test_aliases_default_absent(self):
        self.write(self.mailname, "mail.example.net\n")
        self.write_config()
        self.assertEqual(self.bv("postmaster"), "postmaster -> postmaster@mail.example.net")

    def test_aliases_file_empty_means_none(self):
        self.write(self.mailname, "mail.example.net\n")
        self.write(self.aliases, "root: ops@example.com\n")
        self.write_config('aliases_file = ""\n')
        self.assertEqual(self.bv("root"), "root -> root@mail.example.net")

    def test_aliases_block_wins_over_default_file(self):
        self.write(self.mailname, "mail.example.net\n")
        self.write(self.aliases, "root: ops@example.com\n")
        self.write_config('aliases { root = "boss@example.com" }\n')
        self.assertEqual(self.bv("root"), "root -> boss@example.com")

    # ---- header qualification ----

    def check_qualified(self, head, msg, domain):
        self.assertEqual(msg["From"], "root@%s (Cron Daemon)" % domain)
        self.assertEqual(msg["To"], "root@%s" % domain)
        # Folding, display names and groups are kept as they were.
        self.assertIn("Cc: admin@%s, \"Doe, J\" <jdoe@%s>,\r\n Team: alice@%s, bob@example.com;"
                      % (domain, domain, domain), head)
        self.assertEqual(msg["Reply-To"], "Ops <ops@%s>" % domain)
        self.assertEqual(msg["Subject"], "Cron <root@vm> run-parts")
        self.assertNotIn("Bcc", head)

    def test_cron_headers_qualified_by_sendmail(self):
        self.write(self.mailname, "mail.example.net\n")
        self.write_config('admin_address = "ops@example.com"\n')
        r = self.sendmail("-i", "-FCronDaemon", "-B8BITMIME", "-oem", "root", input=CRON_MSG)
        self.assertEqual(r.returncode, 0, r.stderr)
        env, head, msg = self.queued_headers()
        self.assertEqual([r.split(" ", 1)[1] for r in env["rcpt"]], ["ops@example.com"])
        self.check_qualified(head, msg, "mail.example.net")
        self.assertIn(b"body mentions root and <root>\r\n", msg.get_payload().encode())

    def test_t_headers_qualified(self):
        self.write(self.mailname, "mail.example.net\n")
        self.write_config('admin_address = "ops@example.com"\n')
        r = self.sendmail("-t", "-i", input=CRON_MSG)
        self.assertEqual(r.returncode, 0, r.stderr)
        env, head, msg = self.queued_headers()
        self.assertIn("ops@example.com", [r.split(" ", 1)[1] for r in env["rcpt"]])
        self.assertIn("bob@example.com", [r.split(" ", 1)[1] for r in env["rcpt"]])
        self.check_qualified(head, msg, "mail.example.net")

    def test_listener_headers_qualified(self):
        self.inst.hostname = "relay.example.com"
        d = Daemon(self.inst, "")
        d.extra_env = self.env
        self.addCleanup(d.stop_checked)
        d.start()
        with smtplib.SMTP("127.0.0.1", d.port, local_hostname="client.test", timeout=10) as c:
            c.sendmail("root", ["someone@example.org"], CRON_MSG.replace(b"\n", b"\r\n"))
        wait_for(lambda: len(self.inst.area_files("queue")) == 1, 10, "message queued")
        _, head, msg = self.queued_headers("queue")
        self.check_qualified(head, msg, "relay.example.com")

    # ---- warnings ----

    def test_warnings(self):
        self.write(self.mailname, "vm\n")
        self.write_config()
        dotless = 'hostname "vm" has no dot'
        noroot = "root has no alias and admin_address is not set"
        # sendmail: only with -v (README: cron mails whatever sendmail prints).
        r = self.sendmail("-t", "-i", input=b"To: root\nSubject: s\n\nb\n")
        self.assertEqual((r.returncode, r.stderr), (0, b""))
        r = self.sendmail("-v", "-t", "-i", input=b"To: root\nSubject: s\n\nb\n")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(dotless, r.stderr.decode())
        self.assertIn(noroot, r.stderr.decode())
        self.assertIn(self.mailname, r.stderr.decode())
        for prog, args in (("smtprelayd", ["-t"]), ("smtprelay", ["check-config"])):
            r = self.inst.run(prog, "-C", self.inst.conf, *args, env=self.env)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn(dotless, r.stderr.decode(), prog)
            self.assertIn(noroot, r.stderr.decode(), prog)

    def test_no_warnings_when_set_up(self):
        self.write(self.mailname, "vm.example.net\n")
        self.write(self.aliases, "root: ops@example.com\n")
        self.write_config()
        r = self.inst.run("smtprelayd", "-t", "-C", self.inst.conf, env=self.env)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertNotIn("no dot", r.stderr.decode())
        self.assertNotIn("root has no alias", r.stderr.decode())


if __name__ == "__main__":
    unittest.main()
