"""TLS on every port with trustme certificates; no password before TLS; STARTTLS injection and downgrade.

Ports (as the gateway app starts them): SMTP MX STARTTLS (25/2525), submission STARTTLS
(587/1587), submissions implicit TLS (465/1465), IMAP STARTTLS (143/1143), IMAPS (993/1993),
POP3 STLS (110/1110), POP3S (995/1995) — here all on 127.0.0.1 port 0, with
``allow_plaintext_auth=False`` as a deployed stack runs, and the server context built by
``trust.tls.new_context`` (TLS 1.2 minimum, intermediate ciphers).
"""

from __future__ import annotations

import imaplib
import poplib
import smtplib
import socket
import ssl
import threading

import pytest
import trustme
from helpers import HOST, ServerThread, memory_backend

from postern_gateway.imap.server import start_imap
from postern_gateway.pop3.server import start_pop3
from fakes import MemoryClients
from postern_gateway.smtp.server import start_smtp
from postern_gateway.smtp.spool import Spooler
from postern_gateway.trust import tls

USER, PASSWORD = "alice@example.test", "alice-pw"
MSG = b"From: alice@example.test\r\nTo: bob@example.test\r\nSubject: tls\r\n\r\nover TLS\r\n"
TLS_PORTS_TESTED: set[str] = set()


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


def backend(**overrides):
    b = memory_backend(allow_plaintext_auth=False, **overrides)
    b.directory.add_domain("example.test")
    b.directory.add_user(USER, PASSWORD)
    b.directory.add_user("bob@example.test", "bob-pw")
    b.spooler = Spooler(b.settings, MemoryClients())
    return b


@pytest.fixture
def servers(server_ctx):
    """Every listener of the gateway, keyed by its app name."""
    specs = {
        "smtp": (start_smtp, dict(role="mx")),
        "submission": (start_smtp, dict(role="submission")),
        "submissions": (start_smtp, dict(role="submission", implicit_tls=True)),
        "imap": (start_imap, {}),
        "imaps": (start_imap, dict(implicit_tls=True)),
        "pop3": (start_pop3, {}),
        "pop3s": (start_pop3, dict(implicit_tls=True)),
    }
    running = {}
    try:
        for name, (factory, kw) in specs.items():
            srv = ServerThread(factory, backend(), ssl_context=server_ctx, **kw).__enter__()
            running[name] = srv
        yield {k: v.port for k, v in running.items()}
    finally:
        for srv in running.values():
            srv.__exit__(None, None, None)


# --- every port, the right way ---------------------------------------------------------
def test_smtp_mx_starttls(servers, client_ctx):
    with smtplib.SMTP(HOST, servers["smtp"], timeout=10) as c:
        c.ehlo("client.test")
        assert c.has_extn("starttls") and not c.has_extn("auth")
        c.starttls(context=client_ctx)
        assert c.sock.version() in ("TLSv1.2", "TLSv1.3")
        c.ehlo("client.test")
        assert not c.has_extn("starttls")  # RFC 3207 §4.2: not offered again
        assert c.sendmail("s@remote.test", ["alice@example.test"], MSG) == {}
    TLS_PORTS_TESTED.add("smtp")


def test_submission_starttls_then_auth(servers, client_ctx):
    with smtplib.SMTP(HOST, servers["submission"], timeout=10) as c:
        c.ehlo("client.test")
        assert c.has_extn("starttls") and not c.has_extn("auth")
        c.starttls(context=client_ctx)
        c.ehlo("client.test")
        assert c.has_extn("auth")
        c.login(USER, PASSWORD)
        assert c.sendmail(USER, ["bob@example.test"], MSG) == {}
    TLS_PORTS_TESTED.add("submission")


