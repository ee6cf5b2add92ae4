"""ManageSieve (RFC 5804) with real clients over loopback: sievelib's client, sieve-connect, raw bytes.

The listener runs as deployed (``allow_plaintext_auth=False``, a trustme certificate): STARTTLS,
then AUTHENTICATE PLAIN, then the script commands over the in-memory directory's script
repository. sievelib (PyPI) drives the usual session; Debian's ``sieve-connect`` (installed
with apt-get when missing) uploads, lists, activates, downloads and deletes; a raw socket checks
what clients do not send: literals, continuations, refusals and their response codes, the
pre-login byte budget, STARTTLS injection.
"""

from __future__ import annotations

import base64
import os
import re
import socket
import ssl
import subprocess
import warnings

import pytest
import trustme
from debian_packages import ensure
from helpers import HOST, ServerThread, memory_backend
from sievelib import managesieve as sievelib_ms

from postern.limits import Limits, MemoryCounters
from postern.sieve import capability_string
from postern_gateway.managesieve.server import start_managesieve
from postern_gateway.managesieve.session import MAX_BAD
from postern_gateway.trust import tls

USER, PW = "alice@example.test", "alice-pw"
SCRIPT = 'require ["fileinto"];\r\nif header :contains "subject" "report" {\r\n  fileinto "Reports";\r\n}\r\n'


@pytest.fixture(scope="module")
def ca():
    return trustme.CA()


@pytest.fixture(scope="module")
def server_ctx(ca):
    ctx = tls.new_context()
    ca.issue_cert("mail.example.test", "127.0.0.1").configure_cert(ctx)
    return ctx


@pytest.fixture
def client_ctx(ca):
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    return ctx


def make_backend(**overrides):
    b = memory_backend(allow_plaintext_auth=False, **overrides)
    b.directory.add_domain("example.test")
    b.directory.add_user(USER, PW)
    b.directory.add_user("bob@example.test", "bob-pw")
    b.limits = Limits(b.settings, MemoryCounters())
    return b


@pytest.fixture
def server(server_ctx):
    with ServerThread(start_managesieve, make_backend(), ssl_context=server_ctx) as srv:
        yield srv


@pytest.fixture
def sievelib_client(server, client_ctx, monkeypatch):
    """sievelib's Client, trusting the test CA for its STARTTLS (it builds a default context)."""
    monkeypatch.setattr(sievelib_ms.ssllib, "create_default_context", lambda *a, **k: client_ctx)
    warnings.simplefilter("ignore")
    c = sievelib_ms.Client(HOST, server.port, srvhostname="mail.example.test")
    assert c.connect(USER, PW, starttls=True, authmech="PLAIN")
    yield c
    c.logout()


class Raw:
    """A byte-level ManageSieve client: send lines, read responses up to OK/NO/BYE."""

    def __init__(self, port: int, ctx: ssl.SSLContext | None = None):
        self.sock = socket.create_connection((HOST, port), timeout=10)
        self.ctx = ctx
        self.buf = b""
        self.greeting = self.response()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed")
        self.buf += chunk

    def line(self) -> bytes:
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        m = re.search(rb"\{(\d+)\}$", line)
        if m:  # a literal: its bytes belong to this line
            n = int(m.group(1))
            while len(self.buf) < n:
                self._fill()
            line, self.buf = line + b"\r\n" + self.buf[:n], self.buf[n:]
            line += self.line()
        return line

    def response(self) -> list[bytes]:
        lines = []
        while True:
            line = self.line()
            lines.append(line)
            if re.match(rb"(OK|NO|BYE)\b", line):
                return lines

    def cmd(self, data: bytes) -> list[bytes]:
        self.send(data + b"\r\n")
        return self.response()

    def starttls(self) -> list[bytes]:
        assert self.cmd(b"STARTTLS")[-1].startswith(b"OK")
        self.sock = self.ctx.wrap_socket(self.sock, server_hostname="mail.example.test")
        return self.response()

    def login(self, user: str = USER, pw: str = PW) -> list[bytes]:
        token = base64.b64encode(f"\0{user}\0{pw}".encode())
        return self.cmd(b'AUTHENTICATE "PLAIN" "' + token + b'"')

    def close(self) -> None:
        self.sock.close()


