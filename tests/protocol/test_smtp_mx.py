"""MX role over real sockets with smtplib: every rejection, the smuggling case, SIZE, limits, spool failures."""

from __future__ import annotations

import json
import re
import smtplib
import socket
import time

import pytest
from helpers import HOST, ServerThread, memory_backend

from postern.directory import memory_directory
from postern import status
from postern.envelope import Envelope
from postern.status import Reply
from postern_gateway.smtp.checks import Check
from fakes import MemoryClients
from postern_gateway.smtp.server import start_smtp
from postern_gateway.smtp.spool import Spooler

ENHANCED = re.compile(rb"^[245]\.\d{1,3}\.\d{1,3}( |$)")
MSG = b"From: Sender <s@remote.test>\r\nTo: alice@example.test\r\nSubject: hi\r\n\r\nHello\r\n"


_DIRECTORY = None


def shared_directory():
    """One directory for the module (argon2 hashing makes building one slow); tests only read it."""
    global _DIRECTORY
    if _DIRECTORY is None:
        _DIRECTORY = build_directory(memory_directory())
    return _DIRECTORY


def make_backend(clients=None, *, directory=None, **overrides):
    b = memory_backend(directory=directory or shared_directory(), **overrides)
    b.spooler = Spooler(b.settings, clients if clients is not None else MemoryClients())
    return b


def build_directory(d):
    d.add_domain("example.test")
    d.add_user("alice@example.test", "alice-pw")
    d.add_user("bob@example.test", "bob-pw")
    d.add_user("jörg@example.test", "jorg-pw")
    d.add_alias("postmaster@example.test", ["alice@example.test"])
    d.add_alias("fwd@example.test", ["someone@remote.test"])
    d.add_domain("catchall.test")
    d.add_user("any@catchall.test", "x")
    d.set_catchall("catchall.test", "any@catchall.test")
    return d


@pytest.fixture
def mx():
    clients = MemoryClients()
    with ServerThread(start_smtp, make_backend(clients), role="mx") as srv:
        srv.clients = clients
        yield srv


def client(srv) -> smtplib.SMTP:
    c = smtplib.SMTP(HOST, srv.port, timeout=10)
    c.command_encoding = "utf-8"  # lets the table send non-ASCII paths without SMTPUTF8
    c.ehlo("client.example")
    return c


def envelopes(clients: MemoryClients) -> list[Envelope]:
    return [Envelope.from_json(m) for m in clients.messages]


# Each case: commands sent after EHLO (all but the last must succeed), then the expected reply to the last.
REJECTIONS = [
    ("relaying denied", ["MAIL FROM:<s@remote.test>", "RCPT TO:<x@elsewhere.test>"], 550, b"5.7.1"),
    ("relaying denied, address literal", ["MAIL FROM:<s@remote.test>", "RCPT TO:<x@[192.0.2.1]>"], 550, b"5.7.1"),
    ("unknown local user", ["MAIL FROM:<s@remote.test>", "RCPT TO:<nobody@example.test>"], 550, b"5.1.1"),
    ("unknown user, quoted local part", ["MAIL FROM:<s@remote.test>", 'RCPT TO:<"a b"@example.test>'], 550, b"5.1.1"),
    ("unterminated MAIL path", ["MAIL FROM:<unterminated"], 501, b"5.1.7"),
    ("MAIL path with space", ["MAIL FROM:<a b@remote.test>"], 501, b"5.1.7"),
    ("MAIL path without domain", ["MAIL FROM:<user>"], 501, b"5.1.7"),
    ("MAIL junk after path", ["MAIL FROM:<s@remote.test>junk"], 501, b"5.1.7"),
    ("MAIL empty", ["MAIL FROM:"], 501, b"5.1.7"),
    ("unterminated RCPT path", ["MAIL FROM:<s@remote.test>", "RCPT TO:<alice@example.test"], 501, b"5.1.3"),
    ("RCPT double bracket", ["MAIL FROM:<s@remote.test>", "RCPT TO:<<alice@example.test>>"], 501, b"5.1.3"),
    ("RCPT null path", ["MAIL FROM:<s@remote.test>", "RCPT TO:<>"], 501, b"5.1.3"),
    ("SIZE parameter too big", ["MAIL FROM:<s@remote.test> SIZE=999999999999"], 552, b"5.3.4"),
    ("bad BODY parameter", ["MAIL FROM:<s@remote.test> BODY=9BIT"], 501, b"5.5.4"),
    ("unknown MAIL parameter", ["MAIL FROM:<s@remote.test> FOO=bar"], 555, b"5.5.4"),
    ("non-ASCII path without SMTPUTF8", ["MAIL FROM:<jörg@remote.test>"], 553, b"5.6.7"),
    ("RCPT before MAIL", ["RCPT TO:<alice@example.test>"], 503, b"5.5.1"),
    ("nested MAIL", ["MAIL FROM:<s@remote.test>", "MAIL FROM:<s@remote.test>"], 503, b"5.5.1"),
    ("DATA before RCPT", ["MAIL FROM:<s@remote.test>", "DATA"], 503, b"5.5.1"),
    ("unknown command", ["FROB"], 500, b"5.5.1"),
    ("AUTH not offered on MX", ["AUTH PLAIN AGFsaWNlAGFsaWNlLXB3"], 503, b"5.5.1"),
    ("STARTTLS without TLS", ["STARTTLS"], 454, b"4.7.0"),
    ("EXPN", ["EXPN staff"], 502, b"5.5.1"),
]


