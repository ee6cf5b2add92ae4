"""Property tests for the IMAP content modules (wire, message, search); bounded for CI.

The generated MIME trees are built and serialised by the email package
(policy.SMTP), so what our byte-locating parser reports is checked against an
independent producer.
"""

import base64
import quopri
import re
from email.message import EmailMessage
from email import policy

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from postern.mail.dates import parse_imap_date, parse_imap_date_time
from postern_gateway.imap import message as M
from postern_gateway.imap import search as S
from postern_gateway.imap import wire
from postern_gateway.imap.tokens import Atom

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FEW = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --- a reader for what we emit (IMAP response s-expressions) ---------------------

_ATOM = re.compile(rb"[^\s()\"{]+")


def read_sexp(data: bytes):
    """Parse one parenthesised IMAP value; strings -> bytes, NIL -> None, numbers -> int."""
    pos = 0

    def value():
        nonlocal pos
        c = data[pos : pos + 1]
        if c == b"(":
            pos += 1
            items = []
            while data[pos : pos + 1] != b")":
                if data[pos : pos + 1] == b" ":
                    pos += 1
                    continue
                items.append(value())
            pos += 1
            return items
        if c == b'"':
            pos += 1
            out = bytearray()
            while data[pos : pos + 1] != b'"':
                if data[pos : pos + 1] == b"\\":
                    pos += 1
                    assert data[pos : pos + 1] in (b"\\", b'"')
                assert data[pos] not in (0, 10, 13) and data[pos] < 128
                out += data[pos : pos + 1]
                pos += 1
            pos += 1
            return bytes(out)
        if c == b"{":
            end = data.index(b"}\r\n", pos)
            n = int(data[pos + 1 : end])
            pos = end + 3
            out = data[pos : pos + n]
            assert len(out) == n
            pos += n
            return out
        m = _ATOM.match(data, pos)
        assert m, data[pos : pos + 20]
        pos = m.end()
        word = m.group()
        if word == b"NIL":
            return None
        assert word.isdigit(), word
        return int(word)

    v = value()
    assert pos == len(data), (pos, len(data))
    return v


# --- wire -------------------------------------------------------------------


@FUZZ
@given(st.binary(max_size=300) | st.text(max_size=100))
def test_quote_round_trips(value):
    encoded = wire.quote(value)
    expected = value.encode("utf-8", "surrogateescape") if isinstance(value, str) else value
    assert read_sexp(b"(" + encoded + b")") == [expected]


@FUZZ
@given(st.text(alphabet=st.characters(min_codepoint=1, max_codepoint=0x7F), max_size=40))
def test_astring_is_atom_or_string(value):
    encoded = wire.astring(value)
    if encoded[:1] in (b'"', b"{"):
        assert read_sexp(b"(" + encoded + b")") == [value.encode()]
    else:
        assert encoded == value.encode() and value.upper() != "NIL"
        assert not re.search(rb'[\s(){%*"\\\x00-\x1f\x7f]', encoded)


@FUZZ
@given(st.datetimes(min_value=__import__("datetime").datetime(1970, 1, 2), max_value=__import__("datetime").datetime(2200, 1, 1)))
def test_internaldate_round_trips(when):
    import datetime as dt

    aware = when.replace(tzinfo=dt.timezone.utc, microsecond=0)
    text = wire.format_internaldate(aware.timestamp())
    assert parse_imap_date_time(text) == aware
    assert parse_imap_date(text[1:12]) == aware.date()


# --- message: arbitrary bytes never break anything ------------------------------

_mime_bits = st.sampled_from(
    [
        b"Content-Type: multipart/mixed; boundary=b\r\n",
        b"Content-Type: multipart/alternative; boundary=\"c d\"\r\n",
        b"Content-Type: message/rfc822\r\n",
        b"Content-Type: text/plain; charset=utf-8; name*0*=utf-8''%C3; name*1*=%A9\r\n",
        b"Content-Type: ;;=\r\n",
        b"Content-Disposition: attachment; filename=\"a\r\n b\"\r\n",
        b"Content-Transfer-Encoding: base64\r\n",
        b"From: \"A\" <a@b>, g: c@d;, (x) e@\r\n",
        b"Subject: =?utf-8?q?x?= \xff\r\n",
        b" folded\r\n",
        b"\r\n",
        b"\n",
        b"--b\r\n",
        b"--b--\r\n",
        b"--c d\r\n",
        b"--c d--\n",
        b"body text\r\n",
        b"\x00\x01\xfe",
    ]
)
_messy = st.lists(_mime_bits | st.binary(max_size=20), max_size=30).map(b"".join)


