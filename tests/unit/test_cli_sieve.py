"""``postern user vacation|sieve|sender`` and ``postern junk expire`` against the template's resources on moto."""

from __future__ import annotations

import io

import pytest

from postern.cli import EXIT_REFUSED, main
from postern.sieve.managed import render
from postern.sieve.repository import repository

USER = "alice@example.test"


@pytest.fixture
def run(aws, capsys, directory):
    settings, clients, _ = aws
    directory.add_domain("example.test")
    directory.add_user(USER, "pw")

    def go(*argv, stdin: str = ""):
        out = io.StringIO()
        rc = main(list(argv), settings=settings, clients=clients, out=out, stdin=io.StringIO(stdin))
        return rc, out.getvalue(), capsys.readouterr().err

    return go


def test_sieve_put_get_list_activate_delete(run, tmp_path):
    f = tmp_path / "main.sieve"
    f.write_text('require "fileinto";\nif header :contains "subject" "work" { fileinto "Work"; }\n')
    assert run("user", "sieve", "put", USER, "main", str(f), "--activate")[0] == 0
    assert run("user", "sieve", "put", USER, "other", "-", stdin="keep;\n")[0] == 0
    rc, out, _ = run("user", "sieve", "list", USER)
    lines = sorted(out.splitlines())
    assert rc == 0 and lines[0].startswith("main\t") and "\tACTIVE\t" in lines[0] and "\t-\t" in lines[1]
    assert run("user", "sieve", "get", USER, "other") == (0, "keep;\n", "")
    assert run("user", "sieve", "delete", USER, "main")[0] == EXIT_REFUSED  # the active one
    assert run("user", "sieve", "activate", USER, "other")[0] == 0
    assert run("user", "sieve", "rename", USER, "other", "renamed")[0] == 0
    assert run("user", "sieve", "delete", USER, "main")[0] == 0
    rc, out, _ = run("user", "sieve", "list", USER)
    assert [ln.split("\t")[0] for ln in out.splitlines()] == ["renamed"] and "ACTIVE" in out
    assert run("user", "sieve", "deactivate", USER)[0] == 0
    assert "ACTIVE" not in run("user", "sieve", "list", USER)[1]


def test_put_reports_line_and_column_and_stores_nothing(run):
    rc, out, err = run("user", "sieve", "put", USER, "bad", "-", stdin='require "fileinto";\nif true {\n  fileinot "x";\n}\n')
    assert rc == EXIT_REFUSED and err == "postern: 3:3: unknown command 'fileinot'\n"
    assert run("user", "sieve", "list", USER)[1] == ""
    rc, _, err = run("user", "sieve", "check", "-", stdin='require "nope";')
    assert rc == EXIT_REFUSED and err == 'postern: 1:9: unsupported extension "nope"\n'
    assert run("user", "sieve", "get", USER, "absent")[0] == EXIT_REFUSED
    assert run("user", "sieve", "list", "nobody@example.test")[2] == "postern: No such user nobody@example.test\n"


def test_vacation_on_show_off(run, aws, tmp_path):
    settings, clients, _ = aws
    msg = tmp_path / "away.txt"
    msg.write_text("I am away until the 24th.\n")
    assert run("user", "vacation", USER, "--subject", "Away", "--message-file", str(msg), "--until", "2030-12-24")[0] == 0
    rc, out, _ = run("user", "vacation", USER)
    assert rc == 0 and out.startswith("on\tfrom -\tuntil 2030-12-24 23:59:59Z\tevery 7 days\tsubject Away")
    rules = repository(settings, clients).managed_rules(USER)
    from postern.sieve.managed import ManagedRules

    text = render(ManagedRules.from_dict(rules))
    assert 'vacation :days 7 :subject "Away" "I am away until the 24th.\n";' in text
    assert '"le" "iso8601" "2030-12-24T23:59:59Z"' in text
    assert run("user", "vacation", USER, "--off")[0] == 0
    assert run("user", "vacation", USER)[1] == "off\n"
    assert run("user", "vacation", USER, "--message-file", str(msg), "--until", "24/12/2030")[2].startswith(
        "postern: not a date")


def test_sender_lists(run):
    assert run("user", "sender", "allow", USER, "friend@example.org")[0] == 0
    assert run("user", "sender", "block", USER, "@spam.example")[0] == 0
    assert run("user", "sender", "list", USER)[1] == "allow\tfriend@example.org\nblock\t@spam.example\n"
    assert run("user", "sender", "remove", USER, "@spam.example")[0] == 0
    assert run("user", "sender", "list", USER)[1] == "allow\tfriend@example.org\n"
    assert run("user", "sender", "block", USER, "not an address")[0] == EXIT_REFUSED


def test_junk_expire(run, aws):
    import time

    from postern import mailboxes
    from postern.store.dynamo import DynamoMailStore

    settings, clients, _ = aws
    store = DynamoMailStore(settings, clients)
    mailboxes.ensure_defaults(store, USER)
    now = time.time()
    for age in (40, 31, 2):
        store.append(USER, "Junk", f"Subject: {age} days\r\n\r\nx\r\n".encode(), internaldate=now - age * 86400)
    store.append(USER, "INBOX", b"Subject: old but not junk\r\n\r\nx\r\n", internaldate=now - 90 * 86400)
    rc, out, _ = run("junk", "expire", USER)
    assert rc == 0 and out == f"{USER}\tremoved 2 Junk messages older than 30 days\n"
    assert store.get_mailbox(USER, "Junk").exists == 1 and store.get_mailbox(USER, "INBOX").exists == 1
    assert run("junk", "expire", "--days", "1")[1] == f"{USER}\tremoved 1 Junk messages older than 1 days\n"
