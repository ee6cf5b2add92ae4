"""The same POP3 session against the DynamoDB + S3 store under moto: the real store path.

The snapshot is the light Query projection; RETR/TOP fetch the full index entry
(trace prefix, header summary) and read S3 with byte ranges; QUIT expunges.
"""

from __future__ import annotations

import poplib

from helpers import ServerThread, memory_backend
from pop3_fixtures import MESSAGES, MSG1, MSG2, PASSWORD, USER, lines_of, logical, populate

from postern_gateway.pop3.server import start_pop3


def test_session_on_dynamodb_store(dynamo_store, directory):
    backend = memory_backend(store=dynamo_store, directory=directory)
    populate(backend)
    sizes = [len(logical(m)) for m in MESSAGES]
    uv = dynamo_store.get_mailbox(USER, "INBOX").uidvalidity
    with ServerThread(start_pop3, backend) as srv:
        p = poplib.POP3("127.0.0.1", srv.port, timeout=10)
        p.user(USER)
        p.pass_(PASSWORD)
        assert p.stat() == (3, sum(sizes))
        assert p.list()[1] == [b"%d %d" % (i + 1, s) for i, s in enumerate(sizes)]
        assert p.uidl()[1] == [b"%d %d.%d" % (i, uv, i) for i in (1, 2, 3)]
        resp, lines, _ = p.retr(1)
        assert resp == b"+OK %d octets" % sizes[0]
        assert lines == lines_of(logical(MSG1))  # prefix from the index entry + raw bytes from S3
        header = logical(MSG2).split(b"\r\n\r\n")[0]
        assert p.top(2, 1)[1] == lines_of(header + b"\r\n\r\nline 1\r\n")
        p.dele(1)
        p.quit()

        p = poplib.POP3("127.0.0.1", srv.port, timeout=10)
        p.user(USER)
        p.pass_(PASSWORD)
        assert p.stat() == (2, sizes[1] + sizes[2])
        assert p.uidl()[1] == [b"1 %d.2" % uv, b"2 %d.3" % uv]  # stable ids across sessions
        assert p.retr(1)[1] == lines_of(logical(MSG2))
        p.dele(1)
        p.sock.close()
        p.file.close()  # dropped: nothing deleted
    assert dynamo_store.get_mailbox(USER, "INBOX").exists == 2
