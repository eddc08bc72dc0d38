"""sendmail front end, end to end through the installed-layout binaries."""
import os
import re
import resource
import signal
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import testlib  # noqa: E402

MSG = b"Subject: hello\nTo: someone@example.com\n\nbody line\n"


class SendmailBasics(testlib.TestCase):
    def test_queue_and_mailq(self):
        inst = self.new_instance()
        r = inst.sendmail("root", input=b"hi\n")
        self.assertEqual(r.returncode, 0, r.stderr)
        ids = inst.area_files()
        self.assertEqual(len(ids), 1)
        q = inst.run("mailq", "-C", inst.conf)
        self.assertEqual(q.returncode, 0, q.stderr)
        out = q.stdout.decode()
        self.assertIn("-Queue ID-  --Size-- ----Arrival Time---- -Sender/Recipient-------", out)
        self.assertIn(ids[0], out)
        self.assertIn("root@relay.test", out)
        self.assertRegex(out, r"\n-- \d+ Kbytes in 1 Request\.\n$")

    def test_empty_queue(self):
        inst = self.new_instance()
        q = inst.run("mailq", "-C", inst.conf)
        self.assertEqual(q.returncode, 73)  # no spool yet: say so, don't pretend
        self.assertIn(b"No such file or directory", q.stderr)
        os.makedirs(os.path.join(inst.spool, "maildrop"))
        q = inst.run("mailq", "-C", inst.conf)
        self.assertEqual(q.returncode, 0, q.stderr)
        self.assertEqual(q.stdout, b"Mail queue is empty\n")
        q = inst.sendmail("-bp")
        self.assertEqual(q.stdout, b"Mail queue is empty\n")

    def test_envelope_and_headers_added(self):
        inst = self.new_instance()
        r = inst.sendmail("-f", "alice@example.org", "-F", "Alice Liddell", "bob@example.net",
                          input=b"Subject: x\n\nbody\n")
        self.assertEqual(r.returncode, 0, r.stderr)
        env, content = inst.read_message(inst.area_files()[0])
        text = content.decode()
        self.assertIn("alice@example.org", env["sender"])
        self.assertTrue(any("bob@example.net" in x for x in env["rcpt"]))
        self.assertRegex(text, r"(?m)^Date: \w{3}, \d{1,2} \w{3} \d{4} \d\d:\d\d:\d\d [+-]\d{4}\r$")
        self.assertRegex(text, r"(?m)^Message-ID: <[^@>]+@relay\.test>\r$")
        self.assertRegex(text, r'(?m)^From: "?Alice Liddell"? <alice@example\.org>\r$')
        self.assertRegex(text, r"(?m)^Received: by relay\.test \(smtprelay, from userid \d+\)")
        self.assertNotIn("\n", text.replace("\r\n", ""))  # CRLF only

    def test_warnings_only_with_v(self):
        inst = self.new_instance('smarthost "s" {\n host = "smtp.example.com"\n'
                                 ' username = "u"\n password = "inline-secret"\n}\n')
        os.chmod(inst.conf, 0o644)
        r = inst.sendmail("root", input=b"x\n")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stderr, b"")  # cron mails whatever sendmail prints
        r = inst.sendmail("-v", "root", input=b"x\n")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(b"readable by others", r.stderr)
        self.assertNotIn(b"inline-secret", r.stderr)

    def test_existing_headers_kept(self):
        inst = self.new_instance()
        msg = (b"From: Me <me@example.org>\nDate: Mon, 1 Jan 2024 00:00:00 +0000\n"
               b"Message-ID: <abc@example.org>\nSubject: s\n\nb\n")
        r = inst.sendmail("x@example.com", input=msg)
        self.assertEqual(r.returncode, 0, r.stderr)
        _, content = inst.read_message(inst.area_files()[0])
        self.assertEqual(content.count(b"\r\nFrom: "), 1)
        self.assertEqual(content.count(b"Date: "), 1)
        self.assertEqual(content.count(b"Message-ID: "), 1)


