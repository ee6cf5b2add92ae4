"""``postern-local`` (what ``make run`` starts): the whole of Postern on this machine.

Starts :class:`~postern_local.stack.LocalStack` with its pollers in the
background, prints the ports, the demo account and how to try it, writes
``.postern-local/env`` so the admin CLI can reach the same stack from another
shell, and runs until Ctrl-C (or SIGTERM), then stops everything.
"""

from __future__ import annotations

import logging
import os
import shlex
import signal
import time
import sys
from pathlib import Path

from .stack import LocalStack

TRY_PORTS = (
    ("smtp", "SMTP (MX role)", "25"),
    ("submission", "Submission (STARTTLS)", "587"),
    ("submissions", "Submission (implicit TLS)", "465"),
    ("imap", "IMAP (STARTTLS)", "143"),
    ("imaps", "IMAPS", "993"),
    ("pop3", "POP3 (STLS)", "110"),
    ("pop3s", "POP3S", "995"),
    ("managesieve", "ManageSieve (STARTTLS)", "4190"),
)


def outbound(stack: LocalStack) -> str:
    """Where this stack's outbound mail goes (the banner and the env file say it)."""
    env = stack.env
    if stack.smarthost_sink is not None:
        return (f"smarthost {env.get('POSTERN_SMARTHOST')} (local sink: nothing leaves this machine; "
                f"each message is written to {stack.outbound_dir})")
    return f"{env.get('POSTERN_OUTBOUND_TRANSPORT')} {env.get('POSTERN_SMARTHOST', '')}".rstrip()


def write_env_file(stack: LocalStack, directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "env"
    lines = ["# Written by postern-local: point the admin CLI (and boto3) at the local stack.",
             "# Usage: . .postern-local/env && .venv/bin/postern user list",
             f"# Outbound mail of this stack: {outbound(stack)}"]
    lines += [f"export {k}={shlex.quote(v)}" for k, v in sorted(stack.exported_env().items())]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    path.chmod(0o600)
    return path


def banner(stack: LocalStack, env_path: Path) -> str:
    p = stack.ports
    user, pw = stack.demo_user, stack.demo_password
    rows = [f"  {'listener':<28} {'local':>7}   AWS"]
    for name, label, aws_port in TRY_PORTS:
        rows.append(f"  {label:<28} {p[name] if name in p else '(off)':>7}   {aws_port}")
    smtp, pop3, imap = p.get("smtp", "?"), p.get("pop3", "?"), p.get("imap", "?")
    store = getattr(getattr(stack.gateway, "ssl_context", None), "postern_store", None)  # trust.tls
    tls_rows = [f"TLS:           {store.source} certificate, SHA-256 {store.fingerprint}", ""] if store else []
    domain = user.split("@", 1)[1]
    web = stack.http_url
    webmail = (f"Webmail:       {stack.webmail_url}  (sign in as {user})" if stack.webmail_url else
               f"Webmail:       not built ({stack.webmail_dir} has no index.html): `make run` builds it (Node 20+)")
    https_rows = [
        webmail,
        f"HTTPS front:   {web} (plain HTTP on loopback; the Host header picks the site, as CloudFront's names do)",
        f"  curl -u {shlex.quote(user + ':' + pw)} {web}/.well-known/jmap",
        f"  curl -H 'Host: autoconfig.{domain}' {web}/mail/config-v1.1.xml",
        f"  curl -H 'Host: mta-sts.{domain}' {web}/.well-known/mta-sts.txt",
        *([f"JMAP push:     {stack.env['POSTERN_PUSH_URL']}?ticket=<POST /auth/ticket> (WebSocket, subprotocol jmap)"]
          if stack.env.get("POSTERN_PUSH_URL") else []),
        "",
    ] if web else []
    return "\n".join([
        "",
        "Postern is running locally (moto in place of AWS at " + stack.endpoint + ").",
        "",
        *rows,
        "",
        *tls_rows,
        *https_rows,
        f"Outbound:      {outbound(stack)}",
        "",
        f"Spam filter:   {stack.spam_filter}",
        "",
        f"Demo account:  {user}",
        f"Password:      {pw}",
        "",
        "Try it:",
        f"  swaks --server 127.0.0.1:{smtp} --to {user}",
        f"  curl pop3://127.0.0.1:{pop3}/1 -u {shlex.quote(user + ':' + pw)}",
        f"  curl 'imap://127.0.0.1:{imap}/INBOX;UID=1' -u {shlex.quote(user + ':' + pw)}",
        f"  sieve-connect --server 127.0.0.1 --port {p.get('managesieve', '?')} --user {user} --list"
        " --notlsverify",
        "",
        "Admin CLI against this stack (another shell):",
        f"  . {env_path} && .venv/bin/postern user add bob@{user.split('@', 1)[1]} --password-stdin",
        "  .venv/bin/postern user list",
        "",
        "Ctrl-C stops everything.",
        "",
    ])


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    # A plain flag, not a threading.Event: the handler runs in the main thread between
    # bytecodes, and Event.set() there can deadlock on the lock Event.wait() is
    # re-taking (seen: a SIGTERM during the wait hung postern-local for good).
    stopping = False

    def on_signal(signum, frame):  # noqa: ARG001
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    stack = LocalStack(background=True, outbound_dir=Path(os.getcwd()) / ".postern-local" / "outbound", rspamd=True)
    try:
        stack.start()
    except OSError as exc:
        print(f"postern-local: cannot start: {exc} (is another postern-local running? "
              "choose other ports with POSTERN_SMTP_PORT=... POSTERN_LOCAL_MOTO_PORT=...)", file=sys.stderr)
        return 1
    try:
        env_path = write_env_file(stack, Path(os.getcwd()) / ".postern-local")
        rel = os.path.relpath(env_path)
        print(banner(stack, Path(rel)), flush=True)
        while not stopping:
            time.sleep(0.5)  # a signal interrupts the sleep and runs on_signal
        print("Stopping...", flush=True)
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        stack.stop()
    print("Stopped.", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
