"""vacation (RFC 5230) and vacation-seconds (RFC 6131): the action and its arguments. Whether a reply
is sent (RFC 3834 rules, once per period) is tested in test_sieve_delivery.py."""

from __future__ import annotations

import pytest
from sieve_table import run

from postern.sieve import compile_script
from postern.sieve.errors import SieveSyntaxError

R = 'require ["vacation", "vacation-seconds", "fileinto"];\n'
DAY = 86400
CASES = [
    ('vacation "I am away";', [f"store INBOX", f"vacation {7 * DAY}"]),  # default 7 days; the keep stands
    ('vacation :days 3 :subject "Out" "away";', ["store INBOX", f"vacation {3 * DAY} Out"]),
    ('vacation :days 365 "away";', ["store INBOX", f"vacation {30 * DAY}"]),  # at most 30 days
    ('vacation :days 0 "away";', ["store INBOX", "vacation 3600"]),  # at least an hour
    ('vacation :seconds 7200 "away";', ["store INBOX", "vacation 7200"]),
    ('vacation :seconds 1 "away";', ["store INBOX", "vacation 3600"]),
    ('fileinto "Work"; vacation "away";', ["store Work", f"vacation {7 * DAY}"]),
    ('vacation "a"; vacation "b";', ["error: more than one vacation", "store INBOX"]),
    ('vacation :addresses ["me@example.test"] :from "Me <user@example.test>" :handle "h" "away";',
     ["store INBOX", f"vacation {7 * DAY}"]),
]


@pytest.mark.parametrize("script, expected", CASES)
def test_vacation(script, expected):
    assert run(R + script) == expected


def test_handle_changes_with_the_text():
    from postern.sieve.actions import USER, Result
    from postern.sieve.interpreter import run as run_program
    from sieve_table import context

    def handle(script):
        r = Result()
        run_program(compile_script(R + script), context(), r, USER)
        return r.outcome().vacation.handle

    assert handle('vacation "a";') == handle('vacation "a";') != handle('vacation "b";')
    assert handle('vacation :handle "x" "a";') == handle('vacation :handle "x" "b";')


@pytest.mark.parametrize("script, error", [
    ('require "vacation"; vacation :seconds 60 "a";', 'needs require "vacation-seconds"'),
    ('require ["vacation", "vacation-seconds"]; vacation :days 1 :seconds 60 "a";', "cannot be used together"),
    ('require "vacation"; vacation :from "not an address" "a";', "not one address"),
    ('require "vacation"; vacation :addresses ["x@y", "nope"] "a";', "not an address"),
    ('require "vacation"; vacation;', "takes 1 argument"),
])
def test_vacation_errors(script, error):
    with pytest.raises(SieveSyntaxError, match=error):
        compile_script(script)


def test_vacation_seconds_implies_vacation():
    compile_script('require "vacation-seconds"; vacation :seconds 3600 "x";')