@pytest.mark.parametrize("name,commands,code,enhanced", REJECTIONS, ids=[r[0] for r in REJECTIONS])
def test_rejections(mx, name, commands, code, enhanced):
    c = client(mx)
    for cmd in commands[:-1]:
        ok, _ = c.docmd(cmd)
        assert ok == 250, cmd
    got_code, text = c.docmd(commands[-1])
    assert (got_code, text.split(b" ", 1)[0]) == (code, enhanced), text
    c.quit()
    assert mx.clients.messages == []


def test_ehlo_keywords(mx):
    c = smtplib.SMTP(HOST, mx.port, timeout=10)
    code, _ = c.ehlo("client.example")
    assert code == 250
    for kw in ("pipelining", "enhancedstatuscodes", "8bitmime", "smtputf8", "size"):
        assert c.has_extn(kw), kw
    assert c.esmtp_features["size"] == str(mx.backend.settings.max_message_size)
    assert not c.has_extn("auth")
    assert not c.has_extn("starttls")
    help_text = c.docmd("HELP")[1]
    assert b"MAIL" in help_text and b"RCPT" in help_text and b"AUTH" not in help_text
    c.quit()


def test_every_reply_has_enhanced_code(mx):
    c = client(mx)
    replies = [c.docmd(cmd) for cmd in ("NOOP", "HELP", "VRFY <alice@example.test>", "RSET",
                                        "MAIL FROM:<>", "RCPT TO:<alice@example.test>", "RSET")]
    replies.append(c.docmd("QUIT"))
    for code, text in replies:
        assert ENHANCED.match(text), (code, text)


def test_null_sender_accepted_and_spooled_exactly(mx):
    c = client(mx)
    refused = c.sendmail("<>", ["alice@example.test", "Alice@Example.TEST"], MSG)
    assert refused == {}
    c.quit()
    (env,) = envelopes(mx.clients)
    assert env.mail_from == ""
    assert env.rcpt_to == ("alice@example.test", "Alice@Example.TEST")
    assert mx.clients.objects[env.s3_key] == MSG  # S3 holds exactly what arrived
    assert env.s3_key == "spool/" + env.queue_id
    assert env.size == len(MSG)
    assert env.helo == "client.example" and env.client_ip == "127.0.0.1" and env.auth_user is None
    assert not env.tls