def caps(lines: list[bytes]) -> dict[str, str | None]:
    out = {}
    for line in lines[:-1]:
        m = re.fullmatch(rb'"([^"]+)"(?: "([^"]*)")?', line)
        assert m, line
        out[m.group(1).decode()] = m.group(2).decode() if m.group(2) is not None else None
    return out


# --- capabilities and authentication --------------------------------------------------------------
def test_capabilities_before_and_after_tls(server, client_ctx):
    c = Raw(server.port, client_ctx)
    before = caps(c.greeting)
    assert c.greeting[-1].startswith(b"OK")
    assert before["SIEVE"] == capability_string()  # exactly postern.sieve's list
    assert before["IMPLEMENTATION"] == "Postern" and before["VERSION"] == "1.0"
    assert before["SASL"] == "" and "STARTTLS" in before  # no PLAIN before TLS
    assert before["MAXREDIRECTS"] == "4" and "UNAUTHENTICATE" in before
    after = caps(c.starttls())  # §2.2: re-issued after the handshake
    assert after["SASL"] == "PLAIN" and "STARTTLS" not in after
    assert c.login()[-1].startswith(b"OK")
    owner = caps(c.cmd(b"CAPABILITY"))
    assert owner["OWNER"] == USER
    c.close()


def test_authenticate_before_tls_is_refused(server):
    c = Raw(server.port)
    assert c.login()[-1].startswith(b"NO (ENCRYPT-NEEDED)")
    assert c.cmd(b"LISTSCRIPTS")[-1].startswith(b"NO")  # still not authenticated
    c.close()


def test_sasl_continuation_literal_response_and_cancel(server, client_ctx):
    c = Raw(server.port, client_ctx)
    c.starttls()
    c.send(b'AUTHENTICATE "PLAIN"\r\n')
    assert c.line() == b'""'  # §2.1: the server's (empty) challenge
    c.send(b'"*"\r\n')
    assert c.response()[-1].startswith(b'NO "Authentication cancelled"')
    c.send(b'AUTHENTICATE "PLAIN"\r\n')
    assert c.line() == b'""'
    token = base64.b64encode(f"\0{USER}\0{PW}".encode())
    c.send(b"{%d+}\r\n" % len(token) + token + b"\r\n")  # the response as a literal
    assert c.response()[-1].startswith(b"OK")
    c.close()


def test_wrong_password_and_lockout(server, client_ctx):
    for _ in range(10):  # auth_fail_user_limit: 10 failures a window
        c = Raw(server.port, client_ctx)
        c.starttls()
        assert c.login(pw="wrong")[-1] == b'NO "Authentication failed"'
        c.close()
    c = Raw(server.port, client_ctx)
    c.starttls()
    assert c.login()[-1].startswith(b"NO (TRYLATER)")  # locked, whatever the password
    c.close()


def test_canonical_account_and_session_cap(server_ctx, client_ctx):
    with ServerThread(start_managesieve, make_backend(max_sessions_per_user=1), ssl_context=server_ctx) as srv:
        a = Raw(srv.port, client_ctx)
        a.starttls()
        assert a.login("<ALICE@Example.TEST>")[-1].startswith(b"OK")
        assert caps(a.cmd(b"CAPABILITY"))["OWNER"] == USER  # one account, whatever the spelling
        b = Raw(srv.port, client_ctx)
        b.starttls()
        assert b.login()[-1].startswith(b"NO (TRYLATER)")  # the account's one session is open
        assert a.cmd(b"UNAUTHENTICATE")[-1].startswith(b"OK")  # §2.14: gives the slot back
        assert a.cmd(b"LISTSCRIPTS")[-1].startswith(b"NO")
        assert b.login()[-1].startswith(b"OK")
        a.close()
        b.close()


