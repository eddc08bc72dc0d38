"""Shared fixtures for smtprelay's integration tests (run by /usr/bin/python3).

Every test runs against binaries copied into an installed layout
(PREFIX/sbin/sendmail, PREFIX/bin/mailq -> sendmail, ...) and a private
instance: its own config and spool under a temporary directory.
"""
import base64
import glob
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import unittest

BUILD = os.environ.get("top_builddir", os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))
SRC = os.environ.get("top_srcdir", BUILD)

# Tests never depend on this machine's /etc/mailname or /etc/aliases (see
# conf/hostdefaults.h); those that test the defaults set their own files.
os.environ.setdefault("SMTPRELAY_MAILNAME_FILE", "/nonexistent/mailname")
os.environ.setdefault("SMTPRELAY_ALIASES_FILE", "/nonexistent/aliases")


def install_layout(prefix):
    """Copy the built programs into PREFIX as `make install` lays them out."""
    for d in ("sbin", "bin"):
        os.makedirs(os.path.join(prefix, d), exist_ok=True)
    for prog in ("sendmail", "smtprelayd", "smtprelay"):
        src = os.path.join(BUILD, prog)
        if os.path.exists(src):
            shutil.copy2(src, os.path.join(prefix, "sbin", prog))
    for link in ("mailq", "newaliases"):
        os.symlink(os.path.join(prefix, "sbin", "sendmail"), os.path.join(prefix, "bin", link))


class Instance:
    """A private smtprelay instance: config, spool, installed binaries."""

    def __init__(self, extra_config="", hostname="relay.test"):
        self.dir = tempfile.mkdtemp(prefix="smtprelay-test-")
        self.prefix = os.path.join(self.dir, "prefix")
        install_layout(self.prefix)
        self.spool = os.path.join(self.dir, "spool")
        self.conf = os.path.join(self.dir, "smtprelay.conf")
        self.hostname = hostname
        self.write_config(extra_config)

    def write_config(self, extra=""):
        with open(self.conf, "w") as f:
            f.write('hostname = "%s"\nspool_dir = "%s"\nlisten = {}\n%s\n'
                    % (self.hostname, self.spool, extra))

    def path(self, prog):
        for d in ("sbin", "bin"):
            p = os.path.join(self.prefix, d, prog)
            if os.path.exists(p):
                return p
        raise FileNotFoundError(prog)

    def run(self, prog, *args, input=b"", env=None, preexec_fn=None, timeout=60):
        e = dict(os.environ)
        e.pop("SMTPRELAY_CONF", None)
        if env:
            e.update(env)
        return subprocess.run([self.path(prog), *args], input=input, capture_output=True,
                              env=e, preexec_fn=preexec_fn, timeout=timeout)

    def sendmail(self, *args, input=b"", **kw):
        return self.run("sendmail", "-C", self.conf, *args, input=input, **kw)

    def area_files(self, area="maildrop"):
        d = os.path.join(self.spool, area)
        if not os.path.isdir(d):
            return []
        return sorted(f for f in os.listdir(d) if not f.startswith("tmp.") and not f.endswith(".state"))

    def read_message(self, qid, area="maildrop"):
        """Return (envelope dict, content bytes) of a queue file."""
        with open(os.path.join(self.spool, area, qid), "rb") as f:
            data = f.read()
        return parse_queue_file(data)

    def cleanup(self):
        shutil.rmtree(self.dir, ignore_errors=True)


def parse_queue_file(data):
    """Split a queue file into its envelope records and the content.

    The envelope header is text lines up to a "data" line (see queue/envelope.c)."""
    env = {"rcpt": [], "orcpt": []}
    pos = 0
    while True:
        nl = data.index(b"\n", pos)
        line = data[pos:nl].decode("utf-8", "replace")
        pos = nl + 1
        if line == QUEUE_END_LINE:
            break
        key, _, value = line.partition(" ")
        if key in ("rcpt", "orcpt"):
            env[key].append(value)
        else:
            env[key] = value
    return env, data[pos:]


QUEUE_END_LINE = "data"


class TestCase(unittest.TestCase):
    def new_instance(self, extra_config="", **kw):
        inst = Instance(extra_config, **kw)
        self.addCleanup(inst.cleanup)
        return inst


def make_certs(base):
    """A private test PKI (tests/mkcerts.sh) in BASE/certs; returns its path."""
    certs = os.path.join(base, "certs")
    subprocess.run(["sh", os.path.join(SRC, "tests", "mkcerts.sh"), certs], check=True,
                   stdout=subprocess.DEVNULL)
    return certs


def free_port():
    """A loopback port nobody listens on (connections to it are refused)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_for(pred, timeout=10.0, what="condition"):
    """Poll pred() until it returns a true value or the deadline passes."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for " + what)
        time.sleep(0.02)


def read_line(proc, deadline):
    """One line from a child's stdout, or RuntimeError at the deadline."""
    buf = b""
    while not buf.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([proc.stdout], [], [], left)[0]:
            raise RuntimeError("smarthost did not start")
        ch = os.read(proc.stdout.fileno(), 1)
        if not ch:
            raise RuntimeError("smarthost exited")
        buf += ch
    return buf.decode()


class Fixture:
    """A helper server (a Python script under tests/) started from a JSON spec;
    it prints one JSON line when it listens, and stops on SIGTERM."""

    def __init__(self, script, spec, spec_path):
        with open(spec_path, "w") as f:
            json.dump(spec, f)
        self.proc = subprocess.Popen(["/usr/bin/python3", os.path.join(SRC, "tests", script),
                                      spec_path], stdout=subprocess.PIPE)
        try:
            self.ready = json.loads(read_line(self.proc, time.monotonic() + 20))
        except Exception:
            self.stop()
            raise

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stdout.close()


class Smarthost(Fixture):
    """One tests/smarthost.py process with its own ports, rules and records."""

    def __init__(self, base, certs, ports, rules=None, name="fx", password=None, extra=None):
        self.out = os.path.join(base, name + "-out")
        spec = {"certs": certs, "outdir": self.out, "users": {"user": password or "secret"},
                "ports": ports, "rules": rules or {}}
        spec.update(extra or {})
        super().__init__("smarthost.py", spec, os.path.join(base, name + "-spec.json"))
        self.ports = self.ready["ports"]

    def events(self):
        path = os.path.join(self.out, "events.jsonl")
        if not os.path.exists(path):
            return []
        with open(path) as f:
            return [json.loads(line) for line in f if line.strip()]

    def messages(self):
        msgs = []
        for p in sorted(glob.glob(os.path.join(self.out, "[0-9]*.json"))):
            with open(p) as f:
                m = json.load(f)
            m["content"] = base64.b64decode(m["data"])
            msgs.append(m)
        return msgs

    def wait_messages(self, n, timeout=20):
        return wait_for(lambda: len(self.messages()) >= n and self.messages(), timeout,
                        "%d message(s) at the smarthost" % n)
