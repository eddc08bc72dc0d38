"""smtprelayd started the way the shipped systemd unit starts it: as an
unprivileged user holding only CAP_NET_BIND_SERVICE, NoNewPrivileges, logging
to stderr (its $JOURNAL_STREAM does not name that stderr; test_maillog.py
covers the journal case, where it logs through syslog), Type=notify readiness on
$NOTIFY_SOCKET, and the smarthost password from $CREDENTIALS_DIRECTORY
(LoadCredential=).  (No systemd runs here: setpriv does what systemd would.)"""
import os
import pwd
import shutil
import smtplib
import socket
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import testlib  # noqa: E402

PASSWORD = "Cr3dential-fr0m-systemd"


def free_privileged_port():
    for port in range(587, 1024):
        if port in (587, 631, 636, 993, 995):
            continue
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", port))
            return port
        except OSError:
            continue
        finally:
            s.close()
    raise unittest.SkipTest("no free port below 1024")


@unittest.skipUnless(os.geteuid() == 0 and shutil.which("setpriv"), "needs root and setpriv")
class ServiceTest(testlib.TestCase):
    def setUp(self):
        self.root = tempfile.mkdtemp(prefix="smtprelay-service-")
        self.addCleanup(shutil.rmtree, self.root, ignore_errors=True)
        os.chmod(self.root, 0o755)
        self.certs = testlib.make_certs(self.root)
        self.user = pwd.getpwnam("nobody")

    def test_runs_like_the_unit(self):
        fx = testlib.Smarthost(self.root, self.certs, [{"name": "sub", "mode": "starttls"}],
                               password=PASSWORD)
        self.addCleanup(fx.stop)
        spool = os.path.join(self.root, "spool")
        creds = os.path.join(self.root, "credentials")
        os.mkdir(creds, 0o500)
        with open(os.path.join(creds, "fx.secret"), "w") as f:
            f.write(PASSWORD + "\n")
        os.chmod(os.path.join(creds, "fx.secret"), 0o400)
        for p in (creds, os.path.join(creds, "fx.secret")):
            os.chown(p, self.user.pw_uid, self.user.pw_gid)
        os.makedirs(spool)
        os.chown(spool, self.user.pw_uid, self.user.pw_gid)
        port = free_privileged_port()
        conf = os.path.join(self.root, "smtprelay.conf")
        with open(conf, "w") as f:
            f.write('hostname = "svc.test"\nspool_dir = "%s"\nuser = "nobody"\n'
                    'listen = {"127.0.0.1:%d"}\nretry_min = 1\n'
                    'smarthost "fx" {\n host = "127.0.0.1"\n ports = {"%d/starttls"}\n'
                    ' username = "user"\n password_file = "fx.secret"\n tls_ca_file = "%s"\n}\n'
                    % (spool, port, fx.ports["sub"], os.path.join(self.certs, "ca.crt")))
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        notify_path = os.path.join(self.root, "notify")
        notify.bind(notify_path)
        os.chmod(notify_path, 0o666)
        self.addCleanup(notify.close)
        log = open(os.path.join(self.root, "daemon.log"), "w+b")
        self.addCleanup(log.close)
        env = dict(os.environ, JOURNAL_STREAM="8:12345", NOTIFY_SOCKET=notify_path,
                   CREDENTIALS_DIRECTORY=creds)
        env.pop("SMTPRELAY_CONF", None)
        cmd = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
               "--inh-caps=-all,+net_bind_service", "--ambient-caps=-all,+net_bind_service",
               "--bounding-set=-all,+net_bind_service", "--no-new-privs",
               os.path.join(testlib.BUILD, "smtprelayd"), "-C", conf]
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=log, env=env)

        def stop():
            if proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=15)
        self.addCleanup(stop)
        notify.settimeout(15)
        msg = notify.recv(4096).decode()
        self.assertIn("READY=1", msg)
        with smtplib.SMTP("127.0.0.1", port, timeout=15) as s:
            s.sendmail("app@svc.test", ["ops@example.com"], "Subject: via port %d\r\n\r\nhi\r\n" % port)
        m = fx.wait_messages(1)[0]
        self.assertEqual(m["rcpt_tos"], ["ops@example.com"])
        self.assertEqual(m["auth_user"], "user")
        st = os.stat(os.path.join(spool, "queue"))
        self.assertEqual(st.st_uid, self.user.pw_uid)
        proc.terminate()
        self.assertEqual(proc.wait(timeout=15), 0)
        log.seek(0)
        text = log.read().decode()
        self.assertIn("status=sent", text)
        self.assertNotIn(PASSWORD, text)
        self.assertIn("STOPPING=1", notify.recv(4096).decode())


if __name__ == "__main__":
    unittest.main(verbosity=2)
