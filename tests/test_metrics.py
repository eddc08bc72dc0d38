"""Metrics and status (README "Monitoring"), end to end: a scripted run through the real
daemon and test smarthost (3 delivered, 1 deferred, 1 bounced, one connection
refused on a port), then the numbers read back four ways -- `smtprelay
metrics`, GET /metrics on metrics_listen, metrics_textfile and `status
--json` -- parsed with Debian's prometheus_client parser, checked by
`promtool check metrics`, and scraped by a real Prometheus server.  Plus the
HTTP endpoint's refusals (404, 405, oversized headers, slow clients) while
delivery goes on."""
import http.client
import json
import os
import re
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import testlib  # noqa: E402
from test_listener import Daemon, free_port, wait_for  # noqa: E402

from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

PASSWORD = "M3trics-pw-n0t-logged"
FAMILIES = {
    "smtprelay_queue_messages": ("gauge", {"state"}),
    "smtprelay_queue_oldest_age_seconds": ("gauge", set()),
    "smtprelay_received_messages": ("counter", {"source"}),
    "smtprelay_delivered_recipients": ("counter", {"smarthost"}),
    "smtprelay_deferred_recipients": ("counter", {"smarthost", "reason"}),
    "smtprelay_bounced_recipients": ("counter", {"smarthost"}),
    "smtprelay_connection_failures": ("counter", {"smarthost", "port", "verdict"}),
    "smtprelay_tls_connections": ("counter", {"smarthost", "version"}),
    "smtprelay_delivery_duration_seconds": ("histogram", set()),
    "smtprelay_throttled": ("gauge", {"smarthost"}),
    "smtprelay_build_info": ("gauge", {"version"}),
}


def parse(text):
    """{(sample name, frozenset(labels)): value}, checking the families on the way."""
    samples, seen = {}, set()
    for fam in text_string_to_metric_families(text):
        seen.add(fam.name)
        kind, labels = FAMILIES[fam.name]
        assert fam.type == kind, (fam.name, fam.type)
        for s in fam.samples:
            own = set(s.labels) - ({"le"} if s.name.endswith("_bucket") else set())
            assert own == labels, (s.name, s.labels)
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    assert seen == set(FAMILIES), seen ^ set(FAMILIES)
    return samples


def value(samples, name, **labels):
    return samples[(name, frozenset(labels.items()))]


