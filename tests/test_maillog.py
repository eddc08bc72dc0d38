"""Logs the admin's tools count (smtprelayd(8) "LOGGING"): the real daemon logs through
syslog(3) into a datagram socket standing in for /dev/log (a private mount
namespace); the datagrams, written out as /var/log/mail.log, are summed by
Debian's real pflogsumm and logwatch's postfix service, and the counts must
be exactly what the scripted run did."""
import os
import pwd
import re
import shutil
import smtplib
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import testlib  # noqa: E402
from testlib import free_port, wait_for  # noqa: E402

PFLOGSUMM = "/usr/sbin/pflogsumm"
LOGWATCH_POSTFIX = "/usr/share/logwatch/scripts/services/postfix"
DEVLOG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "private-devlog.sh")
PRI = re.compile(r"^<(\d+)>(\w{3} [ \d]\d \d\d:\d\d:\d\d) (.*)$", re.S)
LOG_MAIL = 2
# What smtprelayd(8) tells the admin to put in /etc/logwatch/conf/services/postfix.conf.
LOGWATCH_CONF = ('$postfix_Syslog_Name = smtprelay\n$postfix_Enable_Long_Queue_Ids = Yes\n'
                 '*OnlyService = "smtprelay(?:/\\w+)?"\n')


def can_private_dev():
    if os.geteuid() != 0 or not shutil.which("unshare"):
        return False
    return subprocess.run(["unshare", "-m", "--propagation", "private", "true"]).returncode == 0


class SyslogSink:
    """A unix datagram socket receiving what syslog(3) sends to /dev/log."""

    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        os.chmod(path, 0o666)
        self.datagrams = []
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while True:
            try:
                data = self.sock.recv(65536)
            except OSError:
                return
            with self.lock:
                self.datagrams.append(data.decode("utf-8", "replace"))

    def records(self):
        """(facility, severity, timestamp, 'tag[pid]: message') per datagram."""
        out = []
        with self.lock:
            grams = list(self.datagrams)
        for g in grams:
            m = PRI.match(g)
            if not m:
                raise AssertionError("not a syslog(3) datagram: %r" % g)
            pri = int(m.group(1))
            out.append((pri >> 3, pri & 7, m.group(2), m.group(3).rstrip("\n")))
        return out

    def text(self):
        return "\n".join(r[3] for r in self.records())

    def mail_log(self, host="testhost"):
        """What rsyslog writes to /var/log/mail.log from these datagrams."""
        return "".join("%s %s %s\n" % (ts, host, line) for _, _, ts, line in self.records())

    def close(self):
        self.sock.close()


@unittest.skipUnless(can_private_dev(), "needs root and unshare -m for a private /dev/log")
@unittest.skipUnless(os.path.exists(PFLOGSUMM) and os.path.exists(LOGWATCH_POSTFIX),
                     "needs Debian's pflogsumm and logwatch (tools/install-deps)")
