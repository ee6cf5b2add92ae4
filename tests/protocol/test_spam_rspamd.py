"""The MX port's spam check against the real rspamd (Debian's package, installed when missing), over smtplib.

rspamd and Redis run on free loopback ports with DNS pointed at a stub answering NXDOMAIN at once
(postern_local.rspamd): GTUBE is refused in the session with 550 5.7.1 and nothing is queued; a ham
message is accepted with the verdict in the envelope and our X-Spam-* block on top of the trace
prefix (the stored bytes unchanged, forged X-Spam-* fields left in them); one DATA reply serves every
recipient (a recipient whose reject threshold keeps GTUBE gets it, judged spam: Junk); rspamd
refusing connections or not answering in time -> accepted ``unchecked`` and counted; Bayes learning
through the controller. rspamd is told the client is a TEST-NET address (rspamd_testing), so a
message scores the same on every run; its antivirus module asks a fake clamd (INSTREAM on loopback)
that flags the EICAR test file: refused in the session.
"""

from __future__ import annotations

import asyncio
import secrets
import smtplib
import socket
import time

import pytest
from debian_packages import ensure
from helpers import HOST, ServerThread, memory_backend

from fakes import MemoryClients
from postern.envelope import Envelope
from postern.pipeline.router import plan
from postern.verdicts import SpamVerdict
from postern_gateway.smtp.server import start_smtp
from postern_gateway.smtp.spool import Spooler
from postern_gateway.spam import check
from postern_gateway.spam.check import SpamCheck
from postern_gateway.spam.rspamd import Rspamd
from rspamd_testing import CLIENT_IP, EICAR, EICAR_NAME, FakeClamd
from rspamd_testing import scanner_for

GTUBE = b"XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"


@pytest.fixture(scope="module")
def clamd():
    with FakeClamd() as c:
        yield c


@pytest.fixture(scope="module")
def rspamd(clamd):
    """rspamd with its antivirus module asking the fake clamd (POSTERN_LOCAL_CLAMD / RspamdClamd)."""
    ensure("rspamd")
    ensure("redis-server")
    from postern_local.rspamd import LocalRspamd, version

    with LocalRspamd(clamd=clamd.address) as r:
        r.version = version()
        yield r


def backend(client):
    b = memory_backend()
    b.directory.add_domain("example.test")
    b.directory.add_user("alice@example.test", "pw")
    b.directory.add_user("bob@example.test", "pw")
    b.directory.set_spam_thresholds("bob@example.test", junk=8, reject=100)
    b.spooler = Spooler(b.settings, MemoryClients())
    b.spam = client
    return b


@pytest.fixture(scope="module")
def mx(rspamd):
    b = backend(scanner_for(rspamd))
    with ServerThread(start_smtp, b, role="mx", checks=[SpamCheck(b)]) as srv:
        yield srv


def message(body: bytes, extra: bytes = b"") -> bytes:
    return (b"From: Bob Sender <bob@sender.example>\r\nTo: alice@example.test\r\nSubject: lunch on Tuesday\r\n"
            b"Date: Mon, 07 Dec 2026 12:00:00 +0000\r\nMessage-ID: <m1@sender.example>\r\n" + extra +
            b"\r\n" + body)


HAM = message(b"Shall we have lunch on Tuesday at noon? The usual place.\r\n\r\nRegards, Bob\r\n",
              extra=b"X-Spam-Flag: NO\r\nX-Spam-Score: -50\r\n")
SPAM = message(GTUBE + b"\r\n")


def send(srv, raw: bytes, rcpts=("alice@example.test",)):
    with smtplib.SMTP(HOST, srv.port, timeout=30) as c:
        c.ehlo("mail.sender.example")
        c.docmd("MAIL FROM:<bob@sender.example>")
        for r in rcpts:
            assert c.docmd(f"RCPT TO:<{r}>")[0] == 250
        return c.data(raw)


def queued(srv) -> list[Envelope]:
    return [Envelope.from_json(m) for m in srv.backend.spooler.clients.messages]


def test_gtube_refused_in_the_session(mx):
    before = len(queued(mx))
    code, text = send(mx, SPAM)
    assert (code, text) == (550, b"5.7.1 Message refused as spam")
    assert len(queued(mx)) == before  # nothing accepted, nothing to bounce (no backscatter)


def test_ham_accepted_with_the_verdict(mx, rspamd):
    t0 = time.monotonic()
    code, _ = send(mx, HAM)
    elapsed = time.monotonic() - t0
    assert code == 250
    env = queued(mx)[-1]
    assert mx.backend.spam.seen[-1].client_ip == CLIENT_IP  # rspamd judged a TEST-NET client, not loopback
    assert env.spam["action"] == "no action" and env.spam["score"] < 6 and env.spam["symbols"]
    block, _, rest = env.trace_headers.partition("Received:")
    assert block.startswith("X-Spam-Action: no action\r\nX-Spam-Score: ") and "X-Spam-Flag: NO\r\n" in block
    assert mx.backend.spooler.clients.objects[env.s3_key] == HAM  # the received bytes, forged fields and all
    (job,) = plan(env, mx.backend.directory).store
    verdict = SpamVerdict.from_dict(job.spam)
    assert (job.mailbox, verdict.spamtest(), verdict.is_spam) == ("INBOX", 1, False)
    print(f"rspamd {rspamd.version}: ham message {elapsed * 1000:.0f} ms end to end over SMTP")


