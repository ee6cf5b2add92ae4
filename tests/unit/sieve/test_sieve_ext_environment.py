"""environment (RFC 5183), with Postern's vnd.postern.quarantine item; and copy (RFC 3894), subaddress
(RFC 5233) and mailbox (RFC 5490) beyond what the fileinto/envelope tables cover."""

from __future__ import annotations

import pytest
from sieve_table import run

from postern.verdicts import AuthFacts

R = 'require ["environment", "copy", "fileinto"];\n'


@pytest.mark.parametrize("script, auth, expected", [
    ('if environment :is "location" "MDA" { discard; }', None, ["discard"]),
    ('if environment :is "phase" "during" { discard; }', None, ["discard"]),
    ('if environment :is "host" "mail.example.test" { discard; }', None, ["discard"]),
    ('if environment :contains "nonexistent" "" { discard; }', None, ["store INBOX"]),
    ('if environment :is "vnd.postern.quarantine" "yes" { fileinto "Junk"; }', AuthFacts(quarantine=True),
     ["store Junk"]),
    ('if environment :is "vnd.postern.quarantine" "no" { discard; }', AuthFacts(), ["discard"]),
    ('redirect :copy "a@example.net";', None, ["store INBOX", "redirect a@example.net"]),
])
def test_environment_and_copy(script, auth, expected):
    assert run(R + script, auth=auth) == expected