def test_received_goes_to_trace_headers_only(mx):
    c = client(mx)
    c.sendmail("s@remote.test", ["alice@example.test"], MSG)
    c.quit()
    (env,) = envelopes(mx.clients)
    t = env.trace_headers
    assert t.startswith("Received: from client.example ([127.0.0.1])\r\n")
    assert f"\tby mx.example.test (Postern) with ESMTP id {env.queue_id}\r\n" in t
    assert "\tfor <alice@example.test>; " in t and t.endswith("\r\n")
    assert b"Received:" not in mx.clients.objects[env.s3_key]
    meta = json.loads(mx.clients.metadata[env.s3_key]["postern-envelope"])
    assert meta["queue_id"] == env.queue_id and meta["rcpt_to"] == ["alice@example.test"]


def test_received_without_for_when_several_recipients(mx):
    c = client(mx)
    c.sendmail("s@remote.test", ["alice@example.test", "bob@example.test"], MSG)
    c.quit()
    (env,) = envelopes(mx.clients)
    assert "for <" not in env.trace_headers


def test_queued_reply_names_queue_id(mx):
    c = client(mx)
    c.mail("s@remote.test")
    c.rcpt("alice@example.test")
    code, text = c.data(MSG)
    c.quit()
    (env,) = envelopes(mx.clients)
    assert (code, text) == (250, f"2.0.0 queued as {env.queue_id}".encode())


def test_alias_plus_and_catchall_accepted(mx):
    c = client(mx)
    c.mail("s@remote.test")
    for rcpt in ("postmaster@example.test", "alice+tag@example.test", "fwd@example.test", "whatever@catchall.test"):
        assert c.rcpt(rcpt)[0] == 250, rcpt
    c.quit()


def test_domainless_postmaster_is_ours(mx):
    """RFC 5321 §4.1.1.3: RCPT TO:<Postmaster> (any case) reaches postmaster@ of our hostname's domain."""
    c = client(mx)
    c.mail("<>")
    assert c.docmd("RCPT TO:<Postmaster>")[0] == 250
    assert c.data(MSG)[0] == 250
    c.quit()
    (env,) = envelopes(mx.clients)
    assert env.rcpt_to == ("postmaster@example.test",)  # hostname mx.example.test -> example.test


def test_helo_client_gets_plain_smtp(mx):
    c = smtplib.SMTP(HOST, mx.port, timeout=10)
    assert c.helo("old.example")[0] == 250
    assert c.sendmail("s@remote.test", ["alice@example.test"], MSG) == {}
    c.quit()
    (env,) = envelopes(mx.clients)
    assert " with SMTP id " in env.trace_headers and env.helo == "old.example"


def test_rset_forgets_the_transaction(mx):
    c = client(mx)
    c.mail("a@remote.test")
    c.rcpt("bob@example.test")
    assert c.rset()[0] == 250
    assert c.docmd("DATA")[0] == 503
    assert c.sendmail("b@remote.test", ["alice@example.test"], MSG) == {}
    c.quit()
    (env,) = envelopes(mx.clients)
    assert (env.mail_from, env.rcpt_to) == ("b@remote.test", ("alice@example.test",))


def test_two_messages_on_one_connection(mx):
    c = client(mx)
    assert c.sendmail("s@remote.test", ["alice@example.test"], MSG) == {}
    assert c.sendmail("<>", ["bob@example.test"], MSG + b"second\r\n") == {}
    c.quit()
    first, second = envelopes(mx.clients)
    assert first.queue_id < second.queue_id  # sortable by arrival
    assert (second.mail_from, second.rcpt_to) == ("", ("bob@example.test",))
    assert mx.clients.objects[second.s3_key] == MSG + b"second\r\n"


def test_recipient_cache_is_positive_only():
    """A new address is accepted at once (refusals are not cached); a removed one may linger for the TTL."""
    d = memory_directory()
    d.add_domain("fresh.test")
    d.add_alias("old@fresh.test", ["someone@remote.test"])  # aliases: no password hashing needed
    with ServerThread(start_smtp, make_backend(directory=d), role="mx") as srv:
        c = client(srv)
        c.mail("s@remote.test")
        assert c.rcpt("new@fresh.test")[0] == 550
        assert c.rcpt("old@fresh.test")[0] == 250
        d.add_alias("new@fresh.test", ["someone@remote.test"])
        d.remove_alias("old@fresh.test")
        assert c.rcpt("new@fresh.test")[0] == 250  # not refused from a cache
        c.rset()
        c.mail("s@remote.test")
        assert c.rcpt("old@fresh.test")[0] == 250  # believed for RCPT_CACHE_TTL; the router reports it later
        c.quit()


