"""The directory on DynamoDB (moto) and in memory: the same assertions for both."""

from __future__ import annotations

import pytest

from postern import keys
from postern.directory import memory_directory
from postern.errors import AlreadyExists, InvalidAddress, NoSuchDomain, NoSuchUser


@pytest.fixture(params=["memory", "dynamo"])
def d(request):
    if request.param == "memory":
        return memory_directory(default_quota=1000)
    return request.getfixturevalue("directory")


def test_domains(d):
    d.add_domain("Example.TEST")
    d.add_domain("other.test")
    assert [x.name for x in d.list_domains()] == ["example.test", "other.test"]
    assert d.is_local_domain("EXAMPLE.test") and not d.is_local_domain("nope.test")
    with pytest.raises(AlreadyExists):
        d.add_domain("example.test")
    with pytest.raises(InvalidAddress):
        d.add_domain("not a domain")
    d.remove_domain("other.test")
    assert [x.name for x in d.list_domains()] == ["example.test"]
    with pytest.raises(NoSuchDomain):
        d.remove_domain("other.test")


def test_remove_domain_with_members_needs_force(d):
    d.add_domain("example.test")
    d.add_user("a@example.test", "pw")
    d.add_alias("b@example.test", ["a@example.test"])
    with pytest.raises(AlreadyExists, match="--force"):
        d.remove_domain("example.test")
    d.remove_domain("example.test", force=True)
    assert d.get_user("a@example.test") is None and d.get_alias("b@example.test") is None


def test_users(d):
    with pytest.raises(NoSuchDomain, match="postern domain add"):
        d.add_user("a@example.test", "pw")
    d.add_domain("example.test")
    u = d.add_user("Alice@Example.test", "s3cret", quota=500)
    assert (u.address, u.quota) == ("alice@example.test", 500)
    assert u.password_hash.startswith("$argon2id$")
    with pytest.raises(AlreadyExists):
        d.add_user("alice@example.test", "other")
    d.add_user("bob@example.test", "pw")
    assert [x.address for x in d.list_users()] == ["alice@example.test", "bob@example.test"]
    assert [x.address for x in d.list_users("example.test")] == ["alice@example.test", "bob@example.test"]
    assert d.quota_of(d.get_user("bob@example.test")) == d.default_quota
    assert d.authenticate("ALICE@example.test", "s3cret").address == "alice@example.test"
    assert d.authenticate("alice@example.test", "wrong") is None
    assert d.authenticate("ghost@example.test", "s3cret") is None
    d.set_password("alice@example.test", "new")
    assert d.authenticate("alice@example.test", "new") is not None
    d.set_quota("bob@example.test", 42)
    assert d.get_user("bob@example.test").quota == 42
    d.remove_user("bob@example.test")
    with pytest.raises(NoSuchUser):
        d.remove_user("bob@example.test")
    with pytest.raises(NoSuchUser):
        d.set_password("bob@example.test", "x")


def test_aliases_and_catchall(d):
    d.add_domain("example.test")
    d.add_user("alice@example.test", "pw")
    a = d.add_alias("Team@example.test", ["alice@example.test", "Carol@Remote.example"])
    assert a.targets == ("alice@example.test", "carol@remote.example")
    with pytest.raises(AlreadyExists):
        d.add_alias("team@example.test", ["alice@example.test"])
    with pytest.raises(AlreadyExists):
        d.add_alias("alice@example.test", ["x@example.test"])  # a user already
    with pytest.raises(AlreadyExists):
        d.add_user("team@example.test", "pw")  # an alias already
    with pytest.raises(InvalidAddress):
        d.add_alias("empty@example.test", [])
    assert [x.address for x in d.list_aliases()] == ["team@example.test"]
    assert d.addresses_of("alice@example.test") == {"alice@example.test", "team@example.test"}
    d.set_catchall("example.test", "alice@example.test")
    assert d.get_domain("example.test").catchall == "alice@example.test"
    d.set_catchall("example.test", None)
    assert d.get_domain("example.test").catchall is None
    d.remove_alias("team@example.test")
    with pytest.raises(NoSuchUser):
        d.remove_alias("team@example.test")


def test_batch_get_many_keys_in_chunks(d):
    d.add_domain("example.test")
    for i in range(120):
        d.items.put({**keys.user_key(f"u{i}", "example.test"), "kind": "user", "address": f"u{i}@example.test"})
    wanted = [keys.user_key(f"u{i}", "example.test") for i in range(130)]  # 10 absent
    found = d.items.batch_get(wanted + wanted[:5])  # duplicates are harmless
    assert len(found) == 120
    assert found[("D#example.test", "U#u7")]["address"] == "u7@example.test"


def test_prefetched_view_answers_like_the_directory(d):
    d.add_domain("example.test")
    d.add_user("alice@example.test", "pw")
    d.add_alias("team@example.test", ["alice@example.test"])
    v = d.prefetched(["alice+x@example.test", "team@example.test", "nobody@example.test", "bad address"])
    for addr in ("alice@example.test", "team@example.test", "nobody@example.test", "alice+x@example.test"):
        assert v.get_user(addr) == d.get_user(addr)
        assert v.get_alias(addr) == d.get_alias(addr)
    assert v.get_domain("example.test") == d.get_domain("example.test")
    assert v.get_domain("elsewhere.test") is None
    # writes go through and are not answered from the stale cache
    v.add_user("nobody@example.test", "pw")
    assert v.get_user("nobody@example.test").address == "nobody@example.test"
    assert d.get_user("nobody@example.test") is not None
