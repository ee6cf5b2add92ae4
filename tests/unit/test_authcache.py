"""The verified-credentials cache: successes only, per password, with expiry."""

import asyncio

from postern.config import Settings
from postern.directory import memory_directory
from postern.store.memory import MemoryMailStore
from postern_gateway.auth import authenticate
from postern.authcache import VerifiedCache
from postern_gateway.backend import Backend


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_hit_needs_the_same_password_and_expires():
    clock = Clock()
    c = VerifiedCache(ttl=10, clock=clock)
    c.put("Alice@Example.test", "pw", "USER")
    assert c.get("alice@example.test", "pw") == "USER"
    assert c.get("alice@example.test", "other") is None
    clock.t = 10.0
    assert c.get("alice@example.test", "pw") is None


def test_disabled_and_bounded():
    assert VerifiedCache(ttl=0).get("a", "b") is None
    c = VerifiedCache(ttl=10, max_entries=2)
    for name in ("a", "b", "c"):
        c.put(name, "pw", name)
    assert c.get("a", "pw") is None and c.get("c", "pw") == "c"


def test_authenticate_hashes_once_for_repeated_logins():
    d = memory_directory()
    d.add_domain("example.test")
    d.add_user("alice@example.test", "secret")
    calls = []
    real = d.authenticate

    def counting(u, p):
        calls.append(u)
        return real(u, p)

    d.authenticate = counting
    b = Backend(Settings().replace(login_fail_delay=0), MemoryMailStore(), d)

    async def run():
        first = await authenticate(b, "alice@example.test", "secret")
        again = await authenticate(b, "ALICE@example.test", "secret")
        wrong = await authenticate(b, "alice@example.test", "nope")
        return first, again, wrong

    first, again, wrong = asyncio.run(run())
    b.blocking.shutdown()
    assert first is not None and again == first and wrong is None
    assert calls == ["alice@example.test", "alice@example.test"]  # the wrong password was checked for real


def test_a_password_change_ends_the_cached_login_at_once():
    """The cache holds the old password's success for POSTERN_AUTH_CACHE_TTL, but a hit is confirmed
    against the directory's credential generation: after `postern user passwd` / JMAP Password/change
    the old password is refused on the next login, not two minutes later."""
    d = memory_directory()
    d.add_domain("example.test")
    d.add_user("alice@example.test", "old-secret")
    b = Backend(Settings().replace(login_fail_delay=0, auth_cache_ttl=3600), MemoryMailStore(), d)

    async def login(pw):
        return await authenticate(b, "alice@example.test", pw)

    async def run():
        assert await login("old-secret") is not None  # verified and cached
        assert await login("old-secret") is not None  # a cache hit
        d.set_password("alice@example.test", "new-secret")
        return await login("old-secret"), await login("new-secret")

    old, new = asyncio.run(run())
    b.blocking.shutdown()
    assert old is None and new is not None
