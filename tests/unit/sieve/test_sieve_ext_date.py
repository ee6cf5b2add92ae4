"""date and index (RFC 5260)."""

from __future__ import annotations

import datetime as dt

import pytest
from sieve_table import run

from postern.sieve import compile_script
from postern.sieve.errors import SieveSyntaxError

R = 'require ["date", "index", "relational", "comparator-i;ascii-numeric", "variables", "fileinto"];\n'
# The message's Date: Tue, 01 Dec 2026 09:30:00 -0500; NOW = 2026-12-07T13:00:00Z (a Monday).
CASES = [
    ('if date :is "date" "date" "2026-12-01" { discard; }', ["discard"]),
    ('if date :is "date" "hour" "14" { discard; }', ["discard"]),  # in UTC by default
    ('if date :originalzone :is "date" "hour" "09" { discard; }', ["discard"]),
    ('if date :zone "+0100" :is "date" "time" "15:30:00" { discard; }', ["discard"]),
    ('if date :originalzone :is "date" "zone" "-0500" { discard; }', ["discard"]),
    ('if date :is "date" "weekday" "2" { discard; }', ["discard"]),  # Tuesday
    ('if date :is "date" "julian" "61375" { discard; }', ["discard"]),
    ('if date :is "date" "iso8601" "2026-12-01T14:30:00Z" { discard; }', ["discard"]),
    ('if date :originalzone :matches "date" "std11" "Tue, 01 Dec 2026 09:30:00 -0500" { discard; }', ["discard"]),
    ('if date :is "received" "date" "2026-12-01" { discard; }', ["discard"]),  # after the last ";"
    ('if date :is "x-none" "year" "2026" { discard; }', ["store INBOX"]),
    ('if date :is "subject" "year" "2026" { discard; }', ["store INBOX"]),  # not a date
    ('if currentdate :is "date" "2026-12-07" { discard; }', ["discard"]),
    ('if currentdate :zone "-1400" :is "date" "2026-12-06" { discard; }', ["discard"]),
    ('if currentdate :zone "-1200" :is "date" "2026-12-07" { discard; }', ["discard"]),
    ('if currentdate :value "ge" "iso8601" "2026-12-07T00:00:00Z" { discard; }', ["discard"]),
    ('if currentdate :matches "year" "*" { fileinto "Y${0}"; }', ["store Y2026"]),
    ('if header :index 2 :is "x-multi" "two" { discard; }', ["discard"]),
    ('if header :index 1 :last :is "x-multi" "two" { discard; }', ["discard"]),
    ('if header :index 3 :is "x-multi" "two" { discard; }', ["store INBOX"]),
    ('if address :index 1 :is :domain "to" "example.test" { discard; }', ["discard"]),
]


@pytest.mark.parametrize("script, expected", CASES)
def test_date(script, expected):
    assert run(R + script) == expected


@pytest.mark.parametrize("script, error", [
    ('if date "date" "year" "2026" { keep; }', 'needs require "date"'),
    ('require "date"; if date "date" "fortnight" "1" { keep; }', 'unknown date part'),
    ('require "date"; if date :zone "CET" "date" "year" "1" { keep; }', "invalid time zone"),
    ('require "date"; if header :index 1 "x" "y" { keep; }', 'needs require "index"'),
    ('require ["date", "index"]; if header :last "x" "y" { keep; }', ":last needs :index"),
    ('require ["date", "index"]; if header :index 0 "x" "y" { keep; }', "at least 1"),
])
def test_date_errors(script, error):
    with pytest.raises(SieveSyntaxError, match=error):
        compile_script(script)


def test_currentdate_uses_the_delivery_clock():
    later = dt.datetime(2027, 1, 1, tzinfo=dt.timezone.utc)
    assert run(R + 'if currentdate :is "year" "2027" { discard; }', now=later) == ["discard"]