def test_submissions_implicit_tls(servers, client_ctx):
    with smtplib.SMTP_SSL(HOST, servers["submissions"], timeout=10, context=client_ctx) as c:
        c.ehlo("client.test")
        assert c.has_extn("auth") and not c.has_extn("starttls")
        c.login(USER, PASSWORD)
        assert c.sendmail(USER, ["bob@example.test"], MSG) == {}
    TLS_PORTS_TESTED.add("submissions")


def test_imap_starttls(servers, client_ctx):
    c = imaplib.IMAP4(HOST, servers["imap"], timeout=10)
    try:
        assert "STARTTLS" in c.capabilities and "LOGINDISABLED" in c.capabilities
        c.starttls(ssl_context=client_ctx)
        assert "STARTTLS" not in c.capabilities and "LOGINDISABLED" not in c.capabilities
        assert c.login(USER, PASSWORD)[0] == "OK"
        assert c.select("INBOX")[0] == "OK"
    finally:
        c.logout()
    TLS_PORTS_TESTED.add("imap")


def test_imaps(servers, client_ctx):
    c = imaplib.IMAP4_SSL(HOST, servers["imaps"], ssl_context=client_ctx, timeout=10)
    try:
        assert "STARTTLS" not in c.capabilities and "AUTH=PLAIN" in c.capabilities
        assert c.login(USER, PASSWORD)[0] == "OK"
    finally:
        c.logout()
    TLS_PORTS_TESTED.add("imaps")


def test_pop3_stls(servers, client_ctx):
    p = poplib.POP3(HOST, servers["pop3"], timeout=10)
    try:
        assert "STLS" in p.capa()
        p.stls(context=client_ctx)
        assert "STLS" not in p.capa()
        p.user(USER)
        assert p.pass_(PASSWORD).startswith(b"+OK")
    finally:
        p.quit()
    TLS_PORTS_TESTED.add("pop3")


def test_pop3s(servers, client_ctx):
    p = poplib.POP3_SSL(HOST, servers["pop3s"], timeout=10, context=client_ctx)
    try:
        p.user(USER)
        assert p.pass_(PASSWORD).startswith(b"+OK")
    finally:
        p.quit()
    TLS_PORTS_TESTED.add("pop3s")


def test_every_port_was_tested():
    # runs last in this module (pytest keeps file order)
    assert TLS_PORTS_TESTED == {"smtp", "submission", "submissions", "imap", "imaps", "pop3", "pop3s"}


# --- no password before TLS (a stripped STARTTLS is a client that never starts TLS) ------------
def test_smtp_auth_refused_before_tls(servers):
    with smtplib.SMTP(HOST, servers["submission"], timeout=10) as c:
        c.ehlo("client.test")
        assert not c.has_extn("auth")
        code, _ = c.docmd("AUTH", "PLAIN AGFsaWNlQGV4YW1wbGUudGVzdABhbGljZS1wdw==")
        assert code in (530, 538), code  # STARTTLS first / encryption required
        code, _ = c.docmd("AUTH", "LOGIN")
        assert code in (530, 538)
        assert c.docmd("MAIL", "FROM:<alice@example.test>")[0] == 530  # nothing before STARTTLS
    with smtplib.SMTP(HOST, servers["smtp"], timeout=10) as c:
        c.ehlo("client.test")
        assert c.docmd("AUTH", "PLAIN AGFsaWNlQGV4YW1wbGUudGVzdABhbGljZS1wdw==")[0] >= 500  # MX: no AUTH ever


def test_imap_login_refused_before_tls(servers):
    c = imaplib.IMAP4(HOST, servers["imap"], timeout=10)
    try:
        with pytest.raises(imaplib.IMAP4.error) as e:
            c.login(USER, PASSWORD)
        assert "PRIVACYREQUIRED" in str(e.value) or "disabled" in str(e.value).lower()
        typ, data = c._simple_command("AUTHENTICATE", "PLAIN", "AGFsaWNlQGV4YW1wbGUudGVzdABhbGljZS1wdw==")
        assert typ == "NO"
        assert c.state == "NONAUTH"
    finally:
        c.logout()