class MetricsTest(testlib.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.root = tempfile.mkdtemp(prefix="smtprelay-metrics-")
        cls.certs = testlib.make_certs(cls.root)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.root, ignore_errors=True)

    def smarthost(self, rules=None):
        fx = testlib.Smarthost(tempfile.mkdtemp(dir=self.root), self.certs,
                               [{"name": "sub", "mode": "starttls"}], rules, password=PASSWORD)
        self.addCleanup(fx.stop)
        return fx

    def daemon(self, fx, refused, extra=""):
        inst = self.new_instance()
        self.mport = free_port()
        self.textfile = os.path.join(inst.dir, "textfile", "smtprelay.prom")
        os.makedirs(os.path.dirname(self.textfile))
        body = ('retry_min = 3600\nretry_max = 3600\nmetrics_listen = "127.0.0.1:%d"\n'
                'metrics_textfile = "%s"\n%s\n'
                'smarthost "fx" {\n  host = "127.0.0.1"\n'
                '  ports = {"%d/starttls", "%d/starttls"}\n  max_connections = 1\n'
                '  username = "user"\n  password = "%s"\n  tls_ca_file = "%s"\n'
                '  connect_timeout = 2\n  command_timeout = 5\n}\n'
                % (self.mport, self.textfile, extra, refused, fx.ports["sub"], PASSWORD,
                   os.path.join(self.certs, "ca.crt")))
        d = Daemon(inst, body)
        self.addCleanup(d.stop_checked)
        d.start()
        return d

    def send(self, d, rcpt, *args):
        msg = b"From: alice@example.com\nSubject: metrics\n\nbody\n"
        r = d.inst.sendmail("-f", "alice@example.com", *args, rcpt, input=msg)
        self.assertEqual(r.returncode, 0, r.stderr)

    def admin(self, d, *args):
        return d.inst.run("smtprelay", "-C", d.inst.conf, *args)

    def http_get(self, path="/metrics"):
        with urllib.request.urlopen("http://127.0.0.1:%d%s" % (self.mport, path),
                                    timeout=10) as r:
            return r.status, r.headers.get("Content-Type"), r.read().decode()

    def scripted_run(self, d, fx):
        self.send(d, "later@example.com")		# the smarthost's first RCPT gets 451
        d.wait_log(r"to=<later@example\.com>.*status=deferred")
        self.send(d, "one@example.com")
        self.send(d, "two@example.com")
        with smtplib.SMTP("127.0.0.1", d.port, timeout=10) as s:
            s.sendmail("alice@example.com", ["three@example.com"],
                       b"From: alice@example.com\r\nSubject: smtp\r\n\r\nbody\r\n")
        fx.wait_messages(3)
        self.send(d, "bad@example.com", "-N", "never")	# bounced, no DSN to deliver
        d.wait_log(r"to=<bad@example\.com>.*status=bounced")
        wait_for(lambda: d.inst.area_files("queue") and len(d.inst.area_files("queue")) == 1,
                 15, "only the deferred message left")

    def check_values(self, s, refused):
        self.assertEqual(value(s, "smtprelay_delivered_recipients_total", smarthost="fx"), 3)
        self.assertEqual(value(s, "smtprelay_bounced_recipients_total", smarthost="fx"), 1)
        self.assertEqual(value(s, "smtprelay_deferred_recipients_total", smarthost="fx",
                               reason="reply"), 1)
        deferred = sum(v for (n, l), v in s.items()
                       if n == "smtprelay_deferred_recipients_total")
        self.assertEqual(deferred, 1)
        self.assertEqual(value(s, "smtprelay_connection_failures_total", smarthost="fx",
                               port=str(refused), verdict="refused"), 1)
        self.assertEqual(sum(v for (n, l), v in s.items()
                             if n == "smtprelay_connection_failures_total"), 1)
        self.assertEqual(value(s, "smtprelay_received_messages_total", source="sendmail"), 4)
        self.assertEqual(value(s, "smtprelay_received_messages_total", source="smtp"), 1)
        for state, n in (("deferred", 1), ("pending", 0), ("active", 0), ("maildrop", 0), ("held", 0)):
            self.assertEqual(value(s, "smtprelay_queue_messages", state=state), n, state)
        self.assertGreater(value(s, "smtprelay_queue_oldest_age_seconds"), 0)
        self.assertEqual(value(s, "smtprelay_delivery_duration_seconds_count"), 3)
        self.assertEqual(value(s, "smtprelay_delivery_duration_seconds_bucket", le="+Inf"), 3)
        self.assertGreaterEqual(value(s, "smtprelay_tls_connections_total", smarthost="fx",
                                      version="TLSv1.3"), 1)
        self.assertEqual(value(s, "smtprelay_throttled", smarthost="fx"), 0)
        self.assertEqual([l for (n, l) in s if n == "smtprelay_build_info"][0],
                         frozenset({("version", self.version)}))

    def check_status_json(self, d, s, refused):
        r = self.admin(d, "status", "--json")
        self.assertEqual(r.returncode, 0, r.stderr)
        j = json.loads(r.stdout)
        self.assertTrue(j["running"])
        self.assertEqual(j["received"], {"sendmail": 4, "smtp": 1})
        q = j["queue"]
        for state, n in q["messages"].items():
            self.assertEqual(n, value(s, "smtprelay_queue_messages", state=state), state)
        self.assertEqual(q["recipients"]["deferred"], 1)
        sh = [x for x in j["smarthosts"] if x["name"] == "fx"][0]
        self.assertEqual(sh["delivered_recipients"],
                         value(s, "smtprelay_delivered_recipients_total", smarthost="fx"))
        self.assertEqual(sh["bounced_recipients"],
                         value(s, "smtprelay_bounced_recipients_total", smarthost="fx"))
        for reason, n in sh["deferred_recipients"].items():
            self.assertEqual(n, value(s, "smtprelay_deferred_recipients_total", smarthost="fx",
                                      reason=reason), reason)
        self.assertEqual(sh["connection_failures"],
                         [{"port": refused, "verdict": "refused", "count": 1}])
        self.assertEqual(sh["port"], "%d/starttls" % d.fx_port)
        self.assertFalse(sh["throttled"])
        self.assertIn(str(refused), sh["last_error"])
        self.assertIsNotNone(sh["last_error_time"])
        self.assertEqual(j["delivery_duration_seconds"]["count"], 3)

    def promtool(self, text):
        r = subprocess.run(["promtool", "check", "metrics"], input=text.encode(),
                           capture_output=True, timeout=60)
        self.assertEqual((r.returncode, r.stdout + r.stderr), (0, b""))

    def test_scripted_run(self):
        fx = self.smarthost({"rcpt": {"bad@example.com": "550 5.1.1 no such user"},
                             "tempfail_rcpt_first": 1})
        refused = free_port()
        d = self.daemon(fx, refused)
        d.fx_port = fx.ports["sub"]
        self.version = self.admin(d, "-V").stdout.decode().split()[-1]
        self.scripted_run(d, fx)
        r = self.admin(d, "metrics")
        self.assertEqual(r.returncode, 0, r.stderr)
        text = r.stdout.decode()
        s = parse(text)
        self.check_values(s, refused)
        self.promtool(text)
        status, ctype, body = self.http_get()
        self.assertEqual((status, ctype), (200, "text/plain; version=0.0.4; charset=utf-8"))
        self.check_values(parse(body), refused)
        self.check_status_json(d, s, refused)
        # SIGHUP keeps every count and rewrites the textfile at once (by a
        # commit thread: the reload does not wait for it).
        os.unlink(self.textfile)
        d.proc.send_signal(signal.SIGHUP)
        d.wait_log(r"configuration reloaded")
        wait_for(lambda: os.path.exists(self.textfile), 10, "the textfile rewritten")
        with open(self.textfile) as f:
            self.check_values(parse(f.read()), refused)
        self.check_values(parse(self.admin(d, "metrics").stdout.decode()), refused)
        self.assertEqual([f for f in os.listdir(os.path.dirname(self.textfile))],
                         ["smtprelay.prom"])
        self.assertEqual(os.stat(self.textfile).st_mode & 0o777, 0o644)
        text = self.admin(d, "status").stdout.decode()
        self.assertIn("since start (recipients): 3 sent, 1 deferred, 1 bounced", text)
        self.assertIn("connection failures on port %d (refused): 1" % refused, text)
        self.assertIn("received since start: 4 from sendmail, 1 over SMTP", text)
        self.assertIn("  throttled: no\n", text)

    # ---- a real Prometheus server ----

    def test_prometheus_scrape(self):
        if not shutil.which("prometheus"):
            self.skipTest("prometheus is not installed (Debian package prometheus)")
        fx = self.smarthost()
        d = self.daemon(fx, free_port())
        self.send(d, "one@example.com")
        fx.wait_messages(1)
        base = tempfile.mkdtemp(dir=self.root)
        web = free_port()
        with open(os.path.join(base, "prometheus.yml"), "w") as f:
            f.write("global:\n  scrape_interval: 1s\nscrape_configs:\n"
                    "  - job_name: smtprelay\n    static_configs:\n"
                    "      - targets: ['127.0.0.1:%d']\n" % self.mport)
        with open(os.path.join(base, "prometheus.log"), "wb") as log:
            p = subprocess.Popen(["prometheus", "--config.file=" + os.path.join(base, "prometheus.yml"),
                                  "--storage.tsdb.path=" + os.path.join(base, "data"),
                                  "--web.listen-address=127.0.0.1:%d" % web],
                                 stdout=log, stderr=log, stdin=subprocess.DEVNULL, cwd=base)
        self.addCleanup(self.stop_proc, p)
        self.wait_ready(p, web)
        query = urllib.parse.quote('smtprelay_delivered_recipients_total{smarthost="fx"}')

        def scraped():
            if p.poll() is not None:
                raise AssertionError("prometheus exited %s" % p.returncode)
            try:
                with urllib.request.urlopen("http://127.0.0.1:%d/api/v1/query?query=%s"
                                            % (web, query), timeout=5) as r:
                    res = json.load(r)["data"]["result"]
            except OSError:
                return None
            return res and res
        res = wait_for(scraped, 30, "Prometheus to scrape smtprelay")
        self.assertEqual(res[0]["value"][1], "1")
        self.assertEqual(res[0]["metric"]["job"], "smtprelay")
        with urllib.request.urlopen("http://127.0.0.1:%d/api/v1/targets" % web, timeout=5) as r:
            target = json.load(r)["data"]["activeTargets"][0]
        self.assertEqual((target["health"], target["lastError"]), ("up", ""))

    def wait_ready(self, p, web, limit=60):
        """Skip (saying why) only when the server cannot start in time here."""
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            if p.poll() is not None:
                raise AssertionError("prometheus exited %s" % p.returncode)
            try:
                with urllib.request.urlopen("http://127.0.0.1:%d/-/ready" % web, timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        self.skipTest("prometheus did not become ready within %d s on this machine" % limit)

    @staticmethod
    def stop_proc(p):
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def test_readme_alert_rules(self):
        """The README's alert rules are valid and use the families served."""
        with open(os.path.join(testlib.SRC, "README.md")) as f:
            readme = f.read()
        start = readme.index("groups:\n")
        rules = os.path.join(self.root, "rules.yml")
        with open(rules, "w") as f:
            f.write(readme[start:readme.index("```", start)])
        r = subprocess.run(["promtool", "check", "rules", rules], capture_output=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        used = set(re.findall(r"\b(smtprelay_[a-z_]+)", readme[start:]))
        served = {n + ("_total" if k == "counter" else "") for n, (k, _) in FAMILIES.items()}
        self.assertLessEqual(used, served)

    # ---- the HTTP endpoint never disturbs delivery ----

    def raw(self, request, timeout=15):
        with socket.create_connection(("127.0.0.1", self.mport), timeout=timeout) as s:
            s.sendall(request)
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    return data
                data += chunk

    def test_http_refusals(self):
        fx = self.smarthost()
        d = self.daemon(fx, free_port())
        # The textfile is there from the start, not only after 15 s.
        wait_for(lambda: os.path.exists(self.textfile), 5, "metrics_textfile written at start")
        with open(self.textfile) as f:
            parse(f.read())
        conn = http.client.HTTPConnection("127.0.0.1", self.mport, timeout=10)
        conn.request("GET", "/")
        self.assertEqual(conn.getresponse().status, 404)
        conn.close()
        conn = http.client.HTTPConnection("127.0.0.1", self.mport, timeout=10)
        conn.request("POST", "/metrics", body=b"x")
        self.assertEqual(conn.getresponse().status, 405)
        conn.close()
        big = b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n"
        self.assertEqual(self.raw(big).split(b"\r\n")[0], b"HTTP/1.1 400 Bad Request")
        # A client that never finishes its request is dropped; meanwhile
        # mail flows and other scrapes are answered.
        slow = socket.create_connection(("127.0.0.1", self.mport), timeout=20)
        slow.sendall(b"GET /metr")
        t0 = time.monotonic()
        self.send(d, "during@example.com")
        fx.wait_messages(1)
        self.assertEqual(self.http_get()[0], 200)
        self.assertEqual(slow.recv(100), b"")		# closed by the server
        self.assertLess(time.monotonic() - t0, 15)
        slow.close()
        self.assertEqual(self.http_get()[0], 200)


if __name__ == "__main__":
    unittest.main()
