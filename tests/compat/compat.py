"""IMAP compatibility run (``make compat``): real clients against ``make run``'s stack.

In:   the local stack started here as ``postern-local`` on private ports
      (IMAP 21143, SMTP 22525, moto 24566), a demo user; clients from Debian
      packages: curl, mbsync (isync), fetchmail, getmail6 (installed with
      apt-get when missing and we are root; ``--no-install`` to skip).
Out:  one line per client (PASS / FAIL / SKIP with the reason); exit status 1
      if any client failed.
Fails: a client that is not installed is SKIPped, not failed.

What each client must do:
  curl       LIST, SEARCH, FETCH one message by UID over imap://
  mbsync     two-way sync: pull INBOX, push a local new message and a flag
             change, then pull a server-side flag change
  fetchmail  download every INBOX message (keep) through an MDA
  getmail    SimpleIMAPRetriever into a Maildir, read_all
"""

from __future__ import annotations

import argparse
import imaplib
import os
import shutil
import smtplib
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"
IMAP_PORT, SMTP_PORT = 21143, 22525
USER, PW = "alice@example.test", "compat-password"
PACKAGES = {"curl": "curl", "mbsync": "isync", "fetchmail": "fetchmail", "getmail": "getmail6"}


def ensure_clients(install: bool) -> None:
    missing = [pkg for exe, pkg in PACKAGES.items() if not shutil.which(exe)]
    if missing and install and os.geteuid() == 0:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], env=env, check=False)
        subprocess.run(["apt-get", "install", "-y", "-qq", *missing], env=env, check=False)


