"""The Sieve script repository (what ManageSieve, JMAP, the CLI and delivery share) and the managed rules.

Runs over the in-memory item layer and over moto's DynamoDB (the same class, ``DynamoItems``),
so the ManageSieve response codes and limits are pinned on both.
"""

from __future__ import annotations

import pytest

from postern.items import MemoryItems
from postern.sieve import EXTENSIONS, capability_string, compile_script
from postern.sieve.errors import (ScriptActive, ScriptExists, ScriptNameInvalid, ScriptNotFound, ScriptQuota,
                                  SieveSyntaxError)
from postern.sieve.managed import (Filter, Managed, ManagedRuleError, ManagedRules, VacationSettings, render)
from postern.sieve.repository import ScriptRepository, program

USER = "alice@example.test"
GOOD = 'require "fileinto";\r\nif header :contains "subject" "x" { fileinto "X"; }\r\n'


@pytest.fixture(params=["memory", "dynamo"])
def repo(request):
    if request.param == "memory":
        yield ScriptRepository(MemoryItems(), max_size=1024, max_scripts=3)
        return
    import boto3
    from moto import mock_aws

    from postern.items import DynamoItems

    with mock_aws():
        db = boto3.client("dynamodb", region_name="us-east-1")
        db.create_table(TableName="dir", BillingMode="PAY_PER_REQUEST",
                        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                                              {"AttributeName": "sk", "AttributeType": "S"}],
                        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"},
                                   {"AttributeName": "sk", "KeyType": "RANGE"}])
        yield ScriptRepository(DynamoItems(lambda: db, "dir"), max_size=1024, max_scripts=3)


def test_put_get_list_activate_rename_delete(repo):
    info = repo.put(USER, "main", GOOD)
    assert info.name == "main" and info.size == len(GOOD) and not info.active and info.id.startswith("S")
    assert repo.get(USER, "main").text == GOOD
    repo.activate(USER, "main")
    assert [(i.name, i.active) for i in repo.list(USER)] == [("main", True)]
    assert repo.active(USER).text == GOOD
    repo.put(USER, "main", GOOD + "keep;\r\n")  # replacing the active script updates what delivery reads
    script, managed = repo.for_delivery(USER)
    assert script.text.endswith("keep;\r\n") and managed == {}
    repo.rename(USER, "main", "renamed")
    assert repo.get(USER, "renamed").info.id == info.id and repo.active(USER).info.name == "renamed"
    assert repo.get_by_id(USER, info.id).info.name == "renamed"
    with pytest.raises(ScriptActive) as e:
        repo.delete(USER, "renamed")
    assert e.value.managesieve_code == "ACTIVE"
    repo.activate(USER, "")  # SETACTIVE "" deactivates (RFC 5804 §2.8)
    assert repo.active(USER) is None
    repo.delete(USER, "renamed")
    assert repo.list(USER) == []


def test_refusals_carry_managesieve_codes(repo):
    with pytest.raises(SieveSyntaxError) as e:
        repo.put(USER, "bad", 'require "fileinto";\nif true { fileinot "X"; }\n')
    assert str(e.value).startswith("2:11: unknown command 'fileinot'")
    assert repo.list(USER) == []  # nothing stored
    with pytest.raises(ScriptQuota) as e:
        repo.put(USER, "big", "#" * 1100 + "\n")
    assert e.value.managesieve_code == "QUOTA/MAXSIZE"
    for n in ("a", "b", "c"):
        repo.put(USER, n, "keep;")
    with pytest.raises(ScriptQuota) as e:
        repo.put(USER, "d", "keep;")
    assert e.value.managesieve_code == "QUOTA/MAXSCRIPTS"
    repo.put(USER, "a", "discard;")  # replacing does not count as a new script
    with pytest.raises(ScriptQuota):
        repo.havespace(USER, "d", 10)
    repo.havespace(USER, "a", 1000)
    with pytest.raises(ScriptQuota):
        repo.havespace(USER, "a", 1025)
    with pytest.raises(ScriptExists) as e:
        repo.rename(USER, "a", "b")
    assert e.value.managesieve_code == "ALREADYEXISTS"
    for bad in (lambda: repo.get(USER, "zz"), lambda: repo.delete(USER, "zz"), lambda: repo.activate(USER, "zz"),
                lambda: repo.rename(USER, "zz", "yy")):
        with pytest.raises(ScriptNotFound) as e:
            bad()
        assert e.value.managesieve_code == "NONEXISTENT"
    for name in ("", "x" * 129, "a\nb", "tab\there", "\u2028"):
        with pytest.raises(ScriptNameInvalid):
            repo.put(USER, name, "keep;")
    with pytest.raises(SieveSyntaxError, match="UTF-8"):
        repo.put(USER, "bytes", b"keep; # \xff\n")


