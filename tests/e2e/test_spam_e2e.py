"""Spam filtering end to end: the embedded stack's MX asking the real rspamd (Debian's package, started
on free ports by postern_local.rspamd, DNS stubbed), the real router and store functions, results read
over IMAP.

GTUBE refused in the session (550 5.7.1); a ham message in INBOX with our X-Spam-* block on top; a user
whose reject score (``postern user spam``) keeps GTUBE finds it in Junk; rspamd stopped -> the message
is still accepted, into INBOX, counted unchecked. Learning: IMAP MOVE into Junk reaches rspamd's
/learnspam, out of it /learnham (rspamd's own counters say so), and a hung controller does not slow
the MOVE. The user's moves (postern.junk, one rule for both protocols): a JMAP Email/set into Junk
and out of it (the webmail's Spam / Not spam) is exactly one lesson each, through the learn queue to
the gateway's reader and on to rspamd, with $Junk / $NotJunk right over IMAP; an IMAP MOVE out of
Junk clears $Junk; delivery into Junk and Junk -> Trash teach nothing.
"""

from __future__ import annotations

import asyncio
import imaplib
import json
import secrets
import smtplib
import socket
import time
import urllib.request

import pytest
from debian_packages import ensure

from postern.cli import main as postern
from postern_gateway.spam import check
from postern_gateway.spam.learn import Learner
from postern_gateway.spam.rspamd import Rspamd
from rspamd_testing import LessonTap, scanner_for

HOST = "127.0.0.1"
GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"


@pytest.fixture(scope="module")
def rspamd():
    ensure("rspamd")
    ensure("redis-server")
    from postern_local.rspamd import LocalRspamd

    with LocalRspamd() as r:
        yield r


def use(stack, monkeypatch, r) -> None:
    """The stack's gateway scans with ``r``, telling it the client is a TEST-NET address (the session
    stack itself runs without a filter)."""
    monkeypatch.setattr(stack.gateway.backend, "spam", scanner_for(r, timeout=5, hostname=stack.settings.hostname))


def send(stack, rcpt: str, subject: str, body: str, extra: str = "") -> None:
    raw = (f"From: Bob <bob@sender.example>\r\nTo: {rcpt}\r\nSubject: {subject}\r\n"
           f"Date: Mon, 07 Dec 2026 12:00:00 +0000\r\nMessage-ID: <{secrets.token_hex(6)}@sender.example>\r\n"
           f"{extra}\r\n{body}\r\n").encode()
    with smtplib.SMTP(HOST, stack.smtp_port, timeout=30) as c:
        c.ehlo("mail.sender.example")
        c.sendmail("bob@sender.example", [rcpt], raw)


def mailbox(stack, user, password, name) -> list[bytes]:
    c = imaplib.IMAP4(HOST, stack.imap_port, timeout=30)
    try:
        c.login(user, password)
        typ, data = c.select(f'"{name}"')
        assert typ == "OK"
        return [c.fetch(str(i), "(BODY.PEEK[])")[1][0][1] for i in range(1, int(data[0]) + 1)]
    finally:
        c.logout()


def test_gtube_refused_ham_delivered(stack, rspamd, monkeypatch, new_user):
    use(stack, monkeypatch, rspamd)
    user, pw = new_user()
    with pytest.raises(smtplib.SMTPDataError) as refused:
        send(stack, user, "win", GTUBE)
    assert (refused.value.smtp_code, refused.value.smtp_error) == (550, b"5.7.1 Message refused as spam")
    send(stack, user, "lunch on Tuesday", "Shall we have lunch on Tuesday at noon? Regards, Bob")
    stack.drain()
    (ham,) = mailbox(stack, user, pw, "INBOX")
    head = ham.split(b"\r\nReceived:", 1)[0]
    assert b"\r\nX-Spam-Action: no action\r\n" in head and b"X-Spam-Flag: NO\r\n" in head
    assert mailbox(stack, user, pw, "Junk") == []


def test_users_own_reject_score_keeps_gtube_in_junk(stack, rspamd, monkeypatch, new_user, capsys):
    use(stack, monkeypatch, rspamd)
    user, pw = new_user()
    assert postern(["user", "spam", user, "--reject", "100"], settings=stack.settings, clients=stack.clients) == 0
    send(stack, user, "win", GTUBE)
    stack.drain()
    (junk,) = mailbox(stack, user, pw, "Junk")
    assert b"X-Spam-Action: reject\r\n" in junk and b"X-Spam-Flag: YES\r\n" in junk
    assert mailbox(stack, user, pw, "INBOX") == []
    assert LessonTap(stack, user).lessons(0) == []  # the filter's own verdict is no lesson


