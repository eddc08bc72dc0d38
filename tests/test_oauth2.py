"""OAuth2 end to end: the token manager (relay/oauth2.c) against a local
HTTPS token endpoint (tests/tokenserver.py), deliveries through
tests/relay-driver with XOAUTH2 / OAUTHBEARER against tests/smarthost.py,
password_command as the token source, and the device-code login through
tests/oauth2-login-driver.  No token, client secret or device code may appear
in any output."""
import json
import os
import pwd
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import testlib  # noqa: E402
from testlib import BUILD  # noqa: E402
from testlib import Fixture, Smarthost, free_port  # noqa: E402

RELAY = os.path.join(BUILD, "tests", "relay-driver")
LOGIN = os.path.join(BUILD, "tests", "oauth2-login-driver")
PROBE = os.path.join(BUILD, "smtprelay-probe")
ADMIN = os.path.join(BUILD, "smtprelay")
WRAPPER = os.environ.get("RELAY_WRAPPER", "").split()
CONTENT = b"From: a@example.org\r\nTo: b@example.net\r\nSubject: hi\r\n\r\nbody\r\n"
SECRET = "cs-Kq8dPz0vXw"
RT0 = "rt0-1//0gAbCdEfGhIjK"
AT = ["at1-ya29.Qw3rTy", "at2-ya29.As4dFg", "at3-ya29.Zx5cVb"]
DEVICE_CODE = "dc-GmRhmhcxhwAzkoEqiMEg"
ALL_SECRETS = [SECRET, RT0, DEVICE_CODE, "rt1-rotated-Lm9nOp", "rt-dev-Hj7kL0", "at-cmd-T0k3n",
               "at-wrong-Nope12", "rt-revoked-Zz9"] + AT


class TokenServer(Fixture):
    def __init__(self, base, certs, **spec):
        self.out = os.path.join(base, "ts-out")
        spec = dict({"certs": certs, "outdir": self.out, "client_id": "cid",
                     "client_secret": SECRET, "refresh_token": RT0, "access_tokens": AT,
                     "expires_in": 3600}, **spec)
        super().__init__("tokenserver.py", spec, os.path.join(base, "ts-spec.json"))
        self.port = self.ready["port"]

    def requests(self):
        path = os.path.join(self.out, "requests.jsonl")
        if not os.path.exists(path):
            return []
        with open(path) as f:
            return [json.loads(line) for line in f if line.strip()]