class SendmailExitCodes(testlib.TestCase):
    def test_unknown_flag(self):
        inst = self.new_instance()
        r = inst.sendmail("-Z", "root", input=b"x\n")
        self.assertEqual(r.returncode, 64)
        self.assertIn(b"-Z", r.stderr)
        self.assertEqual(inst.area_files(), [])

    def test_bad_option_values(self):
        inst = self.new_instance()
        for args in (["-N", "sometimes", "root"], ["-R", "body", "root"], ["-B", "9BIT", "root"],
                     ["-bz", "root"], ["root", "-f"]):
            r = inst.sendmail(*args, input=b"x\n")
            self.assertEqual(r.returncode, 64, args)
        self.assertEqual(inst.area_files(), [])

    def test_no_recipients(self):
        inst = self.new_instance()
        r = inst.sendmail(input=b"x\n")
        self.assertEqual(r.returncode, 67)
        r = inst.sendmail("-t", input=b"Subject: no rcpt\n\nx\n")
        self.assertEqual(r.returncode, 67)
        self.assertEqual(inst.area_files(), [])

    def test_bad_config(self):
        inst = self.new_instance("max_recipients = \"lots\"\n")
        r = inst.sendmail("root", input=b"x\n")
        self.assertEqual(r.returncode, 78)
        self.assertRegex(r.stderr.decode(), re.escape(inst.conf) + r":4: ")

    def test_bad_recipient(self):
        inst = self.new_instance()
        r = inst.sendmail("bad address@@example.com", input=b"x\n")
        self.assertEqual(r.returncode, 64)
        self.assertEqual(inst.area_files(), [])

    def test_too_big(self):
        inst = self.new_instance("max_message_size = 1000\n")
        r = inst.sendmail("root", input=b"x" * 5000 + b"\n")
        self.assertEqual(r.returncode, 65)
        self.assertEqual(inst.area_files(), [])
        self.assertEqual(os.listdir(os.path.join(inst.spool, "maildrop")), [])

    def test_disk_full_is_temporary(self):
        inst = self.new_instance()
        inst.sendmail("root", input=b"warm up\n")  # creates the spool

        def limit():
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
        r = inst.sendmail("root", input=b"y" * 100000 + b"\n", preexec_fn=limit)
        self.assertEqual(r.returncode, 75, r.stderr)
        self.assertEqual(len(inst.area_files()), 1)
        self.assertFalse([f for f in os.listdir(os.path.join(inst.spool, "maildrop"))
                          if f.startswith("tmp.")])

    @unittest.skipIf(os.geteuid() == 0, "root ignores directory permissions")
    def test_unwritable_spool_is_temporary(self):
        inst = self.new_instance()
        inst.sendmail("root", input=b"warm up\n")
        md = os.path.join(inst.spool, "maildrop")
        os.chmod(md, 0o500)
        self.addCleanup(os.chmod, md, 0o700)
        r = inst.sendmail("root", input=b"x\n")
        self.assertEqual(r.returncode, 75, r.stderr)

    def test_flush_without_daemon(self):
        inst = self.new_instance()
        r = inst.sendmail("-q")
        self.assertEqual(r.returncode, 69)
        self.assertIn(b"not running", r.stderr)