def test_users_are_apart(repo):
    repo.put(USER, "main", "keep;")
    repo.activate(USER, "main")
    assert repo.list("bob@example.test") == [] and repo.active("bob@example.test") is None


def test_compiled_form_is_cached_by_digest():
    a = program("keep;")
    assert program("keep;") is a and program("discard;") is not a


def test_capability_list_is_the_one_list():
    assert capability_string().split() == list(EXTENSIONS)
    assert EXTENSIONS == ("fileinto", "reject", "ereject", "envelope", "encoded-character", "variables", "vacation",
                          "vacation-seconds", "relational", "comparator-i;ascii-numeric", "subaddress", "body",
                          "copy", "imap4flags", "date", "index", "mailbox", "spamtest", "spamtestplus",
                          "environment")
    compile_script("require " + "[" + ", ".join(f'"{e}"' for e in EXTENSIONS) + "];")  # every one can be required


def test_managed_rules_round_trip_and_render(repo):
    m = Managed(repo)
    m.set_vacation(USER, VacationSettings(subject="Away", text="Back on Monday.", to_date=1_900_000_000.0))
    m.set_filters(USER, [Filter("from", "boss@example.org", "Work"), Filter("subject", "[ci]", "CI/Builds", "is")])
    m.allow(USER, "Friend@Example.org")
    m.block(USER, "@spam.example")
    r = m.rules(USER)
    assert r.allow == ("friend@example.org",) and r.block == ("@spam.example",)
    assert r.vacation.subject == "Away" and [f.folder for f in r.filters] == ["Work", "CI/Builds"]
    text = render(r)
    compile_script(text)
    assert 'vacation :days 7 :subject "Away" "Back on Monday.";' in text and "2030-03-17T17:46:40Z" in text
    assert render(r) == text  # deterministic
    assert "spamtest" not in render(r, user_tests_spam=True).split("\r\n", 1)[1]
    m.block(USER, "friend@example.org")  # moving between lists
    assert m.rules(USER).allow == () and "friend@example.org" in m.rules(USER).block
    m.disable_vacation(USER)
    assert "vacation :" not in render(m.rules(USER))
    assert ManagedRules.from_dict(m.rules(USER).to_dict()) == m.rules(USER)
    for bad in (lambda: m.set_filters(USER, [Filter("body", "x", "X")]),
                lambda: m.set_filters(USER, [Filter("from", "", "X")]),
                lambda: m.set_filters(USER, [Filter("from", "x", "a/*/b")]),
                lambda: m.allow(USER, "not an address"),
                lambda: m.set_vacation(USER, VacationSettings(text="")),
                lambda: m.set_vacation(USER, VacationSettings(text="x", subject="a\r\nBcc: x")),
                lambda: m.set_vacation(USER, VacationSettings(text="x", from_date=10.0, to_date=5.0))):
        with pytest.raises(ManagedRuleError):
            bad()


def test_a_store_batch_reads_its_recipients_sieve_items_once(repo):
    """The store function reads the Sieve items of all its batch's recipients in one BatchGetItem, not one
    per record (one request per delivery less at volume); outside the batch every delivery reads its own."""
    users = [USER, "bob@example.test", "carol@example.test"]
    repo.put(USER, "main", GOOD)
    repo.activate(USER, "main")
    repo.put_managed_rules("bob@example.test", {"filters": []})
    alone = {u: repo.for_delivery(u) for u in users}
    calls = []
    real = repo.items.batch_get

    def counted(ks, consistent=True):
        calls.append(len(ks))
        return real(ks, consistent=consistent)

    repo.items.batch_get = counted
    with repo.batch(users + [USER]):
        batched = {u: repo.for_delivery(u) for u in users}
        assert calls == [6]  # two items per recipient, each once
        assert repo.for_delivery("dave@example.test") == (None, {}) and calls == [6, 2]  # not in the batch
    assert {u: (s and s.text, r) for u, (s, r) in batched.items()} == \
        {u: (s and s.text, r) for u, (s, r) in alone.items()}
    assert batched[USER][0].text == GOOD and batched["bob@example.test"][1] == {"filters": []}
    repo.put_managed_rules(USER, {"filters": [{"x": 1}]})  # changed after the batch: the next read sees it
    assert repo.for_delivery(USER)[1] == {"filters": [{"x": 1}]} and calls == [6, 2, 2]
