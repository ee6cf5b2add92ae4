"""IMAP edge cases of issues 10 and 11, each over loopback with imaplib or a byte-exact client.

Astring mailbox names with brackets, recovery after a syntax error with pipelined commands,
CONDSTORE's first HIGHESTMODSEQ and ESEARCH MODSEQ, LIST with hostile wildcard patterns.
"""

from __future__ import annotations

from test_imap import MSG1, USER, Raw, backend, client, server  # noqa: F401  (backend, server: fixtures)


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
