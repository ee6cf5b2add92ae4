"""RFC 3464 reports: golden files of the exact bytes, plus structure checks.

Regenerate the golden files after an intended change with
``POSTERN_REGEN_GOLDEN=1 .venv/bin/python -m pytest tests/unit/test_dsn.py`` and
review the diff.
"""

from __future__ import annotations

import os
from email import policy
from email.parser import BytesParser
from pathlib import Path

import pytest

from postern import dsn
from postern.envelope import RecipientFailure

GOLDEN = Path(__file__).resolve().parent.parent / "golden" / "dsn"
T0 = 1_800_000_000.0
HEADERS = (b"Return-Path: <alice@example.test>\r\nFrom: Alice <alice@example.test>\r\nTo: bob@remote.test\r\n"
           b"Subject: lunch?\r\nDate: Fri, 15 Jan 2027 07:00:00 +0000\r\nMessage-ID: <m1@example.test>\r\n\r\n")

CASES = {
    "failed_one": dsn.Report(
        kind="failed", reporting_mta="mail.example.test", from_addr="MAILER-DAEMON@example.test",
        to_addr="alice@example.test", message_id="Q1-fabc@mail.example.test", date=T0, arrival_date=T0 - 3600,
        failures=(RecipientFailure("bob@remote.test", "5.1.1", "smtp; 550 5.1.1 <bob@remote.test>: no such user",
                                   "Bob@remote.test", "mx.remote.test", "failed", T0 - 60),),
        original_headers=HEADERS, original_queue_id="Q1"),
    "delayed_two": dsn.Report(
        kind="delayed", reporting_mta="mail.example.test", from_addr="MAILER-DAEMON@example.test",
        to_addr="alice@example.test", message_id="Q2-dxyz@mail.example.test", date=T0, arrival_date=T0 - 5 * 3600,
        failures=(RecipientFailure("carol@slow.test", "4.4.2", "x-postern; 4.4.2 timeout talking to mx.slow.test",
                                   "", "mx.slow.test", "delayed", T0 - 10),
                  RecipientFailure("dave@slow.test", "4.3.0", "smtp; 451 4.3.0 try again later", "", "mx.slow.test",
                                   "delayed", T0 - 10)),
        original_headers=HEADERS, original_queue_id="Q2", will_retry_until=T0 + 4 * 86400),
    "failed_local_no_headers": dsn.Report(
        kind="failed", reporting_mta="mail.example.test", from_addr="MAILER-DAEMON@example.test",
        to_addr="alice@example.test", message_id="Q3-f000@mail.example.test", date=T0, arrival_date=T0,
        failures=(RecipientFailure("full@example.test", "5.2.2", "smtp; 552 5.2.2 Mailbox full: over quota",
                                   "full@example.test"),),
        original_headers=None, original_queue_id="Q3"),
    "failed_utf8": dsn.Report(
        kind="failed", reporting_mta="mail.example.test", from_addr="MAILER-DAEMON@example.test",
        to_addr="alice@example.test", message_id="Q4-fu8@mail.example.test", date=T0, arrival_date=T0,
        failures=(RecipientFailure("josé@remote.test", "5.1.10", "x-postern; 5.1.10 remote.test: Recipient domain "
                                   "does not accept mail (null MX)", "", "", "failed", T0),),
        original_headers="From: alice@example.test\r\nTo: josé@remote.test\r\nSubject: olá\r\n\r\n".encode(),
        original_queue_id="Q4"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_golden_bytes(name):
    out = dsn.build(CASES[name])
    path = GOLDEN / f"{name}.eml"
    if os.environ.get("POSTERN_REGEN_GOLDEN"):
        path.write_bytes(out)
    assert out == path.read_bytes()


@pytest.mark.parametrize("name", sorted(CASES))
def test_structure(name):
    report = CASES[name]
    raw = dsn.build(report)
    assert b"\n" not in raw.replace(b"\r\n", b"")  # CRLF only
    msg = BytesParser(policy=policy.default).parsebytes(raw)
    assert msg.get_content_type() == "multipart/report"
    intl = name == "failed_utf8"  # RFC 6533 global types for UTF-8 addresses/headers
    assert msg.get_param("report-type") == ("global-delivery-status" if intl else "delivery-status")
    assert msg["Auto-Submitted"] == "auto-replied"
    assert msg["From"].addresses[0].addr_spec == "MAILER-DAEMON@example.test"
    parts = msg.get_payload()
    ds_type = "message/global-delivery-status" if intl else "message/delivery-status"
    hdr_type = "message/global-headers" if intl else "text/rfc822-headers"
    assert [p.get_content_type() for p in parts] == (
        ["text/plain", ds_type] + ([hdr_type] if report.original_headers else []))
    if intl:
        raw_ds = raw.split(b"Content-Description: Delivery report\r\n\r\n", 1)[1].split(b"\r\n--=_postern", 1)[0]
        assert "Final-Recipient: utf-8; josé@remote.test".encode() in raw_ds
        assert raw.endswith("To: josé@remote.test\r\nSubject: olá\r\n\r\n--".encode() + dsn.boundary_for(report.message_id).encode() + b"--\r\n")
        return
    blocks = parts[1].get_payload()
    assert len(blocks) == 1 + len(report.failures)  # per-message block, then one per recipient
    assert blocks[0]["Reporting-MTA"] == "dns; mail.example.test"
    for block, f in zip(blocks[1:], report.failures):
        assert block["Final-Recipient"].endswith(f"; {f.recipient}")
        assert block["Action"] == report.kind
        assert block["Status"] == f.status
        assert block["Diagnostic-Code"] == f.diagnostic
        assert ("Will-Retry-Until" in block) == (report.kind == "delayed")
        assert ("Original-Recipient" in block) == bool(f.original_recipient)
    if report.original_headers:
        body = parts[2].get_payload(decode=True)
        assert body == report.original_headers.rstrip(b"\r\n") + b"\r\n"


def test_unknown_kind_and_empty_reports_are_refused():
    with pytest.raises(ValueError):
        dsn.build(dsn.Report(**{**CASES["failed_one"].__dict__, "kind": "bounced"}))
    with pytest.raises(ValueError):
        dsn.build(dsn.Report(**{**CASES["failed_one"].__dict__, "failures": ()}))


@pytest.mark.parametrize("data, block", [
    (b"A: 1\r\nB: 2\r\n\r\nbody", b"A: 1\r\nB: 2\r\n"),
    (b"A: 1\nB: 2\n\nbody", b"A: 1\nB: 2\n"),
    (b"\r\nbody", b""),
    (b"A: 1\r\nB: 2", None),
])
def test_header_block(data, block):
    assert dsn.header_block(data) == block
