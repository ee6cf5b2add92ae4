"""Abuse limits: the same assertions on the DynamoDB counters (moto) and the in-memory twin."""

from __future__ import annotations

import logging

import pytest

from postern import keys
from postern.config import Settings
from postern.limits import DynamoCounters, Limits, MemoryCounters, limits_for


class Clock:
    def __init__(self, t=1_000_000.0):
        self.t = t

    def __call__(self):
        return self.t


BASE = dict(max_conn_per_ip=2, auth_fail_window=600, auth_fail_ip_limit=5, auth_fail_user_limit=3,
            login_fail_delay=0.5, auth_fail_max_delay=4.0, send_rate_limit=10, send_rate_window=3600)


@pytest.fixture(params=["memory", "dynamo"])
def make(request):
    """make(**settings) -> (Limits, clock)"""
    if request.param == "memory":
        def build(**kw):
            clock = Clock()
            s = Settings().replace(**{**BASE, **kw})
            return Limits(s, MemoryCounters(clock), clock), clock
        return build
    aws = request.getfixturevalue("aws")
    settings, clients, _ = aws

    def build(**kw):
        clock = Clock()
        s = settings.replace(**{**BASE, **kw})
        return Limits(s, DynamoCounters(clients, s.state_table, clock), clock), clock
    return build


def test_concurrent_connections_per_ip(make, caplog):
    lim, _ = make()
    a, b = lim.connect("192.0.2.1"), lim.connect("192.0.2.1")
    assert a and b
    with caplog.at_level(logging.WARNING, "postern.limits"):
        assert lim.connect("192.0.2.1", "smtp") is None
    assert "ip=192.0.2.1" in caplog.text and "limit=conn" in caplog.text
    assert lim.connect("192.0.2.2") is not None  # other IPs unaffected
    a.release()
    a.release()  # idempotent
    assert lim.open_connections("192.0.2.1") == 1
    with lim.connect("192.0.2.1") as c:
        assert c is not None and lim.connect("192.0.2.1") is None
    assert lim.open_connections("192.0.2.1") == 1


def test_growing_delay_then_ip_lockout_until_window_ends(make, caplog):
    lim, clock = make()
    ip = "198.51.100.9"
    delays = []
    for i in range(5):
        assert lim.auth_allowed(ip, f"user{i}@example.test") is None
        delays.append(lim.auth_failed(ip, f"user{i}@example.test"))
    assert delays == [0.5, 1.0, 2.0, 4.0, 4.0]  # doubling, capped at auth_fail_max_delay
    with caplog.at_level(logging.WARNING, "postern.limits"):
        r = lim.auth_allowed(ip, "new@example.test", "imap")
    assert r is not None and r.limit == "auth_ip" and 0 < r.retry_after <= 600
    assert f"ip={ip}" in caplog.text
    assert lim.auth_allowed("198.51.100.10", "new@example.test") is None  # a different IP is fine
    clock.t += 600  # next window: the lockout has ended
    assert lim.auth_allowed(ip, "new@example.test") is None


def test_account_lockout_across_ips(make):
    lim, _ = make()
    for i in range(3):
        lim.auth_failed(f"203.0.113.{i}", "Alice@Example.test")
    r = lim.auth_allowed("203.0.113.99", "alice@example.test")
    assert r is not None and r.limit == "auth_user" and "locked" in r.text
    assert lim.auth_allowed("203.0.113.99", "bob@example.test") is None


def test_send_rate_per_user(make):
    lim, clock = make()
    assert lim.send_allowed("alice@example.test", 6) is None
    assert lim.send_allowed("alice@example.test", 4) is None
    r = lim.send_allowed("alice@example.test", 1, ip="192.0.2.5")
    assert r is not None and r.limit == "send"
    assert lim.send_allowed("bob@example.test", 1) is None
    clock.t += 3600
    assert lim.send_allowed("alice@example.test", 1) is None


def test_zero_disables(make):
    lim, _ = make(max_conn_per_ip=0, auth_fail_ip_limit=0, auth_fail_user_limit=0, send_rate_limit=0,
                  login_fail_delay=0)
    assert all(lim.connect("192.0.2.1") for _ in range(50))
    for _ in range(50):
        assert lim.auth_failed("192.0.2.1", "a@b.test") == 0
    assert lim.auth_allowed("192.0.2.1", "a@b.test") is None
    assert lim.send_allowed("a@b.test", 10_000) is None


