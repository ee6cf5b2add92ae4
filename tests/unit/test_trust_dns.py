"""The trust checks' resolver reads POSTERN_DNS_NAMESERVERS by the outbound resolver's one rule."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("spec,address,port", [
    ("2001:db8::53", "2001:db8::53", 53),  # issue 10: split on ":" it became "2001"
    ("[2001:db8::53]:5353", "2001:db8::53", 5353),
    ("192.0.2.53", "192.0.2.53", 53),
    ("127.0.0.1:5300", "127.0.0.1", 5300),
])
def test_trust_resolver_reads_name_servers_as_the_outbound_one_does(spec, address, port):
    from postern.dns import parse_nameserver
    from postern_gateway.trust.dns import DnsResolver

    (ns,) = DnsResolver(nameservers=(spec,))._resolver.nameservers
    assert (ns.address, ns.port) == (address, port)
    expected = parse_nameserver(spec)
    assert (expected.address, expected.port) == (address, port)
