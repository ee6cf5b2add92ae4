"""The Sieve lexer and parser: grammar (RFC 5228 §8), strings, error positions, caps; a fuzz run with
liveness ceilings (fuzz_harness.bounded); sievelib as an independent reading of valid scripts."""

from __future__ import annotations

import pytest
from fuzz_harness import FUZZ, RUNS, bounded
from hypothesis import given
from hypothesis import strategies as st

from postern.sieve import compile_script
from postern.sieve.errors import SieveSyntaxError
from postern.sieve.lexer import tokenize
from postern.sieve.limits import MAX_LIST_ITEMS, MAX_NESTING, MAX_NODES
from postern.sieve.parser import parse


def error_of(script) -> tuple[int, int, str]:
    with pytest.raises(SieveSyntaxError) as e:
        compile_script(script)
    return e.value.line, e.value.column, e.value.message


@pytest.mark.parametrize("script, line, column, message", [
    ('keep', 1, 5, "missing ';' after command 'keep'"),
    ('keep;\n  fileinot "x";', 2, 3, "unknown command 'fileinot'"),
    ('if true {\n  keep;\n', 3, 1, "expected a command, found end of script"),
    ('keep;\n}', 2, 1, "unexpected '}' (no block is open)"),
    ('if header :contains "a" "b" keep;', 1, 29, "test 'header' takes no test"),
    ('require "fileinto";\nif true { fileinto "x" "y"; }', 2, 11, "fileinto takes 1 argument, 2 given"),
    ('discard;\nrequire "fileinto";', 2, 1, "require must come before every other command"),
    ('require "nosuch";', 1, 9, 'unsupported extension "nosuch"'),
    ('require ["fileinto",\n  "vacation", "foo"];', 2, 15, 'unsupported extension "foo"'),
    ('if header :bogus "a" "b" { keep; }', 1, 11, "unknown tag ':bogus' for header"),
    ('if header "a" :is "b" { keep; }', 1, 15,
     "unknown or misplaced tag ':is' for header (tags come before the other arguments)"),
    ('if header :is :is "a" "b" { keep; }', 1, 15, "tag ':is' given twice"),
    ('if header :is :contains "a" "b" { keep; }', 1, 15, "':contains' and ':is' cannot be used together"),
    ('if address "subject" "x" { keep; }', 1, 12, 'address: "subject" is not a header holding addresses'),
    ('if header "bad name" "x" { keep; }', 1, 11, 'invalid header name "bad name"'),
    ('if "x" { keep; }', 1, 4, "'if' takes no arguments other than its test"),
    ('if true, false { keep; }', 1, 8, "expected ';' or '{' after command 'if', found ','"),
    ('if allof(true false) { keep; }', 1, 15, "test 'true' takes no test"),
    ('if allof true { keep; }', 1, 4, "'allof' takes a test list in parentheses"),
    ('if not (true) { keep; }', 1, 4, "'not' takes exactly one test"),
    ('elsif true { keep; }', 1, 1, "elsif without a preceding if"),
    ('if true { keep; } keep; else { keep; }', 1, 25, "else without a preceding if"),
    ('keep { discard; }', 1, 1, "'keep' takes no block (end it with ';')"),
    ('if true;', 1, 1, "'if' needs a block"),
    ('stop "x";', 1, 1, "stop takes 0 arguments, 1 given"),
    ('keep true;', 1, 6, "command 'keep' takes no test"),
    ('if size 10 { keep; }', 1, 4, "size needs :over or :under"),
    ('redirect "not an address";', 1, 10, 'redirect: invalid address "not an address"'),
    ('keep; "unterminated', 1, 7, "unterminated string"),
    ('keep; /* no end', 1, 7, "unterminated /* comment"),
    ('keep;\n\n   @', 3, 4, "unexpected character '@'"),
    ('keep;\rdiscard;', 1, 6, "bare CR"),
    ('keep;\x00', 1, 6, "NUL character in the script"),
    ('reject text:\r\nno end\r\n', 1, 8, "multi-line string not terminated by a line holding only '.'"),
    ('reject text: x\r\n.\r\n;', 1, 14, "text: must be followed by the end of the line"),
    ('if size :over 99999999999999999999G { keep; }', 1, 15, "number 99999999999999999999G too large"),
    ('if header ["a", 1] "x" { keep; }', 1, 17, "expected a string in the list, found number 1"),
    ('if header ["a" "b"] "x" { keep; }', 1, 16, "expected ',' or ']' in the string list, found string"),
    ('# comment\n/* multi\nline */ fileinto "x";', 3, 9, "command 'fileinto' needs require \"fileinto\""),
    ('keep; # caf\u00e9\n   bogus;', 2, 4, "unknown command 'bogus'"),
])
def test_error_positions(script, line, column, message):
    assert error_of(script) == (line, column, message)


