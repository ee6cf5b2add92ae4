"""ENVELOPE, BODYSTRUCTURE and BODY[section] on byte strings (RFC 3501 §6.4.5, §7.4.2)."""

import pathlib

import pytest

from postern_gateway.imap import message as m

GOLDEN = pathlib.Path(__file__).resolve().parents[1] / "golden" / "imap"
SAMPLES = sorted(p.stem for p in GOLDEN.glob("*.eml"))


def sample(name: str) -> bytes:
    return (GOLDEN / f"{name}.eml").read_bytes()


def test_golden_samples_present():
    assert len(SAMPLES) >= 10


@pytest.mark.parametrize("name", SAMPLES)
def test_golden_envelope(name):
    raw = sample(name)
    expected = (GOLDEN / f"{name}.envelope").read_bytes()
    assert m.envelope(raw[: m.header_length(raw)]) == expected
    assert m.envelope(raw) == expected  # the whole message works too


@pytest.mark.parametrize("name", SAMPLES)
def test_golden_bodystructure(name):
    raw = sample(name)
    assert m.bodystructure(raw) == (GOLDEN / f"{name}.bodystructure").read_bytes()
    assert m.bodystructure(raw, extended=False) == (GOLDEN / f"{name}.body").read_bytes()


# --- sections ----------------------------------------------------------------

NESTED = sample("nested_rfc822")
INNER_START = NESTED.index(b"From: Carol")
INNER_END = NESTED.index(b"\r\n--b1--")
INNER = NESTED[INNER_START:INNER_END]
INNER_HEADER_END = INNER.index(b"\r\n\r\n") + 4

SECTION_CASES = [
    # (part, text, fields, expected)
    ((), None, (), NESTED),
    ((), "HEADER", (), NESTED[: NESTED.index(b"\r\n\r\n") + 4]),
    ((), "TEXT", (), NESTED[NESTED.index(b"\r\n\r\n") + 4 :]),
    ((), "HEADER.FIELDS", ("subject", "DATE"), b"Subject: Fwd: lunch\r\nDate: Wed, 2 Dec 2026 09:00:00 +0100\r\n\r\n"),
    ((1,), None, (), b"See below."),
    ((1,), "MIME", (), b"Content-Type: text/plain\r\n\r\n"),
    ((2,), None, (), INNER),
    ((2,), "MIME", (), b"Content-Type: message/rfc822\r\nContent-Disposition: inline\r\n\r\n"),
    ((2,), "HEADER", (), INNER[:INNER_HEADER_END]),
    ((2,), "TEXT", (), INNER[INNER_HEADER_END:]),
    ((2,), "HEADER.FIELDS", ("From",), b"From: Carol <carol@example.net>\r\n\r\n"),
    (
        (2,),
        "HEADER.FIELDS.NOT",
        ("from", "to", "date", "message-id", "in-reply-to", "mime-version", "content-type"),
        b"Subject: lunch\r\n\r\n",
    ),
    ((2, 1), None, (), b"Noon?"),
    ((2, 2), None, (), b"<b>Noon?</b>"),
    ((2, 1), "MIME", (), b"Content-Type: text/plain; charset=utf-8\r\n\r\n"),
    ((3,), None, (), b""),
    ((0,), None, (), b""),
    ((2, 3), None, (), b""),
    ((1, 1), None, (), b"See below."),  # a single part of a multipart is its own part 1 (as Dovecot)
    ((1, 1), "MIME", (), b"Content-Type: text/plain\r\n\r\n"),
    ((1, 2), None, (), b""),
    ((1,), "HEADER", (), b""),  # HEADER of a part that is not message/rfc822
    ((1,), "TEXT", (), b""),
    ((), "MIME", (), b""),  # MIME needs a part number
]


@pytest.mark.parametrize("part,text,fields,expected", SECTION_CASES)
def test_section_nested(part, text, fields, expected):
    assert m.section(NESTED, part, text, fields) == expected


def test_section_single_part_message_has_part_one():
    raw = sample("plain")
    body = raw[raw.index(b"\r\n\r\n") + 4 :]
    assert m.section(raw, (1,)) == body == b"Hello Bob,\r\nthis is a test.\r\n"
    assert m.section(raw, (2,)) == b""
    assert m.section(raw, (1, 1)) == b""
    assert m.section(raw, (1,), "MIME") == raw[: raw.index(b"\r\n\r\n") + 4]