def test_pop3_user_pass_refused_before_tls(servers):
    p = poplib.POP3(HOST, servers["pop3"], timeout=10)
    try:
        assert "USER" not in p.capa()
        with pytest.raises(poplib.error_proto):
            p.user(USER)
            p.pass_(PASSWORD)
        with pytest.raises(poplib.error_proto):
            p._shortcmd("AUTH PLAIN AGFsaWNlQGV4YW1wbGUudGVzdABhbGljZS1wdw==")
        with pytest.raises(poplib.error_proto):
            p.stat()  # still not logged in
    finally:
        p.quit()


@pytest.mark.parametrize("factory,kw,kind", [
    (start_smtp, dict(role="submission"), "smtp"),
    (start_imap, {}, "imap"),
    (start_pop3, {}, "pop3"),
], ids=["submission", "imap", "pop3"])
def test_no_tls_configured_still_no_plaintext_auth(factory, kw, kind):
    """Downgrade by misconfiguration: no certificate at all -> no STARTTLS offered, AUTH still refused."""
    with ServerThread(factory, backend(), **kw) as srv:
        if kind == "smtp":
            with smtplib.SMTP(HOST, srv.port, timeout=10) as c:
                c.ehlo("client.test")
                assert not c.has_extn("starttls") and not c.has_extn("auth")
                assert c.docmd("AUTH", "PLAIN AGFsaWNlQGV4YW1wbGUudGVzdABhbGljZS1wdw==")[0] >= 500
                assert c.docmd("MAIL", "FROM:<alice@example.test>")[0] == 530
        elif kind == "imap":
            c = imaplib.IMAP4(HOST, srv.port, timeout=10)
            try:
                assert "STARTTLS" not in c.capabilities and "LOGINDISABLED" in c.capabilities
                with pytest.raises(imaplib.IMAP4.error):
                    c.login(USER, PASSWORD)
            finally:
                c.logout()
        else:
            p = poplib.POP3(HOST, srv.port, timeout=10)
            try:
                assert "STLS" not in p.capa()
                with pytest.raises(poplib.error_proto):
                    p.user(USER)
                    p.pass_(PASSWORD)
            finally:
                p.quit()


def test_tls_1_1_client_refused_on_a_port(servers):
    old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    old.check_hostname = False
    old.verify_mode = ssl.CERT_NONE
    try:
        old.minimum_version = ssl.TLSVersion.TLSv1
        old.maximum_version = ssl.TLSVersion.TLSv1_1
    except (ValueError, ssl.SSLError):
        pytest.skip("this OpenSSL cannot offer TLS 1.1")
    with pytest.raises((ssl.SSLError, OSError)):
        imaplib.IMAP4_SSL(HOST, servers["imaps"], ssl_context=old, timeout=10)


# --- STARTTLS command injection (CVE-2011-0411 class): bytes before the handshake are discarded ---
class Raw:
    def __init__(self, port):
        self.sock = socket.create_connection((HOST, port), timeout=10)
        self.buf = b""

    def line(self) -> bytes:
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise EOFError(self.buf)
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def send(self, data: bytes):
        self.sock.sendall(data)

    def tls(self, ctx):
        assert self.buf == b"", f"server sent plaintext after the go-ahead: {self.buf!r}"
        self.sock = ctx.wrap_socket(self.sock, server_hostname="mail.example.test")

    def close(self):
        self.sock.close()


