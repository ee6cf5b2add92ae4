"""SEARCH criteria parsing and evaluation on plain objects (RFC 3501 §6.4.4, RFC 7162 §3.4)."""

import datetime as dt
import pathlib
from types import SimpleNamespace

import pytest

from postern_gateway.imap import search as S
from postern_gateway.imap.tokens import Atom as A

GOLDEN = pathlib.Path(__file__).resolve().parents[1] / "golden" / "imap"


def epoch(y, mo, d, h=12, mi=0):
    return dt.datetime(y, mo, d, h, mi, tzinfo=dt.timezone.utc).timestamp()


def msg_from(raw: bytes, *, seq=1, uid=10, flags=(), modseq=5, internaldate=None, recent=False, seq_max=3, uid_max=12,
             with_raw=True):
    hlen = raw.find(b"\r\n\r\n")
    header = raw[: hlen + 4] if hlen >= 0 else raw
    return SimpleNamespace(
        seq=seq, uid=uid, flags=frozenset(flags), modseq=modseq, size=len(raw),
        internaldate=epoch(2026, 1, 1, 10) if internaldate is None else internaldate,
        header=header, raw=raw if with_raw else None, seq_max=seq_max, uid_max=uid_max, recent=recent,
    )


def tok(text: str) -> list:
    """A tiny stand-in for imap-core's tokeniser: atoms, "quoted" (-> bytes) and (lists)."""
    out: list = []
    stack = [out]
    i = 0
    while i < len(text):
        c = text[i]
        if c == " ":
            i += 1
        elif c == "(":
            stack.append([])
            stack[-2].append(stack[-1])
            i += 1
        elif c == ")":
            stack.pop()
            i += 1
        elif c == '"':
            j = i + 1
            buf = []
            while text[j] != '"':
                if text[j] == "\\":
                    j += 1
                buf.append(text[j])
                j += 1
            stack[-1].append("".join(buf).encode())
            i = j + 1
        else:
            j = i
            while j < len(text) and text[j] not in " ()":
                j += 1
            stack[-1].append(A(text[i:j]))
            i = j
    return out


ENC = (GOLDEN / "encoded_words.eml").read_bytes()
NESTED = (GOLDEN / "nested_rfc822.eml").read_bytes()
ATTACH = (GOLDEN / "mixed_attachment.eml").read_bytes()
QP = (
    b"From: x@example.org\r\nSubject: qp\r\nDate: 30 Nov 2026 23:30:00 -0800\r\nMIME-Version: 1.0\r\n"
    b"Content-Type: multipart/mixed; boundary=q\r\n\r\n"
    b"--q\r\nContent-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
    b"Gr=FC=DFe aus K=F6ln, soft=\r\nbreak\r\n"
    b"--q\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    b"c2VjcmV0IGJpbmFyeQ==\r\n"
    b"--q\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    b"PHA+aHRtbCDDqXTDqTwvcD4=\r\n"
    b"--q--\r\n"
)