def flags(stack, user, password, name) -> list[bytes]:
    c = imaplib.IMAP4(HOST, stack.imap_port, timeout=30)
    try:
        c.login(user, password)
        typ, data = c.select(f'"{name}"')
        assert typ == "OK"
        return [c.fetch(str(i), "(FLAGS)")[1][0] for i in range(1, int(data[0]) + 1)]
    finally:
        c.logout()


FORGED_HAM = "X-Spam-Status: No, score=-50.0\r\nX-Spam-Score: -50\r\nX-Spam-Flag: NO\r\n"
# rspamd itself scores an upstream filter's "X-Spam-Flag: YES" or "X-Spam-Status: Yes" (its SPAM_FLAG rule, +5: from a
# TEST-NET client that is greylisted, 451); these forms it leaves alone, so the ham is accepted.
FORGED_SPAM = "X-Spam-Status: spam, score=99.0\r\nX-Spam-Score: 99\r\nX-Spam-Level: ***************\r\n"


def test_forged_x_spam_fields_change_nothing(stack, rspamd, monkeypatch, new_user, capsys, tmp_path):
    """A sender's own X-Spam-* fields (below our block) neither keep spam out of Junk nor send ham there,
    nor reach the user's Sieve header tests: only rspamd's verdict, saved with the message, counts."""
    use(stack, monkeypatch, rspamd)
    user, pw = new_user()
    assert postern(["user", "spam", user, "--reject", "100"], settings=stack.settings, clients=stack.clients) == 0
    script = tmp_path / "forged.sieve"
    script.write_text('require ["fileinto", "mailbox"];\r\n'
                      'if anyof(header :contains "X-Spam-Status" "score=99", header :is "X-Spam-Score" "99")'
                      ' { fileinto :create "Forged"; }\r\n')
    assert postern(["user", "sieve", "put", user, "main", str(script), "--activate"], settings=stack.settings,
                   clients=stack.clients) == 0, capsys.readouterr().err
    send(stack, user, "win", GTUBE, extra=FORGED_HAM)
    send(stack, user, "lunch on Tuesday", "Shall we have lunch on Tuesday at noon? Regards, Bob", extra=FORGED_SPAM)
    stack.drain()
    (junk,) = mailbox(stack, user, pw, "Junk")
    (ham,) = mailbox(stack, user, pw, "INBOX")
    assert b"Subject: win" in junk and b"Subject: lunch on Tuesday" in ham
    assert junk.index(b"X-Spam-Flag: YES") < junk.index(b"X-Spam-Flag: NO")  # ours first; theirs kept, unread
    assert b"$Junk" in flags(stack, user, pw, "Junk")[0] and b"$Junk" not in flags(stack, user, pw, "INBOX")[0]
    (m,) = stack.store.list_messages(stack.store.get_mailbox(user, "Junk"))  # the store's DynamoDB entry
    assert (m.spam.action, m.spam.reject_score) == ("reject", 100.0) and 2 <= m.spam.spamtest() < 10
    assert "GTUBE" in m.spam.symbols


def test_rspamd_stopped_mail_still_accepted_unchecked(stack, monkeypatch, new_user, capfd):
    from postern_local.rspamd import LocalRspamd

    with LocalRspamd(redis=False) as r:
        use(stack, monkeypatch, r)
        r.stop_rspamd()
        user, pw = new_user()
        before = check.UNCHECKED["unavailable"]
        send(stack, user, "while the filter is down", GTUBE)
        assert check.UNCHECKED["unavailable"] == before + 1
        assert '"SpamUnchecked":1}' in capfd.readouterr().out  # the Postern/SpamUnchecked metric (EMF)
    stack.drain()
    (kept,) = mailbox(stack, user, pw, "INBOX")  # not refused, not lost, not judged
    assert b"X-Spam-" not in kept.split(b"\r\n\r\n", 1)[0]
    (m,) = stack.store.list_messages(stack.store.get_mailbox(user, "INBOX"))
    assert m.spam.action == "unchecked" and m.spam.spamtest() == 0 and "$Junk" not in m.flags  # marked unchecked