def test_smtp_pipelined_after_starttls_not_executed(servers, client_ctx):
    c = Raw(servers["submission"])
    try:
        assert c.line().startswith(b"220")
        c.send(b"EHLO x.test\r\n")
        while not c.line().startswith(b"250 "):
            pass
        # the injected command rides in the same packet as STARTTLS
        c.send(b"STARTTLS\r\nAUTH PLAIN AGFsaWNlQGV4YW1wbGUudGVzdABhbGljZS1wdw==\r\n")
        assert c.line().startswith(b"220")
        c.tls(client_ctx)
        c.send(b"NOOP\r\n")
        first = c.line()
        assert first.startswith(b"250"), f"an injected command was answered after TLS: {first!r}"
        c.send(b"EHLO x.test\r\n")
        lines = [c.line()]
        while not lines[-1].startswith(b"250 "):
            lines.append(c.line())
        c.send(b"MAIL FROM:<alice@example.test>\r\n")
        assert c.line().startswith(b"530"), "AUTH from before the handshake took effect"
    finally:
        c.close()


def test_imap_pipelined_after_starttls_not_executed(servers, client_ctx):
    c = Raw(servers["imap"])
    try:
        assert c.line().startswith(b"* OK")
        c.send(b"a STARTTLS\r\nb LOGIN alice@example.test alice-pw\r\n")
        line = c.line()
        assert line.startswith(b"a OK"), line
        c.tls(client_ctx)
        c.send(b"c NOOP\r\n")
        lines = [c.line()]
        while not lines[-1].startswith(b"c "):
            lines.append(c.line())
        assert not any(x.startswith(b"b ") for x in lines), lines
        c.send(b"d SELECT INBOX\r\n")
        lines = [c.line()]
        while not lines[-1].startswith(b"d "):
            lines.append(c.line())
        assert lines[-1].startswith(b"d BAD") or lines[-1].startswith(b"d NO"), "injected LOGIN took effect"
    finally:
        c.close()


def test_pop3_pipelined_after_stls_not_executed(servers, client_ctx):
    c = Raw(servers["pop3"])
    try:
        assert c.line().startswith(b"+OK")
        c.send(b"STLS\r\nUSER alice@example.test\r\n")
        assert c.line().startswith(b"+OK")
        c.tls(client_ctx)
        c.send(b"PASS alice-pw\r\n")
        assert c.line().startswith(b"-ERR"), "USER from before the handshake took effect"
    finally:
        c.close()


def _tls_handover(monkeypatch) -> threading.Event:
    """Set when a server hands its transport to TLS (``loop.start_tls``): its plaintext reads end
    there. The synchronous part of start_tls (pause reading, swap in the TLS protocol) runs right
    after the event is set, before the loop reads the socket again, so a client that waits for
    the event and then sends its ClientHello is read by the TLS layer (no fixed sleep)."""
    import asyncio.base_events

    event = threading.Event()
    original = asyncio.base_events.BaseEventLoop.start_tls

    async def start_tls(self, *args, **kwargs):
        event.set()
        return await original(self, *args, **kwargs)

    monkeypatch.setattr(asyncio.base_events.BaseEventLoop, "start_tls", start_tls)
    return event


def test_imap_plaintext_arriving_while_starttls_is_answered_is_discarded(servers, client_ctx, monkeypatch):
    """The other half of the injection class: bytes that reach the server's stream buffer *after* it
    read STARTTLS but before the TLS layer takes the socket (here the server is held for 0.3 s
    right after its go-ahead so the injected line is certain to land in that window)."""
    from postern_gateway.imap import session as imap_session

    original = imap_session.Session.start_tls

    async def held(self):
        import asyncio

        await asyncio.sleep(0.3)
        await original(self)

    monkeypatch.setattr(imap_session.Session, "start_tls", held)
    handed_over = _tls_handover(monkeypatch)
    c = Raw(servers["imap"])
    try:
        assert c.line().startswith(b"* OK")
        c.send(b"a STARTTLS\r\n")
        assert c.line().startswith(b"a OK")
        c.send(b"b LOGIN alice@example.test alice-pw\r\n")  # plaintext, injected after the go-ahead
        assert handed_over.wait(10)
        c.tls(client_ctx)
        c.send(b"c SELECT INBOX\r\n")
        lines = [c.line()]
        while not lines[-1].startswith(b"c "):
            lines.append(c.line())
        assert not any(x.startswith(b"b ") for x in lines), lines
        assert not lines[-1].startswith(b"c OK"), "plaintext LOGIN injected before the handshake took effect"
    finally:
        c.close()