class MailLogTest(testlib.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="smtprelay-maillog-")
        self.addCleanup(shutil.rmtree, self.dir, ignore_errors=True)
        self.certs = testlib.make_certs(self.dir)
        self.sink = SyslogSink(os.path.join(self.dir, "devlog.sock"))
        self.addCleanup(self.sink.close)
        self.fx = testlib.Smarthost(self.dir, self.certs, [{"name": "sub", "mode": "starttls"}],
                                    {"rcpt": {"bad@example.com": "550 5.1.1 no such user"},
                                     "tempfail_rcpt_first": 1}, password="pw")
        self.addCleanup(self.fx.stop)
        self.inst = self.new_instance()
        self.port = free_port()
        with open(self.inst.conf, "w") as f:
            f.write('hostname = "relay.test"\nspool_dir = "%s"\nuser = "%s"\n'
                    'listen = {"127.0.0.1:%d"}\nretry_min = 1\nretry_max = 2\n'
                    'admin_address = "e@example.com"\n'
                    'smarthost "fx" {\n  host = "127.0.0.1"\n  ports = {"%d/starttls"}\n'
                    '  username = "user"\n  password = "pw"\n  tls_ca_file = "%s"\n}\n'
                    % (self.inst.spool, pwd.getpwuid(os.geteuid()).pw_name, self.port,
                       self.fx.ports["sub"], os.path.join(self.certs, "ca.crt")))

    def start_daemon(self, *args, journal_stream=False):
        """smtprelayd in a private /dev/log; its stderr goes to self.err_path.
        journal_stream: $JOURNAL_STREAM names that file, as systemd does."""
        env = dict(os.environ)
        for k in ("JOURNAL_STREAM", "SMTPRELAY_CONF", "NOTIFY_SOCKET"):
            env.pop(k, None)
        self.err_path = os.path.join(self.dir, "stderr")
        err = open(self.err_path, "wb")
        self.addCleanup(err.close)
        if journal_stream:
            st = os.fstat(err.fileno())
            env["JOURNAL_STREAM"] = "%d:%d" % (st.st_dev, st.st_ino)
        self.proc = subprocess.Popen(
            ["unshare", "-m", "--propagation", "private", "/bin/sh", DEVLOG, self.sink.path,
             os.path.join(self.dir, "hostdev"), self.inst.path("smtprelayd"), *args,
             "-C", self.inst.conf],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err, env=env)
        self.addCleanup(self.stop_daemon)
        wait_for(lambda: self.proc.poll() is not None or " ready" in self.sink.text() + self.stderr(),
                 15, "smtprelayd ready")
        if self.proc.poll() is not None:
            self.fail("smtprelayd exited %s: %s" % (self.proc.returncode, self.stderr()))

    def stderr(self):
        with open(self.err_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def stop_daemon(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(15)

    def wait_log(self, pattern, count=1, timeout=30):
        rx = re.compile(pattern, re.M)
        wait_for(lambda: len(rx.findall(self.sink.text())) >= count, timeout,
                 "%d x /%s/ in syslog:\n%s" % (count, pattern, self.sink.text()))

    def submit_smtp(self, rcpt, subject):
        with smtplib.SMTP("127.0.0.1", self.port, timeout=10) as s:
            s.sendmail("alice@example.com", [rcpt],
                       "From: alice@example.com\r\nTo: %s\r\nSubject: %s\r\n"
                       "Message-ID: <%s@client.example>\r\n\r\nbody\r\n" % (rcpt, subject, subject))

    def sendmail(self, *args, body):
        r = self.inst.sendmail(*args, input=body)
        self.assertEqual(r.returncode, 0, r.stderr)

    def scripted_run(self):
        """5 messages received (3 sendmail, 2 SMTP), 6 deliveries (5 + the
        DSN), 1 deferral (the smarthost's first RCPT gets 451), 1 bounce."""
        self.start_daemon()
        self.sendmail("-f", "alice@example.com", "a@example.com",
                      body=b"From: alice@example.com\nSubject: one\n\nbody\n")
        self.sendmail("-f", "alice@example.com", "b@example.com", "c@example.com",
                      body=b"From: alice@example.com\nSubject: two\n\nbody\n")
        self.sendmail("-t", "-i", body=b"To: root\nSubject: three\n\nbody\n")
        self.submit_smtp("d@example.com", "four")
        self.submit_smtp("bad@example.com", "five")
        self.wait_log(r"status=sent", count=6)
        self.wait_log(r": removed$", count=6)
        self.stop_daemon()
        self.assertEqual(self.proc.returncode, 0)

    def test_pflogsumm_and_logwatch_count_the_run(self):
        self.scripted_run()
        log = self.sink.mail_log()
        with open(os.path.join(self.dir, "mail.log"), "w") as f:
            f.write(log)
        self.check_lines(log)
        self.check_severities()
        self.check_pflogsumm(log)
        self.check_logwatch(log)
        if shutil.which("logwatch"):
            self.check_logwatch_as_installed(log)

    def test_under_systemd_syslog_not_stderr(self):
        """systemd's $JOURNAL_STREAM names our stderr: the lines go through
        syslog (journald keeps each tag and severity), stderr stays empty."""
        self.start_daemon(journal_stream=True)
        self.stop_daemon()
        self.assertEqual(self.proc.returncode, 0)
        self.assertRegex(self.sink.text(), r"(?m)^smtprelay/master\[\d+\]: smtprelayd \S+ ready$")
        self.assertEqual(self.stderr(), "")

    def test_debug_under_systemd_has_priority_prefixes(self):
        """-d writes the syslog lines to stderr with sd-daemon <N> prefixes."""
        self.start_daemon("-d", journal_stream=True)
        self.stop_daemon()
        err = self.stderr()
        self.assertEqual(self.sink.records(), [])
        self.assertRegex(err, r"(?m)^<6>smtprelay/master\[%d\]: smtprelayd \S+ ready$" % self.proc.pid)
        self.assertRegex(err, r"(?m)^<4>smtprelay/master\[\d+\]: warning: .*user is root")
        for line in err.splitlines():
            self.assertRegex(line, r"^<[3467]>smtprelay/(master|smtpd|pickup|cleanup|qmgr|smtp|bounce)\[")

    def check_lines(self, log):
        tags = set(re.findall(r"^\S+ +\d+ \S+ testhost (smtprelay/\w+)\[\d+\]: ", log, re.M))
        self.assertEqual(tags, {"smtprelay/" + r for r in
                                ("master", "smtpd", "pickup", "cleanup", "qmgr", "smtp", "bounce")}, log)
        # every message, whatever its source, has its queue-active line: 5 + the DSN
        self.assertEqual(len(re.findall(r"smtprelay/qmgr\[\d+\]: \w+: from=<[^>]*>, size=\d+, "
                                        r"nrcpt=\d+ \(queue active\)$", log, re.M)), 6, log)
        self.assertEqual(len(re.findall(r"smtprelay/pickup\[\d+\]: \w+: uid=\d+ from=<", log)), 3, log)
        self.assertEqual(len(re.findall(r"smtprelay/smtpd\[\d+\]: \w+: client=localhost\[127\.0\.0\.1\]$",
                                        log, re.M)), 2, log)
        self.assertEqual(len(re.findall(r"smtprelay/smtpd\[\d+\]: disconnect from localhost\[127\.0\.0\.1\]$",
                                        log, re.M)), 2, log)
        self.assertRegex(log, r"smtprelay/smtp\[\d+\]: \w+: to=<e@example\.com>, "
                         r"orig_to=<root@relay\.test>, relay=127\.0\.0\.1\[127\.0\.0\.1\]:\d+, .*status=sent")
        self.assertRegex(log, r"smtprelay/cleanup\[\d+\]: \w+: message-id=<four@client\.example>")
        self.assertRegex(log, r"smtprelay/bounce\[\d+\]: \w+: sender non-delivery notification: \w+")
        self.assertRegex(log, r"smtprelay/smtp\[\d+\]: Verified TLS connection established to "
                         r"127\.0\.0\.1\[127\.0\.0\.1\]:%d: TLSv1\.3 with cipher \S+ \(\d+/\d+ bits\)"
                         % self.fx.ports["sub"])
        for line in re.findall(r"^.*status=.*$", log, re.M):
            self.assertRegex(line, r"smtprelay/smtp\[\d+\]: [0-9B-DF-HJ-NP-TV-Zb-df-hj-np-tv-z]{18}: "
                             r"to=<[^>]+>, (orig_to=<[^>]+>, )?relay=[^,]+, delay=[\d.]+, delays=[\d.]+/[\d.]+/[\d.]+/[\d.]+, "
                             r"dsn=[245]\.\d\.\d+, status=(sent|deferred|bounced) \(.*\)$")

    def check_severities(self):
        recs = self.sink.records()
        self.assertEqual({r[0] for r in recs}, {LOG_MAIL})
        # what `journalctl -p warning` would show: warnings and errors, nothing else
        for fac, sev, _, line in recs:
            text = line.split(": ", 1)[1]
            if sev <= 3:
                self.assertTrue(text.startswith("error: "), line)
            elif sev == 4:
                self.assertTrue(text.startswith("warning: "), line)
            else:
                self.assertEqual(sev, 6, line)
                self.assertFalse(text.startswith(("warning: ", "error: ")), line)
        self.assertTrue(any(sev == 4 for _, sev, _, _ in recs), "no warning in the run (user root)")

    def check_pflogsumm(self, log):
        p = subprocess.run([PFLOGSUMM, "--syslog-name=smtprelay"], input=log.encode(),
                           capture_output=True, timeout=60)
        out = p.stdout.decode()
        self.assertEqual(p.returncode, 0, p.stderr)
        totals = dict((m.group(2), int(m.group(1)))
                      for m in re.finditer(r"^\s+(\d+)\s+(received|delivered|deferred|bounced)\b", out, re.M))
        self.assertEqual(totals, {"received": 5, "delivered": 6, "deferred": 1, "bounced": 1}, out)
        self.assertRegex(out, r"deferred\s+\(1\s+deferrals\)")

    def check_logwatch(self, log):
        env = dict(os.environ, LOGWATCH_DETAIL_LEVEL="10", postfix_Syslog_Name="smtprelay",
                   postfix_Enable_Long_Queue_Ids="1")
        p = subprocess.run(["perl", LOGWATCH_POSTFIX], input=log.encode(), capture_output=True,
                           env=env, timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.check_logwatch_counts(p.stdout.decode())

    def check_logwatch_as_installed(self, log):
        """logwatch itself, reading mail.log, configured as smtprelayd(8) says
        (its /etc/logwatch replaced in a private mount namespace)."""
        etc = os.path.join(self.dir, "etc-logwatch")
        logs = os.path.join(self.dir, "log")
        os.makedirs(os.path.join(etc, "conf", "services"))
        os.makedirs(logs)
        with open(os.path.join(logs, "mail.log"), "w") as f:
            f.write(log)
        with open(os.path.join(etc, "conf", "logwatch.conf"), "w") as f:
            f.write("LogDir = %s\nTmpDir = %s\n" % (logs, self.dir))
        with open(os.path.join(etc, "conf", "services", "postfix.conf"), "w") as f:
            f.write(LOGWATCH_CONF)
        p = subprocess.run(["unshare", "-m", "--propagation", "private", "/bin/sh", "-ec",
                            'mount --bind "$1" /etc/logwatch; exec logwatch --service postfix '
                            '--range All --detail High --output stdout', "sh", etc],
                           capture_output=True, timeout=120)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.check_logwatch_counts(p.stdout.decode())

    def check_logwatch_counts(self, out):
        summary = out.split("****** Detail")[0]
        counts = dict((m.group(2), int(m.group(1))) for m in
                      re.finditer(r"^\s+(\d+)\s+(Accepted|Sent via SMTP|Deferred|Bounced \(\w+\))\s+\S+$",
                                  summary, re.M))
        # "local": logwatch calls a bounce from relay 127.0.0.1 local
        self.assertEqual(counts, {"Accepted": 5, "Sent via SMTP": 6, "Deferred": 1,
                                  "Bounced (local)": 1}, out)
        # every line about a message was understood: only daemon life-cycle lines are left
        unmatched = out.split("**Unmatched Entries**")[-1] if "**Unmatched Entries**" in out else ""
        self.assertNotRegex(unmatched, r"\]: \w{18}: ", out)


if __name__ == "__main__":
    unittest.main()
