"""What the store contract tests need around a MailStore: both backends, faults, and the invariants.

In:   a backend name ("memory" or "dynamo": DynamoDB and S3 on moto).
Out:  :class:`Harness`: ``store``, ``twin()`` (another store over the same table
      and bucket: a second gateway task or a restarted process), ``crashing(n)``
      (a store whose n-th write dies like a killed process), ``items()`` (every
      item of the table), ``blob_keys()``, and :func:`check_invariants`.
Fails: assertions, with the item that broke an invariant.
"""

from __future__ import annotations

from collections import Counter

from postern import keys
from postern.items import MemoryItems, deserialize
from postern.store import records as R
from postern.store.base import SEEN, is_keyword
from postern.store.engine import LogStore


class Crash(BaseException):
    """A write that dies with the process (not an error the store may catch)."""


class CrashingItems:
    """The item layer, dying at its n-th write."""

    def __init__(self, inner, fail_at: int):
        self.inner = inner
        self.fail_at = fail_at
        self.writes = 0

    def _tick(self) -> None:
        self.writes += 1
        if self.writes == self.fail_at:
            raise Crash(f"crash at write {self.writes}")

    def put(self, *a, **kw):
        self._tick()
        return self.inner.put(*a, **kw)

    def update(self, *a, **kw):
        self._tick()
        return self.inner.update(*a, **kw)

    def delete(self, *a, **kw):
        self._tick()
        return self.inner.delete(*a, **kw)

    def batch_put(self, *a, **kw):
        self._tick()
        return self.inner.batch_put(*a, **kw)

    def get(self, *a, **kw):
        return self.inner.get(*a, **kw)

    def batch_get(self, *a, **kw):
        return self.inner.batch_get(*a, **kw)

    def query(self, *a, **kw):
        return self.inner.query(*a, **kw)


class Harness:
    def __init__(self, store):
        self.store = store
        self.store.repair_grace = 0.0

    def twin(self, items=None) -> LogStore:
        s = LogStore(items or self.store.items, self.store.blobs, spool_prefix=self.store.spool_prefix,
                     message_prefix=self.store.message_prefix)
        s.repair_grace = 0.0
        return s

    def crashing(self, fail_at: int) -> LogStore:
        return self.twin(CrashingItems(self.store.items, fail_at))

    def items(self) -> dict[tuple[str, str], dict]:
        inner = self.store.items
        if isinstance(inner, MemoryItems):
            return inner.dump()
        ddb = self.store.clients.dynamodb
        out: dict[tuple[str, str], dict] = {}
        kwargs = {"TableName": self.store.table, "ConsistentRead": True}
        while True:
            r = ddb.scan(**kwargs)
            for i in r.get("Items", []):
                d = deserialize(i)
                out[(d["pk"], d["sk"])] = d
            if not r.get("LastEvaluatedKey"):
                return out
            kwargs["ExclusiveStartKey"] = r["LastEvaluatedKey"]

    def blob_keys(self, prefix: str | None = None) -> set[str]:
        prefix = self.store.message_prefix if prefix is None else prefix
        b = self.store.blobs
        if hasattr(b, "keys"):
            return {k for k in b.keys() if k.startswith(prefix)}
        s3 = self.store.clients.s3
        out: set[str] = set()
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=self.store.bucket, Prefix=prefix):
            out.update(o["Key"] for o in page.get("Contents", []))
        return out


def check_invariants(h: Harness, user: str, swept: bool = True) -> None:
    """The table and bucket agree with themselves: log dense and materialised, counters equal to the
    entries, usage equal to the mailboxes, every entry's blob present, no blob nobody references."""
    u = user.lower()
    items = h.items()
    log = sorted(int(i["ms"]) for (pk, _), i in items.items() if pk == keys.log_pk(u))
    assert log == list(range(1, len(log) + 1)), f"change log has gaps: {log}"
    acct = items.get((keys.user_pk(u), "ACCT"), {})
    assert int(acct.get("ms", 0)) == (log[-1] if log else 0), "newest change not materialised"
    states = {i["mb"]: i for (pk, sk), i in items.items() if sk == keys.STATE_SK and pk.startswith(f"M#{u}#")}
    live_states = {mb: s for mb, s in states.items() if not s.get("gone")}
    entries = [i for (pk, sk), i in items.items() if pk.startswith(f"M#{u}#") and sk != keys.STATE_SK and not i.get("x")]
    by_box: dict[str, list[dict]] = {}
    for e in entries:
        by_box.setdefault(e["pk"].split("#", 2)[2], []).append(e)
    for mb, st in live_states.items():
        es = by_box.get(mb, [])
        assert int(st["ex"]) == len(es), f"{st['n']}: EXISTS {st['ex']} but {len(es)} entries"
        assert int(st["sz"]) == sum(int(e["sz"]) for e in es), f"{st['n']}: size"
        assert int(st["us"]) == sum(1 for e in es if SEEN not in (e.get("fl") or ())), f"{st['n']}: unseen"
        assert all(int(e["uid"]) < int(st["un"]) for e in es), f"{st['n']}: UIDNEXT"
        kws = {f for e in es for f in e.get("fl") or () if is_keyword(f)}
        assert kws <= set(st.get("kw") or ()), f"{st['n']}: keyword set"
    assert int(acct.get("used", 0)) == sum(int(s["sz"]) for s in live_states.values()), "usage"
    names = {i["n"]: i for (pk, sk), i in items.items()
             if pk == keys.user_pk(u) and sk.startswith(keys.MAILBOX_PREFIX) and R.live(i)}
    for n, e in names.items():
        assert e["mb"] in live_states and live_states[e["mb"]]["n"] == n, f"name {n} -> dead or misnamed mailbox"
    assert len(names) == len(live_states), "a mailbox without a name, or a name twice"
    blobs = h.blob_keys()
    live_refs = Counter()
    for e in entries:
        if e["pk"].split("#", 2)[2] in live_states or not swept:
            assert e["bl"] in blobs, f"entry uid {e['uid']} lost its blob {e['bl']}"
            live_refs[e["bl"]] += 1
    if swept:
        assert blobs == set(live_refs), f"orphaned blobs: {sorted(blobs - set(live_refs))}"
        for bl, n in live_refs.items():
            b = items.get(tuple(keys.blob_key(bl).values()))
            if n > 1:
                assert b is not None and len(b.get("refs") or ()) == n, f"blob {bl}: {n} users, refs {b}"
