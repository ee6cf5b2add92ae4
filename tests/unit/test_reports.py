"""DMARC aggregate and TLS-RPT reports: parsing, the caps, hostile inputs, summaries.

Hostile inputs are refused with a reason and bounded work: a gzip and a zip bomb stop at the
ratio or size cap (the output is counted while decompressing), XML with a DTD (billion laughs,
external entities) is refused by defusedxml before any expansion, nesting and element counts
are capped, wrong JSON types and deep JSON are refused; an ordinary message to reports@ is
"not_a_report". The path through SMTP, the router and the reports function:
tests/e2e/test_reports_e2e.py.
"""

from __future__ import annotations

import gzip
import io
import json
import zipfile
from email.message import EmailMessage

import pytest

from postern.items import MemoryItems
from postern.reports import dmarc, tlsrpt
from postern.reports.archive import Caps, unpack
from postern.reports.errors import ReportRefused
from postern.reports.extract import extract
from postern.reports.summaries import ReportStore, collect, render
from report_samples import dmarc_xml, message, tls_json

CAPS = Caps(max_compressed=1024 * 1024, max_size=8 * 1024 * 1024, max_ratio=100)


def zipped(*files: tuple[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in files:
            z.writestr(name, data)
    return buf.getvalue()


def refused(reason: str, fn, *args):
    with pytest.raises(ReportRefused) as e:
        fn(*args)
    assert e.value.reason == reason, (e.value.reason, e.value.text)
    return e.value


def test_dmarc_parses_from_gzip_zip_and_plain():
    xml = dmarc_xml()
    for data in (gzip.compress(xml), zipped(("google.com!example.test!1!2.xml", xml)), xml):
        r = dmarc.parse(unpack(data, CAPS))
        assert (r.org, r.domain, r.messages, r.passed) == ("google.com", "example.test", 8, 5)
        assert [(x.source_ip, x.passed) for x in r.rows] == [("192.0.2.1", True), ("203.0.113.9", False)]


def test_tlsrpt_parses():
    r = tlsrpt.parse(unpack(gzip.compress(tls_json()), CAPS))
    assert (r.org, r.successful, r.failed) == ("Company-X", 5326, 2)
    assert r.policies[0].failures[0].result_type == "certificate-expired"


def test_decompression_bombs_stop_at_the_caps():
    bomb = gzip.compress(b"<" + b" " * (50 * 1024 * 1024))  # ~50 KB that would be 50 MB
    refused("ratio", unpack, bomb, CAPS)
    refused("too_large", unpack, bomb, Caps(1024 * 1024, 2 * 1024 * 1024, 10_000))
    zbomb = zipped(("r.xml", b"<" + b"a" * (30 * 1024 * 1024)))
    refused("too_large", unpack, zbomb, CAPS)  # the declared size is over the cap: refused unread
    refused("too_large", unpack, b"<" + b"x" * CAPS.max_compressed, CAPS)
    refused("malformed", unpack, zipped(("a.xml", b"<a/>"), ("b.xml", b"<b/>")), CAPS)
    refused("malformed", unpack, zipped(("inner.zip", zipped(("a.xml", b"<a/>")))), CAPS)
    refused("malformed", unpack, gzip.compress(dmarc_xml())[:-20], CAPS)
    refused("malformed", unpack, b"\x00\x01binary", CAPS)


def test_hostile_xml_is_refused_before_expansion():
    laughs = (b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
              + b"".join(b'<!ENTITY lol%d "%s">' % (i, (b"&lol%d;" % (i - 1) if i > 1 else b"&lol;") * 10)
                         for i in range(1, 10))
              + b']><feedback>&lol9;</feedback>')
    refused("hostile", dmarc.parse, laughs)
    xxe = b'<?xml version="1.0"?><!DOCTYPE f [<!ENTITY x SYSTEM "file:///etc/passwd">]><feedback>&x;</feedback>'
    refused("hostile", dmarc.parse, xxe)
    refused("hostile", dmarc.parse, b"<feedback>" + b"<a>" * 50 + b"</a>" * 50 + b"</feedback>")
    refused("not_a_report", dmarc.parse, b"<html><body/></html>")
    refused("malformed", dmarc.parse, b"<feedback><report_metadata>")
    refused("malformed", dmarc.parse, dmarc_xml(rows=(("not-an-ip", 1, "pass", "pass"),)))
    refused("malformed", dmarc.parse, dmarc_xml().replace(b"<count>5</count>", b"<count>99999999999</count>"))
    refused("malformed", dmarc.parse, b"<feedback></feedback>")


def test_hostile_json_is_refused():
    refused("hostile", tlsrpt.parse, b"[" * 100_000 + b"]" * 100_000)
    refused("not_a_report", tlsrpt.parse, b'{"hello": 1}')
    refused("malformed", tlsrpt.parse, b"{not json")
    bad_count = json.loads(tls_json())
    bad_count["policies"][0]["summary"]["total-failure-session-count"] = "2"
    refused("malformed", tlsrpt.parse, json.dumps(bad_count).encode())
    refused("malformed", tlsrpt.parse, tls_json(end="yesterday"))
    many = json.loads(tls_json())
    many["policies"] = many["policies"] * (tlsrpt.MAX_POLICIES + 1)
    refused("hostile", tlsrpt.parse, json.dumps(many).encode())


def test_extract_finds_the_report_in_a_message():
    kind, r = extract(message(gzip.compress(dmarc_xml()), "application/gzip", "r.xml.gz"), CAPS)
    assert kind == "dmarc" and r.report_id == "r-1"
    kind, r = extract(message(gzip.compress(tls_json()), "application/tlsrpt+gzip", "r.json.gz"), CAPS)
    assert kind == "tls"
    plain = EmailMessage()
    plain["Subject"] = "hello"
    plain.set_content("Is this the reports address?")
    refused("not_a_report", extract, plain.as_bytes(), CAPS)
    refused("hostile", extract, message(b'<!DOCTYPE a [<!ENTITY a "b">]><feedback/>', "text/xml", "r.xml"), CAPS)


def test_summaries_and_the_text_postern_report_prints():
    store = ReportStore(MemoryItems(), retention_days=400, clock=lambda: 1_800_000_000)
    store.put("example.test", dmarc.parse(dmarc_xml(report_id="a")))
    store.put("example.test", dmarc.parse(dmarc_xml(report_id="a")))  # the same report twice: one item
    store.put("example.test", dmarc.parse(dmarc_xml(report_id="b", org="yahoo.com")))
    store.put_refused("example.test", ReportRefused("ratio", "bomb"), "q1", "x@evil.test", 1_800_000_000)
    s = collect(store, "dmarc", ["example.test"], 7, now=1_800_000_000)
    assert (s.reports, s.passed, s.failed) == (2, 10, 6)
    assert s.failing == {"203.0.113.9": 6} and s.refused == {"ratio": 1}
    text = render(s)
    assert "google.com (1)" in text and "yahoo.com (1)" in text and "203.0.113.9" in text and "62.5% pass" in text
    assert collect(store, "dmarc", ["example.test"], 7, now=1_800_000_000 + 30 * 86400).reports == 0
