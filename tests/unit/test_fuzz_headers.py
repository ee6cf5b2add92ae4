"""Hypothesis over the one header parser (postern.mail), with the liveness ceilings per input.

Every reader of a header goes through postern.mail (the SMTP checks, DMARC, trace, the store's
summary, IMAP ENVELOPE/SEARCH/SORT/THREAD), so this is where a header bomb would land. Header
blocks are built from hostile pieces (encoded-words by the thousand, deep folding, ``From :``,
lines without a colon, a leading continuation line, NUL and 8-bit bytes, bare CR and LF, huge
References and address lists), sometimes repeated up to hundreds of KiB. For each block, every
public reading is taken: the split, faults, text, texts, addresses, date, message ids,
References, the author and both ports' From: policies, and decode_words on every value. None
may raise, each must hold the caps of postern.mail.limits, and the whole input must stay within
the stall ceiling (this thread's CPU time) and the per-input RSS growth ceiling
(fuzz_harness.bounded): the issue-11 bomb took 2.1 GB for 168 KB.
"""

from __future__ import annotations

import pytest
from fuzz_harness import FUZZ, RUNS, bounded, release
from hypothesis import given
from hypothesis import strategies as st

from postern.mail import limits
from postern.mail.author import author, mx_problem, submission_problem
from postern.mail.encoded import decode_words
from postern.mail.header import Header, header_end


@pytest.fixture(scope="module", autouse=True)
def _unfreeze_after():
    yield
    release()


WORDS = st.sampled_from([b"=?utf-8?q?=C3=A9t=C3=A9?=", b"=?utf-8?B?w6k=?=", b"=?bogus?Q?=ZZ?=", b"=?utf-8?q?",
                         b"=?iso-8859-1*fr?q?=E9?=", b"=??q?x?=", b"=?utf-8?x?y?=", b"=?utf-16?b?2D3eAA==?="])
VALUES = st.one_of(
    st.sampled_from([b"Mallory <mallory@remote.test>", b'"A, B" <a@b.test>, c@d.test', b"undisclosed-recipients:;",
                     b"<a@b.test>", b"a@", b"@b", b"<<<>>>", b"(comment (nested (deep))) x@y.test", b'"unterminated',
                     b"Tue, 01 Dec 2026 10:00:00 +0000", b"32 Foo 99 25:61:61 +9999", b"<x@y> <z@w>", b"\x00\xff",
                     b"g: a@b.test, c@d.test;", b"\\", b"a@b.test (", b"=?utf-8?q?a?= <a@b.test>"]),
    st.lists(WORDS, min_size=1, max_size=8).map(b" ".join),
    st.binary(max_size=60),
)
NAMES = st.sampled_from([b"From", b"From ", b"FROM", b"Sender", b"To", b"Cc", b"Subject", b"Date", b"Message-ID",
                         b"References", b"In-Reply-To", b"Reply-To", b"Content-Type", b"X-Long", b"", b" From",
                         b"Fr\x00om", b"no colon"])
EOL = st.sampled_from([b"\r\n", b"\r\n", b"\n", b"\r"])
FIELD = st.tuples(NAMES, VALUES, st.lists(VALUES, max_size=3), EOL).map(
    lambda t: t[0] + b": " + t[1] + b"".join(t[3] + b" " + v for v in t[2]) + t[3])
BLOCK = st.tuples(
    st.lists(FIELD, max_size=10),
    st.sampled_from([1, 1, 1, 10, 500, 5000]),  # repeat one field: from a line to a bomb of ~100s of KiB
    st.integers(0, 9),
    st.booleans(),  # a leading continuation line
).map(lambda t: (b" folded first\r\n" if t[3] else b"")
      + b"".join(f * (t[1] if i == t[2] % max(len(t[0]), 1) else 1) for i, f in enumerate(t[0]))
      + b"\r\nbody\r\n")


@FUZZ
@given(raw=BLOCK)
def test_every_reading_of_a_header_is_total_and_bounded(raw):
    RUNS["headers"] = RUNS.get("headers", 0) + 1
    with bounded("headers"):
        end, body = header_end(raw)
        assert 0 <= end <= body <= len(raw)
        h = Header(raw)
        h.faults
        for name in (b"subject", b"x-long", b"content-type"):
            t = h.text(name)
            assert t is None or isinstance(t, str)
            h.texts(name)
        for name in (b"from", b"sender", b"to", b"cc", b"reply-to"):
            h.addresses(name)
        h.date()
        h.message_ids(b"message-id")
        h.message_ids(b"in-reply-to")
        assert len(h.references()) <= 1 + limits.MAX_REFERENCES
        a = author(h)
        assert a.fields == h.count(b"from")
        for problem in (submission_problem(h, a), mx_problem(h, a)):
            assert problem is None or isinstance(problem, str)
        for f in h.fields[:50]:
            decode_words(h.value(f))