def test_pop3_plaintext_arriving_while_stls_is_answered_is_discarded(servers, client_ctx, monkeypatch):
    """As the IMAP case above, for POP3's STLS (the server is held 0.3 s after its +OK)."""
    import asyncio

    from postern_gateway.pop3 import server as pop3_server

    original = pop3_server._Connection._start_tls

    async def held(self):
        await asyncio.sleep(0.3)
        return await original(self)

    monkeypatch.setattr(pop3_server._Connection, "_start_tls", held)
    handed_over = _tls_handover(monkeypatch)
    c = Raw(servers["pop3"])
    try:
        assert c.line().startswith(b"+OK")
        c.send(b"STLS\r\n")
        assert c.line().startswith(b"+OK")
        c.send(b"USER alice@example.test\r\n")  # plaintext, injected after the go-ahead
        assert handed_over.wait(10)
        c.tls(client_ctx)
        c.send(b"PASS alice-pw\r\n")
        assert c.line().startswith(b"-ERR"), "USER injected before the handshake took effect"
    finally:
        c.close()


def test_gateway_reloads_certificate_without_restart(tmp_path, ca):
    """The app's own wiring: Gateway.start -> trust.tls.server_context -> CertificateStore.start();
    new files are picked up by the mtime watcher, the listeners never restart, live sessions survive."""
    import asyncio
    import hashlib
    import os
    import threading
    import time

    from postern_gateway.app import Gateway

    def write(cert):
        cert.cert_chain_pems[0].write_to_path(str(tmp_path / "cert.pem"))
        for blob in cert.cert_chain_pems[1:]:
            blob.write_to_path(str(tmp_path / "cert.pem"), append=True)
        cert.private_key_pem.write_to_path(str(tmp_path / "key.pem"))

    write(ca.issue_cert("mail.example.test", "127.0.0.1"))
    b = backend()
    settings = b.settings.replace(bind="127.0.0.1", smtp_port=-1, submission_port=-1, submissions_port=-1,
                                  imap_port=-1, pop3_port=-1, pop3s_port=-1, imaps_port=0, managesieve_port=-1,
                                  tls_cert_file=str(tmp_path / "cert.pem"), tls_key_file=str(tmp_path / "key.pem"),
                                  tls_reload_interval=0.05)
    b.settings = settings
    loop = asyncio.new_event_loop()
    t = threading.Thread(target=loop.run_forever, daemon=True)
    t.start()
    gw = Gateway(settings, clients=object(), backend=b)
    try:
        ports = asyncio.run_coroutine_threadsafe(gw.start(), loop).result(30)
        client = ssl.create_default_context()
        ca.configure_trust(client)

        def peer_fp():
            c = imaplib.IMAP4_SSL(HOST, ports["imaps"], ssl_context=client, timeout=10)
            der = c.sock.getpeercert(binary_form=True)
            return c, hashlib.sha256(der).hexdigest()

        live, first = peer_fp()
        write(ca.issue_cert("mail.example.test", "127.0.0.1"))
        os.utime(tmp_path / "cert.pem", ns=(3, 3))
        store = gw.ssl_context.postern_store
        for _ in range(200):
            if store.reloads:
                break
            time.sleep(0.05)
        other, second = peer_fp()
        assert store.reloads == 1 and second != first
        assert gw.ports["imaps"] == ports["imaps"]  # same listener, no restart
        assert live.noop()[0] == "OK"  # the session opened before the reload carries on
        live.logout()
        other.logout()
    finally:
        asyncio.run_coroutine_threadsafe(gw.stop(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        t.join(10)
