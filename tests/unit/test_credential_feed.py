"""Password changes ride the change feed (issue 12: a cached login makes no backend call).

- postern.feed: a MODIFY/REMOVE of a directory user item is a credential change; bodies carry
  them beside the notices and old bodies still read;
- postern_gateway.changefeed hands them to the loop (``on_credentials``);
- postern_gateway.auth: with a live feed a cached login reads nothing; a revocation ends it at
  once; a check or confirmation that read the directory before the revocation cannot put the
  old answer back; the safety net (POSTERN_CHANGE_FEED_POLL_INTERVAL) confirms in the background
  past half its age and in line past it; a feed that went down or came back makes every entry
  confirm again; without a live feed every cached login confirms (one GetItem).
"""

from __future__ import annotations

import asyncio
import json
import sys
import threading
from types import SimpleNamespace

from postern import feed, keys
from postern.authcache import VerifiedCache
from postern.config import Settings
from postern.directory import memory_directory
from postern.store.memory import MemoryMailStore
from postern_gateway import auth
from postern_gateway.auth import authenticate
from postern_gateway.backend import Backend
from postern_gateway.blocking import Blocking
from postern_gateway.changefeed import ChangeFeed

USER, OLD, NEW = "alice@example.test", "old-secret", "new-secret"
INTERVAL = 60.0


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def _record(event: str, pk: str, sk: str) -> dict:
    return {"eventName": event, "dynamodb": {"Keys": {"pk": {"S": pk}, "sk": {"S": sk}}, "SequenceNumber": "7"}}


def test_a_changed_or_removed_user_item_is_a_credential_change_and_nothing_else_is():
    user = keys.user_key("Alice", "Example.test")
    assert keys.user_of_key(user["pk"], user["sk"]) == USER
    assert feed.credentials_of(_record("MODIFY", user["pk"], user["sk"])) == USER
    assert feed.credentials_of(_record("REMOVE", user["pk"], user["sk"])) == USER
    assert feed.credentials_of(_record("INSERT", user["pk"], user["sk"])) is None  # a new user revokes nothing
    alias = keys.alias_key("info", "example.test")
    assert feed.credentials_of(_record("MODIFY", alias["pk"], alias["sk"])) is None
    assert feed.credentials_of(_record("MODIFY", **keys.domain_key("example.test"))) is None
    assert feed.credentials_of(_record("MODIFY", "L#alice@example.test", "00000000000000000001")) is None


def test_bodies_carry_notices_and_credential_changes_and_old_bodies_still_read():
    n = feed.Notice("a@x", 3, ("m",))
    (body, count), = feed.encode([n], ["b@x", "c@x"])
    assert count == 3
    assert feed.read(body) == feed.Batch((n,), ("b@x", "c@x"))
    assert json.loads(body)["c"] == [{"u": "a@x", "n": 3, "mb": ["m"]}]  # a reader of notices only (an older task) finds them as before
    (plain, _), = feed.encode([n])
    assert "cr" not in plain and feed.read(plain) == feed.Batch((n,), ())
    assert feed.read('{"v": 1, "c": [], "cr": ["ok@x", 5, ""]}').credentials == ("ok@x",)
    assert feed.read("junk") == feed.Batch()


def test_the_feed_function_publishes_credential_changes_and_retries_from_the_first_unpublished(monkeypatch,
                                                                                              handler_env):
    from postern_local.lambdas import function_specs, load_handler

    handler_env()
    spec = function_specs()["FeedFunction"]
    load_handler(spec["code_uri"], spec["handler"], "postern_fn_FeedFunction")
    mod = sys.modules["postern_fn_FeedFunction"]
    records = []
    for i in range(6):
        k = keys.user_key(f"u{i}", "example.test")
        rec = _record("MODIFY", k["pk"], k["sk"])
        rec["dynamodb"]["SequenceNumber"] = str(500 + i)
        records.append(rec)
    sent = []

    class Sns:
        def __init__(self, fail_at):
            self.fail_at = fail_at

        def publish(self, TopicArn, Message, MessageAttributes=None):  # noqa: N803 - boto3's names
            sent.append(Message)
            if len(sent) == self.fail_at:
                raise RuntimeError("throttled")

    assert mod.publish(records, Sns(0), "t") == []
    assert [a for body in sent for a in feed.read(body).credentials] == [f"u{i}@example.test" for i in range(6)]
    sent.clear()
    monkeypatch.setattr(feed, "MAX_BODY", 90)  # a few accounts per body
    failed = mod.publish(records, Sns(2), "t")
    first = feed.read(sent[0]).credentials
    assert 0 < len(first) < 6 and failed == [str(500 + len(first))]  # Lambda retries from the first not sent


