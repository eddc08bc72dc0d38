"""Never lose mail to a misconfiguration (README "Running it": fail closed on
credentials, flush, reply classes), with the real daemon and the real
test smarthost (tests/smarthost.py): a secret the service user cannot read
stops the start (also when started as that user, the way systemd does) and
-t / check-config / probe say why; 530, 535, 5.7.x before DATA and 5.4.5
defer with a configuration-error reason, pause the smarthost and never
produce a DSN; flush lifts every hold and delivers at once."""
import json
import os
import pwd
import grp
import shutil
import signal
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import testlib  # noqa: E402
from test_listener import Daemon, free_port, wait_for  # noqa: E402

PASSWORD = "F41l-cl0sed-secret"
ROOT_ONLY = ("not readable by user nobody (owner root, mode 0600): make it group %s, "
             "mode 0640, or use LoadCredential=")


def nobody_group():
    return grp.getgrgid(pwd.getpwnam("nobody").pw_gid).gr_name


class FailClosedTest(testlib.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.root = tempfile.mkdtemp(prefix="smtprelay-failclosed-")
        os.chmod(cls.root, 0o755)
        cls.certs = testlib.make_certs(cls.root)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.root, ignore_errors=True)

    def new_dir(self):
        d = tempfile.mkdtemp(dir=self.root)
        os.chmod(d, 0o755)
        return d

    def smarthost(self, rules=None, ports=None, extra=None):
        fx = testlib.Smarthost(self.new_dir(), self.certs,
                               ports or [{"name": "sub", "mode": "starttls"}], rules,
                               password=PASSWORD, extra=extra)
        self.addCleanup(fx.stop)
        return fx

    def section(self, port, auth):
        return ('retry_min = 3600\nretry_max = 7200\n'
                'smarthost "fx" {\n  host = "127.0.0.1"\n  ports = {"%s/starttls"}\n%s'
                '  tls_ca_file = "%s"\n  connect_timeout = 2\n  command_timeout = 5\n}\n'
                % (port, auth, os.path.join(self.certs, "ca.crt")))

    def daemon(self, body, start=True):
        inst = self.new_instance()
        d = Daemon(inst, body)
        self.addCleanup(d.stop_checked)
        if start:
            d.start()
        return d

    def send(self, d, rcpt="bob@example.com", sender="alice@example.com"):
        r = d.inst.sendmail("-f", sender, rcpt, input=b"Subject: t\n\nbody\n")
        self.assertEqual(r.returncode, 0, r.stderr)

    def admin(self, d, *args):
        p = subprocess.run([d.inst.path("smtprelay"), "-C", d.inst.conf, *args],
                           capture_output=True, timeout=60)
        return p.returncode, p.stdout.decode(), p.stderr.decode()

    # ---- fail closed on credentials ----

    def root_only_secret(self):
        path = os.path.join(self.new_dir(), "fx.secret")
        with open(path, "w") as f:
            f.write(PASSWORD + "\n")
        os.chmod(path, 0o600)
        return path

    def nobody_config(self, d, secret, port):
        body = self.section(port, '  username = "user"\n  password_file = "%s"\n' % secret)
        d.write_config(body)
        with open(d.inst.conf) as f:
            text = f.read()
        user = pwd.getpwuid(os.geteuid()).pw_name
        with open(d.inst.conf, "w") as f:
            f.write(text.replace('user = "%s"' % user, 'user = "nobody"'))
        os.chmod(d.inst.conf, 0o644)

    @unittest.skipUnless(os.geteuid() == 0, "needs root to make a root-only secret")
    def test_root_only_password_file_stops_everything(self):
        fx = self.smarthost()
        secret = self.root_only_secret()
        d = self.daemon("", start=False)
        self.nobody_config(d, secret, fx.ports["sub"])
        want = "%s: %s" % (secret, ROOT_ONLY % nobody_group())
        for args in (["-t"], []):
            p = d.inst.run("smtprelayd", "-d", "-C", d.inst.conf, *args, timeout=30)
            self.assertEqual(p.returncode, 78, p.stderr)
            self.assertIn(want, p.stderr.decode())
        for args in (["check-config"], ["probe"]):
            rc, out, err = self.admin(d, *args)
            self.assertEqual(rc, 78, out + err)
            self.assertIn(want, err)
            self.assertNotIn(": ok", out)
        self.assertEqual(fx.events(), [])

    @unittest.skipUnless(os.geteuid() == 0 and shutil.which("setpriv"), "needs root and setpriv")
    def test_started_as_service_user_fails_78(self):
        secret = self.root_only_secret()
        d = self.daemon("", start=False)
        os.chmod(d.inst.dir, 0o755)
        self.nobody_config(d, secret, free_port())
        cmd = ["setpriv", "--reuid=nobody", "--regid=%s" % nobody_group(), "--clear-groups",
               "--no-new-privs", d.inst.path("smtprelayd"), "-C", d.inst.conf]
        env = dict(os.environ, JOURNAL_STREAM="8:12345")
        env.pop("SMTPRELAY_CONF", None)
        p = subprocess.run(cmd, capture_output=True, timeout=30, env=env)
        self.assertEqual(p.returncode, 78, p.stderr)
        self.assertIn("%s: %s" % (secret, ROOT_ONLY % nobody_group()), p.stderr.decode())
        # -t as the service user: the same verdict (the unit's ExecStartPre).
        p = subprocess.run(cmd + ["-t"], capture_output=True, timeout=30, env=env)
        self.assertEqual(p.returncode, 78, p.stderr)

    def test_secret_unreadable_after_reload_defers_and_status_says_so(self):
        fx = self.smarthost()
        d = self.daemon(self.section(fx.ports["sub"],
                                     '  username = "user"\n  password = "%s"\n' % PASSWORD))
        missing = os.path.join(self.new_dir(), "gone.secret")
        d.write_config(self.section(fx.ports["sub"], '  username = "user"\n  password_file = '
                                    '"%s"\n' % missing).replace('smarthost "fx"', 'smarthost "fx2"'))
        d.proc.send_signal(signal.SIGHUP)
        d.wait_log(r"configuration reloaded")
        self.send(d)
        d.wait_log(r"to=<bob@example\.com>.*status=deferred \(configuration error: smarthost "
                   r"fx2: the secret for user user could not be read")
        self.assertEqual([e for e in fx.events() if e["event"] == "mail"], [],
                         "never sent without AUTH")
        rc, out, err = self.admin(d, "status")
        self.assertIn("CREDENTIALS UNREADABLE: %s cannot be read" % missing, out)

    def test_probe_no_credentials_server_demands_auth(self):
        fx = self.smarthost()
        d = self.daemon(self.section(fx.ports["sub"], ""), start=False)
        rc, out, err = self.admin(d, "probe")
        self.assertNotEqual(rc, 0, out)
        self.assertRegex(out, r"fx 127\.0\.0\.1:%d/starttls: auth-failed the server demands AUTH, "
                         r"but smarthost fx has no username: 530 5\.7\.0 Authentication required"
                         % fx.ports["sub"])
        self.assertIn("no usable port: mail will stay queued", out)
        self.assertEqual(fx.messages(), [])
        # A server that relays without AUTH: ok, and still nothing sent.
        open_fx = self.smarthost(ports=[{"name": "sub", "mode": "starttls", "auth": False}])
        d.write_config(self.section(open_fx.ports["sub"], ""))
        rc, out, err = self.admin(d, "probe")
        self.assertEqual(rc, 0, out + err)
        self.assertIn(": ok ", out)
        self.assertIn("MAIL FROM without AUTH: 250", out)
        self.assertEqual(open_fx.messages(), [])
        self.assertEqual([e for e in open_fx.events() if e["event"] not in
                          ("connect", "ehlo", "starttls", "mail", "quit", "disconnect")], [])

    @unittest.skipUnless(os.geteuid() == 0 and shutil.which("setpriv"), "needs root and setpriv")
    def test_probe_by_another_user_does_not_claim_queued(self):
        # Run by a user who is neither root nor the service user (root here),
        # probe cannot read the secret: it must not claim mail stays queued.
        fx = self.smarthost()
        secret = self.root_only_secret()
        d = self.daemon(self.section(fx.ports["sub"], '  username = "user"\n  password_file = '
                                     '"%s"\n' % secret), start=False)
        os.chmod(d.inst.dir, 0o755)
        os.chmod(d.inst.conf, 0o644)
        p = subprocess.run(["setpriv", "--reuid=nobody", "--regid=%s" % nobody_group(),
                            "--clear-groups", d.inst.path("smtprelay"), "-C", d.inst.conf, "probe"],
                           capture_output=True, timeout=60)
        out = p.stdout.decode()
        self.assertNotEqual(p.returncode, 0, out)
        self.assertIn("secrets not checked as user root", p.stderr.decode())
        self.assertIn("could not be read by this user", out)
        self.assertNotIn("mail will stay queued", out)
        self.assertIn("run smtprelay probe as root or as the service user", out)
        self.assertEqual(fx.events(), [])

    # ---- replies that blame our configuration ----

    def check_config_deferral(self, d, fx, reply_rx):
        self.send(d)
        line = d.wait_log(r"to=<bob@example\.com>.*status=deferred \(configuration error: "
                          r"[^\n]*%s" % reply_rx)
        self.assertTrue(line)
        d.wait_log(r"smarthost fx: configuration error: [^\n]*paused for")
        self.assertEqual(len(d.queue_ids()), 1, "no DSN queued")
        self.assertEqual(fx.messages(), [])
        self.assertNotIn("status=bounced", d.log())
        # A second message while paused: deferred without a new session.
        mails = len([e for e in fx.events() if e["event"] == "mail"])
        self.send(d, rcpt="carol@example.com")
        d.wait_log(r"to=<carol@example\.com>.*status=deferred \(delivery temporarily "
                   r"suspended: configuration error")
        self.assertEqual(len([e for e in fx.events() if e["event"] == "mail"]), mails)
        self.assertEqual(len(d.queue_ids()), 2)
        self.check_status_paused(d)

    def check_status_paused(self, d):
        rc, out, err = self.admin(d, "status")
        self.assertRegex(out, r"(?m)^  last error: [^\n]*configuration error")
        self.assertRegex(out, r"(?m)^  last error at: \d{4}-")
        self.assertRegex(out, r"(?m)^  held until: \d{4}-")

    def test_530_without_credentials_defers(self):
        fx = self.smarthost()
        d = self.daemon(self.section(fx.ports["sub"], ""))
        self.check_config_deferral(d, fx, r"530 5\.7\.0 Authentication required \(in reply to "
                                   r"MAIL FROM command\)")

    def test_535_defers(self):
        fx = self.smarthost()
        d = self.daemon(self.section(fx.ports["sub"],
                                     '  username = "user"\n  password = "wrong"\n'))
        self.send(d)
        d.wait_log(r"to=<bob@example\.com>.*status=deferred \([^\n]*535 [^\n]*configuration error")
        self.assertEqual(len(d.queue_ids()), 1)
        self.check_status_paused(d)
        self.assertNotIn("status=bounced", d.log())

    def replies_smarthost(self, replies):
        path = os.path.join(self.new_dir(), "replies.json")
        with open(path, "w") as f:
            json.dump(replies, f)
        return self.smarthost(extra={"replies_file": path}), path

    def test_quota_at_data_defers_then_flush_delivers(self):
        fx, replies = self.replies_smarthost({"data": "550 5.4.5 Daily user sending quota exceeded"})
        d = self.daemon(self.section(fx.ports["sub"],
                                     '  username = "user"\n  password = "%s"\n' % PASSWORD))
        self.check_config_deferral(d, fx, r"550 5\.4\.5 Daily user sending quota exceeded")
        os.unlink(replies)     # the provider lifted the quota
        rc, out, err = self.admin(d, "flush")
        self.assertEqual(rc, 0, err)
        d.wait_log(r"flush: smarthost fx eligible now")
        fx.wait_messages(2, timeout=15)
        wait_for(lambda: not d.queue_ids(), 15, "empty queue")

    def test_account_suspended_at_mail_defers(self):
        fx, _ = self.replies_smarthost({"mail": "554 5.7.0 Your account has been suspended"})
        d = self.daemon(self.section(fx.ports["sub"],
                                     '  username = "user"\n  password = "%s"\n' % PASSWORD))
        self.check_config_deferral(d, fx, r"554 5\.7\.0 Your account has been suspended")

    def test_other_5xx_still_bounces(self):
        fx, _ = self.replies_smarthost({"mail": "550 5.7.26 unauthenticated sender domain"})
        d = self.daemon(self.section(fx.ports["sub"],
                                     '  username = "user"\n  password = "%s"\n' % PASSWORD))
        self.send(d)
        d.wait_log(r"to=<bob@example\.com>.*status=bounced")

    # ---- nothing disappears silently ----

    def check_held(self, d, qid, rcpt):
        rc, out, err = self.admin(d, "queue", "--json")
        self.assertEqual(rc, 0, err)
        msg = [m for m in json.loads(out) if m["id"] == qid][0]
        self.assertEqual(msg["state"], "held")
        self.assertEqual(msg["recipients"][0]["state"], "failed")
        q = d.inst.run("mailq", "-C", d.inst.conf)
        self.assertIn(qid + "!", q.stdout.decode())
        self.assertIn(rcpt, q.stdout.decode())
        rc, out, err = self.admin(d, "status")
        self.assertRegex(out, r"(?m)^held: 1 message ")
        rc, out, err = self.admin(d, "delete", qid)
        self.assertEqual(rc, 0, out + err)
        wait_for(lambda: qid not in d.queue_ids(), 10, "held message deleted")

    def test_failed_dsn_is_held_and_visible(self):
        fx = self.smarthost(rules={"rcpt": {"bad@example.com": "550 5.1.1 no such user"}})
        d = self.daemon(self.section(fx.ports["sub"],
                                     '  username = "user"\n  password = "%s"\n' % PASSWORD))
        self.send(d, rcpt="bad@example.com", sender="<>")
        qid = d.wait_log(r"(\w+): held: failed and no DSN was sent")[0]
        self.check_held(d, qid, "bad@example.com")

    def test_suppressed_dsn_is_held(self):
        fx = self.smarthost(rules={"rcpt": {"bad@example.com": "550 5.1.1 no such user"}})
        d = self.daemon(self.section(fx.ports["sub"],
                                     '  username = "user"\n  password = "%s"\n' % PASSWORD))
        for _ in range(11):
            self.send(d, rcpt="bad@example.com", sender="storm@example.org")
        qid = d.wait_log(r"(\w+): sender <storm@example\.org> already got 10 DSNs this hour",
                         timeout=30)[0]
        d.wait_log(r"%s: held: failed and no DSN was sent" % qid)
        # The 10 DSNs go out (to storm@example.org via the smarthost); the 11th
        # failure stays queued on hold.
        wait_for(lambda: d.queue_ids() == [qid], 30, "only the held message left")
        self.check_held(d, qid, "bad@example.com")

    # ---- flush ----

    def test_flush_after_connect_failure_delivers_at_once(self):
        port = free_port()
        d = self.daemon(self.section(port, '  username = "user"\n  password = "%s"\n' % PASSWORD))
        self.send(d)
        d.wait_log(r"to=<bob@example\.com>.*status=deferred")
        fx = self.smarthost(ports=[{"name": "sub", "mode": "starttls", "port": port}])
        rc, out, err = self.admin(d, "flush")
        self.assertEqual(rc, 0, err)
        d.wait_log(r"flush: smarthost fx eligible now \(pause after a failure lifted")
        fx.wait_messages(1, timeout=10)
        wait_for(lambda: not d.queue_ids(), 10, "empty queue")
        self.assertNotIn("delivery temporarily suspended", d.log())

    def test_flush_lifts_throttling_hold(self):
        fx = self.smarthost(rules={"throttle_first": 1})
        d = self.daemon(self.section(fx.ports["sub"],
                                     '  username = "user"\n  password = "%s"\n' % PASSWORD))
        self.send(d)
        d.wait_log(r"smarthost fx throttling \(.*\): rate now .*holding for 15s")
        rc, out, err = self.admin(d, "flush")
        self.assertEqual(rc, 0, err)
        d.wait_log(r"flush: smarthost fx eligible now \(throttling hold lifted, sending rate "
                   r"back to rate_limit\)")
        # Well within the 15 s hold.
        fx.wait_messages(1, timeout=8)


if __name__ == "__main__":
    unittest.main(verbosity=2)