def learned(r) -> int:
    return json.loads(urllib.request.urlopen(f"{r.controller_url}/stat", timeout=10).read())["learned"]


def teach(stack, monkeypatch, client) -> Learner:
    learner = Learner(stack.gateway.backend, client)
    monkeypatch.setattr(stack.gateway.backend, "learner", learner)
    return learner


def idle(stack, learner) -> None:
    asyncio.run_coroutine_threadsafe(learner.idle(), stack._loop).result(60)


def move(stack, user, pw, source, dest) -> float:
    c = imaplib.IMAP4(HOST, stack.imap_port, timeout=30)
    try:
        c.login(user, pw)
        c.select(f'"{source}"')
        t0 = time.monotonic()
        typ, _ = c.uid("MOVE", "1:*", f'"{dest}"')
        elapsed = time.monotonic() - t0
        assert typ == "OK"
        return elapsed
    finally:
        c.logout()


def test_imap_move_teaches_rspamd(stack, rspamd, monkeypatch, new_user):
    use(stack, monkeypatch, rspamd)
    learner = teach(stack, monkeypatch, stack.gateway.backend.spam)
    user, pw = new_user()
    words = " ".join(secrets.token_hex(4) for _ in range(40))  # a message rspamd has not learned yet
    send(stack, user, "cheap offer", f"Buy now, limited offer: {words}")
    stack.drain()
    before = learned(rspamd)
    move(stack, user, pw, "INBOX", "Junk")
    idle(stack, learner)
    assert learner.counts["learned"] == 1 and learned(rspamd) == before + 1  # /learnspam
    assert len(mailbox(stack, user, pw, "Junk")) == 1
    move(stack, user, pw, "Junk", "INBOX")  # not spam after all: /learnham (rspamd relearns it as ham)
    idle(stack, learner)
    assert learner.counts["learned"] == 2 and learned(rspamd) == before + 2


def test_a_hung_controller_does_not_slow_the_move(stack, monkeypatch, new_user):
    hung = socket.socket()
    hung.bind((HOST, 0))
    hung.listen(8)
    try:
        port = hung.getsockname()[1]
        learner = teach(stack, monkeypatch, Rspamd(f"http://{HOST}:{port}", f"http://{HOST}:{port}", timeout=3))
        user, pw = new_user()
        send(stack, user, "hello", "Just a note.")
        stack.drain()
        elapsed = move(stack, user, pw, "INBOX", "Junk")
        assert elapsed < 2.5  # the lesson waits 3 s for the hung controller; the MOVE did not
        idle(stack, learner)
        assert learner.counts["failed"] == 1 and learner.counts["learned"] == 0
        assert len(mailbox(stack, user, pw, "Junk")) == 1
    finally:
        hung.close()


# --- the user's moves into and out of Junk, over IMAP and JMAP: one rule (postern.junk) -------------
def imap_flags(stack, user, pw, name) -> list[set[str]]:
    """FETCH FLAGS of every message in ``name``, without \\Recent (a session's own view)."""
    return [{x.decode() for x in imaplib.ParseFlags(f)} - {"\\Recent"} for f in flags(stack, user, pw, name)]


def test_imap_move_out_of_junk_clears_junk_and_each_move_is_one_lesson(stack, new_user):
    """Mail filed in Junk at delivery (here an APPEND with $Junk, as delivery writes it) teaches nothing; a
    MOVE out sets $NotJunk and clears $Junk (it did not), back in the reverse; one lesson per move, through
    the learn queue (the session's gateway has no rspamd: it sends, as a mailbox-access task does)."""
    user, pw = new_user()
    tap = LessonTap(stack, user)
    c = imaplib.IMAP4(HOST, stack.imap_port, timeout=30)
    try:
        c.login(user, pw)
        assert c.append("Junk", "($Junk)", None, b"Subject: cheap\r\n\r\nBuy now.\r\n")[0] == "OK"
    finally:
        c.logout()
    assert tap.lessons(0) == []  # filed by the filter (or APPEND): not the user's move
    move(stack, user, pw, "Junk", "INBOX")
    assert tap.lessons(1) == [(False, "INBOX", 1)]
    assert imap_flags(stack, user, pw, "INBOX") == [{"$NotJunk"}]
    move(stack, user, pw, "INBOX", "Junk")
    assert tap.lessons(2) == [(False, "INBOX", 1), (True, "Junk", 1)]
    assert imap_flags(stack, user, pw, "Junk") == [{"$Junk"}]
    move(stack, user, pw, "Junk", "Trash")  # deleting spam teaches nothing and keeps $Junk
    assert tap.lessons(2) == [(False, "INBOX", 1), (True, "Junk", 1)]
    assert imap_flags(stack, user, pw, "Trash") == [{"$Junk"}]