def test_dynamo_items_carry_ttl(aws):
    settings, clients, _ = aws
    clock = Clock(7200.0)
    lim = Limits(settings.replace(**BASE), DynamoCounters(clients, settings.state_table, clock), clock)
    lim.auth_failed("192.0.2.7", "x@example.test")
    w = int(7200 // 600)
    item = clients.dynamodb.get_item(TableName=settings.state_table,
                                     Key={k: {"S": v} for k, v in keys.limit_key("authip", "192.0.2.7", w).items()})
    assert item["Item"]["n"]["N"] == "1"
    assert int(item["Item"]["expires"]["N"]) == (w + 1) * 600 + 600


def test_backend_fault_fails_open(caplog):
    class Broken:
        def add(self, *a):
            raise RuntimeError("dynamodb down")

        def get_many(self, *a):
            raise RuntimeError("dynamodb down")

    lim = Limits(Settings().replace(**BASE), Broken())
    with caplog.at_level(logging.ERROR, "postern.limits"):
        assert lim.auth_allowed("192.0.2.1", "a@b.test") is None
        assert lim.auth_failed("192.0.2.1", "a@b.test") == 0.5
        assert lim.send_allowed("a@b.test") is None
    assert "counting as zero" in caplog.text


def test_limits_for_picks_backend(aws):
    settings, clients, _ = aws
    assert isinstance(limits_for(settings, clients).counters, DynamoCounters)
    assert isinstance(limits_for(settings).counters, MemoryCounters)
    assert isinstance(limits_for(settings.replace(limits_backend="memory"), clients).counters, MemoryCounters)


def test_ipv6_counts_per_64(make):
    from postern.limits import client_key

    assert client_key("2001:db8:1:2:aaaa::1") == client_key("2001:db8:1:2:bbbb::9") == "2001:db8:1:2::/64"
    assert client_key("::ffff:192.0.2.1") == "192.0.2.1" and client_key("192.0.2.1") == "192.0.2.1"
    lim, _ = make()
    assert lim.connect("2001:db8:1:2::1") and lim.connect("2001:db8:1:2::2")
    assert lim.connect("2001:db8:1:2::3") is None  # same /64: the cap of 2 applies to the subnet
    assert lim.connect("2001:db8:1:3::1") is not None
    for i in range(5):
        lim.auth_failed(f"2001:db8:9:9::{i + 1}", f"u{i}@example.test")
    assert lim.auth_allowed("2001:db8:9:9::ffff", "new@example.test").limit == "auth_ip"


def test_known_client_is_not_locked_out_and_does_not_lock(make):
    """Issue 11 finding 6: an address that logged the account in within 30 days is exempt."""
    from postern.limits import KNOWN_CLIENT_TTL

    lim, clock = make()
    acct, home, attacker = "carol@example.test", "192.0.2.10", "203.0.113.66"
    lim.auth_succeeded(home, acct)
    for _ in range(3):
        lim.auth_failed(attacker, acct)
    assert lim.auth_allowed(attacker, acct).limit == "auth_user"  # locked for everyone else
    assert lim.auth_allowed("198.51.100.1", acct).limit == "auth_user"
    assert lim.auth_allowed(home, acct) is None  # not for its owner's address
    clock.t += 600  # next window: nothing counted
    for _ in range(5):
        lim.auth_failed(home, acct)  # the owner's typos count for the IP, not the account
    assert lim.auth_allowed("198.51.100.1", acct) is None
    clock.t += KNOWN_CLIENT_TTL + 600  # 30 days without a login: no longer known
    for _ in range(3):
        lim.auth_failed(attacker, acct)
    assert lim.auth_allowed(home, acct).limit == "auth_user"


def test_known_client_refreshed_once_an_hour_per_process(make):
    lim, clock = make()
    writes = []
    add = lim.counters.add
    lim.counters.add = lambda key, n, expires: writes.append(key) or add(key, n, expires)
    for _ in range(5):
        lim.auth_succeeded("192.0.2.10", "carol@example.test")
    clock.t += 3601
    lim.auth_succeeded("192.0.2.10", "carol@example.test")
    assert len(writes) == 2


def test_sessions_and_idle_per_account(make, caplog):
    lim, _ = make(max_sessions_per_user=2, max_idle_per_user=1)
    a, b = lim.open_session("carol@example.test"), lim.open_session("carol@example.test")
    assert a and b
    with caplog.at_level(logging.WARNING, "postern.limits"):
        assert lim.open_session("carol@example.test", "192.0.2.1", "imap") is None
    assert "limit=sessions" in caplog.text and "user=carol@example.test" in caplog.text
    assert lim.open_session("dave@example.test") is not None  # other accounts unaffected
    a.release()
    a.release()  # idempotent
    assert lim.open_session("carol@example.test") is not None
    i = lim.idle("carol@example.test")
    assert i and lim.idle("carol@example.test") is None
    i.release()
    assert lim.idle("carol@example.test") is not None
    lim, _ = make(max_sessions_per_user=0, max_idle_per_user=0)
    assert all(lim.open_session("x@example.test") and lim.idle("x@example.test") for _ in range(100))
