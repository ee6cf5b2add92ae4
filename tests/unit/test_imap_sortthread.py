"""SORT and THREAD (RFC 5256) on plain message objects."""

from types import SimpleNamespace

import pytest

from postern_gateway.imap import sortthread as T
from postern_gateway.imap.search import SearchSyntaxError
from postern_gateway.imap.tokens import Atom as A


def msg(seq, subject=None, date=None, mid=None, refs=None, irt=None, frm=None, to=None, cc=None, size=0,
        arrival=0.0):
    lines = []
    for name, value in (("Subject", subject), ("Date", date), ("From", frm), ("To", to), ("Cc", cc)):
        if value is not None:
            lines.append(f"{name}: {value}")
    if mid:
        lines.append(f"Message-ID: <{mid}>")
    if refs:
        lines.append("References: " + "\r\n ".join(f"<{r}>" for r in refs))
    if irt:
        lines.append(f"In-Reply-To: <{irt}>")
    header = ("\r\n".join(lines) + "\r\n\r\n").encode()
    return SimpleNamespace(seq=seq, uid=100 + seq, internaldate=arrival, size=size, header=header)


def day(h):
    return f"Thu, 1 Jan 2026 {h:02d}:00:00 +0000"


@pytest.mark.parametrize(
    "subject,base,refwd",
    [
        ("hello", "hello", False),
        ("Re: hello", "hello", True),
        ("RE: Re: re:hello", "hello", True),
        ("Fwd: hello", "hello", True),
        ("Fw: hello", "hello", True),
        ("fwd[list]: hello", "hello", True),  # subj-refwd with a blob before the colon
        ("[list] Re: hello", "hello", True),  # blob then refwd (subj-leader)
        ("[list] hello", "hello", False),  # step 4: a leading blob goes when text remains
        ("[list]", "[list]", False),  # ... but not when it is all there is
        ("[a] [b] [c]", "[c]", False),
        ("hello (fwd)", "hello", True),
        ("hello (FWD) (fwd)  ", "hello", True),
        ("[Fwd: Re: hello]", "hello", True),  # step 6
        ("[fwd: [fwd: hello]]", "hello", True),
        ("  spaced \t out  ", "spaced out", False),
        ("Re:", "", True),
        ("", "", False),
        ("Reply: not a leader", "Reply: not a leader", False),
        ("Re : hello", "hello", True),  # subj-refwd allows WSP before the colon
        ("Re [x] : hello", "hello", True),
        ("[xyz]", "[xyz]", False),  # step (4): a blob that is all there is stays
        ("Re: [xyz] (fwd)", "[xyz]", True),
        ("a_b", "a_b", False),  # an underscore outside an encoded-word is an underscore
    ],
)
def test_base_subject(subject, base, refwd):
    assert T.base_subject(subject) == (base, refwd)


def test_parse_sort_criteria():
    assert T.parse_sort_criteria([A("REVERSE"), A("date"), A("SUBJECT")]) == [("DATE", True), ("SUBJECT", False)]
    for bad in ([], [A("REVERSE")], [A("FOO")], [A("REVERSE"), A("REVERSE"), A("DATE")], [b"DATE"], A("DATE")):
        with pytest.raises(SearchSyntaxError):
            T.parse_sort_criteria(bad)


MSGS = [
    msg(1, "Re: lunch", day(12), frm="Zed <zed@example.org>", to="bob@example.com", size=300, arrival=50),
    msg(2, "lunch", day(9), frm="alice@example.org", to="Carol <carol@example.com>", cc="x@y", size=100, arrival=40),
    msg(3, "=?utf-8?q?Apple?=", day(10), frm="\"Bob\" <bob@example.org>", to="alice@example.com", size=200, arrival=30),
    msg(4, "banana", None, frm="undisclosed-recipients:;", size=200, arrival=1767229200.0),  # 01:00 UTC
    msg(5, "[list] banana", day(8), frm="Carl <carl@example.org>", size=50, arrival=10),
]