class SendmailContent(testlib.TestCase):
    def content(self, inst):
        ids = inst.area_files()
        self.assertEqual(len(ids), 1)
        return inst.read_message(ids[0])

    def test_dot_ends_without_i(self):
        inst = self.new_instance()
        r = inst.sendmail("root", input=b"Subject: d\n\nline1\n.\nafter dot\n")
        self.assertEqual(r.returncode, 0)
        _, c = self.content(inst)
        self.assertIn(b"line1\r\n", c)
        self.assertNotIn(b"after dot", c)

    def test_dot_kept_with_i_and_oi(self):
        for flag in ("-i", "-oi"):
            inst = self.new_instance()
            r = inst.sendmail(flag, "root", input=b"Subject: d\n\nline1\n.\nafter dot\n")
            self.assertEqual(r.returncode, 0)
            _, c = self.content(inst)
            self.assertIn(b"line1\r\n.\r\nafter dot\r\n", c)

    def test_bare_lf_stored_as_crlf(self):
        inst = self.new_instance()
        inst.sendmail("-i", "root", input=b"Subject: a\n\none\ntwo\r\nthree\n")
        _, c = self.content(inst)
        self.assertIn(b"one\r\ntwo\r\nthree\r\n", c)
        self.assertEqual(c.count(b"\n"), c.count(b"\r\n"))

    def test_utf8_body_exact(self):
        inst = self.new_instance()
        body = "Grüße, 日本語, emoji 🎉\r\n".encode() * 50
        inst.sendmail("-i", "root", input=b"Subject: u\r\n\r\n" + body)
        env, c = self.content(inst)
        self.assertTrue(c.endswith(body))

    def test_ten_megabytes(self):
        inst = self.new_instance()
        line = b"0123456789" * 7 + b"\r\n"
        body = line * (10 * 1024 * 1024 // len(line))
        r = inst.sendmail("-i", "root", input=b"Subject: big\r\n\r\n" + body)
        self.assertEqual(r.returncode, 0, r.stderr)
        _, c = self.content(inst)
        self.assertTrue(c.endswith(body))

    def test_t_extracts_and_strips_bcc(self):
        inst = self.new_instance()
        msg = (b"From: me@example.org\n"
               b"To: \"Doe, John\" <john@example.com>, Team: a@example.com, b@example.com;\n"
               b"Cc: carol@example.com (Carol)\n"
               b"Bcc: secret@example.com,\n  hidden@example.com\n"
               b"Subject: t\n\nbody\n")
        r = inst.sendmail("-t", "-i", "extra@example.com", input=msg)
        self.assertEqual(r.returncode, 0, r.stderr)
        env, c = self.content(inst)
        rcpts = " ".join(env["rcpt"])
        for a in ("john@example.com", "a@example.com", "b@example.com", "carol@example.com",
                  "secret@example.com", "hidden@example.com", "extra@example.com"):
            self.assertIn(a, rcpts)
        self.assertNotIn(b"Bcc", c)
        self.assertNotIn(b"secret@", c)
        self.assertNotIn(b"hidden@", c)


class SendmailAddressing(testlib.TestCase):
    CONF = ('admin_address = "ops@example.com"\n'
            'aliases { www-data = "web@example.com, dev@example.com" "postmaster" = "root" }\n')

    def test_bv(self):
        inst = self.new_instance(self.CONF)
        r = inst.sendmail("-bv", "root", "www-data", "postmaster@localhost", "x@example.org")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.decode().splitlines(), [
            "root -> ops@example.com",
            "www-data -> web@example.com, dev@example.com",
            "postmaster@localhost -> ops@example.com",
            "x@example.org -> x@example.org",
        ])
        self.assertEqual(inst.area_files(), [])

    def test_aliases_applied_on_queue(self):
        inst = self.new_instance(self.CONF)
        inst.sendmail("www-data@relay.test", "x@example.org", input=b"x\n")
        env, _ = inst.read_message(inst.area_files()[0])
        self.assertEqual(env["rcpt"], ["0 web@example.com", "0 dev@example.com", "0 x@example.org"])
        # The original recipient of an alias expansion is kept for DSNs and ORCPT.
        self.assertEqual(env["orcpt"], ["www-data@relay.test", "www-data@relay.test"])

    def test_from_address_rewrites_local_sender(self):
        inst = self.new_instance('from_address = "alerts@example.com"\nrewrite_from_header = true\n')
        inst.sendmail("-f", "root", "x@example.org", input=b"From: root\nSubject: s\n\nb\n")
        env, c = inst.read_message(inst.area_files()[0])
        self.assertIn("alerts@example.com", env["sender"])
        self.assertRegex(c.decode(), r"(?m)^From: .*alerts@example\.com")

    def test_newaliases_and_bi(self):
        inst = self.new_instance(self.CONF)
        self.assertEqual(inst.run("newaliases", "-C", inst.conf).returncode, 0)
        self.assertEqual(inst.sendmail("-bi").returncode, 0)


class SendmailSmtp(testlib.TestCase):
    def test_bs_session(self):
        inst = self.new_instance()
        session = (b"EHLO client.example\r\nMAIL FROM:<app@example.org>\r\n"
                   b"RCPT TO:<user@example.com>\r\nDATA\r\n"
                   b"Subject: via -bs\r\n\r\n..leading dot\r\nbody\r\n.\r\nQUIT\r\n")
        r = inst.sendmail("-bs", input=session)
        self.assertEqual(r.returncode, 0, r.stderr)
        out = r.stdout.decode()
        self.assertTrue(out.startswith("220 "))
        self.assertRegex(out, r"250 2\.0\.0 Ok: queued as \w+")
        self.assertIn("221 ", out)
        env, c = inst.read_message(inst.area_files()[0])
        self.assertIn(b"\r\n.leading dot\r\nbody\r\n", c)


class SendmailConcurrency(testlib.TestCase):
    def test_many_processes(self):
        inst = self.new_instance()
        inst.sendmail("root", input=b"init\n")
        procs = []
        for i in range(60):
            p = subprocess.Popen([inst.path("sendmail"), "-C", inst.conf, "root"],
                                 stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.PIPE)
            procs.append((i, p))
        for i, p in procs:
            p.stdin.write(b"Subject: n%d\n\nmessage %d\n" % (i, i))
            p.stdin.close()
        for i, p in procs:
            self.assertEqual(p.wait(timeout=60), 0, p.stderr.read())
        ids = inst.area_files()
        self.assertEqual(len(ids), 61)
        self.assertEqual(len(set(ids)), 61)
        seen = set()
        for qid in ids:
            _, c = inst.read_message(qid)
            m = re.search(rb"message (\d+)", c)
            if m:
                seen.add(int(m.group(1)))
        self.assertEqual(seen, set(range(60)))


if __name__ == "__main__":
    unittest.main(verbosity=2)
