"""reject and ereject (RFC 5429): one reject, never with keep/fileinto/redirect/vacation."""

from __future__ import annotations

import pytest
from sieve_table import run

R = 'require ["reject", "ereject", "fileinto", "vacation"];\n'
CASES = [
    ('reject "No thanks";', ["reject No thanks"]),
    ('ereject "Go away";', ["reject Go away"]),
    ("reject text:\r\nLine one\r\n..dot\r\n.\r\n;", ["reject Line one\r\n.dot\r\n"]),
    ('if header :contains "subject" "meeting" { reject "busy"; }', ["reject busy"]),
    ('reject "a"; reject "b";', ["error: more than one reject", "store INBOX"]),
    ('keep; reject "a";', ["error: reject conflicts with an earlier keep", "store INBOX"]),
    ('fileinto "Work"; reject "a";', ["error: reject conflicts with an earlier fileinto", "store INBOX"]),
    ('reject "a"; redirect "x@example.net";', ["error: redirect conflicts with an earlier reject", "store INBOX"]),
    ('vacation "away"; reject "a";', ["error: reject conflicts with vacation", "store INBOX"]),
    ('reject "a"; discard;', ["reject a"]),
]


@pytest.mark.parametrize("script, expected", CASES)
def test_reject(script, expected):
    assert run(R + script) == expected
