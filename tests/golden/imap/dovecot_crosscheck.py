"""Differential check of imap/message/, search.py and sortthread.py against Dovecot.

Not a pytest module (it needs Dovecot and root to drop privileges): run it by hand,

    sudo .venv/bin/python tests/golden/imap/dovecot_crosscheck.py

It builds a private maildir under a temp dir from the golden samples plus a
few threading samples, runs Dovecot's ``imap`` binary in PREAUTH mode on
stdin/stdout (no listener, no config outside the temp dir), and compares
ENVELOPE, BODYSTRUCTURE, BODY, BODY[section] for a set of sections, SEARCH for
a set of criteria, SORT and THREAD with ours. Prints every difference; exits
1 if there is one outside the known, deliberate ones listed in README.md.
"""

from __future__ import annotations

import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
from types import SimpleNamespace

from postern_gateway.imap import message as M
from postern_gateway.imap import search as S
from postern_gateway.imap import sortthread as T
from postern_gateway.imap.parser import parse_command

HERE = pathlib.Path(__file__).resolve().parent
IMAP_BIN = "/usr/lib/dovecot/imap"
# differences we keep on purpose (see README.md)
KNOWN = {
    ("encoded_words", "ENVELOPE"),  # Dovecot sends the same subject as a literal
    ("malformed_mime", "BODYSTRUCTURE"),
    ("malformed_mime", "BODY"),
    ("mixed_attachment", "BODYSTRUCTURE"),  # "BASE64" case
    ("mixed_attachment", "BODY"),
    ("plain", "BODYSTRUCTURE"),  # "TEXT" "PLAIN" case
    ("plain", "BODY"),
}
SECTIONS = ["", "HEADER", "TEXT", "1", "1.MIME", "2", "2.MIME", "2.HEADER", "2.TEXT", "2.1", "2.2", "2.1.MIME", "3",
            "1.1", "1.HEADER", "2.1.1", "HEADER.FIELDS (From Subject)", "2.HEADER.FIELDS.NOT (From To)"]
CRITERIA = [
    "ALL", "SEEN", "UNSEEN", "FLAGGED", "NOT FLAGGED SEEN", "OR SEEN FLAGGED", "SUBJECT hello", "SUBJECT HELLO",
    "SUBJECT caf\u00e9", '"Caf\u00e9 time tomorrow"', "SUBJECT re:", "FROM alice", 'FROM "Andr\u00e9"', "FROM example.org",
    "TO carol", "CC dave", "BCC eve", "TO friends", "TO bob", 'HEADER Message-ID "@x>"', 'HEADER X-Only ""',
    "HEADER In-Reply-To gone", "BODY noon", "BODY NOON?", "BODY gr\u00fc\u00dfe", "BODY softbreak", "BODY secret",
    "BODY \u00e9t\u00e9", "BODY SGVsbG8", "BODY hello", "TEXT hello", "TEXT pirard", "TEXT \u00e7a", "BODY body",
    "TEXT Content-Type", "BODY prologue", "BODY Content-Type", "BODY boundary", "TEXT x-myown", "SENTON 1-Jan-2026",
    "SENTBEFORE 1-Jan-2026", "SENTSINCE 2-Dec-2026", "SENTON 30-Nov-2026", "SENTON 1-Dec-2026",
    "SENTBEFORE 1-Jan-1995", "ON 1-Jan-2026", "BEFORE 1-Jan-2026", "SINCE 5-Jan-2026", "ON 24-Dec-2025",
    "LARGER 500", "SMALLER 200", "1:5", "*", "5:*", "UID 3,7:9", "NOT 1:10", "(SUBJECT hello FROM a) OR BODY x SEEN",
    "NEW", "OLD", "RECENT", "KEYWORD $Junk", "UNKEYWORD $Junk", "ANSWERED", "UNDRAFT", "DELETED",
]
SORTS = ["ARRIVAL", "REVERSE ARRIVAL", "DATE", "REVERSE DATE", "SIZE", "SUBJECT", "SUBJECT DATE", "REVERSE SUBJECT",
         "FROM", "TO", "CC", "DISPLAYFROM", "DISPLAYTO", "FROM SUBJECT REVERSE SIZE"]
CRITERIA = [c if not c.startswith('"') else "SUBJECT " + c for c in CRITERIA]


