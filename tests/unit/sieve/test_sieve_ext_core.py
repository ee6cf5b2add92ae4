"""RFC 5228 core: control, keep/discard/redirect, implicit keep, and the core tests (address, header,
exists, size, allof/anyof/not, comparators and match types)."""

from __future__ import annotations

import pytest
from sieve_table import run

CASES = [
    # implicit keep (§4.2)
    ("", ["store INBOX"]),
    ("keep;", ["store INBOX"]),
    ("discard;", ["discard"]),
    ("discard; keep;", ["store INBOX"]),
    ("stop; discard;", ["store INBOX"]),
    ('redirect "a@example.net";', ["redirect a@example.net"]),
    ('redirect "a@example.net"; redirect "A@example.net";', ["redirect a@example.net"]),  # one copy per address
    ('redirect "a@example.net"; keep;', ["store INBOX", "redirect a@example.net"]),
    # if / elsif / else (§3.1)
    ('if false { discard; } elsif true { redirect "b@example.net"; } else { keep; }', ["redirect b@example.net"]),
    ("if false { discard; } elsif false { discard; } else { keep; }", ["store INBOX"]),
    ('if true { if true { if not false { discard; } } }', ["discard"]),
    # header (§5.7): decoded encoded-words, any of several values, absent headers
    ('if header :contains "subject" "café" { discard; }', ["discard"]),
    ('if header :is "subject" "[list] Meeting café tomorrow" { discard; }', ["discard"]),
    ('if header :matches "subject" "*meeting*" { discard; }', ["discard"]),  # ascii-casemap by default
    ('if header :comparator "i;octet" :matches "subject" "*meeting*" { discard; }', ["store INBOX"]),
    ('if header :is "x-multi" "two" { discard; }', ["discard"]),
    ('if header :is ["x-none", "x-multi"] ["zero", "one"] { discard; }', ["discard"]),
    ('if header :contains "x-none" "" { discard; }', ["store INBOX"]),  # no such header: no value to match
    ('if header :contains "subject" "" { discard; }', ["discard"]),
    ('if header :matches "subject" "?list?*" { discard; }', ["discard"]),
    ('if header :matches "subject" "\\\\[list\\\\]*" { discard; }', ["discard"]),  # \\[ is a literal [
    # address (§5.1)
    ('if address :is "from" "sender@example.org" { discard; }', ["discard"]),
    ('if address :is :localpart "from" "SENDER" { discard; }', ["discard"]),
    ('if address :is :domain "to" "example.net" { discard; }', ["discard"]),
    ('if address :is :all :comparator "i;octet" "from" "Sender@example.org" { discard; }', ["store INBOX"]),
    ('if address :contains ["to", "cc"] "tag" { discard; }', ["discard"]),
    # exists (§5.5): all must exist
    ('if exists ["from", "date"] { discard; }', ["discard"]),
    ('if exists ["from", "x-none"] { discard; }', ["store INBOX"]),
    # size (§5.9)
    ("if size :over 100 { discard; }", ["discard"]),
    ("if size :under 1K { discard; }", ["discard"]),
    ("if size :over 1M { discard; }", ["store INBOX"]),
    # allof / anyof / not
    ('if allof(true, header :contains "from" "sender") { discard; }', ["discard"]),
    ('if allof(true, false) { discard; }', ["store INBOX"]),
    ('if anyof(false, false, true) { discard; }', ["discard"]),
    ('if not anyof(false, exists "x-none") { discard; }', ["discard"]),
]


@pytest.mark.parametrize("script, expected", CASES)
def test_core(script, expected):
    assert run(script) == expected


def test_redirect_limit_is_a_runtime_error_and_the_message_is_kept():
    script = "".join(f'redirect "r{i}@example.net";' for i in range(5))
    assert run(script) == ["error: more than 4 redirects", "store INBOX"]


def test_step_budget_stops_a_heavy_script():
    from postern.sieve.limits import Limits

    script = 'if header :matches "subject" "*a*b*c*d*e*f*" { discard; }\n' * 300
    got = run(script, limits=Limits(steps=2000))
    assert got[0].startswith("error: work budget exhausted") and got[1:] == ["store INBOX"]