# (criteria text, message, expected)
CASES = [
    ("ALL", ENC, True),
    ("SUBJECT caf\u00e9", ENC, True),  # encoded-word decoded for matching
    ('SUBJECT "CAF\u00c9 TIME TOMORROW"', ENC, True),  # adjacent encoded-words join without the space
    ("SUBJECT Caf=C3", ENC, False),  # the raw encoding is not what matches
    ('FROM "andr\u00e9 pirard"', ENC, True),
    ("FROM pirard@example.be", ENC, True),
    ("FROM nobody", ENC, False),
    ("TO \u4f50\u85e4", ENC, True),
    ('TO "plain name"', ENC, True),
    ("CC jos\u00e9", ENC, True),  # raw UTF-8 header
    ("BCC anyone", ENC, False),
    ('HEADER Message-ID "<ew@"', ENC, True),
    ('HEADER X-Missing ""', ENC, False),
    ('HEADER message-id ""', ENC, True),
    ("BODY \u00e7a", ENC, True),
    ("BODY pirard", ENC, False),  # header text is not body
    ("TEXT pirard", ENC, True),
    ("TEXT \u00c7A", ENC, True),
    ("BODY noon?", NESTED, True),  # text part inside the encapsulated message
    ("BODY <b>noon", NESTED, True),
    ("BODY gr\u00fc\u00dfe", QP, True),  # quoted-printable, iso-8859-1
    ("BODY softbreak", QP, True),
    ("BODY secret", QP, False),  # non-text parts are not searched
    ("BODY \u00e9t\u00e9", QP, True),  # base64 text/html in UTF-8
    ("BODY SGVsbG8", ATTACH, False),
    ('BODY ""', ATTACH, True),
    ("SENTON 3-Dec-2026", ENC, True),  # Date: header as written, zone ignored
    ("SENTBEFORE 3-Dec-2026", ENC, False),
    ("SENTBEFORE 4-Dec-2026", ENC, True),
    ("SENTSINCE 3-Dec-2026", ENC, True),
    ("SENTSINCE 4-Dec-2026", ENC, False),
    ("SENTON 30-Nov-2026", QP, True),  # not converted to UTC (that would be 1-Dec)
    ("SENTON 1-Jan-2026", ATTACH, False),  # no Date: header: counts as 1 Jan 1970 (Dovecot, Cyrus)
    ("NOT SENTON 1-Jan-2026", ATTACH, True),
    ("SENTBEFORE 1-Jan-1995", ATTACH, True),
    ("SENTON 1-Jan-1970", ATTACH, True),
    ("SENTSINCE 2-Jan-1970", ATTACH, False),
    ("TEXT Quarterly", ATTACH, True),  # TEXT also sees the parts' MIME headers (as Dovecot)
    ("BODY Quarterly", ATTACH, False),
    ("TEXT report.pdf", ATTACH, True),
    ("ON 1-Jan-2026", ENC, True),
    ('ON "01-JAN-2026"', ENC, True),
    ("BEFORE 1-Jan-2026", ENC, False),
    ("BEFORE 2-Jan-2026", ENC, True),
    ("SINCE 1-Jan-2026", ENC, True),
    ("SINCE 2-Jan-2026", ENC, False),
    ("LARGER 100", ENC, True),
    ("SMALLER 100", ENC, False),
    ("SMALLER 99999999999", ENC, True),  # 64-bit sizes are accepted (RFC 9051 number64)
    (f"LARGER {len(ENC)}", ENC, False),
    (f"SMALLER {len(ENC)}", ENC, False),
    (f"SMALLER {len(ENC) + 1}", ENC, True),
    ("UID 10", ENC, True),
    ("UID 1:9,11:*", ENC, False),
    ("UID *", ENC, False),
    ("UID 12:*", ENC, False),
    ("1", ENC, True),
    ("2:*", ENC, False),
    ("*:1", ENC, True),
    ("1,3", ENC, True),
    ("MODSEQ 5", ENC, True),
    ("MODSEQ 6", ENC, False),
    ('MODSEQ "/flags/\\\\draft" all 4', ENC, True),
    ('MODSEQ "/flags/\\\\seen" priv 6', ENC, False),
    ("OR FROM nobody SUBJECT caf\u00e9", ENC, True),
    ("OR FROM nobody SUBJECT tea", ENC, False),
    ("NOT OR FROM nobody SUBJECT tea", ENC, True),
    ("(FROM pirard SUBJECT time) LARGER 1", ENC, True),
    ("(FROM pirard SUBJECT tea)", ENC, False),
    ("FROM pirard (OR NOT SUBJECT time (UID 10 SMALLER 5))", ENC, False),
    ("FROM pirard (OR NOT SUBJECT time (UID 10 LARGER 5))", ENC, True),
    ("CHARSET UTF-8 SUBJECT caf\u00e9", ENC, True),
    ("CHARSET us-ascii SUBJECT time", ENC, True),
]


@pytest.mark.parametrize("criteria,raw,expected", CASES)
def test_search_cases(criteria, raw, expected):
    key = S.parse_search(tok(criteria))
    assert S.evaluate(key, msg_from(raw)) is expected