def test_duplicate_recipient_recorded_once(mx):
    c = client(mx)
    c.sendmail("s@remote.test", ["alice@example.test", "alice@example.test"], MSG)
    c.quit()
    assert envelopes(mx.clients)[0].rcpt_to == ("alice@example.test",)


def test_8bitmime_and_smtputf8(mx):
    body = "From: Jörg <jörg@remote.test>\r\nSubject: Grüße\r\n\r\nÄpfel und Bäume\r\n".encode()
    c = client(mx)
    refused = c.sendmail("jörg@remote.test", ["jörg@example.test"], body, mail_options=["BODY=8BITMIME", "SMTPUTF8"])
    c.quit()
    assert refused == {}
    (env,) = envelopes(mx.clients)
    assert env.smtputf8 and env.body_8bit
    assert env.mail_from == "jörg@remote.test" and env.rcpt_to == ("jörg@example.test",)
    assert mx.clients.objects[env.s3_key] == body
    assert " with UTF8SMTP id " in env.trace_headers


def test_8bit_body_without_smtputf8(mx):
    body = "Subject: x\r\n\r\ncaf\u00e9\r\n".encode("latin-1")
    c = client(mx)
    c.sendmail("s@remote.test", ["alice@example.test"], body, mail_options=["BODY=8BITMIME"])
    c.quit()
    (env,) = envelopes(mx.clients)
    assert env.body_8bit and not env.smtputf8
    assert mx.clients.objects[env.s3_key] == body


def test_data_over_size_limit():
    clients = MemoryClients()
    with ServerThread(start_smtp, make_backend(clients, max_message_size=2000), role="mx") as srv:
        c = client(srv)
        assert c.esmtp_features["size"] == "2000"
        c.mail("s@remote.test")  # no SIZE= declared: the data itself is measured
        c.rcpt("alice@example.test")
        code, text = c.data(MSG + (b"x" * 70 + b"\r\n") * 40)
        assert (code, text.split(b" ")[0]) == (552, b"5.3.4")
        c.mail("s@remote.test")
        c.rcpt("alice@example.test")
        code, text = c.data(MSG + b"x" * 1200 + b"\r\n")  # RFC 5321 §4.5.3.1.6: 1000 octets per line
        assert (code, text.split(b" ")[0]) == (500, b"5.5.2")
        # the session goes on: a small message after the refusal is accepted
        assert c.sendmail("s@remote.test", ["alice@example.test"], MSG) == {}
        c.quit()
    assert len(clients.messages) == 1


def test_recipient_limit():
    clients = MemoryClients()
    with ServerThread(start_smtp, make_backend(clients), role="mx") as srv:
        c = client(srv)
        c.mail("s@remote.test")
        limit = srv.backend.settings.max_recipients
        assert limit == 100
        for i in range(limit):
            assert c.rcpt(f"u{i}@catchall.test")[0] == 250
        code, text = c.rcpt(f"u{limit}@catchall.test")
        assert (code, text.split(b" ")[0]) == (452, b"4.5.3")
        assert c.data(MSG)[0] == 250
        c.quit()
    (env,) = envelopes(clients)
    assert len(env.rcpt_to) == 100


@pytest.mark.parametrize("failing", ["s3", "sqs"])
def test_spool_failure_answers_451_and_leaves_nothing_dangling(failing):
    clients = MemoryClients(fail_s3=failing == "s3", fail_sqs=failing == "sqs")
    with ServerThread(start_smtp, make_backend(clients), role="mx") as srv:
        c = client(srv)
        c.mail("s@remote.test")
        c.rcpt("alice@example.test")
        code, text = c.data(MSG)
        assert (code, text.split(b" ")[0]) == (451, b"4.3.0")
        c.quit()
    assert clients.messages == []  # no envelope at all, so none points at a missing object
    assert clients.objects == {}  # and the S3 object of a failed send was removed
    expected = ["PutObject"] if failing == "s3" else ["PutObject", "SendMessage", "DeleteObject"]
    assert clients.calls == expected


