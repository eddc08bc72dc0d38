"""sendmail confined with NoNewPrivileges (setgid ignored) by a caller not in
the config's group, while the system config is 0640 (README "Who may use which config"): the front
end runs on the defaults and the daemon applies its configuration, so what
reaches the real smarthost is exactly what the privileged path sends.

The system config path and the default spool are compiled in; each confined
run gets them in a private mount namespace (unshare -m): a tmpfs over the
install prefix with this test's config and spool bound where the front end
looks."""
import array
import email
import email.policy
import os
import re
import shutil
import socket
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import testlib  # noqa: E402
import test_daemon  # noqa: E402


def build_paths():
    """prefix, system config and default spool as the build compiled them."""
    v = {}
    with open(os.path.join(testlib.BUILD, "Makefile")) as f:
        for line in f:
            m = re.match(r"^(prefix|exec_prefix|sysconfdir|localstatedir|spooldir) = (.*)$", line)
            if m:
                v[m.group(1)] = m.group(2).strip()

    def expand(s):
        return re.sub(r"\$\{(\w+)\}", lambda m: expand(v[m.group(1)]), s)
    return (expand(v["prefix"]), os.path.join(expand(v["sysconfdir"]), "smtprelay.conf"),
            expand(v["spooldir"]))


PREFIX, SYSCONF, SPOOLDIR = build_paths()
NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
# Stands in for the system paths: the prefix becomes a private tmpfs.
NAMESPACE = r'''
set -e
mount -t tmpfs -o mode=755 smtprelay-test "$1"
mkdir -p "$(dirname "$2")" "$4"
: > "$2"
mount --bind "$3" "$2"
mount --bind "$5" "$4"
shift 5
exec "$@"
'''


def usable():
    if os.geteuid() != 0 or not shutil.which("setpriv") or not shutil.which("unshare"):
        return False
    if PREFIX in ("/", "/usr") or not SYSCONF.startswith(PREFIX + "/") or \
            not SPOOLDIR.startswith(PREFIX + "/"):
        return False
    return subprocess.run(["unshare", "-m", "--propagation", "private", "true"]).returncode == 0


