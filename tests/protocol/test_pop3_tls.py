"""POP3 with TLS: STLS (RFC 2595) on the plain port and implicit TLS (995), certificates by trustme."""

from __future__ import annotations

import poplib
import ssl

import pytest
import trustme
from helpers import ServerThread, memory_backend
from pop3_fixtures import MSG1, PASSWORD, USER, Raw, lines_of, logical, populate

from postern_gateway.pop3.server import start_pop3


@pytest.fixture(scope="module")
def ca():
    return trustme.CA()


@pytest.fixture(scope="module")
def server_ctx(ca):
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(ctx)
    return ctx


@pytest.fixture(scope="module")
def client_ctx(ca):
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    return ctx


@pytest.fixture
def backend():
    b = memory_backend(allow_plaintext_auth=False)  # as deployed: no passwords before TLS
    populate(b)
    return b


def refusal(client, line: str) -> bytes:
    with pytest.raises(poplib.error_proto) as exc:
        client._shortcmd(line)
    return exc.value.args[0]


def test_stls_upgrade_then_login(backend, server_ctx, client_ctx):
    with ServerThread(start_pop3, backend, ssl_context=server_ctx) as srv:
        p = poplib.POP3("127.0.0.1", srv.port, timeout=10)
        caps = p.capa()
        assert "STLS" in caps and "USER" not in caps and "SASL" not in caps
        assert refusal(p, "USER " + USER) == (
            b"-ERR [AUTH] Plaintext authentication disallowed on non-TLS connection; use STLS first")
        assert p.stls(client_ctx) == b"+OK Begin TLS negotiation"
        assert p.sock.version() in ("TLSv1.2", "TLSv1.3")
        caps = p.capa()
        assert "STLS" not in caps and "USER" in caps and caps["SASL"] == ["PLAIN"]
        assert refusal(p, "STLS") == b"-ERR Command not permitted when TLS active"  # RFC 2595 §4
        p.user(USER)
        p.pass_(PASSWORD)
        assert p.retr(1)[1] == lines_of(logical(MSG1))
        assert p.quit().startswith(b"+OK")


def test_stls_discards_commands_sent_before_the_handshake(backend, server_ctx, client_ctx):
    """A command injected after STLS in the same packet must not run inside the TLS session."""
    with ServerThread(start_pop3, backend, ssl_context=server_ctx) as srv:
        c = Raw(srv.port)
        c.line()
        c.send(b"STLS\r\nUSER " + USER.encode() + b"\r\n")
        assert c.line() == b"+OK Begin TLS negotiation\r\n"
        assert c.buf == b""
        t = Raw(srv.port, sock=client_ctx.wrap_socket(c.sock, server_hostname="127.0.0.1"))
        t.send(b"PASS " + PASSWORD.encode() + b"\r\n")
        assert t.line() == b"-ERR USER first\r\n"  # the plaintext USER was thrown away
        t.send(b"USER " + USER.encode() + b"\r\nPASS " + PASSWORD.encode() + b"\r\nQUIT\r\n")
        assert t.line() == b"+OK Send your password\r\n"
        assert t.line().startswith(b"+OK Logged in")
        assert t.line().startswith(b"+OK")


def test_failed_handshake_closes_only_that_connection(backend, server_ctx, client_ctx):
    with ServerThread(start_pop3, backend, ssl_context=server_ctx) as srv:
        c = Raw(srv.port)
        c.line()
        c.send(b"STLS\r\n")
        c.line()
        c.send(b"this is not a TLS ClientHello\r\n" * 4)
        assert c.closed()
        p = poplib.POP3("127.0.0.1", srv.port, timeout=10)
        p.stls(client_ctx)
        p.user(USER)
        p.pass_(PASSWORD)
        p.quit()


def test_stls_not_in_transaction(server_ctx):
    b = memory_backend(allow_plaintext_auth=True)
    populate(b)
    with ServerThread(start_pop3, b, ssl_context=server_ctx) as srv:
        p = poplib.POP3("127.0.0.1", srv.port, timeout=10)
        p.user(USER)
        p.pass_(PASSWORD)
        assert refusal(p, "STLS") == b"-ERR Command not valid in this state: STLS"
        p.quit()


def test_implicit_tls(backend, server_ctx, client_ctx):
    with ServerThread(start_pop3, backend, ssl_context=server_ctx, implicit_tls=True) as srv:
        p = poplib.POP3_SSL("127.0.0.1", srv.port, context=client_ctx, timeout=10)
        assert p.getwelcome().startswith(b"+OK")
        caps = p.capa()
        assert "STLS" not in caps and "USER" in caps  # already secure: credentials allowed
        p.user(USER)
        p.pass_(PASSWORD)
        assert p.stat()[0] == 3
        resp, lines, _ = p.retr(1)
        assert lines == lines_of(logical(MSG1))
        p.dele(1)
        p.quit()
    assert backend.store.get_mailbox(USER, "INBOX").exists == 2


def test_implicit_tls_needs_a_context(backend):
    import asyncio

    with pytest.raises(ValueError):
        asyncio.run(start_pop3(backend, "127.0.0.1", 0, implicit_tls=True))