FLAG_CASES = [
    # (criteria, flags, recent, expected)
    ("SEEN", {"\\Seen"}, False, True),
    ("UNSEEN", {"\\Seen"}, False, False),
    ("UNSEEN", set(), False, True),
    ("ANSWERED", {"\\Answered"}, False, True),
    ("UNANSWERED", {"\\Answered"}, False, False),
    ("DELETED", {"\\Deleted"}, False, True),
    ("UNDELETED", {"\\Deleted"}, False, False),
    ("DRAFT", {"\\Draft"}, False, True),
    ("UNDRAFT", set(), False, True),
    ("FLAGGED", {"\\flagged"}, False, True),  # flags compare case-insensitively
    ("UNFLAGGED", {"\\Flagged"}, False, False),
    ("KEYWORD $Forwarded", {"$forwarded"}, False, True),
    ("KEYWORD $Junk", {"$Forwarded"}, False, False),
    ("UNKEYWORD $Junk", {"$Forwarded"}, False, True),
    ("RECENT", set(), True, True),
    ("RECENT", set(), False, False),
    ("NEW", set(), True, True),
    ("NEW", {"\\Seen"}, True, False),
    ("NEW", set(), False, False),
    ("OLD", set(), True, False),
    ("OLD", set(), False, True),
    ("NOT NOT SEEN", {"\\Seen"}, False, True),
]


@pytest.mark.parametrize("criteria,flags,recent,expected", FLAG_CASES)
def test_flag_keys(criteria, flags, recent, expected):
    key = S.parse_search(tok(criteria))
    assert S.evaluate(key, msg_from(ENC, flags=flags, recent=recent)) is expected
    assert S.needs(key) == set()


def test_recent_without_attribute_reads_flags():
    m = msg_from(ENC)
    del m.recent
    assert S.evaluate(S.parse_search(tok("RECENT")), m) is False
    assert S.evaluate(S.parse_search(tok("OLD")), m) is True
    m = msg_from(ENC, flags={"\\Recent"})
    del m.recent
    assert S.evaluate(S.parse_search(tok("RECENT")), m) is True
    assert S.evaluate(S.parse_search(tok("NEW")), m) is True


@pytest.mark.parametrize(
    "criteria,expected",
    [
        ("ALL", set()),
        ("UID 1:* SEEN LARGER 5 MODSEQ 3 ON 1-Jan-2026", set()),
        ("SUBJECT x", {"header"}),
        ("HEADER X-Foo y", {"header"}),
        ("SENTON 1-Jan-2026", {"header"}),
        ("BODY x", {"body"}),
        ("TEXT x", {"header", "body"}),
        ("NOT (OR SEEN (FROM a BODY b))", {"header", "body"}),
    ],
)
def test_needs(criteria, expected):
    assert S.needs(S.parse_search(tok(criteria))) == expected


def test_header_keys_work_from_the_header_block_alone():
    m = msg_from(ENC, with_raw=False)
    assert S.evaluate(S.parse_search(tok("SUBJECT tomorrow")), m)
    assert S.evaluate(S.parse_search(tok("SENTON 3-Dec-2026")), m)


def test_literal_and_quoted_strings_are_utf8():
    key = S.parse_search([A("SUBJECT"), "CAF\u00c9".encode()])
    assert S.evaluate(key, msg_from(ENC))


def test_sequence_set_uses_seq_max_for_star():
    key = S.parse_search(tok("*"))
    assert S.evaluate(key, msg_from(ENC, seq=3, seq_max=3))
    assert not S.evaluate(key, msg_from(ENC, seq=2, seq_max=3))
    key = S.parse_search(tok("UID *"))
    assert S.evaluate(key, msg_from(ENC, uid=12, uid_max=12))


@pytest.mark.parametrize(
    "criteria",
    [
        "",
        "FOO",
        "SUBJECT",
        "HEADER Subject",
        'HEADER "" x',
        "LARGER x",
        "LARGER -1",
        "LARGER 99999999999999999999",
        "SMALLER",
        "BEFORE 1-Foo-2026",
        "BEFORE 2026-01-01",
        "ON",
        "UID",
        "UID 0",
        "UID a:b",
        "0",
        "1:0",
        "OR SEEN",
        "NOT",
        "()",
        "MODSEQ",
        "MODSEQ x",
        'MODSEQ "/flags/\\\\seen" bogus 5',
        "MODSEQ 99999999999999999999",
        "KEYWORD",
        "CHARSET",
        '"SEEN"',
    ],
)
def test_syntax_errors(criteria):
    with pytest.raises(S.SearchSyntaxError) as info:
        S.parse_search(tok(criteria))
    assert info.value.code is None
    assert isinstance(info.value, ValueError)


