"""IMAP edge cases of issues 10 and 11, each over loopback with imaplib or a byte-exact client.

Astring mailbox names with brackets, recovery after a syntax error with pipelined commands,
CONDSTORE's first HIGHESTMODSEQ and ESEARCH MODSEQ, LIST with hostile wildcard patterns.
"""

from __future__ import annotations

import re

import pytest
from helpers import ServerThread
from postern_gateway.imap.server import start_imap
from test_imap import MSG1, USER, Raw, client, make_backend


@pytest.fixture
def backend():
    return make_backend(imap_poll_interval=0.05)


@pytest.fixture
def server(backend):
    with ServerThread(start_imap, backend) as srv:
        yield srv


def _login(srv) -> Raw:
    r = Raw(srv.port)
    assert r.cmd(f"LOGIN {USER} secret-pw")[-1].split()[1] == b"OK"
    return r


def test_bracket_and_brace_names_are_astrings(server):
    """``x[y}z`` is a legal astring (RFC 3501 §9): a missing one is NO, not BAD, and the command
    pipelined behind it is answered; ``[Gmail]``-style names keep working."""
    r = _login(server)
    r.send(b"a1 SELECT x[y}z\r\na2 NOOP\r\n")
    assert r.until("a1")[-1].startswith(b"a1 NO [NONEXISTENT]")
    assert r.until("a2")[-1] == b"a2 OK NOOP completed\r\n"
    assert r.cmd("CREATE x[y}z")[-1].split()[1] == b"OK"
    assert r.cmd("CREATE [Gmail]/Sent")[-1].split()[1] == b"OK"
    listed = b"".join(r.cmd('LIST "" *'))
    assert b'"/" x[y}z\r\n' in listed and b'"/" [Gmail]/Sent\r\n' in listed
    assert b"OK [READ-WRITE]" in r.cmd("SELECT x[y}z")[-1]
    assert b"OK [READ-ONLY]" in r.cmd("EXAMINE [Gmail]/Sent")[-1]
    r.close()
    c = client(server)  # imaplib sends the name as an atom, unquoted
    assert c.select("x[y}z")[0] == "OK"
    assert c.select("no[such}box")[0] == "NO"
    assert c.noop()[0] == "OK"
    c.logout()


def test_syntax_error_skips_to_the_end_of_that_command_only(server):
    """After a BAD the session reads on from the next command, literal-aware: a literal inside the
    broken command is skipped whole, and a ``{n}`` inside an unterminated quote is no literal."""
    r = _login(server)
    r.send(b"a1 BOGUS {3+}\r\nx\r\n junk\r\na2 NOOP\r\n")
    assert r.until("a1")[-1].split()[1] == b"BAD"
    assert r.until("a2")[-1] == b"a2 OK NOOP completed\r\n"
    r.send(b'b1 SELECT "foo {5}\r\nb2 NOOP\r\n')
    assert r.until("b1")[-1].split()[1] == b"BAD"
    assert r.until("b2")[-1] == b"b2 OK NOOP completed\r\n"
    r.send(b"c1 FETCH 1 BODY[HEADER\r\nc2 NOOP\r\n")  # a real FETCH syntax error
    assert r.until("c1")[-1].split()[1] == b"BAD"
    assert r.until("c2")[-1] == b"c2 OK NOOP completed\r\n"
    r.close()


def test_fetch_section_specs_still_parse(server, backend):
    backend.store.append(USER, "INBOX", MSG1)
    c = client(server)
    c.select("INBOX")
    typ, data = c.fetch("1", '(BODY.PEEK[HEADER.FIELDS (SUBJECT "FROM")]<0.200>)')
    assert typ == "OK" and b"Subject: hello there" in data[0][1] and b"From: Bob" in data[0][1]
    c.logout()


def _modseqs(r: Raw) -> dict[int, int]:
    out = {}
    for ln in r.cmd("FETCH 1:* (MODSEQ)"):
        m = re.match(rb"\* (\d+) FETCH \(MODSEQ \((\d+)\)", ln)
        if m:
            out[int(m.group(1))] = int(m.group(2))
    return out


