"""spamtest and spamtestplus (RFC 5235), fed by the verdict object (postern.verdicts.SpamVerdict)."""

from __future__ import annotations

import pytest
from sieve_table import run

from postern.verdicts import SpamVerdict

R = 'require ["spamtestplus", "relational", "comparator-i;ascii-numeric", "fileinto"];\n'
NUM = ':comparator "i;ascii-numeric"'


def v(score, action="no action", junk=6.0, reject=15.0):
    return SpamVerdict(action=action, score=score, junk_score=junk, reject_score=reject)


@pytest.mark.parametrize("verdict, spamtest, percent", [
    (SpamVerdict(), 0, None),  # unchecked (rspamd down or not yet run)
    (v(-3.0), 1, 0),
    (v(6.0), 1, 40),  # 1 up to and including the Junk threshold
    (v(6.1), 2, 41),
    (v(10.5), 6, 70),
    (v(14.99), 9, 100),
    (v(15.0, "reject"), 10, 100),
    (v(99.0), 10, 100),
])
def test_scales(verdict, spamtest, percent):
    assert verdict.spamtest() == spamtest and verdict.percent() == percent


CASES = [
    (f'if spamtest :value "ge" {NUM} "2" {{ fileinto "Junk"; }}', v(8.0), ["store Junk"]),
    (f'if spamtest :value "ge" {NUM} "2" {{ fileinto "Junk"; }}', v(2.0), ["store INBOX"]),
    (f'if spamtest :is "0" {{ fileinto "Untested"; }}', SpamVerdict(), ["store Untested"]),
    (f'if spamtest :percent :value "gt" {NUM} "50" {{ discard; }}', v(10.5), ["discard"]),
    (f'if spamtest :percent :count "eq" {NUM} "0" {{ fileinto "Untested"; }}', SpamVerdict(),
     ["store Untested"]),  # RFC 5235 §3.2.2: no value when not tested
    (f'if spamtest :percent :count "eq" {NUM} "0" {{ fileinto "Untested"; }}', v(1.0), ["store INBOX"]),
]


@pytest.mark.parametrize("script, verdict, expected", CASES)
def test_spamtest(script, verdict, expected):
    assert run(R + script, spam=verdict) == expected


def test_the_verdict_travels_as_json():
    d = v(7.5, "add header").to_dict()
    assert SpamVerdict.from_dict(d) == v(7.5, "add header")
    assert SpamVerdict.from_dict({}) == SpamVerdict() and SpamVerdict.from_dict({"score": "nan"}).score == 0.0
    assert v(7.5, "add header").is_spam and not v(1.0).is_spam and not SpamVerdict().is_spam