def test_section_message_rfc822_at_top_level():
    inner = b"Subject: inner\r\n\r\ninner body\r\n"
    raw = b"Content-Type: message/rfc822\r\n\r\n" + inner
    assert m.section(raw, (1,)) == inner
    assert m.section(raw, (1,), "HEADER") == b"Subject: inner\r\n\r\n"
    assert m.section(raw, (1,), "TEXT") == b"inner body\r\n"
    assert m.section(raw, (1, 1)) == b"inner body\r\n"


def test_section_part_of_mixed_attachment_is_exact_bytes():
    raw = sample("mixed_attachment")
    assert m.section(raw, (2,)) == b"SGVsbG8gV29ybGQh"
    assert m.section(raw, (3,)) == b"iVBORw0KGgo="
    assert m.section(raw, (2,), "mime").startswith(b"Content-Type: application/pdf;")
    assert m.section(raw, (2, 1)) == b"SGVsbG8gV29ybGQh"  # as Dovecot: one level of "itself"
    assert m.section(raw, (2, 1, 1)) == b""
    assert m.section(raw, (2, 1), "MIME") == m.section(raw, (2,), "MIME")


def test_section_bare_lf():
    raw = sample("dovecot_lf")
    assert m.section(raw, (1,)) == b"hello\n"
    assert m.section(raw, (2, 1)) == b"<p>Hello world</p>\n"
    assert m.section(raw, (2, 2)) == b"Hello another world\n"
    assert m.section(raw, (2,), "HEADER.FIELDS", ("subject",)) == b"Subject: submsg\n\n"


def test_multipart_section_includes_preamble_and_delimiters():
    raw = sample("dovecot_crlf")
    inner = m.section(raw, (2,))
    sub = m.section(raw, (2, 1))  # 2 is message/rfc822 whose body is multipart: 2.1 is its first part
    assert sub == b"<p>Hello world</p>\r\n"
    assert m.section(raw, (2,), "TEXT").startswith(b"Sub MIME prologue\r\n--sub1\r\n")
    assert inner.endswith(b"Sub MIME epilogue\r\n")


# --- header fields -----------------------------------------------------------

HEADER = (
    b"Subject: first\r\n folded\r\n"
    b"From: a@b\r\n"
    b"X-Subject: no\r\n"
    b"subject : second\r\n"
    b"To: t@u\r\n"
    b"\r\n"
)


@pytest.mark.parametrize(
    "fields,negate,expected",
    [
        (("SUBJECT",), False, b"Subject: first\r\n folded\r\nsubject : second\r\n\r\n"),
        (("subject", "to"), True, b"From: a@b\r\nX-Subject: no\r\n\r\n"),
        (("nothing",), False, b"\r\n"),
        (("nothing",), True, HEADER),
        ((), True, HEADER),
        ((), False, b"\r\n"),
        (("x-subject",), False, b"X-Subject: no\r\n\r\n"),
        (("sub",), False, b"\r\n"),  # exact names only
    ],
)
def test_header_fields(fields, negate, expected):
    assert m.header_fields(HEADER, fields, negate) == expected


def test_header_fields_without_blank_line():
    assert m.header_fields(b"A: 1\r\nB: 2\r\n", ("b",), False) == b"B: 2\r\n"
    assert m.header_fields(b"A: 1\r\nB: 2", ("b",), False) == b"B: 2"


def test_header_fields_bytes_names_and_lf():
    assert m.header_fields(b"A: 1\nB: 2\n x\n\nbody", (b"B",), False) == b"B: 2\n x\n\n"


# --- header length and section ranges ---------------------------------------


@pytest.mark.parametrize(
    "raw,expected",
    [
        (b"A: b\r\n\r\nbody", 8),
        (b"A: b\n\nbody", 6),
        (b"\r\nbody", 2),
        (b"\nbody", 1),
        (b"A: b\r\nB: c", 10),
        (b"A: b\n\r\nbody", 7),
        (b"", 0),
    ],
)
def test_header_length(raw, expected):
    assert m.header_length(raw) == expected


