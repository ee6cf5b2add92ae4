"""The header bomb on the SMTP ports (issue 11 finding 1), through the hostile harness.

A header folded over thousands of lines of RFC 2047 encoded-words made the stdlib header
parser (``policy.default``) use memory growing with the square of their number: one 168 KB
message to port 25, unauthenticated, took the gateway from 0.37 to 2.1 GB. Every reader now
goes through postern.mail (a linear decoder, 64 words per field, 8 KiB per structured field),
so the same messages cost a few MiB. Each attack runs against the gateway in its own process
under RLIMIT_AS while a canary probes it (postern_local.liveness: a second client's greeting or
NOOP within 2 s, peak RSS under 512 MiB). The MX gateway checks mail from loopback too
(POSTERN_INBOUND_AUTH_SKIP set elsewhere), so SPF/DKIM/DMARC and the From: policy see the bombs.
"""

from __future__ import annotations

import smtplib


ATTACKER = "127.0.0.7"
WORDS = 12_000  # ~168 KB of header, as in the finding


def bomb(words: int = WORDS) -> bytes:
    """``words`` encoded-words folded five to a line."""
    lines = [b" ".join(b"=?utf-8?q?=C3=A9t=C3=A9?=" for _ in range(5)) for _ in range(words // 5)]
    return b"\r\n ".join(lines)


def _send(port: int, rcpt: str, message: bytes, login: tuple[str, str] | None = None,
          sender: str = "mallory@remote.test") -> tuple[int, bytes]:
    with smtplib.SMTP("127.0.0.1", port, timeout=120, source_address=(ATTACKER, 0)) as c:
        c.ehlo("attacker.example")
        if login:
            c.login(*login)
        assert c.mail(sender)[0] == 250
        assert c.rcpt(rcpt)[0] == 250
        try:
            return c.data(message)
        except smtplib.SMTPDataError as exc:
            return exc.smtp_code, exc.smtp_error


def test_header_bomb_on_the_smtp_ports(hostile_gateway, new_user):
    gateway = hostile_gateway(POSTERN_INBOUND_AUTH_SKIP="192.0.2.1/32")
    _mx(gateway, new_user)
    _submission(gateway, new_user)


def _mx(gateway, new_user) -> None:
    victim, _ = new_user("victim")
    b = bomb()
    messages = {
        # the author's display name: past 8 KiB no readable From: is left, refused (RFC 7489 §6.6.1)
        "from": b"From: " + b + b" <ceo@remote.test>\r\nTo: " + victim.encode() + b"\r\nSubject: x\r\n\r\nbody\r\n",
        # the same in fields the checks read as text or as a list: accepted, read in linear time
        "others": (b"From: Mallory <mallory@remote.test>\r\nTo: " + b + b" <" + victim.encode() + b">\r\n"
                   b"Subject: " + b + b"\r\nAuthentication-Results: " + b + b"\r\n"
                   b"References: " + b"\r\n ".join(b"<%d@x>" % i for i in range(WORDS)) + b"\r\n\r\nbody\r\n"),
    }
    replies = {}

    def attack():
        for name, raw in messages.items():
            replies[name] = _send(gateway.ports["smtp"], victim, raw)

    result = gateway.measure(attack, label="mx")
    print("MX header bomb:", result, {k: (v[0], v[1][:60]) for k, v in replies.items()})
    result.check()
    assert replies["from"][0] == 550 and b"Message header refused" in replies["from"][1]
    assert replies["others"][0] == 250, replies["others"]


def _submission(gateway, new_user) -> None:
    user, password = new_user("sender")
    victim, _ = new_user("victim")
    b = bomb()
    own = user.encode()
    messages = {
        "from": b"From: " + b + b" <" + own + b">\r\nTo: " + victim.encode() + b"\r\n\r\nbody\r\n",
        "others": b"From: " + bomb(250) + b" <" + own + b">\r\nTo: " + victim.encode() + b"\r\nSubject: " + b + b"\r\n\r\nbody\r\n",
    }
    replies = {}

    def attack():
        for name, raw in messages.items():
            replies[name] = _send(gateway.ports["submission"], victim, raw, login=(user, password), sender=user)

    result = gateway.measure(attack, label="submission")
    print("submission header bomb:", result, {k: (v[0], v[1][:60]) for k, v in replies.items()})
    result.check()
    assert replies["from"][0] == 550 and b"Message header refused" in replies["from"][1]
    assert replies["others"][0] == 250, replies["others"]
