"""The From: parser differentials (issue 11 finding 5) end to end, through the hostile harness.

What the submission check sees, what DMARC on the MX sees and what IMAP's ENVELOPE shows must be
one author. Against the gateway in its own process (postern_local.liveness, canary running):
the finding's shapes (``From :`` above ``From:``, a line without a colon between two From:
fields, a leading continuation line) are refused on submission, the multi-From ones on the MX
(550 5.7.1, RFC 7489 §6.6.1); the obsolete ``From :`` alone is accepted and, after the pipeline
has stored it, ENVELOPE read over the same gateway's IMAP shows exactly that author. The table
of every shape on both ports is tests/protocol/test_header_policy.py.
"""

from __future__ import annotations

import imaplib
import re
import smtplib

SHAPES = {  # name: (header, refused on submission, refused on the MX)
    "obsolete From : above From:": (b"From : {victim}\r\nFrom: {own}\r\n", True, True),
    "a line without a colon between two From:": (b"From: {own}\r\nno colon here\r\nFrom: {victim}\r\n", True, True),
    "a leading continuation line": (b" From: {victim}\r\nFrom: {own}\r\n", True, False),
}


def _data(port: int, header: bytes, rcpt: str, sender: str, login=None) -> tuple[int, bytes]:
    with smtplib.SMTP("127.0.0.1", port, timeout=60) as c:
        c.ehlo("client.example")
        if login:
            c.login(*login)
        assert c.mail(sender)[0] == 250 and c.rcpt(rcpt)[0] == 250
        try:
            return c.data(header + b"To: " + rcpt.encode() + b"\r\nSubject: differential\r\n\r\nbody\r\n")
        except smtplib.SMTPDataError as exc:
            return exc.smtp_code, exc.smtp_error


def _envelope_froms(port: int, user: str, password: str) -> list[bytes]:
    c = imaplib.IMAP4("127.0.0.1", port, timeout=30)
    c.login(user, password)
    c.select("INBOX")
    typ, data = c.fetch("1:*", "(ENVELOPE)")
    c.logout()
    # ENVELOPE (date subject from ...): no message here has a date, so the first "((" is From's list
    return [re.search(rb"ENVELOPE \(.*?\(\((.*?)\)\)", d[0] if isinstance(d, tuple) else d).group(1)
            for d in data if d]


def test_one_author_for_checks_dmarc_and_envelope(hostile, stack, new_user):
    alice, alice_pw = new_user("alice")
    bob, bob_pw = new_user("bob")
    outcomes = {}

    def attack():
        for name, (shape, _, _) in SHAPES.items():
            header = shape.replace(b"{own}", alice.encode()).replace(b"{victim}", b"Boss <ceo@" + alice.split("@")[1].encode() + b">")
            outcomes[("submission", name)] = _data(hostile.ports["submission"], header, bob, alice, (alice, alice_pw))
            outcomes[("mx", name)] = _data(hostile.ports["smtp"], header, bob, "far@remote.test")
        # the obsolete syntax alone is a From: field for every reader (RFC 5322 §4.5)
        outcomes[("mx", "obsolete alone")] = _data(hostile.ports["smtp"], b"From : Mallory <mallory@remote.test>\r\n",
                                                  bob, "far@remote.test")
        outcomes[("submission", "obsolete alone")] = _data(
            hostile.ports["submission"], b"From : Alice <" + alice.encode() + b">\r\n", bob, alice, (alice, alice_pw))

    result = hostile.measure(attack)
    print("From: differentials:", result)
    result.check()
    for name, (_, at_submission, at_mx) in SHAPES.items():
        for port, refused in (("submission", at_submission), ("mx", at_mx)):
            code, text = outcomes[(port, name)]
            if refused:
                assert code == 550 and text.startswith(b"5.7.1 Message header refused"), (port, name, code, text)
            else:
                assert code == 250, (port, name, code, text)
    assert outcomes[("mx", "obsolete alone")][0] == 250
    assert outcomes[("submission", "obsolete alone")][0] == 250
    stack.drain()
    froms = _envelope_froms(hostile.ports["imap"], bob, bob_pw)
    # stored: the MX's leading-continuation message (its one From: field is alice's; the folded
    # first line belongs to no field) and the two obsolete-syntax messages, each showing its author
    assert b'"Mallory" NIL "mallory" "remote.test"' in froms
    assert b'"Alice" NIL "alice" "' + alice.split("@")[1].encode() + b'"' in froms
    assert all(b"ceo" not in f for f in froms), froms
    assert len(froms) == 3, froms
