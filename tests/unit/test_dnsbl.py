"""DNSBL look-ups over the fake resolver (RFC 5782 query names, error codes, fail open)."""

from __future__ import annotations

from fakes import FakeResolver
from postern_gateway.trust.dnsbl import listed, query_name


def test_query_names():
    assert query_name("1.2.3.4", "bl.test") == "4.3.2.1.bl.test"
    assert query_name("2001:db8::1", "bl.test.") == "1." + "0." * 23 + "8.b.d.0.1.0.0.2.bl.test"
    assert query_name("nonsense", "bl.test") is None


def test_listed_not_listed_errors_and_failures():
    r = FakeResolver()
    r.add("4.3.2.1.bl.test", "A", "127.0.0.2")
    r.add("4.3.2.1.bl.test", "TXT", "Listed: see https://bl.test/1.2.3.4\r\nX-Evil: 1")
    r.add("5.3.2.1.bl.test", "A", "127.255.255.254")  # "query refused": not a listing
    r.fail("6.3.2.1.first.test")
    r.add("6.3.2.1.second.test", "A", "127.0.0.4")
    hit = listed(r, "1.2.3.4", ("bl.test",))
    assert hit and hit.zone == "bl.test" and hit.answer == "127.0.0.2"
    assert "\r" not in hit.reason and "\n" not in hit.reason
    assert listed(r, "1.2.3.5", ("bl.test",)) is None
    assert listed(r, "1.2.3.7", ("bl.test",)) is None
    # the first zone temperrors (fail open for that zone), the second lists
    assert listed(r, "1.2.3.6", ("first.test", "second.test")).zone == "second.test"
    # no zones, loopback and private addresses: no queries at all
    n = len(r.queries)
    assert listed(r, "1.2.3.4", ()) is None
    assert listed(r, "127.0.0.1", ("bl.test",)) is None
    assert listed(r, "10.1.2.3", ("bl.test",)) is None
    assert len(r.queries) == n

