"""The lockout spellings (issue 11 finding 6) against the gateway process and the state table.

The gateway runs in its own process (postern_local.liveness) with the DynamoDB-backed counters
of the local stack, so this is the lockout as deployed: global counters, keyed on the directory's
canonical account. Carol logs in from her usual address; an attacker elsewhere fails with three
spellings of her name until she is locked; then every spelling (angle brackets, case, fullwidth
letters and dots, ideographic full stop) is refused on IMAP, POP3 and submission, while her usual
address still gets in (a known client) and the canary is served throughout.
"""

from __future__ import annotations

import base64
import imaplib
import poplib
import smtplib

import pytest

from postern_local.liveness import IMAP4From, POP3From

HOME, ATTACKER = "127.0.0.2", "127.0.0.3"
IDEOGRAPHIC_FULL_STOP = "\u3002"


def fullwidth(text: str) -> str:
    """ASCII letters, digits, '-' and '.' as their fullwidth forms (NFKC folds them back)."""
    return "".join(chr(ord(c) + 0xFEE0) if c.isalnum() or c == "-" else "\uff0e" if c == "." else c for c in text)


def imap_login(port: int, source: str, user: str, pw: str) -> bytes:
    c = IMAP4From(port, source)
    try:
        typ, data = c.authenticate("PLAIN", lambda _: f"\0{user}\0{pw}".encode())
        return b"OK " + data[0]
    except imaplib.IMAP4.error as exc:
        return str(exc).encode()
    finally:
        c.shutdown()


def test_lockout_holds_for_every_spelling(hostile_gateway, new_user):
    gw = hostile_gateway(POSTERN_AUTH_FAIL_USER_LIMIT="3")
    carol, pw = new_user("carol")
    local, domain = carol.split("@")
    spellings = [carol, f"<{carol}>", carol.upper(), f"{local}@{fullwidth(domain)}",
                 local + "@" + domain.replace(".", IDEOGRAPHIC_FULL_STOP)]
    port = gw.ports["imap"]

    def attack():
        for name in spellings:  # the directory takes every spelling: she can log in with each
            assert imap_login(port, HOME, name, pw).startswith(b"OK"), name
        for name in spellings[1:4]:
            assert b"AUTHENTICATIONFAILED" in imap_login(port, ATTACKER, name, "wrong")
        for name in spellings:
            reply = imap_login(port, ATTACKER, name, pw)
            assert b"UNAVAILABLE" in reply and b"locked" in reply, (name, reply)
            p = POP3From(gw.ports["pop3"], ATTACKER)
            p.user(name)
            with pytest.raises(poplib.error_proto, match="locked"):
                p.pass_(pw)
            p.quit()
            with smtplib.SMTP("127.0.0.1", gw.ports["submission"], timeout=10, source_address=(ATTACKER, 0)) as c:
                c.ehlo("laptop.example")
                code, msg = c.docmd("AUTH", "PLAIN " + base64.b64encode(f"\0{name}\0{pw}".encode()).decode())
                assert code == 454 and b"locked" in msg, (name, code, msg)
        assert imap_login(port, HOME, spellings[3], pw).startswith(b"OK")  # her own address: a known client

    print(gw.measure(attack).check())