def test_first_condstore_command_announces_highestmodseq(server, backend):
    """RFC 7162 §3.1: in a mailbox selected without CONDSTORE, the first CONDSTORE-enabling command
    gets an untagged OK [HIGHESTMODSEQ n] before its tagged reply; later ones do not."""
    for _ in range(2):
        backend.store.append(USER, "INBOX", MSG1)
    r = _login(server)
    r.cmd("SELECT INBOX")
    first = r.cmd("FETCH 1 (MODSEQ)")
    hms = [ln for ln in first if ln.startswith(b"* OK [HIGHESTMODSEQ ")]
    assert len(hms) == 1 and first.index(hms[0]) == len(first) - 2  # just before the tagged OK
    assert int(re.search(rb"HIGHESTMODSEQ (\d+)", hms[0]).group(1)) == max(_modseqs(r).values())
    assert not any(b"HIGHESTMODSEQ" in ln for ln in r.cmd("FETCH 2 (MODSEQ)"))
    # the session stays CONDSTORE-enabled: a later SELECT reports HIGHESTMODSEQ itself
    r.cmd("SELECT INBOX")
    assert not any(b"HIGHESTMODSEQ" in ln for ln in r.cmd("FETCH 1 (MODSEQ)"))
    r.close()
    # STORE UNCHANGEDSINCE in a new session: the announced value covers the STORE's own change
    r = _login(server)
    r.cmd("SELECT INBOX")
    got = r.cmd("STORE 1 (UNCHANGEDSINCE 1000) +FLAGS (\\Flagged)")
    hms = [int(re.search(rb"HIGHESTMODSEQ (\d+)", ln).group(1)) for ln in got if b"[HIGHESTMODSEQ" in ln]
    assert hms == [max(_modseqs(r).values())]
    r.close()
    # selected with CONDSTORE: SELECT itself reported it, nothing more to announce
    r = _login(server)
    r.cmd("SELECT INBOX (CONDSTORE)")
    assert not any(b"HIGHESTMODSEQ" in ln for ln in r.cmd("FETCH 1 (MODSEQ)"))
    r.close()


def test_esearch_modseq_is_of_the_returned_messages(server, backend):
    """RFC 7162 §3.1.5 with RFC 4731: MODSEQ is the highest mod-sequence of what the result returns."""
    for _ in range(3):
        backend.store.append(USER, "INBOX", MSG1)
    r = _login(server)
    r.cmd("SELECT INBOX (CONDSTORE)")
    r.cmd("STORE 2 +FLAGS (\\Flagged)")  # message 2 now has the mailbox's highest modseq
    ms = _modseqs(r)
    assert ms[2] > max(ms[1], ms[3])

    def esearch(ret: str) -> int:
        line = next(ln for ln in r.cmd(f"SEARCH RETURN ({ret}) MODSEQ 1") if ln.startswith(b"* ESEARCH"))
        return int(re.search(rb"MODSEQ (\d+)", line).group(1))

    assert esearch("MIN") == ms[1]
    assert esearch("MAX") == ms[3]
    assert esearch("MIN MAX") == max(ms[1], ms[3])
    assert esearch("COUNT") == ms[2]
    assert esearch("ALL") == ms[2]
    plain = next(ln for ln in r.cmd("SEARCH MODSEQ 1") if ln.startswith(b"* SEARCH"))
    assert plain.endswith(b"(MODSEQ %d)\r\n" % ms[2])
    r.close()


def _put(b, **headers) -> None:
    lines = [f"{k.replace('_', '-')}: {v}" for k, v in headers.items()]
    b.store.append(USER, "INBOX", ("\r\n".join(["From: a@remote.test"] + lines) + "\r\n\r\nbody\r\n").encode())


def test_sort_subject_follows_rfc5256(server, backend):
    """SORT (SUBJECT): base subject per RFC 5256 §2.1 after decoding, collated i;unicode-casemap
    (RFC 5256 §1): a blob-only subject keeps its blob, "_" is an underscore unless Q-encoded."""
    for subject in ("bc", "b_c", "[xyz]", "a", "=?utf-8?q?b_a?=", "Re: [xyz] (fwd)"):
        _put(backend, Subject=subject)
    c = client(server)
    c.select("INBOX")
    typ, data = c.sort("(SUBJECT)", "UTF-8", "ALL")
    assert typ == "OK" and data == [b"4 5 1 2 3 6"]  # A, B A, BC, B_C, [XYZ] x2 in mailbox order
    c.logout()


def test_thread_references_breaks_reference_derived_parent(server, backend):
    """THREAD REFERENCES (RFC 5256 §3 step (1)(B)) over <a>; <b> with References <a> <c>;
    <c> with References <b>: c's own References break the a -> c link: (3 2)(1), not (1 3 2)."""
    _put(backend, Subject="one", Date="Mon, 1 Jan 2024 10:00:00 +0000", Message_ID="<a@x>")
    _put(backend, Subject="two", Date="Mon, 1 Jan 2024 11:00:00 +0000", Message_ID="<b@x>", References="<a@x> <c@x>")
    _put(backend, Subject="three", Date="Mon, 1 Jan 2024 09:00:00 +0000", Message_ID="<c@x>", References="<b@x>")
    c = client(server)
    c.select("INBOX")
    typ, data = c.thread("REFERENCES", "UTF-8", "ALL")
    assert typ == "OK" and data == [b"(3 2)(1)"]
    c.logout()


