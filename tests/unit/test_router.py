"""Routing, table-driven: envelope recipients + directory -> store / outbound / notice jobs."""

from __future__ import annotations

import pytest

from postern.directory import memory_directory
from postern.envelope import Envelope
from postern.pipeline.router import plan


@pytest.fixture(scope="module")
def directory():
    d = memory_directory()
    d.add_domain("example.test")
    d.add_domain("catch.test")
    d.add_user("alice@example.test", "pw")
    d.add_user("bob@example.test", "pw", quota=5000)
    d.add_user("sink@catch.test", "pw")
    d.set_catchall("catch.test", "sink@catch.test")
    d.add_alias("team@example.test", ["alice@example.test", "bob@example.test"])
    d.add_alias("fwd@example.test", ["someone@remote.example", "alice@example.test"])
    d.add_alias("loop1@example.test", ["loop2@example.test"])
    d.add_alias("loop2@example.test", ["loop1@example.test"])
    d.add_alias("both@example.test", ["team@example.test", "alice@example.test"])
    return d


def env(*rcpts, auth=None, mail_from="sender@origin.example", junk=False):
    return Envelope(queue_id="q1", mail_from=mail_from, rcpt_to=tuple(rcpts), s3_key="spool/q1", size=100,
                    received_at=1.0, auth_user=auth, trace_headers="Received: x\r\n", junk=junk)


# (case, envelope, local users [(user, original)], remote {domain: [rcpt]}, failures [(rcpt, status)])
CASES = [
    ("user", env("alice@example.test"), [("alice@example.test", "alice@example.test")], {}, []),
    ("user, case-insensitive", env("Alice@EXAMPLE.test"), [("alice@example.test", "Alice@EXAMPLE.test")], {}, []),
    ("alias with two targets", env("team@example.test"),
     [("alice@example.test", "team@example.test"), ("bob@example.test", "team@example.test")], {}, []),
    ("alias through alias, one copy each", env("both@example.test"),
     [("alice@example.test", "both@example.test"), ("bob@example.test", "both@example.test")], {}, []),
    ("plus-addressing", env("alice+lists@example.test"), [("alice@example.test", "alice+lists@example.test")], {},
     []),
    ("plus-addressing on an alias", env("team+x@example.test"),
     [("alice@example.test", "team+x@example.test"), ("bob@example.test", "team+x@example.test")], {}, []),
    ("catch-all", env("whoever@catch.test"), [("sink@catch.test", "whoever@catch.test")], {}, []),
    ("unknown user", env("nobody@example.test"), [], {}, [("nobody@example.test", "5.1.1")]),
    ("remote without auth is relaying", env("x@remote.example"), [], {}, [("x@remote.example", "5.7.1")]),
    ("remote with auth", env("x@remote.example", "y@remote.example", "z@other.example", auth="alice@example.test"),
     [], {"remote.example": ["x@remote.example", "y@remote.example"], "other.example": ["z@other.example"]}, []),
    ("alias forwarding outside, no auth needed", env("fwd@example.test"),
     [("alice@example.test", "fwd@example.test")], {"remote.example": ["someone@remote.example"]}, []),
    ("alias loop", env("loop1@example.test"), [], {}, [("loop1@example.test", "5.4.6")]),
    ("two recipients, one copy per mailbox", env("alice@example.test", "team@example.test"),
     [("alice@example.test", "alice@example.test"), ("bob@example.test", "team@example.test")], {}, []),
    ("mixed good and bad", env("bob@example.test", "ghost@example.test"),
     [("bob@example.test", "bob@example.test")], {}, [("ghost@example.test", "5.1.1")]),
]


@pytest.mark.parametrize("case,envelope,local,remote,failed", CASES, ids=[c[0] for c in CASES])
def test_routing_table(directory, case, envelope, local, remote, failed):
    p = plan(envelope, directory)
    assert [(j.user, j.original_recipient) for j in p.store] == local
    assert {j.domain: list(j.recipients) for j in p.outbound} == remote
    assert [(f.recipient, f.status) for f in p.decision.failed] == failed
    if failed:
        assert p.notice is not None and p.notice.kind == "failed"
        assert [(r["recipient"], r["status"]) for r in p.notice.recipients] == failed
    else:
        assert p.notice is None


def test_store_jobs_carry_envelope_fields_and_quota(directory):
    (job,) = plan(env("bob@example.test"), directory).store
    assert (job.queue_id, job.s3_key, job.mail_from, job.mailbox, job.quota, job.size) == (
        "q1", "spool/q1", "sender@origin.example", "INBOX", 5000, 100)
    assert job.trace_headers == "Received: x\r\n"


