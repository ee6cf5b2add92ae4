"""envelope (RFC 5228 §5.4) with subaddress (RFC 5233): MAIL FROM and the recipient of this copy."""

from __future__ import annotations

import pytest
from sieve_table import run

from postern.sieve import compile_script
from postern.sieve.errors import SieveSyntaxError

R = 'require ["envelope", "subaddress"];\n'
CASES = [
    ('if envelope :is "from" "sender@example.org" { discard; }', {}, ["discard"]),
    ('if envelope :is :domain "from" "EXAMPLE.ORG" { discard; }', {}, ["discard"]),
    ('if envelope :is "from" "" { discard; }', {"mail_from": ""}, ["discard"]),  # <> (§5.4)
    ('if envelope :is :localpart "from" "" { discard; }', {"mail_from": ""}, ["discard"]),
    ('if envelope :is "to" "user+sales@example.test" { discard; }', {"to": "user+sales@example.test"}, ["discard"]),
    ('if envelope :is :detail "to" "sales" { discard; }', {"to": "user+sales@example.test"}, ["discard"]),
    ('if envelope :is :user "to" "user" { discard; }', {"to": "user+sales@example.test"}, ["discard"]),
    ('if envelope :matches :detail "to" "*" { discard; }', {}, ["store INBOX"]),  # no separator: no detail
    ('if envelope :is :detail "to" "" { discard; }', {"to": "user+@example.test"}, ["discard"]),  # empty detail
    ('if envelope :is :user "to" "user" { discard; }', {}, ["discard"]),
    ('if address :detail "cc" "tag" { discard; }', {}, ["discard"]),
]


@pytest.mark.parametrize("script, env, expected", CASES)
def test_envelope(script, env, expected):
    assert run(R + script, **env) == expected


@pytest.mark.parametrize("script, error", [
    ('if envelope "from" "x" { keep; }', 'needs require "envelope"'),
    ('require "envelope"; if envelope "auth" "x" { keep; }', 'unknown part "auth"'),
    ('require "envelope"; if envelope :user "to" "x" { keep; }', 'needs require "subaddress"'),
    ('require "envelope"; if envelope :all :domain "to" "x" { keep; }', "cannot be used together"),
])
def test_envelope_errors(script, error):
    with pytest.raises(SieveSyntaxError, match=error):
        compile_script(script)