@unittest.skipUnless(usable(), "needs root, setpriv, unshare -m and a build prefix other than / or /usr")
class NoConfigTest(testlib.TestCase):
    # test_daemon's fixtures (a subclass would run its tests again).
    _base = test_daemon.DaemonTest.__dict__
    setUpClass, tearDownClass = _base["setUpClass"], _base["tearDownClass"]
    smarthost, new_dir, config = _base["smarthost"], _base["new_dir"], _base["config"]
    daemon, check_logs = _base["daemon"], _base["check_logs"]

    def setup_daemon(self, extra=""):
        fx = self.smarthost()
        d = self.daemon(self.config(fx.ports["sub"], extra))
        for p in (self.root, os.path.dirname(d.inst.dir), d.inst.dir, d.inst.prefix,
                  os.path.join(d.inst.prefix, "sbin"), os.path.join(d.inst.prefix, "bin")):
            os.chmod(p, 0o755)
        # As installed (issue 9): 0640, a group the caller is not in.
        os.chown(d.inst.conf, 0, 0)
        os.chmod(d.inst.conf, 0o640)
        # The setgid front end as installed; NoNewPrivileges makes it plain.
        os.chown(d.inst.path("sendmail"), 0, 0)
        os.chmod(d.inst.path("sendmail"), 0o2755)
        os.chmod(os.path.join(d.inst.spool, "maildrop"), 0o3770)
        return fx, d

    def run_as(self, d, creds, args, input, prog="sendmail"):
        env = dict(os.environ)
        env.pop("SMTPRELAY_CONF", None)
        cmd = ["unshare", "-m", "--propagation", "private", "/bin/sh", "-c", NAMESPACE, "sh",
               PREFIX, SYSCONF, d.inst.conf, SPOOLDIR, d.inst.spool,
               *creds, d.inst.path(prog), *args]
        return subprocess.run(cmd, input=input, capture_output=True, env=env, timeout=60)

    def confined(self, d, *args, input=b"", prog="sendmail"):
        """No group, NoNewPrivileges: the config is unreadable."""
        return self.run_as(d, NOBODY + ["--no-new-privs"], args, input, prog)

    def privileged(self, d, *args, input=b""):
        """The same user through the setgid path (the config's group here)."""
        return self.run_as(d, NOBODY, args, input)

    def outcome(self, m):
        """What must match: envelope and headers, with per-message values masked."""
        msg = email.message_from_bytes(m["content"], policy=email.policy.compat32)
        headers = []
        for k, v in msg.items():
            v = re.sub(r"\s+", " ", v)
            if k.lower() == "received":
                v = re.sub(r" id \w+;.*", " id ID", v)
            elif k.lower() == "date":
                v = "DATE"
            elif k.lower() == "message-id":
                v = re.sub(r"<[^@]*@", "<ID@", v)
            headers.append((k, v))
        return (m["mail_from"], m["mail_options"], sorted(m["rcpt_tos"]), headers,
                msg.get_payload())

    def both_ways(self, fx, d, args, input):
        r = self.confined(d, *args, input=input)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stderr, b"")         # warnings only with -v
        a = fx.wait_messages(1)[0]
        self.assertEqual(d.inst.area_files("maildrop"), [])
        r = self.privileged(d, *args, input=input)
        self.assertEqual(r.returncode, 0, r.stderr)
        b = fx.wait_messages(2)[1]
        self.assertEqual(self.outcome(a), self.outcome(b))
        return a

    def test_local_recipient_through_aliases_and_admin_address(self):
        fx, d = self.setup_daemon('admin_address = "ops@example.com"\n'
                                  'aliases {\n  root = "boss@example.com, www-data"\n}\n')
        a = self.both_ways(fx, d, ["-F", "Cron Daemon", "-V", "envid-42", "-N", "failure,delay",
                                   "root", "cron@localhost", "alice@relay.test"],
                           b"Subject: cron output\n\nall good\n")
        self.assertEqual(sorted(a["rcpt_tos"]), ["boss@example.com", "ops@example.com"])
        self.assertEqual(a["mail_from"], "nobody@relay.test")
        self.assertIn(b"From: Cron Daemon <nobody@relay.test>\r\n", a["content"])
        self.assertRegex(a["content"].decode(), r"Message-ID: <[\w.]+@relay\.test>")

    def test_extract_bare_headers_with_from_address(self):
        fx, d = self.setup_daemon('from_address = "noreply@example.com"\n'
                                  'aliases {\n  root = "boss@example.com"\n}\n')
        msg = b"To: root\nCc: ann@example.com, www-data\nBcc: hidden@example.com\n" \
              b"From: www-data\nSubject: php\n\nbody\n"
        a = self.both_ways(fx, d, ["-t", "-i"], msg)
        self.assertEqual(sorted(a["rcpt_tos"]),
                         ["ann@example.com", "boss@example.com", "hidden@example.com",
                          "www-data@relay.test"])
        self.assertEqual(a["mail_from"], "noreply@example.com")
        text = a["content"].decode()
        self.assertIn("To: root@relay.test\r\n", text)
        self.assertIn("Cc: ann@example.com, www-data@relay.test\r\n", text)
        self.assertIn("From: www-data@relay.test\r\n", text)
        self.assertNotIn("hidden", text)

    def test_rewrite_from_header(self):
        fx, d = self.setup_daemon('from_address = "noreply@example.com"\n'
                                  'rewrite_from_header = true\n')
        a = self.both_ways(fx, d, ["-f", "www-data", "bob@example.com"],
                           b"From: www-data\nSubject: x\n\nbody\n")
        self.assertEqual(a["mail_from"], "noreply@example.com")
        self.assertIn(b"From: noreply@example.com", a["content"])

    def test_bs_session(self):
        fx, d = self.setup_daemon('from_address = "noreply@example.com"\n'
                                  'aliases {\n  root = "boss@example.com"\n}\n')
        session = (b"EHLO app\r\nMAIL FROM:<www-data>\r\nRCPT TO:<root>\r\n"
                   b"DATA\r\nTo: root\r\nSubject: symfony\r\n\r\nhi\r\n.\r\nQUIT\r\n")
        r = self.confined(d, "-bs", input=session)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertRegex(r.stdout.decode(), r"250 2\.0\.0 Ok: queued as \w+")
        a = fx.wait_messages(1)[0]
        r = self.privileged(d, "-bs", input=session)
        self.assertEqual(r.returncode, 0, r.stderr)
        b = fx.wait_messages(2)[1]
        self.assertEqual(self.outcome(a), self.outcome(b))
        self.assertEqual(a["rcpt_tos"], ["boss@example.com"])
        self.assertEqual(a["mail_from"], "noreply@example.com")
        self.assertIn(b"To: root@relay.test\r\n", a["content"])

    def test_oversize_refused_like_the_privileged_path(self):
        fx, d = self.setup_daemon("max_message_size = 2000\n")
        big = b"Subject: big\n\n" + (b"x" * 70 + b"\n") * 100
        ref = self.privileged(d, "bob@example.com", input=big)
        self.assertEqual(ref.returncode, 65, ref.stderr)
        r = self.confined(d, "bob@example.com", input=big)
        self.assertEqual(r.returncode, 65, r.stderr)
        self.assertEqual(r.stderr, ref.stderr)
        self.assertIn(b"max_message_size", r.stderr)
        session = (b"EHLO app\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<bob@example.com>\r\n"
                   b"DATA\r\n" + big.replace(b"\n", b"\r\n") + b".\r\nQUIT\r\n")
        r = self.confined(d, "-bs", input=session)
        self.assertRegex(r.stdout.decode(), r"552 5\.3\.4 message size exceeds")
        self.assertEqual(d.queue_ids(), [])
        self.assertEqual(fx.messages(), [])

    def test_daemon_down_is_temporary(self):
        fx, d = self.setup_daemon()
        self.assertEqual(d.stop(), 0)
        r = self.confined(d, "bob@example.com", input=b"x\n")
        self.assertEqual(r.returncode, 75, r.stderr)
        self.assertIn(b"smtprelayd does not answer", r.stderr)

    def test_other_modes(self):
        fx, d = self.setup_daemon('aliases {\n  root = "boss@example.com"\n}\n')
        # Only the system config falls back: one named by -C is still fatal.
        r = self.confined(d, "-C", SYSCONF, "bob@example.com", input=b"x\n")
        self.assertEqual(r.returncode, 78, r.stderr)
        self.assertIn(b"Permission denied", r.stderr)
        r = self.confined(d, "-bi")
        self.assertEqual(r.returncode, 77, r.stderr)
        self.assertIn(b"add the user to group", r.stderr)
        r = self.confined(d, "-bv", "root", "bob@example.com")
        self.assertEqual(r.returncode, 77, r.stderr)
        self.assertRegex(r.stdout.decode(), r"^root -> error: resolved by smtprelayd .*group")
        self.assertIn("\nbob@example.com -> bob@example.com\n", r.stdout.decode())
        r = self.confined(d, "-v", "bob@example.com", input=b"x\n")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(b"not readable by uid", r.stderr)
        self.assertNotIn(b"has no dot", r.stderr)   # about the defaults, not the config
        fx.wait_messages(1)
        r = self.confined(d, "-bp")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(b"Mail queue is empty", r.stdout)
        r = self.confined(d, "-q")
        self.assertIn(r.returncode, (0, 69), r.stderr)
        if r.returncode:
            self.assertIn(b"group", r.stderr)