def test_backend_error_text_never_reaches_the_client(server, backend, monkeypatch, caplog):
    """A backend failure is NO [UNAVAILABLE] with Postern's own text; the AWS detail goes to the log."""
    from postern.errors import StoreUnavailable

    detail = "mail store: ValidationException: 1 validation error detected: Value 'x' at 'key' failed"

    def boom(*a, **k):
        raise StoreUnavailable(detail)

    r = _login(server)  # (login itself lists the mailboxes: the default ones are created on first login)
    monkeypatch.setattr(backend.store, "list_mailboxes", boom)
    reply = r.cmd('LIST "" *')[-1]
    assert reply.startswith(b"r2 NO [UNAVAILABLE] ") and b"ValidationException" not in reply
    assert any("ValidationException" in rec.getMessage() for rec in caplog.records)
    r.close()


def _first(lines: list[bytes], pred) -> int:
    return next(i for i, ln in enumerate(lines) if pred(ln))


def _announced_before_fetch(lines: list[bytes], keyword: bytes) -> bool:
    """RFC 3501 §7.2.6: ``* FLAGS`` and ``* OK [PERMANENTFLAGS]`` naming ``keyword`` precede the
    first FETCH response that shows it."""
    fetch_at = _first(lines, lambda ln: b" FETCH (" in ln and keyword in ln)
    flags_at = _first(lines, lambda ln: ln.startswith(b"* FLAGS (") and keyword in ln)
    perm_at = _first(lines, lambda ln: ln.startswith(b"* OK [PERMANENTFLAGS (") and keyword in ln)
    return flags_at < fetch_at and perm_at < fetch_at


def test_a_keyword_appended_elsewhere_is_announced_before_it_is_shown(server, backend):
    """APPEND of a message with a keyword new to the mailbox, by another session: every session with
    the mailbox selected gets FLAGS and PERMANENTFLAGS first (after NOOP, and during IDLE)."""
    backend.store.append(USER, "INBOX", MSG1)
    watcher, idler, other = _login(server), _login(server), _login(server)
    for r in (watcher, idler):
        r.cmd("SELECT INBOX")
    idler.send(b"i IDLE\r\n")
    assert idler.line().startswith(b"+ ")
    out = other.cmd(b"APPEND INBOX ($Fresh) {%d}\r\n" % len(MSG1) + MSG1)
    assert out[-1].split()[1] == b"OK"
    during_idle = [idler.line() for _ in range(4)]  # FLAGS, PERMANENTFLAGS, EXISTS, RECENT
    assert during_idle[0].startswith(b"* FLAGS (") and b"$Fresh" in during_idle[0]
    assert during_idle[1].startswith(b"* OK [PERMANENTFLAGS (") and b"$Fresh" in during_idle[1]
    assert during_idle[2] == b"* 2 EXISTS\r\n"
    idler.send(b"DONE\r\n")
    assert idler.until("i")[-1].split()[1] == b"OK"
    got = watcher.cmd("NOOP") + watcher.cmd("FETCH 2 (FLAGS)")
    assert _announced_before_fetch(got, b"$Fresh")
    # beyond the mailbox's keyword cap an APPEND is refused whole
    many = " ".join(f"$k{i}" for i in range(250))
    out = other.cmd(b"APPEND INBOX (%s) {%d}\r\n" % (many.encode(), len(MSG1)) + MSG1)
    assert out[-1].split()[1:3] == [b"NO", b"[LIMIT]"]
    assert b"* 2 EXISTS\r\n" in other.cmd("SELECT INBOX")
    for r in (watcher, idler, other):
        r.close()


def test_a_keyword_set_elsewhere_is_announced_before_an_implicit_seen_shows_it(server, backend):
    """FETCH BODY[] sets \\Seen and answers with the message's flags as the store now has them: a
    keyword another session just added is announced (FLAGS, PERMANENTFLAGS) before that FETCH."""
    backend.store.append(USER, "INBOX", MSG1)
    reader, tagger = _login(server), _login(server)
    reader.cmd("SELECT INBOX")
    tagger.cmd("SELECT INBOX")
    assert tagger.cmd("STORE 1 +FLAGS ($Later)")[-1].split()[1] == b"OK"
    got = reader.cmd("FETCH 1 (BODY[TEXT])")
    assert got[-1].split()[1] == b"OK"
    assert _announced_before_fetch(got, b"$Later")
    reader.close()
    tagger.close()