def test_the_same_message_scores_the_same_every_time(mx):
    """DNS answered NXDOMAIN by the stub, a TEST-NET client, no local_addrs: nothing varies between runs."""
    for _ in range(2):
        assert send(mx, HAM)[0] == 250
    a, b = queued(mx)[-2:]
    assert (a.spam["score"], a.spam["symbols"]) == (b.spam["score"], b.spam["symbols"])


def with_attachment(payload: bytes, name: str) -> bytes:
    import base64

    return message(b"--b1\r\nContent-Type: text/plain\r\n\r\nThe file you asked for.\r\n--b1\r\n"
                   b"Content-Type: application/octet-stream; name=" + name.encode() + b"\r\n"
                   b"Content-Disposition: attachment; filename=" + name.encode() + b"\r\n"
                   b"Content-Transfer-Encoding: base64\r\n\r\n" + base64.encodebytes(payload) + b"--b1--\r\n",
                   extra=b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b1\r\n")


def test_a_virus_is_refused_through_rspamd_and_clamd(mx, clamd):
    """rspamd's antivirus module hands every attachment to clamd (INSTREAM); a virus forces rspamd's
    reject whatever the score, and every recipient's thresholds (bob's reject score is 100)."""
    before = list(clamd.scans)
    queued_before = len(queued(mx))
    code, text = send(mx, with_attachment(b"%PDF-1.4 a harmless report\r\n" * 20, "report.pdf"))
    assert code == 250 and "CLAM_VIRUS" not in queued(mx)[-1].spam["symbols"]
    code, text = send(mx, with_attachment(EICAR, "eicar.com"), ("alice@example.test", "bob@example.test"))
    assert (code, text) == (550, b"5.7.1 Message refused: it carries a virus")
    assert clamd.scans[len(before):] == ["OK", EICAR_NAME]  # one INSTREAM per attachment, through rspamd
    assert len(queued(mx)) == queued_before + 1  # the virus was never accepted


def test_a_hung_clamd_costs_the_scan_seconds_not_the_verdict(mx, clamd):
    clamd.hung = True
    try:
        code, _ = send(mx, with_attachment(secrets.token_bytes(600), "data.bin"))
    finally:
        clamd.hung = False
    assert code == 250
    env = queued(mx)[-1]
    assert env.spam["action"] != "unchecked" and "CLAM_VIRUS_FAIL" in env.spam["symbols"]  # judged without clamd


def test_one_reply_for_all_recipients(mx):
    """bob's reject score (100) keeps GTUBE: accepted for both, each judged with their own thresholds."""
    code, _ = send(mx, SPAM, ("alice@example.test", "bob@example.test"))
    assert code == 250
    env = queued(mx)[-1]
    assert env.spam["action"] == "reject" and env.trace_headers.startswith("X-Spam-Action: reject\r\n")
    verdicts = {j.user: SpamVerdict.from_dict(j.spam) for j in plan(env, mx.backend.directory).store}
    assert verdicts["alice@example.test"].spamtest() == 10  # at her reject score
    assert 2 <= verdicts["bob@example.test"].spamtest() < 10 and verdicts["bob@example.test"].is_spam  # Junk


def test_rspamd_learns_through_the_controller(rspamd):
    client = Rspamd(rspamd.url, rspamd.controller_url, timeout=10)
    raw = (b"From: a@b.example\r\nTo: alice@example.test\r\nSubject: cheap watches\r\n"
           b"Message-ID: <learn-" + secrets.token_hex(4).encode() + b"@b.example>\r\n\r\n"
           + b"Buy cheap replica watches now, best prices, limited offer, click here today. " * 20 + b"\r\n")
    assert asyncio.run(client.learn(True, raw)) == "learned"
    again = asyncio.run(client.learn(True, raw))
    assert "already learned" in again  # rspamd's 208: done, not an error (the job is not retried)


@pytest.fixture
def silent_port():
    """A listener that accepts and never answers (rspamd hung)."""
    s = socket.socket()
    s.bind((HOST, 0))
    s.listen(8)
    yield s.getsockname()[1]
    s.close()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("case", ["down", "slow"])
def test_filter_ill_accepts_unchecked(case, silent_port, capfd):
    port = closed_port() if case == "down" else silent_port
    b = backend(Rspamd(f"http://{HOST}:{port}", timeout=0.5))
    before = dict(check.UNCHECKED)
    with ServerThread(start_smtp, b, role="mx", checks=[SpamCheck(b)]) as srv:
        t0 = time.monotonic()
        code, _ = send(srv, SPAM)
        elapsed = time.monotonic() - t0
        assert code == 250 and elapsed < 10  # bounded by POSTERN_RSPAMD_TIMEOUT (0.5 s here)
        (env,) = queued(srv)
    assert env.spam == {"action": "unchecked"} and "X-Spam-" not in env.trace_headers
    reason = "unavailable" if case == "down" else "timeout"
    assert check.UNCHECKED[reason] == before.get(reason, 0) + 1
    assert '"SpamUnchecked":1}' in capfd.readouterr().out  # the metric, as an EMF line on stdout
    (job,) = plan(env, b.directory).store
    assert job.mailbox == "INBOX" and SpamVerdict.from_dict(job.spam).spamtest() == 0
