"""fileinto (RFC 5228 §4.1) with :copy (RFC 3894), :flags (RFC 5232) and :create (RFC 5490), and mailbox
(RFC 5490 §3: mailboxexists)."""

from __future__ import annotations

import pytest
from sieve_table import run

from postern.sieve import compile_script
from postern.sieve.errors import SieveSyntaxError

R = 'require ["fileinto", "copy", "mailbox", "imap4flags"];\n'
CASES = [
    ('fileinto "Work";', ["store Work"]),
    ('fileinto "work/2026";', ["store work/2026"]),
    ('fileinto "inbox";', ["store INBOX"]),  # INBOX in any case
    ('fileinto "inbox/Lists"; fileinto "INBOX/Lists";', ["store INBOX/Lists"]),  # also as a superior, once
    ('fileinto "Work"; fileinto "Work";', ["store Work"]),  # once per mailbox (§2.10.3)
    ('fileinto "INBOX"; keep;', ["store INBOX"]),
    ('fileinto :copy "Work";', ["store Work", "store INBOX"]),
    ('fileinto :create "New/Folder";', ["store New/Folder +create"]),
    ('fileinto :flags "\\\\Seen \\\\Flagged" "Work";', ["store Work [\\Flagged \\Seen]"]),
    ('fileinto :flags ["$Label1", "\\\\Recent", "bad(flag", "\\\\unknown"] "Work";', ["store Work [$Label1]"]),
    ('if mailboxexists "Work" { fileinto "Work"; }', ["store Work"]),
    ('if mailboxexists ["Work", "Nope"] { fileinto "Work"; }', ["store INBOX"]),
    ('if mailboxexists "inbox" { discard; }', ["discard"]),
]


@pytest.mark.parametrize("script, expected", CASES)
def test_fileinto(script, expected):
    assert run(R + script) == expected


@pytest.mark.parametrize("script, error", [
    ('fileinto "Work";', 'needs require "fileinto"'),
    ('require "fileinto"; fileinto :copy "Work";', 'needs require "copy"'),
    ('require "fileinto"; fileinto :create "Work";', 'needs require "mailbox"'),
    ('require ["fileinto", "mailbox"]; fileinto "a/*";', "invalid mailbox name"),
    ('require ["fileinto", "mailbox"]; fileinto "a//b";', "invalid mailbox name"),
    ('require "fileinto"; fileinto ["a", "b"];', "needs a string"),
    ('require "fileinto"; fileinto;', "takes 1 argument"),
])
def test_fileinto_errors_at_upload(script, error):
    with pytest.raises(SieveSyntaxError, match=error):
        compile_script(script)


def test_invalid_name_from_variables_is_a_runtime_error():
    script = 'require ["fileinto", "variables"]; set "box" "a/*"; fileinto "${box}";'
    assert run(script)[0].startswith("error: fileinto: invalid mailbox name")