class Jmap:
    """JMAP over HTTP at the stack's local front (Basic auth on loopback), as the webmail talks to it."""

    def __init__(self, stack, user: str, password: str):
        import base64
        import urllib.parse

        self.auth = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        session = self._http(stack.http_url + "/.well-known/jmap")
        self.api = urllib.parse.urljoin(stack.http_url + "/", session["apiUrl"])
        self.account = session["primaryAccounts"]["urn:ietf:params:jmap:mail"]

    def _http(self, url: str, body: dict | None = None) -> dict:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(url, data=data, headers={"Authorization": self.auth,
                                                              "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as r:
            return json.loads(r.read())

    def call(self, method: str, args: dict) -> dict:
        out = self._http(self.api, {"using": ["urn:ietf:params:jmap:core", "urn:ietf:params:jmap:mail"],
                                    "methodCalls": [[method, {"accountId": self.account, **args}, "0"]]})
        (name, result, _), = out["methodResponses"]
        assert name == method, result
        return result


def test_jmap_move_into_and_out_of_junk_teaches_rspamd_once_and_sets_the_keywords(stack, rspamd, monkeypatch,
                                                                                  new_user):
    """Email/set moving an Email into Junk (the webmail's Spam) is one spam lesson that reaches rspamd,
    $Junk over IMAP ($junk over JMAP); the same update again changes nothing; out of Junk (Not spam) is one
    ham lesson, $NotJunk and no $Junk."""
    use(stack, monkeypatch, rspamd)
    learner = Learner(stack.gateway.backend, stack.gateway.backend.spam)
    user, pw = new_user()
    words = " ".join(secrets.token_hex(4) for _ in range(40))  # a message rspamd has not learned yet
    send(stack, user, "cheap offer", f"Buy now, limited offer: {words}")
    stack.drain()
    tap = LessonTap(stack, user, learner)
    before = learned(rspamd)
    j = Jmap(stack, user, pw)
    boxes = {m["role"]: m["id"] for m in j.call("Mailbox/get", {"properties": ["role"]})["list"] if m["role"]}
    (eid,) = j.call("Email/query", {"filter": {"inMailbox": boxes["inbox"]}})["ids"]
    spam = {eid: {f"mailboxIds/{boxes['inbox']}": None, f"mailboxIds/{boxes['junk']}": True}}
    assert list(j.call("Email/set", {"update": spam})["updated"]) == [eid]
    assert tap.lessons(1) == [(True, "Junk", 1)]
    idle(stack, learner)
    assert learner.counts["learned"] == 1 and learned(rspamd) == before + 1  # /learnspam
    assert "$Junk" in imap_flags(stack, user, pw, "Junk")[0] and "$NotJunk" not in imap_flags(stack, user, pw, "Junk")[0]
    (got,) = j.call("Email/get", {"ids": [eid], "properties": ["keywords", "mailboxIds"]})["list"]
    assert got["mailboxIds"] == {boxes["junk"]: True} and got["keywords"].get("$junk") and "$notjunk" not in got["keywords"]
    assert list(j.call("Email/set", {"update": spam})["updated"]) == [eid]  # again: already there, no lesson
    assert tap.lessons(1) == [(True, "Junk", 1)]
    ham = {eid: {f"mailboxIds/{boxes['junk']}": None, f"mailboxIds/{boxes['inbox']}": True}}
    assert list(j.call("Email/set", {"update": ham})["updated"]) == [eid]
    assert tap.lessons(2) == [(True, "Junk", 1), (False, "INBOX", 1)]
    idle(stack, learner)
    assert learner.counts["learned"] == 2 and learned(rspamd) == before + 2  # /learnham
    (inbox,) = imap_flags(stack, user, pw, "INBOX")
    assert "$NotJunk" in inbox and "$Junk" not in inbox and imap_flags(stack, user, pw, "Junk") == []