def test_directory_failure_answers_451():
    backend = make_backend(directory=memory_directory())

    def broken(*a, **kw):
        raise RuntimeError("dynamodb down")

    backend.directory.items.get = broken  # the item layer (DynamoDB) is down
    backend.directory.items.batch_get = broken
    with ServerThread(start_smtp, backend, role="mx") as srv:
        c = client(srv)
        c.mail("s@remote.test")
        code, text = c.rcpt("alice@example.test")
        assert (code, text.split(b" ")[0]) == (451, b"4.3.0")
        c.quit()


def _read_reply(f) -> bytes:
    lines = []
    while True:
        line = f.readline()
        lines.append(line)
        if not line or line[3:4] != b"-":
            return b"".join(lines)


def test_smuggling_bare_lf_dot_does_not_end_data(mx):
    """RFC 5321 §4.1.1.4: only CRLF.CRLF ends DATA; a bare-LF dot line smuggles nothing."""
    smuggled = (
        b"From: s@remote.test\r\nSubject: one\r\n\r\nfirst part"
        b"\n.\nMAIL FROM:<evil@remote.test>\nRCPT TO:<bob@example.test>\nDATA\nSubject: smuggled\n\nevil"
        b"\n.\r\nMAIL FROM:<evil@remote.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n"
        b"\r\n.\nstill the first message\r\n"
    )
    with socket.create_connection((HOST, mx.port), timeout=10) as s:
        f = s.makefile("rb")
        assert _read_reply(f).startswith(b"220 ")
        for cmd, expect in ((b"EHLO client.example", b"250"), (b"MAIL FROM:<s@remote.test>", b"250"),
                            (b"RCPT TO:<alice@example.test>", b"250"), (b"DATA", b"354")):
            s.sendall(cmd + b"\r\n")
            assert _read_reply(f).startswith(expect), cmd
        s.sendall(smuggled + b".\r\n")
        assert _read_reply(f).startswith(b"250 2.0.0 queued as ")
        s.sendall(b"QUIT\r\n")
        assert _read_reply(f).startswith(b"221")
    (env,) = envelopes(mx.clients)  # exactly one message
    assert env.rcpt_to == ("alice@example.test",)
    # Contents as sent. RFC 5321 §4.5.2 transparency applies to CRLF-delimited lines only: the
    # line ".\nstill ..." starts with a dot, which is removed as the client's dot-stuffing.
    assert mx.clients.objects[env.s3_key] == smuggled.replace(b"\r\n.\nstill", b"\r\n\nstill")
    assert b"Subject: smuggled" in mx.clients.objects[env.s3_key]


BARE_CR_CASES = [
    b"From: s@remote.test\r\n\r\nbody\r.\r\nMAIL FROM:<bob@example.test>\r\nRCPT TO:<alice@example.test>\r\n",
    b"From: s@remote.test\r\n\r\na bare CR\rinside a line\r\n",
    b"From: s@remote.test\r\n\r\nline ending CR CR LF\r\r\n",
    b"From: s@remote.test\rSubject: CR in the header\r\n\r\nbody\r\n",
]