def wait_port(port: int, timeout: float = 120) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            socket.create_connection((HOST, port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"port {port} did not open")


def start_stack(workdir: Path) -> subprocess.Popen:
    env = {**os.environ,
           "POSTERN_IMAP_PORT": str(IMAP_PORT), "POSTERN_IMAPS_PORT": "21993", "POSTERN_SMTP_PORT": str(SMTP_PORT),
           "POSTERN_SUBMISSION_PORT": "21587", "POSTERN_SUBMISSIONS_PORT": "21465", "POSTERN_POP3_PORT": "21110",
           "POSTERN_POP3S_PORT": "21995", "POSTERN_MANAGESIEVE_PORT": "24190", "POSTERN_LOCAL_MOTO_PORT": "24566", "POSTERN_DEMO_USER": USER,
           "POSTERN_DEMO_PASSWORD": PW, "POSTERN_LOGIN_FAIL_DELAY": "0"}
    exe = ROOT / ".venv" / "bin" / "postern-local"
    log = open(workdir / "stack.log", "wb")
    proc = subprocess.Popen([str(exe)], cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT)
    wait_port(IMAP_PORT)
    return proc


def deliver(n: int) -> None:
    with smtplib.SMTP(HOST, SMTP_PORT, timeout=30) as s:
        for i in range(1, n + 1):
            s.sendmail("bob@remote.test", [USER], (f"From: Bob <bob@remote.test>\r\nTo: {USER}\r\n"
                                                   f"Subject: compat message {i}\r\nMessage-ID: <c{i}@remote.test>\r\n"
                                                   f"\r\nBody of message {i}\r\n").encode())


def imap() -> imaplib.IMAP4:
    c = imaplib.IMAP4(HOST, IMAP_PORT, timeout=30)
    c.login(USER, PW)
    return c


def wait_inbox(count: int, timeout: float = 60) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        c = imap()
        n = int(c.select("INBOX")[1][0])
        c.logout()
        if n >= count:
            return
        time.sleep(1)
    raise RuntimeError(f"INBOX did not reach {count} messages")


def run(cmd, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, timeout=120, **kw)


# ---------------------------------------------------------------- clients
def t_curl(work: Path) -> str:
    base = f"imap://{HOST}:{IMAP_PORT}"
    auth = ["-u", f"{USER}:{PW}", "-s", "-S"]
    r = run(["curl", *auth, f"{base}/"])
    assert r.returncode == 0 and b"INBOX" in r.stdout, r.stderr
    r = run(["curl", *auth, f"{base}/INBOX?SUBJECT%20compat"])
    assert r.returncode == 0 and b"SEARCH 1 2 3" in r.stdout, r.stdout + r.stderr
    r = run(["curl", *auth, f"{base}/INBOX;UID=2"])
    assert r.returncode == 0 and b"Subject: compat message 2" in r.stdout, r.stdout + r.stderr
    return "LIST, SEARCH, FETCH by UID"


MBSYNC_RC = """\
IMAPAccount postern
Host {host}
Port {port}
User {user}
Pass {pw}
SSLType None
AuthMechs LOGIN

IMAPStore remote
Account postern

MaildirStore local
Path {maildir}/
Inbox {maildir}/INBOX
SubFolders Verbatim

Channel sync
Far :remote:
Near :local:
Patterns INBOX Sent
Create Both
Expunge Both
SyncState *
"""


def t_mbsync(work: Path) -> str:
    md = work / "mbsync"
    md.mkdir()
    rc = work / "mbsyncrc"
    rc.write_text(MBSYNC_RC.format(host=HOST, port=IMAP_PORT, user=USER, pw=PW, maildir=md))
    r = run(["mbsync", "-c", str(rc), "-a"])
    assert r.returncode == 0, r.stdout + r.stderr
    cur = md / "INBOX" / "cur"
    new = md / "INBOX" / "new"
    files = sorted(list(cur.iterdir()) + list(new.iterdir()))
    assert len(files) >= 3, files
    # local changes: one new message, one message marked seen+flagged
    (new / f"{int(time.time())}.local.compat").write_bytes(
        b"From: alice@example.test\r\nSubject: written locally\r\n\r\nfrom mbsync\r\n")
    f0 = files[0]
    base = f0.name.split(":2,")[0]
    f0.rename(cur / f"{base}:2,FS")
    r = run(["mbsync", "-c", str(rc), "-a"])
    assert r.returncode == 0, r.stdout + r.stderr
    c = imap()
    c.select("INBOX")
    typ, data = c.search(None, "SUBJECT", '"written locally"')
    assert data[0], "local message not uploaded"
    typ, data = c.search(None, "FLAGGED", "SEEN")
    assert data[0], "local flag change not pushed"
    # server-side change pulled down
    c.store("3", "+FLAGS", "(\\Answered)")
    c.logout()
    r = run(["mbsync", "-c", str(rc), "-a"])
    assert r.returncode == 0, r.stdout + r.stderr
    names = [p.name for p in cur.iterdir()]
    assert any(":2," in n and "R" in n.split(":2,")[1] for n in names), names
    return "pull 3, push new message + flags, pull server flag"


FETCHMAIL_RC = """\
set no bouncemail
poll {host} protocol IMAP port {port} auth password
  user "{user}" password "{pw}" is "root" here
  keep fetchall
  sslproto ""
  mda "/bin/sh -c 'cat >> {mbox}'"
"""


def t_fetchmail(work: Path) -> str:
    mbox = work / "fetchmail.mbox"
    rc = work / "fetchmailrc"
    rc.write_text(FETCHMAIL_RC.format(host=HOST, port=IMAP_PORT, user=USER, pw=PW, mbox=mbox))
    rc.chmod(0o600)
    r = run(["fetchmail", "-f", str(rc), "--nodetach", "--nosyslog", "-v"],
            env={**os.environ, "HOME": str(work), "FETCHMAILHOME": str(work)})
    assert r.returncode in (0, 1), r.stdout[-2000:] + r.stderr[-2000:]
    data = mbox.read_bytes() if mbox.exists() else b""
    n = data.count(b"Subject: compat message")
    assert n >= 3, (n, r.stdout[-1500:])
    return f"{n} messages fetched (keep)"


GETMAIL_RC = """\
[retriever]
type = SimpleIMAPRetriever
server = {host}
port = {port}
username = {user}
password = {pw}
mailboxes = ("INBOX",)

[destination]
type = Maildir
path = {maildir}/

[options]
read_all = true
delete = false
verbose = 0
"""


def t_getmail(work: Path) -> str:
    md = work / "getmail-maildir"
    for d in ("cur", "new", "tmp"):
        (md / d).mkdir(parents=True)
    gdir = work / "getmail"
    gdir.mkdir()
    rc = GETMAIL_RC.format(host=HOST, port=IMAP_PORT, user=USER, pw=PW, maildir=md)
    if os.geteuid() == 0:  # getmail's Maildir destination refuses root; deliver through an MDA instead
        rc = rc.replace("type = Maildir\npath = %s/\n" % md,
                        "type = MDA_external\npath = /bin/sh\nallow_root_commands = true\n"
                        "arguments = (\"-c\", \"cat > %s/new/$(date +%%s%%N).eml\")\n" % md)
    (gdir / "getmailrc").write_text(rc)
    exe = shutil.which("getmail")
    r = run([exe, "--getmaildir", str(gdir), "--rcfile", "getmailrc"])
    assert r.returncode == 0, r.stdout + r.stderr
    n = len(list((md / "new").iterdir()))
    assert n >= 3, (n, r.stdout + r.stderr)
    return f"{n} messages into a Maildir"


CLIENTS = (("curl", "curl", t_curl), ("mbsync", "mbsync", t_mbsync), ("fetchmail", "fetchmail", t_fetchmail),
           ("getmail", "getmail", t_getmail))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="IMAP compatibility run against the local stack")
    ap.add_argument("--no-install", action="store_true")
    args = ap.parse_args(argv)
    ensure_clients(not args.no_install)
    work = Path(tempfile.mkdtemp(prefix="postern-compat-"))
    proc = start_stack(work)
    failed = False
    try:
        deliver(3)
        wait_inbox(3)
        for name, exe, fn in CLIENTS:
            if not shutil.which(exe):
                print(f"SKIP  {name:<10} not installed")
                continue
            try:
                print(f"PASS  {name:<10} {fn(work)}", flush=True)
            except Exception as exc:  # noqa: BLE001 - report and go on with the next client
                failed = True
                print(f"FAIL  {name:<10} {str(exc)[:600]!r}", flush=True)
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
    if failed:
        print(f"(work dir kept: {work})")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