@FUZZ
@given(_messy)
def test_message_functions_total_and_well_formed(raw):
    for extended in (True, False):
        bs = read_sexp(M.bodystructure(raw, extended))
        assert isinstance(bs, list) and bs
    env = read_sexp(M.envelope(raw))
    assert len(env) == 10
    for part in [(), (1,), (2,), (1, 1), (2, 1), (3, 2, 1)]:
        for text in [None, "HEADER", "TEXT", "MIME", "HEADER.FIELDS", "HEADER.FIELDS.NOT"]:
            out = M.section(raw, part, text, ("subject", "content-type"))
            assert isinstance(out, bytes) and len(out) <= len(raw) + 2
    hl = M.header_length(raw)
    assert 0 <= hl <= len(raw)
    assert M.section(raw, (), "HEADER") + M.section(raw, (), "TEXT") == raw


@FUZZ
@given(_messy)
def test_leaf_sizes_match_sections(raw):
    """Every single-part body's reported size is the length of its BODY[part] bytes."""
    root = M.parse(raw)

    def walk(e, number, bs):
        if e.is_multipart:
            for i, c in enumerate(e.children, 1):
                walk(c, number + (i,), bs[i - 1])
            return
        size = bs[6]
        assert isinstance(size, int)
        if not e.synthetic:
            assert M.section(raw, number or (1,)) == raw[e.body_start : e.end]
        assert size == e.end - e.body_start

    walk(root, (), read_sexp(M.bodystructure(raw, False)))


# --- message: trees built by the email package ---------------------------------

_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\x00"), max_size=200)


@st.composite
def mime_tree(draw, depth=0):
    kind = draw(st.sampled_from(["text", "bytes", "multipart", "message"] if depth < 3 else ["text", "bytes"]))
    msg = EmailMessage(policy=policy.SMTP)
    if kind == "text":
        body = draw(_text)
        subtype = draw(st.sampled_from(["plain", "html"]))
        cte = draw(st.sampled_from([None, "quoted-printable", "base64"]))
        msg.set_content(body, subtype=subtype, cte=cte) if cte else msg.set_content(body, subtype=subtype)
        return msg, ("text", body)
    if kind == "bytes":
        data = draw(st.binary(max_size=300))
        msg.set_content(data, maintype="application", subtype="octet-stream", filename=draw(st.sampled_from(["a.bin", "caf\u00e9.bin"])))
        return msg, ("bytes", data)
    if kind == "message":
        inner, shape = draw(mime_tree(depth + 1))
        inner["Subject"] = draw(st.sampled_from(["inner", "caf\u00e9 \u00e0 la cr\u00e8me"]))
        msg.set_content(inner)
        return msg, ("message", shape)
    subtype = draw(st.sampled_from(["mixed", "alternative", "related"]))
    msg["Content-Type"] = f"multipart/{subtype}"
    kids = draw(st.lists(mime_tree(depth + 1), min_size=1, max_size=3))
    for child, _ in kids:
        msg.attach(child)
    return msg, ("multipart", [shape for _, shape in kids])


def _decode(section_bytes: bytes, cte: str) -> bytes:
    if cte == "base64":
        return base64.b64decode(section_bytes)
    if cte == "quoted-printable":
        return quopri.decodestring(section_bytes)
    return section_bytes


def _check(raw, number, shape, bs, in_message=False):
    """Compare one node of the generated tree with BODY and BODY[part] (RFC 3501 §6.4.5 numbering)."""
    kind = shape[0]
    if kind == "multipart":
        assert isinstance(bs[0], list)
        for i, (sub, sub_bs) in enumerate(zip(shape[1], bs), 1):
            _check(raw, number + (i,), sub, sub_bs)
        return
    # a non-multipart message (top level or encapsulated) has a single part 1: its body
    part = number + (1,) if in_message else (number or (1,))
    data = M.section(raw, part)
    assert bs[6] == len(data)  # body-fld-octets is exact
    cte = bs[5].decode().lower()
    if kind == "text":
        assert bs[0] == b"text"
        text = _decode(data, cte).decode(bs[2][bs[2].index(b"charset") + 1].decode())
        assert text.replace("\r\n", "\n").rstrip("\n") == shape[1].replace("\r\n", "\n").rstrip("\n")
        assert bs[7] == data.count(b"\n")  # body-fld-lines: line ends (as Dovecot counts)
    elif kind == "bytes":
        assert (bs[0], bs[1]) == (b"application", b"octet-stream")
        assert _decode(data, cte) == shape[1]
    else:
        assert (bs[0], bs[1]) == (b"message", b"rfc822")
        env = bs[7]
        assert env[1] is not None  # the inner Subject
        inner_header = M.section(raw, part, "HEADER")
        assert data.startswith(inner_header) and inner_header.endswith(b"\r\n\r\n")
        _check(raw, part, shape[1], bs[8], in_message=True)


@FEW
@given(mime_tree())
def test_email_package_trees(tree):
    msg, shape = tree
    msg["From"] = "Someone <someone@example.org>"
    msg["Subject"] = "fuzz"
    raw = msg.as_bytes(policy=policy.SMTP)
    bs = read_sexp(M.bodystructure(raw, False))
    ext = read_sexp(M.bodystructure(raw, True))
    assert len(M.bodystructure(raw, True)) > len(M.bodystructure(raw, False))
    if shape[0] == "multipart":
        assert isinstance(ext, list)
    _check(raw, (), shape, bs)