def record(rcpts=("bob@example.com",), opts="0 1 1 0 0 0 0", sender="app", extra=b""):
    head = "SMTPRELAY-SUBMIT 1\nopts %s\norigin sendmail\nsender %s\nfullname \nenvid \n" \
        "rcpts %d\n" % (opts, sender, len(rcpts))
    head += "".join("rcpt 0 %s \n" % r for r in rcpts)
    return head.encode() + b"data\n" + extra + b"Subject: raw\n\nhello\n"


class RawRecordTest(testlib.TestCase):
    """The daemon's side alone: a record is untrusted input (daemon/rawpickup.c)."""
    _base = test_daemon.DaemonTest.__dict__
    setUpClass, tearDownClass = _base["setUpClass"], _base["tearDownClass"]
    daemon, check_logs = _base["daemon"], _base["check_logs"]

    def hand_over(self, d, data):
        fd = os.memfd_create("test-record")
        try:
            os.write(fd, data)
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(10)
                s.connect(os.path.join(d.inst.spool, "public", "submit"))
                s.sendmsg([b"submit\n"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                            array.array("i", [fd]))])
                return s.recv(600).decode()
        finally:
            os.close(fd)

    def test_valid_record_is_submitted_with_the_daemons_config(self):
        d = self.daemon('admin_address = "ops@example.com"\n')
        data = record(rcpts=("root", "bob@example.com"), opts="0 1 1 0 0 2 0")
        data = data.replace(b"envid \n", b"envid env-id-7\n").replace(b"rcpt 0 bob", b"rcpt 6 bob")
        reply = self.hand_over(d, data)
        self.assertRegex(reply, r"^ok \w+\n$")
        env, content = d.inst.read_message(reply.split()[1].strip(), "queue")
        self.assertEqual(sorted(r.split()[-1] for r in env["rcpt"]),
                         ["bob@example.com", "ops@example.com"])
        self.assertEqual(env["sender"], "app@relay.test")
        self.assertEqual(env["uid"], str(os.getuid()))
        self.assertEqual((env["envid"], env["ret"]), ("env-id-7", "hdrs"))
        self.assertIn("6 bob@example.com", env["rcpt"])
        self.assertIn(b"From: app@relay.test\r\n", content)

    def test_malformed_records_are_refused(self):
        d = self.daemon("")
        good = record()
        bad = [
            (good.replace(b"SUBMIT 1", b"SUBMIT 2"), "554 5.6.0 unsupported SMTPRELAY-SUBMIT version"),
            (record(opts="0 1 2 0 0 0 0"), "malformed"),
            (record(opts="0 1 1 0 0 0 16"), "malformed"),
            (good.replace(b"rcpts 1", b"rcpts 100001"), "malformed"),
            (good.replace(b"rcpts 1", b"rcpts 2"), "malformed"),     # count lies
            (good.replace(b"rcpt 0 bob@example.com \n", b"rcpt 0 bob@example.com\n"), "malformed"),
            (good.replace(b"bob@", b"b%ZZob@"), "malformed"),
            (good.replace(b"bob@", b"b%00ob@"), "malformed"),
            (good.replace(b"origin sendmail", b"origin " + b"x" * 5000), "malformed"),
            (good.replace(b"\ndata\n", b"\n"), "malformed"),
            (good.replace(b"envid \n", b"envid a%20b\n"), "malformed"),         # not -V's
            (good.replace(b"envid \n", b"envid " + b"e" * 101 + b"\n"), "malformed"),
            (record(rcpts=("a<b@example.com",)), "501 5.1.3 bad recipient address syntax"),
            (record(rcpts=()), "554 5.5.1 no recipients"),
            # The daemon does the resolving: bounded as on the listener.
            (record(rcpts=["u%d@example.com" % i for i in range(1001)]),
             "452 4.5.3 too many recipients: more than 1000 (max_recipients)"),
            (record(rcpts=(), opts="1 1 1 0 0 0 0",
                    extra=b"To: " + b", ".join(b"u%d@example.com" % i for i in range(1001)) + b"\n"),
             "452 4.5.3 too many recipients"),
            (record(extra=b"Subject: broken\n" + b"X" * 2000 + b"\n"), None),
        ]
        for data, want in bad:
            reply = self.hand_over(d, data)
            if want is None:    # an over-long header line: taken as body, as always
                self.assertTrue(reply.startswith("ok "), reply)
                continue
            self.assertTrue(reply.startswith("error "), (data[:80], reply))
            self.assertIn(want, reply)
            self.assertRegex(reply, r"\(sendmail exit 6[4-9]\)\n$")
        self.assertEqual(len(d.queue_ids()), 1)
        d.wait_log(r"message handed over by uid \d+ refused: 554 5\.6\.0 malformed")


if __name__ == "__main__":
    unittest.main(verbosity=2)
