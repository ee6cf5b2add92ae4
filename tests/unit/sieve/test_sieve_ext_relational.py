"""relational (RFC 5231) and comparator-i;ascii-numeric (RFC 4790 §9.1)."""

from __future__ import annotations

import pytest
from sieve_table import run

from postern.sieve import compile_script
from postern.sieve.errors import SieveSyntaxError

R = 'require ["relational", "comparator-i;ascii-numeric"];\n'
NUM = ':comparator "i;ascii-numeric"'
CASES = [
    (f'if header :value "gt" {NUM} "x-n" "9" {{ discard; }}', ["discard"]),  # 10 > 9 numerically
    ('if header :value "gt" "x-n" "9" { discard; }', ["store INBOX"]),  # "10" < "9" as text
    (f'if header :value "eq" {NUM} "x-n" "010" {{ discard; }}', ["discard"]),
    (f'if header :value "lt" {NUM} "x-n" "abc" {{ discard; }}', ["discard"]),  # "abc" is infinity
    (f'if header :value "eq" {NUM} "x-word" "abc" {{ discard; }}', ["discard"]),  # both infinity
    (f'if header :count "eq" {NUM} "x-multi" "2" {{ discard; }}', ["discard"]),
    (f'if header :count "ge" {NUM} "x-none" "1" {{ discard; }}', ["store INBOX"]),
    (f'if address :count "eq" {NUM} ["to", "cc"] "3" {{ discard; }}', ["discard"]),
    ('if header :value "ne" "x-word" "abd" { discard; }', ["discard"]),
    (f'if header :is {NUM} "x-n" "10" {{ discard; }}', ["discard"]),
]
MSG = "X-N: 10\r\nX-Word: abc\r\nX-Multi: a\r\nX-Multi: b\r\nTo: a@x.test, b@x.test\r\nCc: c@x.test\r\n\r\nbody\r\n"


@pytest.mark.parametrize("script, expected", CASES)
def test_relational(script, expected):
    assert run(R + script, MSG) == expected


@pytest.mark.parametrize("script, error", [
    ('if header :value "gt" "x" "1" { keep; }', 'needs require "relational"'),
    ('require "relational"; if header :value "bigger" "x" "1" { keep; }', "unknown relational operator"),
    ('if header :comparator "i;ascii-numeric" "x" "1" { keep; }', 'needs require "comparator-i;ascii-numeric"'),
    ('require "comparator-i;ascii-numeric"; if header :contains :comparator "i;ascii-numeric" "x" "1" { keep; }',
     "does not support :contains"),
    ('if header :comparator "i;nope" "x" "1" { keep; }', "unknown comparator"),
    ('require "relational"; if header :value "gt" :count "gt" "x" "1" { keep; }', "cannot be used together"),
])
def test_relational_errors(script, error):
    with pytest.raises(SieveSyntaxError, match=error):
        compile_script(script)