def test_badcharset():
    with pytest.raises(S.SearchSyntaxError) as info:
        S.parse_search(tok("CHARSET KOI8-R SUBJECT x"))
    assert info.value.code == "BADCHARSET (UTF-8 US-ASCII)"
    with pytest.raises(S.SearchSyntaxError) as info:
        S.parse_search(tok("CHARSET ISO-8859-1 ALL"), charset_ok=("UTF-8",))
    assert info.value.code == "BADCHARSET (UTF-8)"


def test_nesting_is_bounded():
    deep = "NOT " * 1000 + "SEEN"
    with pytest.raises(S.SearchSyntaxError):
        S.parse_search(tok(deep))
    ok = "NOT " * 20 + "SEEN"
    assert S.evaluate(S.parse_search(tok(ok)), msg_from(ENC, flags={"\\Seen"}))


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"garbage without structure",
        b"Subject: =?bogus?q?x?=\r\nDate: not a date\r\nFrom: <<<\r\n\r\n",
        b"Content-Type: text/plain; charset=no-such-charset\r\n\r\n\xff\xfe",
        b"Content-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!not base64",
        b"Content-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\nContent-Type: text/plain\r\n",
        b"Date: Mon, 99 Foo 20260 99:99:99 +9999\r\n\r\n",
    ],
)
def test_evaluate_never_raises(raw):
    m = msg_from(raw)
    for criteria in ["SUBJECT x", "BODY x", "TEXT x", "SENTON 1-Jan-2026", "NOT SENTSINCE 1-Jan-2026", "FROM a"]:
        assert S.evaluate(S.parse_search(tok(criteria)), m) in (True, False)


def test_evaluate_with_broken_msg_object():
    m = SimpleNamespace(seq=1, uid=1, flags=None, modseq=None, size=0, internaldate="bogus", header=None, raw=None,
                        seq_max=1, uid_max=1)
    assert S.evaluate(S.parse_search(tok("ON 1-Jan-2026")), m) is False
    assert S.evaluate(S.parse_search(tok("NOT ON 1-Jan-2026")), m) is True
    assert S.evaluate(S.parse_search(tok("SUBJECT x")), m) is False
    assert S.evaluate(S.parse_search(tok("MODSEQ 1")), m) is False


def test_within_older_younger():
    now = epoch(2026, 1, 1, 12)
    m = msg_from(ENC, internaldate=now - 3600)  # an hour old
    for criteria, expected in [("OLDER 60", True), ("OLDER 7200", False), ("YOUNGER 7200", True), ("YOUNGER 60", False),
                               ("NOT YOUNGER 60", True)]:
        assert S.evaluate(S.parse_search(tok(criteria), now=now), m) is expected, criteria
    for bad in ("OLDER", "OLDER 0", "YOUNGER x"):
        with pytest.raises(S.SearchSyntaxError):
            S.parse_search(tok(bad))


@pytest.mark.parametrize("error, outcome", [(ValueError("unreadable"), False), (MemoryError(), MemoryError)])
def test_unreadable_data_does_not_match_but_memory_is_not_no_match(monkeypatch, error, outcome):
    """A part that cannot be decoded simply does not match; a MemoryError (the worker's RLIMIT_AS)
    propagates, so the worker answers "memory" and the client NO [LIMIT], not an empty SEARCH."""
    from postern_gateway.imap import searchview

    def fail(self):
        raise error

    monkeypatch.setattr(searchview.View, "body_texts", fail)
    key = S.parse_search([A("BODY"), b"needle"])
    m = msg_from(b"Subject: s\r\n\r\nthe needle\r\n")
    if outcome is False:
        assert S.evaluate(key, m) is False
    else:
        with pytest.raises(MemoryError):
            S.evaluate(key, m)


def test_inline_search_out_of_memory_is_work_limit(monkeypatch):
    """The inline path (small input, on the event loop) answers a MemoryError as the workers do."""
    import asyncio

    from postern_gateway import workers
    from postern_gateway.imap import work

    def boom(*_):
        raise MemoryError

    budget = work.Budget(SimpleNamespace(work_seconds=60.0))
    with pytest.raises(workers.WorkLimit) as info:
        asyncio.run(budget.inline(boom))
    assert info.value.imap_response("a1").startswith(b"a1 NO [LIMIT] ")