def extra_messages() -> list[bytes]:
    qp = (b"From: x@example.org\r\nSubject: qp\r\nDate: 30 Nov 2026 23:30:00 -0800\r\nMIME-Version: 1.0\r\n"
          b"Content-Type: multipart/mixed; boundary=q\r\n\r\n"
          b"--q\r\nContent-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
          b"Gr=FC=DFe aus K=F6ln, soft=\r\nbreak\r\n"
          b"--q\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
          b"c2VjcmV0IGJpbmFyeQ==\r\n"
          b"--q\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n"
          b"PHA+aHRtbCDDqXTDqTwvcD4=\r\n--q--\r\n")

    def t(subj, hour, mid, refs=None, irt=None, frm="a@example.org"):
        h = f"From: {frm}\r\nSubject: {subj}\r\n"
        if hour is not None:
            h += f"Date: Thu, 1 Jan 2026 {hour:02d}:00:00 +0000\r\n"
        h += f"Message-ID: <{mid}>\r\n"
        if refs:
            h += "References: " + " ".join(f"<{r}>" for r in refs) + "\r\n"
        if irt:
            h += f"In-Reply-To: <{irt}>\r\n"
        return (h + "\r\nbody\r\n").encode()

    return [qp, t("hello", 10, "a@x"), t("Re: hello", 11, "b@x", ["a@x"]), t("other", 9, "c@x"),
            t("Re: hello", 12, "d@x", ["a@x"]), t("Re: hello", 13, "e@x", ["a@x", "d@x"]),
            t("Re: lost", 8, "f@x", ["gone@x"]), t("lost", 14, "g@x", None, "gone@x"), t("Re: other", 15, "h@x"),
            t("hello", 16, "a@x"), t("[list] Fwd: topic (fwd)", 7, "i@x", frm='"Zed" <zed@example.org>'),
            t("topic", None, "j@x", frm="Bob <bob@example.org>"), t("Re: [fwd: topic]", 6, "k@x", ["i@x"]),
            t("loop a", 5, "l1@x", ["l2@x"]), t("loop b", 4, "l2@x", ["l1@x"])]


class Dovecot:
    def __init__(self, home: pathlib.Path):
        conf = home / "dovecot.conf"
        conf.write_text(
            f"protocols = imap\nmail_location = maildir:{home}/Maildir\nlog_path = {home}/log\n"
            f"base_dir = {home}/run\nstate_dir = {home}/state\nssl = no\nmail_home = {home}\n"
            "mail_uid = nobody\nmail_gid = nogroup\n"
        )
        for d in ("run", "state"):
            (home / d).mkdir(exist_ok=True)
        subprocess.run(["chown", "-R", "nobody:nogroup", str(home)], check=True)
        self.p = subprocess.Popen(
            ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "env", "USER=nobody", f"HOME={home}",
             IMAP_BIN, "-c", str(conf)], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.n = 0
        self._line()

    def _line(self) -> bytes:
        line = self.p.stdout.readline()
        m = re.search(rb"\{(\d+)\}\r\n$", line)
        while m:
            rest = self.p.stdout.read(int(m.group(1))) + self.p.stdout.readline()
            line += rest
            m = re.search(rb"\{(\d+)\}\r\n$", rest)
        return line

    def cmd(self, text: bytes) -> list[bytes]:
        self.n += 1
        tag = b"t%d" % self.n
        self.p.stdin.write(tag + b" " + text + b"\r\n")
        self.p.stdin.flush()
        out = []
        while True:
            line = self._line()
            if line.startswith(tag + b" "):
                if not line.split()[1] == b"OK":
                    raise RuntimeError(line)
                return out
            out.append(line)

    def close(self):
        self.p.stdin.close()
        self.p.wait(timeout=10)


def literalize(criteria: str) -> bytes:
    """8-bit words and quoted strings become LITERAL+ literals (Dovecot rejects 8-bit atoms)."""
    def rep(m):
        text = m.group(0)
        if text.isascii():
            return text
        text = text[1:-1] if text.startswith('"') else text
        return "{%d+}\r\n" % len(text.encode()) + text
    return re.sub(r'"[^"]*"|[^ ()"]+', rep, criteria).encode()