# --- scripts with sievelib ------------------------------------------------------------------------
def test_script_lifecycle_with_sievelib(sievelib_client):
    c = sievelib_client
    assert c.get_sieve_capabilities() == capability_string().split()
    assert c.havespace("filters", len(SCRIPT))
    assert c.putscript("filters", SCRIPT)
    assert c.putscript("other", "keep;")
    assert c.listscripts() == (None, ["filters", "other"])
    assert c.setactive("filters")
    assert c.listscripts() == ("filters", ["other"])
    assert c.getscript("filters") == SCRIPT.replace("\r\n", "\n").rstrip("\n")  # sievelib rejoins lines with LF
    assert not c.deletescript("filters") and c.errcode == b"ACTIVE"  # §2.10: never the active one
    assert c.renamescript("filters", "rules")  # the active mark moves with the name
    assert c.listscripts() == ("rules", ["other"])
    assert not c.renamescript("other", "rules") and c.errcode == b"ALREADYEXISTS"
    assert not c.getscript("missing") and c.errcode == b"NONEXISTENT"
    assert c.setactive("")  # §2.8: deactivate
    assert c.deletescript("rules") and c.listscripts() == (None, ["other"])


def test_errors_carry_line_and_column(sievelib_client):
    c = sievelib_client
    bad = 'require "fileinto";\r\nif true {\r\n  filein "x";\r\n}\r\n'
    assert not c.checkscript(bad)
    assert c.errmsg.startswith(b"3:3: ")  # the sieve parser's line:column
    assert not c.putscript("bad", bad) and c.errmsg.startswith(b"3:3: ")
    assert c.listscripts() == (None, [])  # §2.6: nothing stored
    assert c.checkscript(SCRIPT)


def test_limits_are_the_repositorys(sievelib_client):
    c = sievelib_client
    big = "# " + "x" * (64 * 1024) + "\r\nkeep;\r\n"
    assert not c.havespace("big", len(big.encode())) and c.errcode == b"QUOTA/MAXSIZE"
    assert not c.putscript("big", big) and c.errcode == b"QUOTA/MAXSIZE"
    for i in range(10):
        assert c.putscript(f"s{i}", "keep;"), c.errmsg
    assert not c.putscript("s10", "keep;") and c.errcode == b"QUOTA/MAXSCRIPTS"
    assert not c.havespace("s10", 5) and c.errcode == b"QUOTA/MAXSCRIPTS"
    assert c.putscript("s3", "discard;")  # replacing one is not a new script


# --- raw protocol ---------------------------------------------------------------------------------
@pytest.fixture
def raw(server, client_ctx):
    c = Raw(server.port, client_ctx)
    c.starttls()
    assert c.login()[-1].startswith(b"OK")
    yield c
    c.close()


def test_literals_quoting_and_pipelining(raw):
    raw.send(b'PUTSCRIPT "caf\xc3\xa9 \\"quoted\\"" {5+}\r\nkeep;\r\nLISTSCRIPTS\r\nNOOP "ping"\r\n')
    assert raw.response() == [b'OK "Script stored"']
    assert raw.response() == ['"café \\"quoted\\"" '.encode().rstrip(), b'OK "Listscripts completed"']
    assert raw.response() == [b'OK (TAG "ping") "Done"']
    got = raw.cmd('GETSCRIPT "café \\"quoted\\""'.encode())
    assert got == [b"{5}\r\nkeep;", b'OK "Getscript completed"']


