"""imap4flags (RFC 5232): the internal flag variable, :flags, hasflag."""

from __future__ import annotations

import pytest
from sieve_table import run

from postern.sieve import compile_script
from postern.sieve.errors import SieveSyntaxError

R = 'require ["imap4flags", "fileinto", "variables"];\n'
CASES = [
    ('addflag "\\\\Seen";', ["store INBOX [\\Seen]"]),  # the implicit keep takes the internal variable
    ('setflag "\\\\seen \\\\FLAGGED"; keep;', ["store INBOX [\\Flagged \\Seen]"]),  # canonical case
    ('addflag "a"; addflag ["b", "A"]; removeflag "b"; keep;', ["store INBOX [a]"]),
    ('addflag "\\\\Seen"; fileinto "Work"; removeflag "\\\\Seen"; fileinto "Other";',
     ["store Work [\\Seen]", "store Other"]),  # each copy gets the flags of its moment
    ('addflag "x"; fileinto :flags "y" "Work";', ["store Work [y]"]),
    ('addflag "x"; if hasflag "X" { discard; }', ["discard"]),
    ('if hasflag :contains "x" { discard; }', ["store INBOX"]),
    ('addflag "flagvar" "junk"; if hasflag "flagvar" "junk" { discard; }', ["discard"]),
    ('setflag "v" "a b"; addflag "v" "c"; if string :is "${v}" "a b c" { discard; }', ["discard"]),
    ('addflag "\\\\Recent \\\\Bogus ok"; keep;', ["store INBOX [ok]"]),
]


@pytest.mark.parametrize("script, expected", CASES)
def test_imap4flags(script, expected):
    assert run(R + script) == expected


def test_without_imap4flags_no_flags_are_set():
    assert run('require "fileinto"; fileinto "Work";') == ["store Work"]


@pytest.mark.parametrize("script, error", [
    ('addflag "x";', 'needs require "imap4flags"'),
    ('require "imap4flags"; addflag "v" "x";', 'needs require "variables"'),
    ('require "imap4flags"; keep :flags;', "needs a string-list argument"),
])
def test_imap4flags_errors(script, error):
    with pytest.raises(SieveSyntaxError, match=error):
        compile_script(script)