@pytest.mark.parametrize("data", BARE_CR_CASES)
def test_bare_cr_in_data_is_refused_and_the_session_goes_on(mx, data):
    """RFC 5321 §2.3.8: a CR only in CRLF. Refused like Postfix's smtpd_forbid_bare_newline; nothing spooled."""
    with socket.create_connection((HOST, mx.port), timeout=10) as s:
        f = s.makefile("rb")
        assert _read_reply(f).startswith(b"220 ")
        for cmd, expect in ((b"EHLO client.example", b"250"), (b"MAIL FROM:<s@remote.test>", b"250"),
                            (b"RCPT TO:<alice@example.test>", b"250"), (b"DATA", b"354")):
            s.sendall(cmd + b"\r\n")
            assert _read_reply(f).startswith(expect), cmd
        s.sendall(data + b".\r\n")
        assert _read_reply(f).startswith(str(status.BARE_CR).encode())
        # the same session still works: a clean message, with a bare LF, is accepted as sent
        for cmd, expect in ((b"MAIL FROM:<s@remote.test>", b"250"), (b"RCPT TO:<alice@example.test>", b"250"),
                            (b"DATA", b"354")):
            s.sendall(cmd + b"\r\n")
            assert _read_reply(f).startswith(expect), cmd
        s.sendall(b"From: s@remote.test\r\n\r\nbare LF\nis fine\r\n.\r\n")
        assert _read_reply(f).startswith(b"250 2.0.0 queued as ")
        s.sendall(b"QUIT\r\n")
    (env,) = envelopes(mx.clients)
    assert mx.clients.objects[env.s3_key] == b"From: s@remote.test\r\n\r\nbare LF\nis fine\r\n"


def test_pipelined_transaction(mx):
    with socket.create_connection((HOST, mx.port), timeout=10) as s:
        f = s.makefile("rb")
        _read_reply(f)
        s.sendall(b"EHLO client.example\r\n")
        _read_reply(f)
        s.sendall(b"MAIL FROM:<s@remote.test>\r\nRCPT TO:<alice@example.test>\r\n"
                  b"RCPT TO:<nobody@example.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n")
        got = [_read_reply(f)[:9] for _ in range(5)]
        assert got == [b"250 2.1.0", b"250 2.1.5", b"550 5.1.1", b"250 2.1.5", b"354 End d"]
        s.sendall(MSG + b".\r\nQUIT\r\n")
        assert _read_reply(f).startswith(b"250 2.0.0")
        assert _read_reply(f).startswith(b"221 2.0.0")
    (env,) = envelopes(mx.clients)
    assert env.rcpt_to == ("alice@example.test", "bob@example.test")


def test_session_cap_refuses_extra_connection():
    with ServerThread(start_smtp, make_backend(max_sessions=1), role="mx") as srv:
        first = client(srv)
        with pytest.raises(smtplib.SMTPConnectError) as exc:
            smtplib.SMTP(HOST, srv.port, timeout=10)
        assert exc.value.smtp_code == 421 and exc.value.smtp_error.startswith(b"4.3.2")
        first.quit()
        for _ in range(50):  # the slot frees when the first session's close is processed
            if not srv.server.postern_sessions.live:
                break
            time.sleep(0.02)
        second = client(srv)
        second.quit()


def test_idle_timeout_says_421():
    with ServerThread(start_smtp, make_backend(smtp_timeout=0.3), role="mx") as srv:
        with socket.create_connection((HOST, srv.port), timeout=10) as s:
            f = s.makefile("rb")
            assert _read_reply(f).startswith(b"220 mx.example.test ESMTP")
            assert _read_reply(f).startswith(b"421 4.4.2")
            assert f.read() == b""  # then closed


def test_server_close_ends_sessions():
    srv = ServerThread(start_smtp, make_backend(), role="mx").__enter__()
    s = socket.create_connection((HOST, srv.port), timeout=10)
    f = s.makefile("rb")
    _read_reply(f)

    async def close():
        srv.server.close()

    srv.call(close)
    assert f.read() == b""
    s.close()
    srv.__exit__(None, None, None)


class Refuse(Check):
    async def on_connect(self, server, session):
        return Reply(554, "5.7.1", "Go away")


class Annotate(Check):
    async def on_rcpt(self, server, session, envelope, recipient):
        return Reply(550, "5.7.1", "Not bob") if recipient.startswith("bob@") else None

    async def on_data(self, server, session, envelope, ctx):
        ctx.trace.append("Authentication-Results: mx.example.test; none\r\n")
        ctx.junk = b"viagra" in ctx.raw
        return None


class Broken(Check):
    async def on_connect(self, server, session):
        raise RuntimeError("dnsbl resolver exploded")