class OAuth2Test(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.root = tempfile.mkdtemp(prefix="smtprelay-oauth2-")
        cls.certs = testlib.make_certs(cls.root)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.root, ignore_errors=True)

    def setUp(self):
        self.dir = tempfile.mkdtemp(dir=self.root)
        self.spool = os.path.join(self.dir, "spool")
        self.conf = os.path.join(self.dir, "smtprelay.conf")
        self.rt_file = os.path.join(self.dir, "tokens", "m365.refresh")
        os.makedirs(os.path.dirname(self.rt_file), mode=0o700)
        self.write_secret(self.rt_file, RT0)
        self.secret_file = os.path.join(self.dir, "client.secret")
        self.write_secret(self.secret_file, SECRET)
        self.output = ""

    def tearDown(self):
        # No token, secret or device code in anything a program printed.
        for s in ALL_SECRETS:
            self.assertNotIn(s, self.output)

    def write_secret(self, path, value):
        with open(path, "w") as f:
            f.write(value + "\n")
        os.chmod(path, 0o600)

    def tokenserver(self, **spec):
        ts = TokenServer(self.dir, self.certs, **spec)
        self.addCleanup(ts.stop)
        return ts

    def smarthost(self, ports, tokens):
        fx = Smarthost(self.dir, self.certs, ports, extra={"tokens": {"user": tokens}})
        self.addCleanup(fx.stop)
        return fx

    def section(self, port, ts_port=None, auth="", source=None, extra=""):
        s = ('smarthost "m365" {\n  host = "127.0.0.1"\n  ports = {"%d/starttls"}\n'
             '  username = "user"\n  tls_ca_file = "%s"\n  connect_timeout = 2\n'
             '  command_timeout = 5\n%s%s' % (port, os.path.join(self.certs, "ca.crt"), auth, extra))
        if source:
            s += source
        else:
            s += ('  oauth2_token_url = "https://127.0.0.1:%d/token"\n  oauth2_client_id = "cid"\n'
                  '  oauth2_client_secret_file = "%s"\n  oauth2_refresh_token_file = "%s"\n'
                  '  oauth2_scope = "https://outlook.office.com/SMTP.Send offline_access"\n'
                  % (ts_port, self.secret_file, self.rt_file))
        return s + "}\n"

    def write_conf(self, section):
        with open(self.conf, "w") as f:
            f.write('hostname = "relay.test"\nspool_dir = "%s"\nuser = "%s"\nlisten = {}\n%s'
                    % (self.spool, pwd.getpwuid(os.geteuid()).pw_name, section))
        os.chmod(self.conf, 0o600)

    def inject(self, n=1):
        ids = []
        for _ in range(n):
            p = subprocess.run([RELAY, "--inject", self.spool, "sender@example.org", "b@example.net"],
                               input=CONTENT, capture_output=True, timeout=10)
            self.assertEqual(p.returncode, 0, p.stderr)
            ids.append(p.stdout.decode().strip())
        return ids

    def drive(self, *ids, opts=("-d",), limit=30):
        t0 = time.monotonic()
        p = subprocess.run([*WRAPPER, RELAY, *opts, self.conf, self.spool, *ids],
                           capture_output=True, timeout=limit * (3 if WRAPPER else 1))
        out, err = p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")
        self.output += out + err
        self.assertEqual(p.returncode, 0, err)
        res = {}
        for line in out.splitlines():
            qid, rcpt, state, reason = (line.split(" ", 3) + [""])[:4]
            res[qid] = (state, reason)
        return res, err, time.monotonic() - t0

    def tokens(self, *args, rc=0):
        p = subprocess.run([*WRAPPER, LOGIN, self.conf, "token", "m365", *map(str, args), "-d"],
                           capture_output=True, timeout=60)
        out, err = p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")
        self.output += out + err
        self.assertEqual(p.returncode, rc, err)
        return [line.split(" ", 2) for line in out.splitlines()], err

    def login(self, *args):
        t0 = time.monotonic()
        # The admin tool when built (`smtprelay -C CONF oauth2-login ...`), else the driver.
        cmd = ([ADMIN, "-C", self.conf] if os.path.exists(ADMIN) else [LOGIN, self.conf])
        p = subprocess.run([*WRAPPER, *cmd, "oauth2-login", *args], capture_output=True,
                           timeout=60)
        out, err = p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")
        self.output += out + err
        return p.returncode, out, err, time.monotonic() - t0

    def read_rt(self):
        with open(self.rt_file) as f:
            return f.read()

    # ---- the daemon itself ----

    def daemon(self, env=None):
        log = open(os.path.join(self.dir, "smtprelayd.log"), "w+b")
        self.addCleanup(log.close)
        proc = subprocess.Popen([os.path.join(BUILD, "smtprelayd"), "-d", "-C", self.conf],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log,
                                env=dict(os.environ, **(env or {})))

        def stop():
            if proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=15)
            log.seek(0)
            self.output += log.read().decode(errors="replace")
        self.addCleanup(stop)
        return proc, log

    def test_daemon_delivers_with_xoauth2(self):
        ts = self.tokenserver()
        fx = self.smarthost([{"name": "sub", "mode": "starttls"}], AT)
        self.write_conf(self.section(fx.ports["sub"], ts.port))
        proc, log = self.daemon()
        p = subprocess.run([os.path.join(BUILD, "sendmail"), "-C", self.conf, "b@example.net"],
                           input=b"Subject: oauth2\n\nhi\n", capture_output=True, timeout=10)
        self.assertEqual(p.returncode, 0, p.stderr)
        try:
            m = fx.wait_messages(1)[0]
        except AssertionError:
            log.seek(0)
            raise AssertionError("not delivered; smtprelayd's log:\n" + log.read().decode())
        self.assertEqual(m["rcpt_tos"], ["b@example.net"])
        self.assertEqual(len(ts.requests()), 1)
        proc.terminate()
        self.assertEqual(proc.wait(timeout=15), 0)

    def test_daemon_saves_rotated_token_off_the_loop(self):
        # Every fsync takes 0.5 s: the save (the file's, then the
        # directory's) holds the disk 1 s, and must not hold the listener.
        rt1 = "rt1-rotated-Lm9nOp"
        ts = self.tokenserver(rotate=[rt1])
        fx = self.smarthost([{"name": "sub", "mode": "starttls"}], AT)
        port = free_port()
        self.write_conf(self.section(fx.ports["sub"], ts.port))
        with open(self.conf) as f:
            text = f.read().replace("listen = {}", 'listen = {"127.0.0.1:%d"}' % port)
        with open(self.conf, "w") as f:
            f.write(text)
        proc, log = self.daemon(env={"LD_PRELOAD": os.path.join(BUILD, "tests", "fsshim.so"),
                                     "FSSHIM_DELAY_US": "500000",
                                     "ASAN_OPTIONS": os.environ.get("ASAN_OPTIONS", "") +
                                     ":verify_asan_link_order=0"})

        def logged(what):
            log.seek(0)
            return what in log.read().decode(errors="replace")
        testlib.wait_for(lambda: logged(" ready\n"), 15, "smtprelayd ready")
        p = subprocess.run([os.path.join(BUILD, "sendmail"), "-C", self.conf, "b@example.net"],
                           input=b"Subject: oauth2\n\nhi\n", capture_output=True, timeout=10)
        self.assertEqual(p.returncode, 0, p.stderr)
        testlib.wait_for(lambda: logged("new OAuth2 access token from"), 30, "a token")
        t0 = time.monotonic()
        with socket.create_connection(("127.0.0.1", port), timeout=30) as c:
            self.assertTrue(c.makefile("rb").readline().startswith(b"220"))
        greeting = time.monotonic() - t0
        testlib.wait_for(lambda: logged("rotated the refresh token; saved it to"), 30, "saved")
        self.assertLess(greeting, 0.3, "220 took %.3f s while the token was saved" % greeting)
        self.assertEqual(self.read_rt(), rt1 + "\n")
        fx.wait_messages(1)

    def test_daemon_checks_refresh_token_file_at_start(self):
        ts = self.tokenserver()
        self.write_conf(self.section(1, ts.port))
        os.unlink(self.rt_file)
        proc, log = self.daemon()
        self.assertEqual(proc.wait(timeout=15), 78)
        log.seek(0)
        self.assertIn(self.rt_file, log.read().decode(errors="replace"))

    # ---- delivery with built-in refresh ----

    def test_xoauth2_delivered_one_request(self):
        ts = self.tokenserver()
        fx = self.smarthost([{"name": "sub", "mode": "starttls"}], AT)
        self.write_conf(self.section(fx.ports["sub"], ts.port, extra="  max_connections = 3\n"))
        ids = self.inject(3)
        res, err, _ = self.drive(*ids)
        for qid in ids:
            self.assertEqual(res[qid][0], "delivered", err)
        reqs = ts.requests()
        # Three messages, parallel connections: one token request.
        self.assertEqual(len(reqs), 1, reqs)
        self.assertEqual(reqs[0]["content_type"], "application/x-www-form-urlencoded")
        self.assertEqual(reqs[0]["form"], {"grant_type": "refresh_token", "refresh_token": RT0,
                                           "client_id": "cid", "client_secret": SECRET,
                                           "scope": "https://outlook.office.com/SMTP.Send offline_access"})
        auths = [e for e in fx.events() if e["event"] == "auth"]
        self.assertTrue(auths)
        self.assertTrue(all(e["mech"] == "XOAUTH2" and e["ok"] and e["tls"] for e in auths))
        self.assertTrue(all(e["tag"] == AT[0][:8] for e in auths))
        self.assertEqual(len(fx.messages()), 3)
        self.assertIn("new OAuth2 access token from 127.0.0.1:%d, valid for 3600s" % ts.port, err)

    def test_coalesced_and_cached(self):
        ts = self.tokenserver()
        self.write_conf(self.section(free_port(), ts.port))
        lines, _ = self.tokens(5, 2, 0)
        self.assertEqual(len(lines), 10)
        self.assertTrue(all(l[1] == "ok" for l in lines), lines)
        self.assertEqual(len({l[2] for l in lines}), 1)
        self.assertEqual(len(ts.requests()), 1)

    def test_expiry_triggers_refresh(self):
        ts = self.tokenserver(expires_in=2)
        self.write_conf(self.section(free_port(), ts.port))
        lines, err = self.tokens(2, 3, 2200)
        self.assertTrue(all(l[1] == "ok" for l in lines), lines)
        # Each round after the 2 s lifetime: a new token, one request per round.
        self.assertEqual(len(ts.requests()), 3)
        rounds = {}
        for l in lines:
            rounds.setdefault(l[0], set()).add(l[2].split()[0])
        self.assertEqual(len(rounds["0"]), 1)
        self.assertNotEqual(rounds["0"], rounds["1"])
        self.assertNotEqual(rounds["1"], rounds["2"])

    def test_expiry_between_deliveries(self):
        # A token that is already stale (expires_in 0) is never reused: the
        # second batch of the same process refreshes again.
        ts = self.tokenserver(expires_in=0)
        fx = self.smarthost([{"name": "sub", "mode": "starttls"}], AT)
        self.write_conf(self.section(fx.ports["sub"], ts.port,
                                     extra="  max_messages_per_connection = 1\n"))
        a, b = self.inject(2)
        res, err, _ = self.drive(a, "--then", b, opts=("-d", "--idle", "0"))
        self.assertEqual(res[a][0], "delivered", err)
        self.assertEqual(res[b][0], "delivered", err)
        self.assertEqual(len(ts.requests()), 2)
        tags = [e["tag"] for e in fx.events() if e["event"] == "auth"]
        self.assertEqual(tags, [AT[0][:8], AT[1][:8]])

    def test_rotated_refresh_token_saved(self):
        rt1 = "rt1-rotated-Lm9nOp"
        ts = self.tokenserver(rotate=[rt1])
        fx = self.smarthost([{"name": "sub", "mode": "starttls"}], AT)
        self.write_conf(self.section(fx.ports["sub"], ts.port))
        (qid,) = self.inject()
        res, err, _ = self.drive(qid)
        self.assertEqual(res[qid][0], "delivered", err)
        self.assertEqual(self.read_rt(), rt1 + "\n")
        self.assertEqual(stat.S_IMODE(os.stat(self.rt_file).st_mode), 0o600)
        self.assertEqual([f for f in os.listdir(os.path.dirname(self.rt_file))], ["m365.refresh"])
        self.assertIn("rotated the refresh token; saved it to %s" % self.rt_file, err)
        # A new process starts from the saved token, which is now the only valid one.
        (qid,) = self.inject()
        res, err, _ = self.drive(qid)
        self.assertEqual(res[qid][0], "delivered", err)
        self.assertEqual([r["form"]["refresh_token"] for r in ts.requests()], [RT0, rt1])

    def test_revoked_refresh_token(self):
        ts = self.tokenserver()
        fx = self.smarthost([{"name": "sub", "mode": "starttls"}], AT)
        self.write_secret(self.rt_file, "rt-revoked-Zz9")
        self.write_conf(self.section(fx.ports["sub"], ts.port))
        (qid,) = self.inject()
        res, err, _ = self.drive(qid)
        state, reason = res[qid]
        self.assertEqual(state, "deferred")
        want = ("smarthost m365: the refresh token in %s was rejected (invalid_grant: AADSTS70008: "
                "The provided authorization code or refresh token has expired due to inactivity.): "
                "run `smtprelay oauth2-login m365` again" % self.rt_file)
        self.assertEqual(reason, want)
        self.assertIn(want, err)
        # Mail is deferred without bothering the smarthost.
        self.assertEqual([e for e in fx.events() if e["event"] in ("connect", "auth")], [])
        self.assertEqual(self.read_rt(), "rt-revoked-Zz9\n")

    def test_endpoint_failures_name_the_host(self):
        fx = self.smarthost([{"name": "sub", "mode": "starttls"}], AT)
        cases = []
        ts = self.tokenserver(fail="http500")
        cases.append((ts.port, "from 127.0.0.1:%d: HTTP 500" % ts.port))
        dead = free_port()
        cases.append((dead, "from 127.0.0.1:%d: connect to 127.0.0.1:%d: Connection refused"
                      % (dead, dead)))
        for port, want in cases:
            self.write_conf(self.section(fx.ports["sub"], port))
            (qid,) = self.inject()
            res, err, _ = self.drive(qid)
            self.assertEqual(res[qid][0], "deferred", err)
            self.assertEqual(res[qid][1], "smarthost m365: cannot obtain an OAuth2 access token " + want)
        self.assertEqual([e for e in fx.events() if e["event"] == "connect"], [])

    def test_endpoint_certificate_verified(self):
        ts = self.tokenserver(cert="untrusted")
        self.write_conf(self.section(free_port(), ts.port))
        lines, _ = self.tokens(1, 1, 0)
        self.assertEqual(lines[0][1], "error")
        self.assertIn("certificate of 127.0.0.1:%d is not trusted" % ts.port, lines[0][2])
        self.assertEqual(ts.requests(), [])

    def test_bad_json_and_invalid_client(self):
        ts = self.tokenserver(fail="badjson")
        self.write_conf(self.section(free_port(), ts.port))
        lines, _ = self.tokens(1, 1, 0)
        self.assertIn("the response is not valid JSON", lines[0][2])
        ts.stop()
        ts = self.tokenserver(fail="invalid_client")
        self.write_conf(self.section(free_port(), ts.port))
        lines, err = self.tokens(1, 1, 0)
        self.assertIn("the token endpoint refused the client (invalid_client: AADSTS7000215: "
                      "Invalid client secret provided.): check oauth2_client_id and "
                      "oauth2_client_secret_file", lines[0][2])

    # ---- the SASL exchange ----

    def test_wrong_token_535_with_json_challenge(self):
        ts = self.tokenserver(access_tokens=["at-wrong-Nope12"])
        fx = self.smarthost([{"name": "sub", "mode": "starttls"}], AT)
        self.write_conf(self.section(fx.ports["sub"], ts.port))
        (qid,) = self.inject()
        res, err, elapsed = self.drive(qid)
        state, reason = res[qid]
        self.assertEqual(state, "deferred")
        self.assertIn("SASL authentication failed (AUTH XOAUTH2): 535", reason)
        self.assertIn('"status":"401"', reason)
        self.assertLess(elapsed, 10)  # not hung waiting for a reply
        answers = [e["answer"] for e in fx.events() if e["event"] == "auth-error-answer"]
        self.assertEqual(answers, [""])
        self.assertIn("check username/password in the access token from oauth2_token_url", err)

    def test_oauthbearer_when_xoauth2_not_offered(self):
        ts = self.tokenserver()
        fx = self.smarthost([{"name": "sub", "mode": "starttls", "no_mechs": ["XOAUTH2"]}], AT)
        self.write_conf(self.section(fx.ports["sub"], ts.port))
        (qid,) = self.inject()
        res, err, _ = self.drive(qid)
        self.assertEqual(res[qid][0], "delivered", err)
        auths = [e for e in fx.events() if e["event"] == "auth"]
        self.assertEqual([(e["mech"], e["ok"]) for e in auths], [("OAUTHBEARER", True)])

    def test_password_command_token(self):
        token = "at-cmd-T0k3n"
        fx = self.smarthost([{"name": "sub", "mode": "starttls"}], [token])
        self.write_conf(self.section(fx.ports["sub"], auth='  auth = {"xoauth2"}\n',
                                     source='  password_command = "printf %%s %s"\n' % token))
        (qid,) = self.inject()
        res, err, _ = self.drive(qid)
        self.assertEqual(res[qid][0], "delivered", err)
        auths = [e for e in fx.events() if e["event"] == "auth"]
        self.assertEqual([(e["mech"], e["ok"], e["tag"]) for e in auths], [("XOAUTH2", True, token[:8])])

    # ---- smtprelay probe ----

    def probe(self, rc):
        p = subprocess.run([*WRAPPER, PROBE, "-C", self.conf], capture_output=True, timeout=60)
        out, err = p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")
        self.output += out + err
        self.assertEqual(p.returncode, rc, out + err)
        return out

    @unittest.skipUnless(os.path.exists(PROBE), "smtprelay-probe not built")
    def test_probe_token(self):
        ts = self.tokenserver()
        fx = self.smarthost([{"name": "sub", "mode": "starttls"}], AT)
        self.write_conf(self.section(fx.ports["sub"], ts.port))
        out = self.probe(0)
        self.assertRegex(out, r"m365 127\.0\.0\.1:%d/starttls: ok .*AUTH XOAUTH2 as user accepted"
                         % fx.ports["sub"])
        self.assertRegex(out, r"OAuth2 token: obtained from oauth2_token_url \(127\.0\.0\.1:%d\), "
                         r"valid for 3[56]\d\ds more" % ts.port)
        self.assertEqual(len(ts.requests()), 1)
        # A revoked refresh token: token-failed, naming what to do; no connection.
        self.write_secret(self.rt_file, "rt-revoked-Zz9")
        out = self.probe(1)
        self.assertIn("m365 127.0.0.1:%d/starttls: token-failed smarthost m365: the refresh token "
                      "in %s was rejected (invalid_grant: AADSTS70008" % (fx.ports["sub"], self.rt_file), out)
        self.assertIn("run `smtprelay oauth2-login m365` again", out)
        self.assertEqual(len([e for e in fx.events() if e["event"] == "connect"]), 1)

    # ---- device-code login ----

    def device_conf(self, ts):
        self.write_conf(self.section(free_port(), ts.port))
        os.unlink(self.rt_file)
        return "https://127.0.0.1:%d/devicecode" % ts.port

    def test_device_login_stores_refresh_token(self):
        ts = self.tokenserver(device={"device_code": DEVICE_CODE, "user_code": "WDJB-MJHT",
                                      "pending": 2, "interval": 1, "refresh_token": "rt-dev-Hj7kL0"})
        url = self.device_conf(ts)
        rc, out, err, elapsed = self.login("--device-url", url, "m365")
        self.assertEqual(rc, 0, err)
        self.assertIn("https://127.0.0.1:%d/verify" % ts.port, out)
        self.assertIn("WDJB-MJHT", out)
        self.assertIn("is stored in %s" % self.rt_file, out)
        self.assertEqual(self.read_rt(), "rt-dev-Hj7kL0\n")
        self.assertEqual(stat.S_IMODE(os.stat(self.rt_file).st_mode), 0o600)
        reqs = ts.requests()
        self.assertEqual([r["path"] for r in reqs], ["/devicecode", "/token", "/token", "/token"])
        self.assertEqual(reqs[0]["form"], {"client_id": "cid",
                                           "scope": "https://outlook.office.com/SMTP.Send offline_access"})
        self.assertEqual(reqs[1]["form"], {"grant_type": "urn:ietf:params:oauth:grant-type:device_code",
                                           "device_code": DEVICE_CODE, "client_id": "cid",
                                           "client_secret": SECRET})
        self.assertGreaterEqual(elapsed, 3)  # interval honoured: 3 polls 1 s apart
        # The daemon side then uses the new refresh token.
        lines, _ = self.tokens(1, 1, 0)
        self.assertEqual(lines[0][1], "ok")

    @unittest.skipUnless(os.geteuid() == 0, "needs root: the fresh-install path creates and chowns")
    def test_device_login_fresh_install_creates_state_dir(self):
        ts = self.tokenserver(device={"device_code": DEVICE_CODE, "user_code": "WDJB-MJHT",
                                      "interval": 1, "refresh_token": "rt-dev-Hj7kL0"})
        url = self.device_conf(ts)
        shutil.rmtree(os.path.dirname(self.rt_file))
        self.rt_file = os.path.join(self.dir, "var", "lib", "smtprelay", "m365.refresh")
        self.write_conf(self.section(free_port(), ts.port).replace(
            os.path.join(self.dir, "tokens", "m365.refresh"), self.rt_file))
        with open(self.conf) as f:
            text = f.read()
        with open(self.conf, "w") as f:
            f.write(text.replace('user = "%s"' % pwd.getpwuid(os.geteuid()).pw_name, 'user = "nobody"'))
        os.chmod(self.secret_file, 0o644)
        # -t names what the daemon would exit 78 for: the missing token and directory.
        p = subprocess.run([os.path.join(BUILD, "smtprelayd"), "-t", "-C", self.conf],
                           capture_output=True, timeout=30)
        self.assertEqual(p.returncode, 78, p.stderr)
        self.assertIn(self.rt_file, p.stderr.decode())
        rc, out, err, _ = self.login("--device-url", url, "m365")
        self.assertEqual(rc, 0, err)
        self.assertNotIn("as root", err)
        d = os.path.dirname(self.rt_file)
        self.assertIn("Created %s (owner nobody, mode 0700)" % d, out)
        nobody = pwd.getpwnam("nobody")
        for path, mode in ((d, 0o700), (self.rt_file, 0o600)):
            st = os.stat(path)
            self.assertEqual((st.st_uid, stat.S_IMODE(st.st_mode)), (nobody.pw_uid, mode), path)
        self.assertEqual(self.read_rt(), "rt-dev-Hj7kL0\n")
        # The service user cannot reach it through this test's 0700 directory:
        # -t says which directory; once open, -t is satisfied.
        p = subprocess.run([os.path.join(BUILD, "smtprelayd"), "-t", "-C", self.conf],
                           capture_output=True, timeout=30)
        self.assertEqual(p.returncode, 78, p.stderr)
        self.assertIn("%s: not readable by user nobody: directory " % self.rt_file, p.stderr.decode())
        os.chmod(self.root, 0o755)
        os.chmod(self.dir, 0o755)
        p = subprocess.run([os.path.join(BUILD, "smtprelayd"), "-t", "-C", self.conf],
                           capture_output=True, timeout=30)
        self.assertEqual(p.returncode, 0, p.stderr)

    def test_device_login_denied_and_usage(self):
        ts = self.tokenserver(device={"device_code": DEVICE_CODE, "deny": True, "interval": 1})
        url = self.device_conf(ts)
        rc, out, err, _ = self.login("--device-url", url, "m365")
        self.assertEqual(rc, 77, err)
        self.assertIn("the sign-in was declined (access_denied", err)
        self.assertFalse(os.path.exists(self.rt_file))
        # The test endpoint is not Microsoft's or Google's: --device-url is needed.
        rc, out, err, _ = self.login("m365")
        self.assertEqual(rc, 64)
        self.assertIn("give it with --device-url URL", err)
        rc, out, err, _ = self.login("nosuch")
        self.assertEqual(rc, 78)
        rc, out, err, _ = self.login("--bogus", "m365")
        self.assertEqual(rc, 64)

    def test_device_login_slow_down(self):
        ts = self.tokenserver(device={"device_code": DEVICE_CODE, "slow_down": 1, "interval": 1,
                                      "refresh_token": "rt-dev-Hj7kL0"})
        url = self.device_conf(ts)
        rc, out, err, elapsed = self.login("--device-url", url, "--timeout", "30", "m365")
        self.assertEqual(rc, 0, err)
        self.assertGreaterEqual(elapsed, 7)  # 1 s, then 1 + 5 s after slow_down
        self.assertEqual(self.read_rt(), "rt-dev-Hj7kL0\n")


if __name__ == "__main__":
    unittest.main()