# --- robustness ------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\r\n",
        b"no header at all",
        b"Content-Type: multipart/mixed\r\n\r\n--x\r\n",  # no boundary parameter
        b"Content-Type: multipart/mixed; boundary=\r\n\r\n",
        b"Content-Type: message/rfc822\r\n\r\n",
        b"Content-Type: ;;;\r\nFrom: <@>\r\nTo: a@\r\nCc: \"\r\n\r\n",
        b"From: =?utf-8?q?broken <a@b>\r\nSubject: =?x?q?y?=\r\n\r\n",
        b"Content-Type: text/plain; charset*=bogus''%ZZ\r\n\r\nx",
        b"Content-Type: text/plain; name*0*=utf-8''%C3; name*1*=%A9\r\n\r\nx",
        b"\x00\xff\xfe: \x00\r\n\r\n",
        b" leading continuation\r\nA: b\r\n\r\n",
        b"Content-Type: multipart/mixed; boundary=a\r\n\r\n--a\r\nContent-Type: multipart/mixed; boundary=a\r\n\r\n--a--\r\n",
    ],
)
def test_never_raises(raw):
    assert m.bodystructure(raw).startswith(b"(")
    assert m.bodystructure(raw, False).startswith(b"(")
    assert m.envelope(raw).startswith(b"(")
    for part in [(), (1,), (1, 1), (2,)]:
        for text in [None, "HEADER", "TEXT", "MIME"]:
            assert isinstance(m.section(raw, part, text), bytes)


def test_multipart_without_boundary_gets_empty_text_part():
    raw = b"Content-Type: multipart/mixed\r\n\r\nstuff\r\n"
    assert m.bodystructure(raw, False) == b'(("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 0 0) "mixed")'
    assert m.section(raw, (1,)) == b""


def test_rfc2231_continuations_merged():
    raw = b"Content-Type: application/octet-stream; name*0=\"long\"; name*1=\"name.txt\"\r\n\r\nx"
    assert m.bodystructure(raw, False) == b'("application" "octet-stream" ("name" "longname.txt") NIL NIL "7bit" 1)'
    raw = b"Content-Type: text/plain; title*=iso-8859-1'en'%E9t%E9\r\n\r\nx"
    assert b'("title*" "iso-8859-1\'\'%E9t%E9")' in m.bodystructure(raw)


def test_encoded_word_in_parameter_left_raw():
    raw = b'Content-Type: application/pdf; name="=?utf-8?q?r=C3=A9sum=C3=A9.pdf?="\r\n\r\nx'
    assert b'("name" "=?utf-8?q?r=C3=A9sum=C3=A9.pdf?=")' in m.bodystructure(raw)


def test_digest_parts_default_to_message_rfc822():
    raw = (
        b"Content-Type: multipart/digest; boundary=d\r\n\r\n"
        b"--d\r\n\r\nSubject: one\r\n\r\nfirst\r\n--d--\r\n"
    )
    bs = m.bodystructure(raw, False)
    assert bs.startswith(b'(("message" "rfc822" NIL NIL NIL "7bit" 21 (NIL "one" ')
    assert m.section(raw, (1, 1)) == b"first"


def test_close_delimiter_needs_line_start_and_exact_boundary():
    raw = (
        b"Content-Type: multipart/mixed; boundary=ab\r\n\r\n"
        b"--ab\r\n\r\nx --ab\r\n--abc\r\n--ab  \r\n\r\ny\r\n--ab--\r\n"
    )
    assert m.section(raw, (1,)) == b"x --ab\r\n--abc"
    assert m.section(raw, (2,)) == b"y"


def test_part_budget_bounds_hostile_input():
    raw = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n" + b"--b\r\n" * 50_000
    bs = m.bodystructure(raw, False)
    assert bs.count(b'("text" "plain"') == m.MAX_PARTS - 1


def test_deep_nesting_is_bounded():
    raw = b"Content-Type: message/rfc822\r\n\r\n" * 500 + b"Subject: x\r\n\r\nend"
    bs = m.bodystructure(raw)
    assert b'"application" "octet-stream"' in bs


# --- the trace prefix ---------------------------------------------------------