def test_the_task_hands_credential_changes_to_the_loop():
    (body, _), = feed.encode([feed.Notice("a@x", 9, ("m",))], ["b@x"])

    class Sqs:
        def receive_message(self, **kw):
            return {"Messages": [{"Body": body, "ReceiptHandle": "r"}]}

        def delete_message_batch(self, QueueUrl, Entries):  # noqa: N803
            pass

    class Loop:
        def call_soon_threadsafe(self, fn, *args):
            fn(*args)

    notices, accounts = [], []
    settings = SimpleNamespace(change_topic_arn="arn:aws:sns:us-east-1:123456789012:t", change_queue_prefix="p-")
    cf = ChangeFeed(settings, SimpleNamespace(sqs=Sqs(), sqs_long_poll=Sqs(), sns=None), notices.extend,
                    name="p-me", on_credentials=accounts.extend)
    cf.queue_url, cf._loop = "https://sqs.example/p-me", Loop()
    assert cf.receive_once(0) == 1
    assert notices == [feed.Notice("a@x", 9, ("m",))] and accounts == ["b@x"] and cf.credentials == 1


# --- the gateway's cached logins ---------------------------------------------------------------
def feed_backend(clock: Clock, live: bool = True):
    d = memory_directory()
    d.add_domain("example.test")
    d.add_user(USER, OLD)
    settings = Settings().replace(login_fail_delay=0, auth_cache_ttl=3600, change_feed_poll_interval=INTERVAL)
    b = Backend(settings, MemoryMailStore(), d, Blocking(4))
    b.auth_cache = VerifiedCache(settings.auth_cache_ttl, clock=clock)
    b.change_feed = SimpleNamespace(live=live)
    calls = []
    real = b.run

    async def run(fn, *args, **kwargs):
        calls.append(getattr(fn, "__name__", repr(fn)))
        return await real(fn, *args, **kwargs)

    b.run = run
    real_hashing = b.blocking.run_hashing

    async def run_hashing(fn, *args, **kwargs):  # the password checks, on their own pool
        calls.append(getattr(fn, "__name__", repr(fn)))
        return await real_hashing(fn, *args, **kwargs)

    b.blocking.run_hashing = run_hashing
    return b, d, calls


async def login(b, pw):
    return await authenticate(b, USER, pw, client_ip="192.0.2.1", protocol="imap")


async def settled(b):
    """Every background task of the backend (the auth-confirm renewal) has finished."""
    for _ in range(100):
        pending = [t for t in b.mail._sweeps if not t.done()]
        if not pending:
            return
        await asyncio.wait(pending, timeout=30)
    raise AssertionError("background work never finished")


def test_with_a_live_feed_a_cached_login_reads_nothing_and_a_revocation_ends_it_at_once():
    clock = Clock()
    b, d, calls = feed_backend(clock)

    async def run():
        assert await login(b, OLD) is not None  # verified (the directory read with the hash)
        mark = len(calls)
        assert await login(b, OLD) is not None
        assert await login(b, OLD.upper()) is None  # a wrong password is never a hit
        cached_calls = calls[mark:]
        d.set_password(USER, NEW)  # elsewhere: CLI or JMAP; the feed brings the news
        assert await login(b, OLD) is not None  # not yet heard of: within the feed's latency
        auth.revoke(b, [USER])
        return cached_calls, await login(b, OLD), await login(b, NEW)

    cached_calls, old, new = asyncio.run(run())
    b.blocking.shutdown()
    assert cached_calls == ["authenticate"]  # the hit made no call; only the wrong password was checked
    assert old is None and new is not None


