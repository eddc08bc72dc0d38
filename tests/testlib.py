"""Shared fixtures for smtprelay's integration tests (run by /usr/bin/python3).

Every test runs against binaries copied into an installed layout
(PREFIX/sbin/sendmail, PREFIX/bin/mailq -> sendmail, ...) and a private
instance: its own config and spool under a temporary directory.
"""
import os
import shutil
import subprocess
import tempfile
import unittest

BUILD = os.environ.get("top_builddir", os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))
SRC = os.environ.get("top_srcdir", BUILD)


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
    env = {"rcpt": []}
    pos = 0
    while True:
        nl = data.index(b"\n", pos)
        line = data[pos:nl].decode("utf-8", "replace")
        pos = nl + 1
        if line == QUEUE_END_LINE:
            break
        key, _, value = line.partition(" ")
        if key == "rcpt":
            env["rcpt"].append(value)
        else:
            env[key] = value
    return env, data[pos:]


QUEUE_END_LINE = "data"


class TestCase(unittest.TestCase):
    def new_instance(self, extra_config="", **kw):
        inst = Instance(extra_config, **kw)
        self.addCleanup(inst.cleanup)
        return inst
