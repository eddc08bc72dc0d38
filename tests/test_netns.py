"""The real daemon in private network namespaces.

Hosts without IPv6 (issue 9 item 3): the default `listen` in a namespace
whose IPv6 is disabled.

The default's [::1]:25 is skipped with one warning and mail still arrives on
127.0.0.1:25; an address the admin listed that cannot be bound stops the
start with exit 69 (smtprelayd(8)) naming it.  The namespace (unshare -n, as
root) owns its own port 25, so nothing on the host is touched.  A control run
with IPv6 enabled shows both addresses bound and no warning.

Header qualification (issue 9 item 6) is for local clients only, as
Postfix's local_header_rewrite_clients: a client on a non-loopback address
(10.9.9.1, added to lo in the namespace) gets its headers relayed unchanged.
"""
import os
import shutil
import signal
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import testlib  # noqa: E402
from testlib import wait_for  # noqa: E402

NETNS_SETUP = 'ip link set lo up && ip addr add 10.9.9.1/32 dev lo && ' \
              'sysctl -qw net.ipv6.conf.all.disable_ipv6=%d ' \
              'net.ipv6.conf.default.disable_ipv6=%d net.ipv6.conf.lo.disable_ipv6=%d && ' \
              'exec "$0" "$@"'


def netns_usable():
    if os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("ip"):
        return False
    p = subprocess.run(["unshare", "-n", "sh", "-c", NETNS_SETUP % (1, 1, 1), "true"],
                       capture_output=True)
    return p.returncode == 0


@unittest.skipUnless(netns_usable(), "needs root, unshare(1) and ip(8) for a private network namespace")
class NetnsTest(testlib.TestCase):
    def setUp(self):
        self.inst = self.new_instance()
        self.log_path = os.path.join(self.inst.dir, "smtprelayd.log")
        self.proc = None
        self.addCleanup(self.stop)

    def write_config(self, listen=None, extra=""):
        with open(self.inst.conf, "w") as f:
            f.write('hostname = "relay.test"\nspool_dir = "%s"\nuser = "root"\n%s%s'
                    % (self.inst.spool, "listen = {%s}\n" % listen if listen else "", extra))

    def log(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def start(self, ipv6_disabled=True):
        """smtprelayd -d in a new netns; returns the Popen (pid = the daemon)."""
        d = 1 if ipv6_disabled else 0
        env = dict(os.environ)
        env.pop("SMTPRELAY_CONF", None)
        env.pop("NOTIFY_SOCKET", None)
        with open(self.log_path, "ab") as err:
            self.proc = subprocess.Popen(
                ["unshare", "-n", "sh", "-c", NETNS_SETUP % (d, d, d),
                 self.inst.path("smtprelayd"), "-d", "-C", self.inst.conf],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err, env=env)
        return self.proc

    def wait_ready(self):
        def ready():
            if self.proc.poll() is not None:
                raise AssertionError("smtprelayd exited %s:\n%s" % (self.proc.returncode, self.log()))
            return " ready\n" in self.log()
        wait_for(ready, 15, "smtprelayd ready")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.assertEqual(self.proc.wait(15), 0, self.log())

    def in_netns(self, *cmd):
        return subprocess.run(["nsenter", "-t", str(self.proc.pid), "-n", *cmd],
                              capture_output=True, timeout=30)

    def submit(self, server, headers="From: a@example.org\\nTo: b@example.net\\n"):
        """A real SMTP client (smtplib: swaks lacks IPv6 here) inside the netns."""
        script = ("import smtplib\n"
                  "with smtplib.SMTP(%r, 25, local_hostname='client.test', timeout=10) as c:\n"
                  "    print(c.sendmail('a@example.org', ['b@example.net'], "
                  "'%sSubject: t\\n\\nhello\\n') == {})\n"
                  % (server, headers))
        return self.in_netns("/usr/bin/python3", "-c", script)

    def queued_head(self):
        ids = self.inst.area_files("queue")
        self.assertEqual(len(ids), 1, ids)
        _, content = self.inst.read_message(ids[0], "queue")
        os.unlink(os.path.join(self.inst.spool, "queue", ids[0]))
        return content.split(b"\r\n\r\n", 1)[0].decode()

    def test_default_listen_skips_ipv6_with_one_warning(self):
        self.write_config()
        self.start(ipv6_disabled=True)
        self.wait_ready()
        log = self.log()
        self.assertEqual(log.count("skipped"), 1, log)
        self.assertRegex(log, r"listen: default address \[::1\]:25 skipped: .*IPv6 unavailable")
        self.assertIn("listening on 127.0.0.1:25", log)
        self.assertNotIn("listening on [::1]:25", log)
        p = self.submit("127.0.0.1")
        self.assertEqual((p.returncode, p.stdout), (0, b"True\n"), p.stderr)
        wait_for(lambda: len(self.inst.area_files("queue")) == 1, 10, "message queued")
        self.stop()
        self.assertEqual(self.log().count("skipped"), 1)

    def test_listed_ipv6_address_stops_the_start(self):
        self.write_config('"127.0.0.1:25", "[::1]:25"')
        self.start(ipv6_disabled=True)
        self.assertEqual(self.proc.wait(15), 69, self.log())
        self.assertRegex(self.log(), r"cannot listen on \[::1\]:25: .*remove it .*listen")

    def test_control_ipv6_enabled_binds_both(self):
        self.write_config()
        self.start(ipv6_disabled=False)
        self.wait_ready()
        log = self.log()
        self.assertIn("listening on 127.0.0.1:25", log)
        self.assertIn("listening on [::1]:25", log)
        self.assertNotIn("skipped", log)
        p = self.submit("::1")
        self.assertEqual((p.returncode, p.stdout), (0, b"True\n"), p.stderr)
        wait_for(lambda: len(self.inst.area_files("queue")) == 1, 10, "message queued")

    def test_headers_qualified_for_local_clients_only(self):
        self.write_config('"127.0.0.1:25", "10.9.9.1:25"',
                          'allow_networks = {"127.0.0.0/8", "10.9.9.0/24"}\n')
        self.start(ipv6_disabled=True)
        self.wait_ready()
        bare = "From: root (Cron Daemon)\\nTo: root, Ops <ops>\\n"
        p = self.submit("127.0.0.1", bare)
        self.assertEqual((p.returncode, p.stdout), (0, b"True\n"), p.stderr)
        wait_for(lambda: len(self.inst.area_files("queue")) == 1, 10, "message queued")
        head = self.queued_head()
        self.assertIn("From: root@relay.test (Cron Daemon)\r\nTo: root@relay.test, Ops <ops@relay.test>", head)
        p = self.submit("10.9.9.1", bare)
        self.assertEqual((p.returncode, p.stdout), (0, b"True\n"), p.stderr)
        wait_for(lambda: len(self.inst.area_files("queue")) == 1, 10, "message queued")
        head = self.queued_head()
        self.assertIn("(unknown [10.9.9.1])", head)
        self.assertIn("From: root (Cron Daemon)\r\nTo: root, Ops <ops>\r\n", head)


if __name__ == "__main__":
    unittest.main()