def test_broken_connect_check_defers():
    with ServerThread(start_smtp, make_backend(), role="mx", checks=[Broken()]) as srv:
        with pytest.raises(smtplib.SMTPConnectError) as exc:
            smtplib.SMTP(HOST, srv.port, timeout=10)
        assert (exc.value.smtp_code, exc.value.smtp_error[:5]) == (421, b"4.3.0")


class BrokenData(Check):
    async def on_data(self, server, session, envelope, ctx):
        raise RuntimeError("dkim library crashed")


def test_broken_data_check_defers_and_session_goes_on():
    clients = MemoryClients()
    with ServerThread(start_smtp, make_backend(clients), role="mx", checks=[BrokenData()]) as srv:
        c = client(srv)
        c.mail("s@remote.test")
        c.rcpt("alice@example.test")
        code, text = c.data(MSG)
        assert (code, text[:5]) == (451, b"4.3.0")
        assert c.mail("s@remote.test")[0] == 250  # the transaction was reset: no "nested MAIL"
        c.quit()
    assert clients.messages == []


def test_check_seams():
    clients = MemoryClients()
    with ServerThread(start_smtp, make_backend(), role="mx", checks=[Refuse()]) as srv:
        with pytest.raises(smtplib.SMTPConnectError) as exc:
            smtplib.SMTP(HOST, srv.port, timeout=10)
        assert exc.value.smtp_code == 554
    with ServerThread(start_smtp, make_backend(clients), role="mx", checks=[Annotate()]) as srv:
        c = client(srv)
        c.mail("s@remote.test")
        assert c.rcpt("bob@example.test") == (550, b"5.7.1 Not bob")
        assert c.rcpt("alice@example.test")[0] == 250
        assert c.data(MSG + b"viagra\r\n")[0] == 250
        c.quit()
    (env,) = envelopes(clients)
    assert env.junk
    assert env.trace_headers.startswith("Authentication-Results: mx.example.test; none\r\nReceived: from ")


def test_a_bounce_to_our_srs_address_is_accepted_a_forged_one_refused():
    """RCPT checks an SRS address's hash and age at once (postern.srs): no backscatter later."""
    from postern.srs import Srs

    ours = Srs((b"mx-test-secret",)).forward("carol@remote.test", "example.test")
    clients = MemoryClients()
    with ServerThread(start_smtp, make_backend(clients, srs_secret=("mx-test-secret",)), role="mx") as srv:
        c = client(srv)
        c.mail("")
        assert c.rcpt(ours)[0] == 250
        forged = "SRS0=AAAA" + ours[len("SRS0=xxxx"):]
        code, text = c.rcpt(forged)
        assert (code, text.split(b" ")[0]) == (550, b"5.1.1")
        assert c.data(b"From: MAILER-DAEMON@remote.test\r\nSubject: bounce\r\n\r\nno such user\r\n")[0] == 250
        c.quit()
    (env,) = envelopes(clients)
    assert env.rcpt_to == (ours,) and env.mail_from == ""


def test_a_strictly_parsed_path_is_not_parsed_again_by_the_stdlib_header_parser(mx, monkeypatch):
    """MAIL and RCPT read each path once with the gateway's own grammar (paths.py): aiosmtpd's reader
    (the stdlib header parser, ~10x the CPU) is not run for paths that grammar accepted."""
    import aiosmtpd.smtp

    def refuse(*_a, **_k):
        raise AssertionError("the stdlib header parser ran for a strictly parsed path")

    monkeypatch.setattr(aiosmtpd.smtp, "get_angle_addr", refuse)
    monkeypatch.setattr(aiosmtpd.smtp, "get_addr_spec", refuse)
    c = client(mx)
    assert c.sendmail("<>", ["alice@example.test"], MSG) == {}
    assert c.sendmail("someone@remote.example", ["<postmaster>", "alice+x@example.test"], MSG,
                      mail_options=["SIZE=%d" % len(MSG), "BODY=8BITMIME"]) == {}
    c.quit()
    first, second = envelopes(mx.clients)
    assert (first.mail_from, first.rcpt_to) == ("", ("alice@example.test",))
    assert second.mail_from == "someone@remote.example" and second.body_8bit
    assert second.rcpt_to == ("postmaster@example.test", "alice+x@example.test")