@pytest.mark.parametrize(
    "criteria,expected",
    [
        ([A("ARRIVAL")], [5, 3, 2, 1, 4]),
        ([A("REVERSE"), A("ARRIVAL")], [4, 1, 2, 3, 5]),
        ([A("SIZE")], [5, 2, 3, 4, 1]),  # 3 and 4 tie: sequence order
        ([A("REVERSE"), A("SIZE")], [1, 3, 4, 2, 5]),  # the tie stays in sequence order
        ([A("SUBJECT")], [3, 4, 5, 1, 2]),  # apple, banana x2 (by seq), lunch x2 (by seq)
        ([A("SUBJECT"), A("REVERSE"), A("DATE")], [3, 5, 4, 1, 2]),  # 4 has no Date: its INTERNALDATE (01:00)
        ([A("DATE")], [4, 5, 2, 3, 1]),
        ([A("FROM")], [2, 3, 5, 4, 1]),  # alice, bob, carl, "undisclosed-recipients" (a group: its name, as Dovecot), zed
        ([A("TO")], [4, 5, 3, 1, 2]),  # "", "", alice, bob, carol
        ([A("CC")], [1, 3, 4, 5, 2]),
        ([A("DISPLAYFROM")], [2, 3, 5, 4, 1]),  # alice@..., Bob, Carl, the group's name, Zed
        ([A("DISPLAYTO")], [4, 5, 3, 1, 2]),
    ],
)
def test_sort(criteria, expected):
    got = T.sort_messages(T.parse_sort_criteria(criteria), MSGS)
    assert [m.seq for m in got] == expected


def test_collation_is_unicode_casemap():
    """RFC 5256 §1 (I18NLEVEL=1) -> i;unicode-casemap (RFC 5051): titlecase, NFD, octets. For ASCII
    that is upper case, so "_" and "[" sort after the letters (casefold put them before)."""
    words = ["b_c", "bc", "[xyz]", "A", "b a", "Éa", "ea", "Ea", "f"]
    assert sorted(words, key=T.collate) == ["A", "b a", "bc", "b_c", "ea", "Ea", "Éa", "f", "[xyz]"]
    assert T.collate("ǆ") == T.collate("ǅ") != T.collate("dž")
    assert T.collate(b"caf\xe9") == T.collate("CAFÉ")  # not UTF-8: read as Latin-1


def test_sort_subject_collation_and_blobs():
    ms = [msg(1, "bc"), msg(2, "b_c"), msg(3, "[xyz]"), msg(4, "a"), msg(5, "=?utf-8?q?b_a?=")]
    got = T.sort_messages([("SUBJECT", False)], ms)
    assert [m.seq for m in got] == [4, 5, 1, 2, 3]  # "A", "B A" (Q-encoded "_" is a space), "BC", "B_C", "[XYZ]"


def test_sort_survives_broken_headers():
    broken = [msg(1, "x", "not a date"), SimpleNamespace(seq=2, internaldate=None, size=None, header=None),
              msg(3, "=?bogus?q?x?=", "Mon, 99 Foo 2026 99:99:99 +9999", frm="<<<", to="a@")]
    for key in T.SORT_KEYS:
        assert sorted(m.seq for m in T.sort_messages([(key, False)], broken)) == [1, 2, 3]


# --- THREAD ---------------------------------------------------------------------


def refs_mailbox():
    return [
        msg(1, "hello", day(10), "a@x"),
        msg(2, "Re: hello", day(11), "b@x", ["a@x"]),
        msg(3, "other", day(9), "c@x"),
        msg(4, "Re: hello", day(12), "d@x", ["a@x"]),
        msg(5, "Re: hello", day(13), "e@x", ["a@x", "d@x"]),
        msg(6, "Re: lost", day(8), "f@x", ["gone@x"]),
        msg(7, "lost", day(14), "g@x", irt="gone@x"),
        msg(8, "Re: other", day(15), "h@x"),  # no references: joined to "other" by subject
        msg(9, "hello", day(16), "a@x"),  # duplicate Message-ID: gets a unique one
    ]


