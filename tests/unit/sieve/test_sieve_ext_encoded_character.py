"""encoded-character (RFC 5228 §2.4.2.4)."""

from __future__ import annotations

import pytest
from sieve_table import run

from postern.sieve import compile_script
from postern.sieve.errors import SieveSyntaxError

R = 'require ["encoded-character", "fileinto"];\n'


@pytest.mark.parametrize("script, expected", [
    ('fileinto "${hex: 57 6f 72 6B}";', ["store Work"]),
    ('if header :contains "subject" "caf${unicode:E9}" { discard; }', ["discard"]),
    ('if header :contains "subject" "${hex:63 61 66 c3 a9}" { discard; }', ["discard"]),
    ('fileinto "${hex:}Work";', ["store ${hex:}Work"]),  # not an encoding: stays as written
])
def test_encoded(script, expected):
    assert run(R + script) == expected


def test_without_require_nothing_is_decoded():
    assert run('require "fileinto"; fileinto "${hex:41}";') == ["store ${hex:41}"]


@pytest.mark.parametrize("text", ['"${hex:ff}"', '"${unicode:D800}"', '"${unicode:110000}"'])
def test_invalid_encodings_are_errors(text):
    with pytest.raises(SieveSyntaxError):
        compile_script(f'require ["encoded-character", "fileinto"]; fileinto {text};')