# --- header fields --------------------------------------------------------------

_names = st.sampled_from(["Subject", "From", "To", "X-A", "x-a", "Received", "Content-Type", "X-Subject"])


@FUZZ
@given(
    st.lists(st.tuples(_names, st.text(alphabet="ab c:=", max_size=12), st.booleans()), max_size=12),
    st.lists(_names, max_size=3),
    st.sampled_from([b"\r\n", b"\n"]),
)
def test_header_fields_partition(fields, wanted, eol):
    lines = []
    for name, value, fold in fields:
        line = name.encode() + b": " + value.encode()
        if fold:
            line += eol + b" folded"
        lines.append(line + eol)
    header = b"".join(lines) + eol
    keep = M.header_fields(header, tuple(wanted), False)
    drop = M.header_fields(header, tuple(wanted), True)
    assert keep.endswith(eol) and drop.endswith(eol)
    low = {w.lower() for w in wanted}
    assert keep == b"".join(line for line, (n, _, _) in zip(lines, fields) if n.lower() in low) + eol
    assert drop == b"".join(line for line, (n, _, _) in zip(lines, fields) if n.lower() not in low) + eol


# --- search: the parser only ever raises SearchSyntaxError ---------------------

_words = st.sampled_from(
    ["ALL", "OR", "NOT", "SUBJECT", "FROM", "HEADER", "UID", "1:*", "*", "2,4:5", "0", "BEFORE", "1-Jan-2026", "x",
     "LARGER", "10", "MODSEQ", "KEYWORD", "$Junk", "CHARSET", "UTF-8", "KOI8-R", "NEW", "TEXT", "BODY", "SENTON"]
).map(Atom)
_tokens = st.recursive(st.lists(_words | st.binary(max_size=8), max_size=8), lambda inner: st.lists(inner | _words, max_size=4), max_leaves=20)


@FUZZ
@given(_tokens)
def test_search_parser_total(tokens):
    try:
        key = S.parse_search(tokens)
    except S.SearchSyntaxError:
        return
    assert S.needs(key) <= {"header", "body"}
    msg = type("M", (), dict(seq=1, uid=1, flags=frozenset(), modseq=1, size=10, internaldate=0.0,
                             header=b"Subject: x\r\n\r\n", raw=b"Subject: x\r\n\r\nx", seq_max=1, uid_max=1))()
    assert S.evaluate(key, msg) in (True, False)


# --- SORT / THREAD: every message exactly once, whatever the headers ----------------

from types import SimpleNamespace  # noqa: E402

from postern_gateway.imap import sortthread as T  # noqa: E402

_ids = st.sampled_from(["a@x", "b@x", "c@x", "d@x", "e@x", "bogus", ""])
_subjects = st.sampled_from(["x", "Re: x", "[l] x", "Fwd: [fwd: x]", "y", "", "re:", "=?utf-8?q?x?="])


@st.composite
def thread_mailbox(draw):
    n = draw(st.integers(min_value=0, max_value=12))
    msgs = []
    for seq in range(1, n + 1):
        lines = [f"Subject: {draw(_subjects)}"]
        if draw(st.booleans()):
            lines.append(f"Date: Thu, {draw(st.integers(1, 3))} Jan 2026 10:00:00 +0000")
        mid = draw(_ids)
        if mid:
            lines.append(f"Message-ID: <{mid}>")
        refs = draw(st.lists(_ids, max_size=4))
        if refs:
            lines.append("References: " + " ".join(f"<{r}>" for r in refs))
        if draw(st.booleans()):
            lines.append(f"In-Reply-To: <{draw(_ids)}>")
        header = ("\r\n".join(lines) + "\r\n\r\n").encode()
        msgs.append(SimpleNamespace(seq=seq, uid=seq, internaldate=float(draw(st.integers(0, 5))), size=seq, header=header))
    return msgs


@FUZZ
@given(thread_mailbox(), st.sampled_from(T.ALGORITHMS))
def test_thread_lists_every_message_once(msgs, algorithm):
    text = T.format_threads(T.thread(algorithm, msgs))
    depth = 0
    for c in text:
        depth += {"(": 1, ")": -1}.get(c, 0)
        assert depth >= 0
    assert depth == 0
    assert "()" not in text
    numbers = sorted(int(x) for x in text.replace("(", " ").replace(")", " ").split())
    assert numbers == [m.seq for m in msgs]


@FUZZ
@given(thread_mailbox(), st.lists(st.tuples(st.sampled_from(T.SORT_KEYS), st.booleans()), min_size=1, max_size=3))
def test_sort_is_a_permutation(msgs, criteria):
    out = T.sort_messages(criteria, msgs)
    assert sorted(m.seq for m in out) == [m.seq for m in msgs]
