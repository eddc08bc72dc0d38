"""Sender-dependent smarthosts (smtprelay.conf(5) "senders") end to end: two real test
smarthosts that accept different credentials; mail is routed by envelope
sender (after from_address rewriting), fails over only among the sections
whose senders match, and -t refuses a configuration where some sender has
no section.  status, status --json and probe show each section's senders."""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import testlib  # noqa: E402
from test_listener import Daemon, free_port, wait_for  # noqa: E402

MAIN_PW = "Main-pw-0nly-f0r-main"
BILLING_PW = "B1lling-pw-0nly-f0r-billing"


class SendersTest(testlib.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.root = tempfile.mkdtemp(prefix="smtprelay-senders-")
        cls.certs = testlib.make_certs(cls.root)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.root, ignore_errors=True)

    def smarthost(self, name, user, password):
        fx = testlib.Smarthost(tempfile.mkdtemp(dir=self.root), self.certs,
                               [{"name": "sub", "mode": "starttls"}], name=name,
                               extra={"users": {user: password}})
        self.addCleanup(fx.stop)
        return fx

    def section(self, name, port, user, password, senders=None):
        s = ('smarthost "%s" {\n  host = "127.0.0.1"\n  ports = {"%d/starttls"}\n'
             '  username = "%s"\n  password = "%s"\n  tls_ca_file = "%s"\n'
             '  connect_timeout = 2\n  command_timeout = 5\n'
             % (name, port, user, password, os.path.join(self.certs, "ca.crt")))
        if senders:
            s += "  senders = {%s}\n" % ", ".join('"%s"' % p for p in senders)
        return s + "}\n"

    def daemon(self, body):
        d = Daemon(self.new_instance(), "retry_min = 3600\nretry_max = 3600\n" + body)
        self.addCleanup(d.stop_checked)
        d.start()
        return d

    def send(self, d, sender, rcpt):
        msg = b"Subject: from " + sender.encode() + b"\n\nbody\n"
        r = d.inst.sendmail("-f", sender, rcpt, input=msg)
        self.assertEqual(r.returncode, 0, r.stderr)

    def admin(self, d, *args):
        return d.inst.run("smtprelay", "-C", d.inst.conf, *args)

    def test_routed_by_sender_with_own_credentials(self):
        main = self.smarthost("main", "main", MAIN_PW)
        billing = self.smarthost("billing", "billing", BILLING_PW)
        d = self.daemon('from_address = "billing@example.com"\n'
                        + self.section("billing", billing.ports["sub"], "billing", BILLING_PW,
                                       ["billing@example.com", "*@*.billing.example"])
                        + self.section("main", main.ports["sub"], "main", MAIN_PW))
        self.send(d, "alice@example.com", "r1@example.net")
        self.send(d, "Billing@Example.com", "r2@example.net")
        self.send(d, "ops@eu.billing.example", "r3@example.net")
        self.send(d, "cron", "r4@example.net")		# local: becomes from_address
        self.send(d, "x@billing.example", "r5@example.net")	# "*.": subdomains only
        got_b = billing.wait_messages(3)
        got_m = main.wait_messages(2)
        self.assertEqual(sorted(m["rcpt_tos"][0] for m in got_b),
                         ["r2@example.net", "r3@example.net", "r4@example.net"])
        self.assertEqual(sorted(m["rcpt_tos"][0] for m in got_m),
                         ["r1@example.net", "r5@example.net"])
        self.assertEqual({m["auth_user"] for m in got_b}, {"billing"})
        self.assertEqual({m["auth_user"] for m in got_m}, {"main"})
        self.assertIn("billing@example.com", [m["mail_from"] for m in got_b])
        wait_for(lambda: not d.inst.area_files("queue"), 15, "empty queue")
        self.assertEqual(len(billing.messages()), 3)
        self.assertEqual(len(main.messages()), 2)
        text = self.admin(d, "status").stdout.decode()
        self.assertIn("  senders: billing@example.com, *@*.billing.example\n", text)
        self.assertIn("  senders: any not matched by another smarthost's senders\n", text)
        j = json.loads(self.admin(d, "status", "--json").stdout)
        by = {s["name"]: s for s in j["smarthosts"]}
        self.assertEqual(by["billing"]["senders"], ["billing@example.com", "*@*.billing.example"])
        self.assertIsNone(by["main"]["senders"])
        self.assertEqual(by["billing"]["delivered_recipients"], 3)
        self.assertEqual(by["main"]["delivered_recipients"], 2)
        r = self.admin(d, "probe")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("    serves senders: billing@example.com, *@*.billing.example\n",
                      r.stdout.decode())

    def test_failover_only_among_matching_sections(self):
        main = self.smarthost("main", "main", MAIN_PW)
        billing = self.smarthost("billing", "billing", BILLING_PW)
        down = free_port()
        d = self.daemon(self.section("billing1", down, "billing", BILLING_PW, ["billing@example.com"])
                        + self.section("main", main.ports["sub"], "main", MAIN_PW)
                        + self.section("billing2", billing.ports["sub"], "billing", BILLING_PW,
                                       ["billing@example.com"]))
        self.send(d, "billing@example.com", "r1@example.net")
        self.assertEqual(billing.wait_messages(1)[0]["rcpt_tos"], ["r1@example.net"])
        self.send(d, "alice@example.com", "r2@example.net")
        main.wait_messages(1)
        wait_for(lambda: not d.inst.area_files("queue"), 15, "empty queue")
        self.assertEqual([m["rcpt_tos"] for m in main.messages()], [["r2@example.net"]])

    def test_no_matching_section_up_defers(self):
        main = self.smarthost("main", "main", MAIN_PW)
        down = free_port()
        d = self.daemon(self.section("billing", down, "billing", BILLING_PW, ["billing@example.com"])
                        + self.section("main", main.ports["sub"], "main", MAIN_PW))
        self.send(d, "billing@example.com", "r1@example.net")
        d.wait_log(r"to=<r1@example\.net>, relay=none.*status=deferred \(.*:%d" % down)
        self.send(d, "alice@example.com", "r2@example.net")
        main.wait_messages(1)
        self.assertEqual([m["rcpt_tos"] for m in main.messages()], [["r2@example.net"]])
        self.assertEqual(len(d.inst.area_files("queue")), 1)

    def test_t_refuses_uncovered_senders(self):
        inst = self.new_instance(self.section("a", 587, "u", "p", ["*@example.org"])
                                 + self.section("b", 587, "u", "p", ["billing@example.com"]))
        r = inst.run("smtprelayd", "-t", "-C", inst.conf)
        self.assertEqual(r.returncode, 78, r.stderr)
        self.assertRegex(r.stderr.decode(), r"%s:\d+: smarthost \"b\": every smarthost has "
                         r"senders" % inst.conf)
        inst.write_config(self.section("a", 587, "u", "p", ["*@example.org"])
                          + self.section("b", 587, "u", "p", ["*@*"]))
        r = inst.run("smtprelayd", "-t", "-C", inst.conf)
        self.assertEqual(r.returncode, 0, r.stderr)


if __name__ == "__main__":
    unittest.main()