def test_thread_references():
    threads = T.thread("REFERENCES", refs_mailbox())
    # "gone" dummy holds 6 and 7 at the root (two children: the dummy stays);
    # 8 (a reply by subject) becomes a child of 3; 9 ("hello", not a reply) and the thread
    # of 1 share a subject and neither is a reply: a dummy holds both.
    assert T.format_threads(threads) == "((6)(7))(3 8)((1 (2)(4 5))(9))"
    assert T.format_threads(threads, number=lambda m: m.uid) == "((106)(107))(103 108)((101 (102)(104 105))(109))"


def test_thread_orderedsubject():
    threads = T.thread("orderedsubject", refs_mailbox())
    # subjects: hello {1,2,4,5,9}, lost {6,7}, other {3,8}; threads by their first date
    assert T.format_threads(threads) == "(6 7)(3 8)(1 (2)(4)(5)(9))"


def test_thread_references_own_references_break_the_earlier_link():
    """RFC 5256 §3 REFERENCES (1)(B): a message's own References break its earlier
    (References-derived) parent link first, even when the new link is then skipped as a loop."""
    ms = [
        msg(1, "one", day(10), "a@x"),
        msg(2, "two", day(11), "b@x", ["a@x", "c@x"]),  # a -> c (dummy) -> b
        msg(3, "three", day(9), "c@x", ["b@x"]),  # c leaves a; b -> c would loop: c stays a root
    ]
    assert T.format_threads(T.thread("REFERENCES", ms)) == "(3 2)(1)"


def test_thread_references_loops_and_self_references():
    ms = [
        msg(1, "a", day(1), "a@x", ["b@x"]),
        msg(2, "b", day(2), "b@x", ["a@x"]),
        msg(3, "c", day(3), "c@x", ["c@x"]),
    ]
    out = T.format_threads(T.thread("REFERENCES", ms))
    assert sorted(int(n) for n in out.replace("(", " ").replace(")", " ").split()) == [1, 2, 3]


def test_thread_references_in_reply_to_and_missing_ids():
    ms = [
        msg(1, "topic", day(1)),  # no Message-ID
        msg(2, "Re: topic", day(2), "r@x", irt="nowhere@x"),
        msg(3, "unrelated", day(3)),
    ]
    # 2's parent is a dummy with one child -> promoted to the root; then 2 (a reply) joins 1 by subject
    assert T.format_threads(T.thread("REFERENCES", ms)) == "(1 2)(3)"


def test_thread_deep_chain_does_not_recurse():
    n = 3000
    ms = [msg(1, "deep", day(0), "m1@x")]
    for i in range(2, n + 1):
        ms.append(msg(i, "Re: deep", day(0), f"m{i}@x", [f"m{i - 1}@x"]))
    out = T.format_threads(T.thread("REFERENCES", ms))
    assert out == "(" + " ".join(str(i) for i in range(1, n + 1)) + ")"


def test_thread_branching_deep_tree_formats_iteratively():
    ms = [msg(1, "t", day(0), "n1@x")]
    for i in range(2, 2001):
        parent = i - 1 if i % 2 == 0 else i - 2
        ms.append(msg(i, "Re: t", day(0), f"n{i}@x", [f"n{parent}@x"]))
    out = T.format_threads(T.thread("REFERENCES", ms))
    assert out.count("(") == out.count(")")
    assert sorted(int(x) for x in out.replace("(", " ").replace(")", " ").split()) == list(range(1, 2001))


def test_unknown_algorithm():
    with pytest.raises(SearchSyntaxError):
        T.thread("X-FANCY", [])


def test_empty():
    assert T.format_threads(T.thread("REFERENCES", [])) == ""
    assert T.sort_messages([("DATE", False)], []) == []
