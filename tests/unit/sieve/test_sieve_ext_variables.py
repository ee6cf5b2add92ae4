"""variables (RFC 5229): set with modifiers, ${} expansion, match variables, the string test."""

from __future__ import annotations

import pytest
from sieve_table import run

from postern.sieve import compile_script
from postern.sieve.errors import SieveSyntaxError

R = 'require ["variables", "fileinto"];\n'
CASES = [
    ('set "box" "Work"; fileinto "${box}";', ["store Work"]),
    ('set "Box" "Work"; fileinto "${BOX}";', ["store Work"]),  # names are case-insensitive
    ('fileinto "${unset}x";', ["store x"]),  # unset: empty
    ('set :lower "b" "WoRk"; fileinto "${b}";', ["store work"]),
    ('set :upper "b" "work"; fileinto "${b}";', ["store WORK"]),
    ('set :upperfirst "b" "work"; fileinto "${b}";', ["store Work"]),
    ('set :lower :upperfirst "b" "WORK"; fileinto "${b}";', ["store Work"]),  # precedence 40 then 30
    ('set :length "b" "café"; fileinto "${b}";', ["store 4"]),
    ('set :quotewildcard "b" "a*b?c"; if string :is "${b}" "a\\\\*b\\\\?c" { discard; }', ["discard"]),
    ('if header :matches "subject" "[*] *" { fileinto "Lists/${1}"; }', ["store Lists/list"]),
    ('if header :matches "subject" "*" { set "s" "${0}"; } if string :contains "${s}" "café" { discard; }',
     ["discard"]),
    ('if address :matches "from" "*@*" { fileinto "${2}/${1}"; }', ["store example.org/sender"]),
    ('if header :matches "subject" "?*" { fileinto "${1}${99}"; }', ["store ["]),
    ('if string :is "" "" { discard; }', ["discard"]),
    ('if string :count "eq" :comparator "i;ascii-numeric" ["a", "", "b"] "2" { discard; }', ["discard"]),  # §5: "" not counted
    ('if header :matches "subject" "nomatch*" { set "x" "${1}"; } fileinto "k${1}";', ["store k"]),
    ('set "a" "1"; set "b" "${a}${a}"; set "c" "${b}${b}"; fileinto "x${c}";', ["store x1111"]),
    ('fileinto "${not a var}";', ["store ${not a var}"]),
]


@pytest.mark.parametrize("script, expected", CASES)
def test_variables(script, expected):
    if "count" in script:
        script = 'require ["relational", "comparator-i;ascii-numeric"];\n' + script
    assert run(R + script) == expected


def test_values_are_truncated_and_strings_bounded():
    # doubling a variable 20 times stays at 4 KiB per variable (RFC 5229 §4), never a 4 MiB string
    script = R + 'set "a" "xxxxxxxxxxxxxxxx";' + 'set "a" "${a}${a}";' * 20 + 'if string :count "eq" :comparator ' \
        '"i;ascii-numeric" "${a}" "1" { set :length "n" "${a}"; fileinto "n${n}"; }'
    assert run('require ["relational", "comparator-i;ascii-numeric"];' + script) == ["store n4096"]


@pytest.mark.parametrize("script, error", [
    ('set "a" "b";', 'needs require "variables"'),
    ('require "variables"; set "1a" "b";', "invalid variable name"),
    ('require "variables"; set :lower :upper "a" "b";', "cannot be used together"),
    ('require "variables"; set "a";', "takes 2 arguments"),
    ('require ["variables", "fileinto"]; fileinto "${env.x}";', "unknown variable namespace"),
])
def test_variables_errors(script, error):
    with pytest.raises(SieveSyntaxError, match=error):
        compile_script(script)