def test_a_check_that_read_the_directory_before_a_revocation_is_not_cached():
    clock = Clock()
    b, d, calls = feed_backend(clock)
    reading, release = threading.Event(), threading.Event()
    real = d.authenticate

    def slow_authenticate(u, p):
        found = real(u, p)  # read the old hash, then the change lands and its notice arrives
        reading.set()
        release.wait(30)
        return found

    d.authenticate = slow_authenticate

    async def run():
        first = asyncio.ensure_future(login(b, OLD))
        await asyncio.get_running_loop().run_in_executor(None, reading.wait, 30)
        d.authenticate = real
        d.set_password(USER, NEW)
        auth.revoke(b, [USER])
        release.set()
        assert await first is not None  # that login was checked before the change: it stands
        return await login(b, OLD)

    assert asyncio.run(run()) is None  # but its answer was not remembered
    b.blocking.shutdown()


def test_the_safety_net_confirms_in_the_background_then_in_line_and_a_feed_restart_forces_it():
    clock = Clock()
    b, d, calls = feed_backend(clock)

    async def run():
        await login(b, OLD)
        seen = {}
        mark = len(calls)
        clock.t += INTERVAL / 2 + 1  # past half the interval: answered now, confirmed behind it
        assert await login(b, OLD) is not None
        await settled(b)
        seen["half"] = calls[mark:]
        mark = len(calls)
        assert await login(b, OLD) is not None  # freshly confirmed: nothing
        seen["fresh"] = calls[mark:]
        mark = len(calls)
        clock.t += INTERVAL + 1  # past the interval (notices may have been lost): confirmed first
        d.set_password(USER, NEW)  # ...and a revocation the feed never delivered is caught
        seen["stale"] = (await login(b, OLD), calls[mark:])
        assert await login(b, NEW) is not None
        mark = len(calls)
        assert await login(b, NEW) is not None
        seen["after"] = calls[mark:]
        auth.feed_state(b, False)  # the feed went down (or came back): confirm before trusting
        b.change_feed.live = False
        mark = len(calls)
        await login(b, NEW)
        await login(b, NEW)
        seen["down"] = calls[mark:]
        b.change_feed.live = True
        mark = len(calls)
        await login(b, NEW)
        seen["up"] = calls[mark:]
        return seen

    seen = asyncio.run(run())
    b.blocking.shutdown()
    assert seen["half"] == ["get_user"]
    assert seen["fresh"] == []
    assert seen["stale"] == (None, ["get_user", "authenticate"])
    assert seen["after"] == []
    assert seen["down"] == ["get_user", "get_user"]  # no live feed: every cached login confirms
    assert seen["up"] == []  # confirmed after the restart: trusted again


def test_a_confirmation_read_before_a_revocation_does_not_renew_the_entry():
    clock = Clock()
    c = VerifiedCache(3600, clock=clock)
    c.put(USER, OLD, "U1")
    token = c.token()
    c.revoke(USER)
    c.put(USER, OLD, "U1", token)  # a check that read the directory before the revocation
    assert c.get(USER, OLD) is None
    c.put(USER, NEW, "U2", c.token())
    clock.t += 10
    stale = c.token() - 1
    assert c.confirm(USER, "U2", "U2", stale) is None  # read before the revocation: not renewed
    assert not c.confirmed_within(USER, 5)
    assert c.confirm(USER, "U2", "U2", c.token()) == "U2" and c.confirmed_within(USER, 5)


def test_forgotten_revocations_still_refuse_old_tokens():
    c = VerifiedCache(3600, max_entries=2)
    token = c.token()
    for name in ("a@x", "b@x", "c@x"):  # "a@x" falls out of the bounded record
        c.revoke(name)
    c.put("a@x", "pw", "A", token)
    assert c.get("a@x", "pw") is None
    c.put("a@x", "pw", "A", c.token())
    assert c.get("a@x", "pw") == "A"