@pytest.mark.parametrize("name", SAMPLES)
def test_trace_prefix_does_not_change_the_structure(name):
    """The per-recipient prefix (Return-Path, Delivered-To) only adds top-level fields."""
    raw = sample(name)
    prefix = b"Return-Path: <x@example.org>\r\nDelivered-To: y@example.org\r\n"
    assert m.bodystructure(prefix + raw) == m.bodystructure(raw)
    assert m.section(prefix + raw, (1,)) == m.section(raw, (1,))


def test_one_bad_address_does_not_lose_the_list():
    # what Dovecot 2.3 answers for the same field
    raw = b'From: "A" <a@b>, g: c@d;, (x) e@\r\n\r\n'
    expected = b'(("A" NIL "a" "b")(NIL NIL "g" NIL)(NIL NIL "c" "d")(NIL NIL NIL NIL)(NIL NIL "e" "MISSING_DOMAIN"))'
    assert m.envelope(raw) == b"(NIL NIL " + b" ".join([expected] * 3) + b" NIL NIL NIL NIL NIL)"
    assert m.addresses(b"x, y@z") == [(None, None, b"x", b"MISSING_DOMAIN"), (None, None, b"y", b"z")]
    assert m.addresses(b",,,") == [] and m.addresses(b"@") == [] and m.addresses(None) == []


def test_repeated_address_fields_are_merged():
    # malformed (RFC 5322 §3.6 allows one To:), answered as Dovecot does: all addresses
    raw = b"To: a@b\r\nSubject: first\r\nTo: c@d\r\nSubject: second\r\n\r\n"
    env = m.envelope(raw)
    assert b'((NIL NIL "a" "b")(NIL NIL "c" "d"))' in env
    assert b'"first"' in env and b'"second"' not in env


@pytest.mark.parametrize(
    "value,expected",
    [  # Dovecot 2.3's answers for the same From: values
        (b"(x) e@folded (y)", [(b"y", None, b"e", b"folded")]),  # the comment after the address is the name
        (b"<a@b> (c)", [(None, None, b"a", b"b")]),
        (b"a@b (c) (d)", [(b"d", None, b"a", b"b")]),
        (b'"" <a@b>', [(None, None, b"a", b"b")]),
        (b'"  spaced  name " <a@b>', [(b"spaced name", None, b"a", b"b")]),
        (b"Joe . Q <a@b>", [(b"Joe . Q", None, b"a", b"b")]),
        (b"<@r1,@r2:a@b>", [(None, b"@r1,@r2", b"a", b"b")]),
        (b"a@[1.2.3.4]", [(None, None, b"a", b"[1.2.3.4]")]),
        (b"=?utf-8?q?x?= =?utf-8?q?y?= <a@b>", [(b"=?utf-8?q?x?= =?utf-8?q?y?=", None, b"a", b"b")]),
        (b"A (c) B <a@b>", [(b"A B", None, b"a", b"b")]),
        (b"group: ;", [(None, None, b"group", None), (None, None, None, None)]),
        (b'"q\\"x" <a@b>', [(b'q"x', None, b"a", b"b")]),
        # deliberate differences: an empty list element is skipped (RFC 5322 §4.4 obs-addr-list;
        # Dovecot adds MISSING_MAILBOX), a local part that needs quotes keeps them
        (b"a@b, ,c@d", [(None, None, b"a", b"b"), (None, None, b"c", b"d")]),
        (b'"a b"@c', [(None, None, b'"a b"', b"c")]),
    ],
)
def test_address_details(value, expected):
    assert m.addresses(value) == expected


def test_content_type_out_of_memory_is_not_a_malformed_header(monkeypatch):
    """A MemoryError while parsing Content-Type propagates (NO [LIMIT] from the worker) and is not
    cached as the RFC 2045 §5.2 default for that value; a malformed value still reads as the default."""
    from postern_gateway.imap.message import mime

    value = b"text/html; charset=memory-test"
    real = mime._hvp.parse_content_type_header

    def boom(_):
        raise MemoryError

    monkeypatch.setattr(mime._hvp, "parse_content_type_header", boom)
    with pytest.raises(MemoryError):
        mime._parse_content_type(value, ("text", "plain"))
    monkeypatch.setattr(mime._hvp, "parse_content_type_header", real)
    assert mime._parse_content_type(value, ("text", "plain"))[:2] == ("text", "html")
    assert mime._parse_content_type(b"\x00;;=", ("text", "plain"))[:2] == ("text", "plain")