def main() -> int:
    if not os.path.exists(IMAP_BIN) or os.geteuid() != 0:
        print("needs Dovecot (apt-get install dovecot-imapd) and root to drop privileges to nobody")
        return 2
    home = pathlib.Path(tempfile.mkdtemp(prefix="postern-dovecot-"))
    try:
        cur = home / "Maildir" / "cur"
        for d in ("cur", "new", "tmp"):
            (home / "Maildir" / d).mkdir(parents=True)
        names = sorted(p.stem for p in HERE.glob("*.eml") if p.stem != "dovecot_lf")  # Dovecot serves LF as CRLF
        raws = [(HERE / f"{n}.eml").read_bytes() for n in names] + extra_messages()
        names += [f"extra{i}" for i in range(len(raws) - len(names))]
        flagmap = {"S": "\\Seen", "F": "\\Flagged"}
        msgs = []
        for i, raw in enumerate(raws, 1):
            flags = ("F" if i % 4 == 0 else "") + ("S" if i % 3 == 0 else "")
            path = cur / f"{2000 + i}.m{i}:2,{flags}"
            path.write_bytes(raw)
            when = 1767225600 + (i - 8) * 86400 + 3600 * (i % 24)
            os.utime(path, (when, when))
            msgs.append(SimpleNamespace(seq=i, uid=i, flags=frozenset({"\\Recent"} | {flagmap[c] for c in flags}),
                                        modseq=1, size=len(raw), internaldate=float(when), header=raw[: M.header_length(raw)],
                                        raw=raw, seq_max=len(raws), uid_max=len(raws)))
        dv = Dovecot(home)
        dv.cmd(b"EXAMINE INBOX")
        problems = 0

        def report(what, theirs, ours, known=False):
            nonlocal problems
            if theirs != ours:
                problems += 0 if known else 1
                print(f"{'(known) ' if known else ''}{what}\n  dovecot: {theirs[:400]!r}\n  postern: {ours[:400]!r}")

        for seq, (name, raw) in enumerate(zip(names, raws), 1):
            if name.startswith("extra"):
                continue
            for item, ours in (("ENVELOPE", M.envelope(raw)), ("BODYSTRUCTURE", M.bodystructure(raw)),
                               ("BODY", M.bodystructure(raw, False))):
                line = dv.cmd(b"FETCH %d (%s)" % (seq, item.encode()))[0]
                start = line.index(b" FETCH (" + item.encode() + b" ") + len(item) + 9
                report(f"{name} {item}", line[start:-3], ours, (name, item) in KNOWN)
            for lab in SECTIONS:
                line = dv.cmd(b"FETCH %d (BODY.PEEK[%s])" % (seq, lab.encode()))[0]
                m = re.search(rb"BODY\[[^\]]*\] (?:\{(\d+)\}\r\n|\"([^\"]*)\"|NIL)", line)
                theirs = line[m.end(): m.end() + int(m.group(1))] if m.group(1) else (m.group(2) or b"")
                mm = re.match(r"([\d.]*?)\.?(HEADER\.FIELDS\.NOT|HEADER\.FIELDS|HEADER|TEXT|MIME)?(?: \((.*)\))?$", lab)
                part = tuple(int(x) for x in mm.group(1).split(".")) if mm.group(1) else ()
                ours = M.section(raw, part, mm.group(2), tuple((mm.group(3) or "").split()))
                report(f"{name} BODY[{lab}]", theirs, ours)

        def untagged(lines, word):
            for line in lines:
                if line.startswith(b"* " + word):
                    return line[len(word) + 2:].strip()
            return b""

        for crit in CRITERIA:
            charset = b"CHARSET UTF-8 " if not crit.isascii() else b""
            theirs = untagged(dv.cmd(b"SEARCH " + charset + literalize(crit)), b"SEARCH")
            key = S.parse_search(parse_command(b"x SEARCH " + literalize(crit) + b"\r\n").args)
            ours = " ".join(str(m.seq) for m in msgs if S.evaluate(key, m)).encode()
            report(f"SEARCH {crit}", theirs, ours)
        for crit in SORTS:
            theirs = untagged(dv.cmd(f"SORT ({crit}) UTF-8 ALL".encode()), b"SORT")
            toks = parse_command(f"x SORT ({crit}) UTF-8 ALL\r\n".encode()).args[0]
            ours = " ".join(str(m.seq) for m in T.sort_messages(T.parse_sort_criteria(toks), msgs)).encode()
            report(f"SORT ({crit})", theirs, ours)
        for alg in T.ALGORITHMS:
            theirs = untagged(dv.cmd(f"THREAD {alg} UTF-8 ALL".encode()), b"THREAD")
            report(f"THREAD {alg}", theirs, T.format_threads(T.thread(alg, msgs)).encode())
        dv.close()
        print(f"{problems} unexpected difference(s)")
        return 1 if problems else 0
    finally:
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