def test_bad_commands_get_no_and_the_session_goes_on(raw):
    assert raw.cmd(b"FROBNICATE")[-1] == b'NO "Unknown command"'
    assert raw.cmd(b'PUTSCRIPT "only-a-name"')[-1].startswith(b"NO")
    assert raw.cmd(b"HAVESPACE \"x\" \"notanumber\"")[-1].startswith(b"NO")
    assert raw.cmd(b'NOOP "open')[-1].startswith(b'NO "Syntax error')
    assert raw.cmd(b'AUTHENTICATE "PLAIN" "x"')[-1].startswith(b"NO")  # not in the authenticated state
    assert raw.cmd(b'PUTSCRIPT "\xff" "keep;"')[-1].startswith(b"NO")  # names are UTF-8
    assert raw.cmd(b'PUTSCRIPT "a\x01b" "keep;"')[-1].startswith(b"NO")  # no control characters
    assert raw.cmd(b"NOOP")[-1].startswith(b"OK")


def test_oversized_script_literal_is_swallowed(raw):
    body = b"#" * (70 * 1024)
    got = raw.cmd(b'PUTSCRIPT "big" {%d+}\r\n' % len(body) + body)
    assert got[-1].startswith(b"NO (QUOTA/MAXSIZE)")
    assert raw.cmd(b"LISTSCRIPTS") == [b'OK "Listscripts completed"']  # the bytes were not read as commands


def test_too_many_bad_commands_end_the_session(raw):
    raw.send(b"BAD\r\n" * 15)
    lines = [raw.line() for _ in range(MAX_BAD + 2)]
    assert lines[:-1] == [b'NO "Unknown command"'] * (MAX_BAD + 1)
    assert lines[-1].startswith(b"BYE")


def test_preauth_budget_closes(server):
    c = Raw(server.port)
    c.send(b'NOOP "' + b"a" * 1000 + b'"\r\n' * 20 + b"x" * 20000)  # > 16 KiB before login
    out = b""
    while True:
        try:
            chunk = c.sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        out += chunk
    assert b'BYE "Too much data before login' in out
    c.close()


def test_starttls_discards_pipelined_plaintext(server, client_ctx):
    c = Raw(server.port, client_ctx)
    c.send(b"STARTTLS\r\nLOGOUT\r\n")  # LOGOUT injected before the handshake
    assert c.response()[-1].startswith(b"OK")
    c.sock = client_ctx.wrap_socket(c.sock, server_hostname="mail.example.test")
    assert c.response()[-1].startswith(b'OK "TLS negotiation successful"')
    assert c.cmd(b"NOOP")[-1].startswith(b"OK")  # still there: the LOGOUT was dropped
    c.close()


def test_logout(raw):
    assert raw.cmd(b"LOGOUT")[-1].startswith(b"OK")
    assert raw.sock.recv(10) == b""


# --- sieve-connect --------------------------------------------------------------------------------
def test_sieve_connect(server, tmp_path):
    ensure("sieve-connect")
    local = tmp_path / "rules.sieve"
    local.write_bytes(SCRIPT.encode())

    def run(*args: str) -> str:
        r, w = os.pipe()
        os.write(w, PW.encode() + b"\n")
        os.close(w)
        try:
            p = subprocess.run(["sieve-connect", "--server", HOST, "--port", str(server.port), "--user", USER,
                                "--passwordfd", str(r), "--notlsverify", *args],
                               pass_fds=(r,), capture_output=True, text=True, timeout=60)
        finally:
            os.close(r)
        assert p.returncode == 0, (args, p.stdout, p.stderr)
        return p.stdout

    run("--upload", "--localsieve", str(local), "--remotesieve", "rules")
    run("--checkscript", "--localsieve", str(local))
    run("--activate", "--remotesieve", "rules")
    assert run("--list").split() == ['"rules"', "ACTIVE"]
    run("--download", "--remotesieve", "rules", "--localsieve", str(tmp_path / "back.sieve"))
    assert (tmp_path / "back.sieve").read_bytes().replace(b"\r\n", b"\n") == SCRIPT.encode().replace(b"\r\n", b"\n")
    run("--deactivate")
    run("--delete", "--remotesieve", "rules")
    assert run("--list").strip() == ""