def test_junk_goes_to_junk_mailbox(directory):
    (job,) = plan(env("alice@example.test", junk=True), directory).store
    assert job.mailbox == "Junk"


def test_null_sender_never_gets_a_notice(directory):
    p = plan(env("nobody@example.test", mail_from=""), directory)
    assert p.decision.failed and p.notice is None


def test_outbound_job_records_original_recipient(directory):
    (job,) = plan(env("fwd@example.test"), directory).outbound
    assert job.original_recipients == ("fwd@example.test",)
    (job,) = plan(env("x@remote.example", auth="alice@example.test"), directory).outbound
    assert job.original_recipients == ("",) and job.auth_user == "alice@example.test"


def test_one_batch_get_for_a_recipient(directory):
    """The prefetched view answers domain, alias, user and plus-base look-ups from one batch per
    level of indirection (alias targets, catch-all target), never one GetItem per item."""
    calls = {"batch": 0, "get": 0}
    items = directory.items
    orig_batch, orig_get = items.batch_get, items.get

    def batch(keys, consistent=True):
        calls["batch"] += 1
        return orig_batch(keys, consistent)

    def get(key, consistent=True):
        calls["get"] += 1
        return orig_get(key, consistent)

    items.batch_get, items.get = batch, get
    try:
        plan(env("alice+tag@example.test"), directory)
        assert calls == {"batch": 1, "get": 0}
        plan(env("alice@example.test", "bob@example.test", "nobody@example.test"), directory)
        assert calls == {"batch": 2, "get": 0}
        plan(env("team@example.test"), directory)  # alias: its targets in a second batch
        assert calls == {"batch": 4, "get": 0}
        plan(env("whoever@catch.test"), directory)  # catch-all: its target in a second batch
        assert calls == {"batch": 6, "get": 0}
        plan(env("both@example.test"), directory)  # alias -> alias -> users: three rounds
        assert calls == {"batch": 9, "get": 0}
        plan(env("sink@catch.test"), directory)  # a user in a catch-all domain: one batch
        assert calls == {"batch": 10, "get": 0}
    finally:
        del items.batch_get, items.get


class _CountingItems:
    """The directory's item layer, counting the reads that reach it."""

    def __init__(self, inner):
        self.inner = inner
        self.reads = 0

    def batch_get(self, *a, **kw):
        self.reads += 1
        return self.inner.batch_get(*a, **kw)

    def get(self, *a, **kw):
        self.reads += 1
        return self.inner.get(*a, **kw)

    def __getattr__(self, name):
        return getattr(self.inner, name)


def _cached_setup():
    from postern.directory import Directory, ItemCache

    d = memory_directory()
    d.add_domain("example.test")
    d.add_user("alice@example.test", "pw", quota=100)
    items = _CountingItems(d.items)
    now = [1000.0]
    return d, Directory(items), items, ItemCache(ttl=30.0, clock=lambda: now[0]), now


def test_a_warm_router_reads_a_recipient_once_per_ttl():
    d, cached_dir, items, cache, now = _cached_setup()
    (job,) = plan(env("alice@example.test"), cached_dir, cache=cache).store
    assert items.reads == 1 and job.user == "alice@example.test"
    for _ in range(5):  # the same recipient within the TTL: no read at all
        assert [j.user for j in plan(env("Alice@example.test"), cached_dir, cache=cache).store] == ["alice@example.test"]
    assert items.reads == 1
    d.set_quota("alice@example.test", 500)
    now[0] += 31  # past the TTL: read again, and the change is seen
    (job,) = plan(env("alice@example.test"), cached_dir, cache=cache).store
    assert items.reads == 2 and job.quota == 500


def test_a_warm_router_never_bounces_from_the_cache():
    d, cached_dir, items, cache, now = _cached_setup()
    p = plan(env("new@example.test"), cached_dir, cache=cache)
    assert [(f.recipient, f.status) for f in p.decision.failed] == [("new@example.test", "5.1.1")]
    assert items.reads == 2  # the refusal was decided from a second, fresh read
    reads = items.reads
    d.add_user("new@example.test", "pw")  # added a moment later; its absence is still in the cache
    p = plan(env("new@example.test"), cached_dir, cache=cache)
    assert [j.user for j in p.store] == ["new@example.test"] and p.notice is None
    assert items.reads == reads + 1  # the cached try read nothing, the fresh one found the user
    (job,) = plan(env("new@example.test"), cached_dir, cache=cache).store  # and now it is cached
    assert job.user == "new@example.test" and items.reads == reads + 1