def test_errors_are_line_colon_column():
    with pytest.raises(SieveSyntaxError) as e:
        compile_script("keep;\n  nope;")
    assert str(e.value) == "2:3: unknown command 'nope'"


def test_invalid_utf8_position():
    with pytest.raises(SieveSyntaxError) as e:
        compile_script(b'keep;\n# ok\nkeep; # \xc3\x28\n')
    assert (e.value.line, e.value.column) == (3, 9)


def test_strings_and_numbers():
    toks = tokenize('"a\\"b\\\\c\\d" 10K 2M 1g :Tag IDENT text:\r\n..a\r\nb\r\n.\r\n')
    assert [t.value for t in toks[:-1]] == ['a"b\\cd', 10240, 2 * 1024**2, 1024**3, "tag", "ident", ".a\r\nb\r\n"]
    assert toks[-2].multiline


def test_names_are_case_insensitive():
    p = compile_script('REQUIRE "FileInto"; IF HEADER :CONTAINS "Subject" "x" { FILEINTO "Box"; }')
    assert "fileinto" in p.requires


@pytest.mark.parametrize("script, message", [
    ("if " * 40 + "true" + " { keep; }" * 40, "nested too deeply"),
    ("if " + "not " * 40 + "true { keep; }", "nested too deeply"),
    ("keep;" * (MAX_NODES + 1), "too many commands and tests"),
    ('if header "x" [' + ", ".join(['"a"'] * (MAX_LIST_ITEMS + 1)) + '] { keep; }', "string list too long"),
])
def test_caps(script, message):
    with pytest.raises(SieveSyntaxError, match=message):
        compile_script(script)


def test_size_cap():
    with pytest.raises(SieveSyntaxError, match="script too large"):
        compile_script("#" * (64 * 1024) + "\nkeep;")
    assert MAX_NESTING == 32
    compile_script("if true {" * 31 + "keep;" + "}" * 31)


# --- sievelib: an independent parser agrees these scripts are valid Sieve ----------------------------
VALID = [
    'require ["fileinto", "variables"];\r\nif header :matches "subject" "[*] *" { fileinto "Lists/${1}"; stop; }\r\n',
    'require "vacation";\r\nvacation :days 3 :subject "Away" "I am away";\r\n',
    'if anyof (address :is "from" "a@b.c", header :contains "x-spam" "yes") { discard; } else { keep; }\r\n',
    'require "reject";\r\nreject text:\r\nNo thanks.\r\n.\r\n;\r\n',
]


@pytest.mark.parametrize("script", VALID)
def test_sievelib_reads_what_we_accept(script):
    sievelib = pytest.importorskip("sievelib.parser")
    compile_script(script)
    p = sievelib.Parser()
    assert p.parse(script), p.error


# --- fuzz -------------------------------------------------------------------------------------------
PIECES = st.one_of(
    st.sampled_from(['require', 'if', 'elsif', 'else', 'header', 'address', 'envelope', 'fileinto', 'keep',
                     'discard', 'stop', 'not', 'allof', 'anyof', 'true', 'false', 'set', 'string', 'vacation',
                     'redirect', 'body', 'date', 'spamtest', ':is', ':contains', ':matches', ':value', ':count',
                     ':comparator', ':days', ':index', ':last', ':copy', ':flags', '"fileinto"', '"variables"',
                     '"relational"', '"x"', '"${1}"', '"${hex:41}"', '"*?\\\\*"', '"i;ascii-numeric"', '"gt"',
                     '10', '1K', '[', ']', '(', ')', '{', '}', ',', ';', ' ', '\r\n', '\n', '#c\n', '/* */',
                     'text:\r\n', '.\r\n', '"', '\\', '\r', '\x00', 'é', '${', '}']),
    st.text(max_size=8),
)


@FUZZ
@given(pieces=st.lists(PIECES, max_size=60))
def test_fuzz_parser(pieces):
    RUNS["sieve"] = RUNS.get("sieve", 0) + 1
    with bounded("sieve"):
        script = "".join(pieces)
        try:
            compile_script(script)
        except SieveSyntaxError as e:
            assert e.line >= 1 or "too large" in e.message


@FUZZ
@given(data=st.binary(max_size=300))
def test_fuzz_bytes(data):
    RUNS["sieve"] = RUNS.get("sieve", 0) + 1
    with bounded("sieve"):
        try:
            parse(data.decode("utf-8", "replace"))
        except SieveSyntaxError:
            pass


def test_parser_is_fast_on_a_large_script():
    import time

    script = "".join(f'if header :contains "subject" "word{i}" {{ keep; }}\r\n' for i in range(1200))
    t0 = time.monotonic()
    compile_script(script)
    assert time.monotonic() - t0 < 5  # liveness ceiling, not a benchmark (bench/sieve.py measures)
