"""Forwarding (postern.forwarding): the SRS sender, the in-place From: rewrite SES needs, and the
DKIM signature and ARC seal of the forwarding domain, verified with dkimpy."""

from __future__ import annotations

import time

import dkim as dkimpy
import pytest

from postern import dkim, forwarding
from postern.canonical import canonical
from postern.envelope import OutboundJob
from postern.mail.header import Header
from postern.srs import Srs

OURS = {"fwd.example", "example.test"}
SRS = Srs((b"fwd-secret",))
AR = (b"Authentication-Results: mx.example.test (1 earlier Authentication-Results with this authserv-id ignored);\r\n"
      b"\tspf=pass smtp.mailfrom=ext.example;\r\n\tdkim=pass header.d=ext.example;\r\n"
      b"\tdmarc=pass header.from=ext.example\r\n")
MSG = (b"Received: from a by b\r\n"
       b"From: =?utf-8?q?J=C3=B6rg?= Example\r\n <jorg@ext.example>\r\n"
       b"To: team@fwd.example\r\nSubject: forwarded\r\nDate: Fri, 15 Jan 2027 08:00:00 +0000\r\n"
       b"Message-ID: <m1@ext.example>\r\n"
       b"Authentication-Results: mx.example.test; dmarc=pass header.from=forged.example\r\n"
       b"\r\nbody line\r\n.dot line\r\n")


def is_local(d: str) -> bool:
    return d in OURS


def job(**kw) -> OutboundJob:
    base = dict(queue_id="Q1", s3_key="spool/Q1", mail_from="jorg@ext.example", domain="remote.test",
                recipients=("carol@remote.test",), original_recipients=("team@fwd.example",))
    base.update(kw)
    return OutboundJob(**base)


def test_plan_an_alias_forward_of_outside_mail():
    p = forwarding.plan(job(), MSG, "ses", is_local, lambda: SRS)
    assert (p.domain, p.address, p.rewrite_from) == ("fwd.example", "team@fwd.example", True)
    assert p.envelope_from.startswith("SRS0=") and p.envelope_from.endswith("=ext.example=jorg@fwd.example")
    assert SRS.reverse(p.envelope_from) == "jorg@ext.example"
    smtp = forwarding.plan(job(), MSG, "smarthost", is_local, lambda: SRS)
    assert smtp.rewrite_from is False and smtp.envelope_from == p.envelope_from  # SMTP: From: stays


def test_plan_what_is_not_a_forward_or_needs_no_rewrite():
    asked = []

    def srs():
        asked.append(1)
        return SRS

    assert forwarding.plan(job(original_recipients=("",)), MSG, "ses", is_local, srs) is None  # submission
    own = forwarding.plan(job(mail_from="alice@example.test"), MSG.replace(b"jorg@ext.example", b"alice@example.test")
                          .replace(b"=?utf-8?q?J=C3=B6rg?= Example\r\n ", b""), "ses", is_local, srs)
    assert own.envelope_from == "alice@example.test" and own.rewrite_from is False and asked == []
    bounce = forwarding.plan(job(mail_from="", original_recipients=(SRS.forward("a@ext.example", "fwd.example"),)),
                             b"From: MAILER-DAEMON@remote.test\r\n\r\nx\r\n", "ses", is_local, srs)
    assert (bounce.envelope_from, bounce.address, bounce.rewrite_from) == ("", "postmaster@fwd.example", True)
    no_srs = forwarding.plan(job(), MSG, "ses", is_local, lambda: None)
    assert no_srs.envelope_from == "team@fwd.example"  # SES: a verified address is all that works


def test_rewrite_replaces_from_in_place_and_keeps_every_other_byte():
    out = forwarding.rewrite_originator(MSG, "team@fwd.example", "fwd.example")
    old_from = b"From: =?utf-8?q?J=C3=B6rg?= Example\r\n <jorg@ext.example>\r\n"
    new_from, rest = out[out.index(b"From: "):].split(b"\r\nReply-To:", 1)
    assert new_from == b"From: =?utf-8?q?J=C3=B6rg_Example_via_fwd=2Eexample?= <team@fwd.example>"
    assert rest.startswith(b" =?utf-8?q?J=C3=B6rg?= Example\r\n <jorg@ext.example>\r\nTo: ")  # value as written
    assert out.replace(new_from + b"\r\nReply-To:" + old_from[len(b"From:"):], old_from) == MSG
    assert out.count(b"Reply-To:") == 1


def test_an_existing_reply_to_stands_and_a_foreign_sender_is_replaced():
    m = b"From: a@ext.example\r\nReply-To: list@ext.example\r\nSender: bounces@lists.ext.example\r\n\r\nb\r\n"
    out = forwarding.rewrite_originator(m, "team@fwd.example", "fwd.example")
    assert out == (b'From: "a@ext.example via fwd.example" <team@fwd.example>\r\nReply-To: list@ext.example\r\n'
                   b"Sender: team@fwd.example\r\n\r\nb\r\n")


def _key_and_dns():
    key = dkim.generate_rsa("sel")
    return key, dkim.dnsfunc_for({key.record_name("fwd.example"): key.txt_record()})


def test_arc_seal_verifies_and_records_only_our_topmost_results():
    key, dns = _key_and_dns()
    msg = canonical(AR + forwarding.rewrite_originator(MSG, "team@fwd.example", "fwd.example"))
    arc = forwarding.arc_seal(msg, "fwd.example", [key], "mx.example.test", time.time(), trusted_end=len(AR))
    assert arc.startswith(b"ARC-Seal: i=1;") and b"ARC-Message-Signature: i=1;" in arc
    sealed = arc + msg
    cv, results, reason = dkimpy.arc_verify(sealed, dnsfunc=dns)
    assert cv == dkimpy.CV_Pass, reason
    aar = Header(sealed).get(b"arc-authentication-results")
    assert b"dmarc=pass header.from=ext.example" in aar and b"forged.example" not in aar
    tampered = sealed.replace(b"body line", b"body lime")
    assert dkimpy.arc_verify(tampered, dnsfunc=dns)[0] == dkimpy.CV_Fail


@pytest.mark.parametrize("msg, trusted, keys", [
    (MSG, 0, "rsa"),  # no results of our MX: the one in the received bytes (forged) is not believed
    (AR + MSG, 0, "rsa"),  # ours, but not in what Postern prepended
    (AR + MSG, len(AR), "ed25519"),  # no RSA key (ARC is rsa-sha256)
])
def test_no_seal_without_our_results_or_an_rsa_key(msg, trusted, keys):
    key = dkim.generate_rsa("sel") if keys == "rsa" else dkim.generate_ed25519("sel")
    assert forwarding.arc_seal(canonical(msg), "fwd.example", [key], "mx.example.test", time.time(), trusted) == b""


def test_deliverer_builds_a_signed_and_sealed_forward(aws):
    """Deliverer.build end to end: SRS sender, From: rewritten for ses, DKIM by the forwarding
    domain (aligned with the new From:), ARC set on top; the body as received."""
    from postern.directory import dynamo_directory
    from postern.pipeline.deliver import Deliverer

    settings, clients, _ = aws
    settings = settings.replace(srs_secret=("fwd-secret",), hostname="mx.example.test")
    directory = dynamo_directory(settings, clients)
    directory.add_domain("fwd.example")
    key, dns = _key_and_dns()
    dkim.KeyStore(settings, clients).put("fwd.example", [key])

    class Ses:
        name = "ses"

    d = Deliverer(settings, clients, transport=Ses(), directory=directory)
    data, sender = d.build(job(trace_headers=AR.decode()), MSG, time.time())
    assert SRS.reverse(sender) == "jorg@ext.example" and sender.endswith("@fwd.example")
    assert dkim.header_from_domain(data) == "fwd.example"
    assert dkim.verify_all(data, dns) == [True]
    assert dkimpy.arc_verify(data, dnsfunc=dns)[0] == dkimpy.CV_Pass
    assert data.endswith(b"\r\n\r\nbody line\r\n.dot line\r\n")
