"""What the store contract tests need around a MailStore: both backends, faults, and the invariants.

In:   a backend name ("memory" or "dynamo": DynamoDB and S3 on moto).
Out:  :class:`Harness`: ``store``, ``twin()`` (another store over the same table
      and bucket: a second gateway task or a restarted process), ``crashing(n)``
      (a store whose n-th write dies like a killed process), ``faulty(n, mode)`` (its
      n-th DynamoDB or S3 write dies, is lost or is applied with its reply lost), ``items()`` (every
      item of the table), ``blob_keys()``, and :func:`check_invariants`.
Fails: assertions, with the item that broke an invariant.
"""

from __future__ import annotations

from collections import Counter

from postern import keys
from postern.errors import StoreUnavailable
from postern.items import MemoryItems, deserialize
from postern.store import records as R
from postern.store.base import SEEN, is_keyword
from postern.store.engine import LogStore


class Crash(BaseException):
    """A write that dies with the process (not an error the store may catch)."""


FAULT_MODES = ("crash", "lost", "ambiguous")


class Faults:
    """The n-th write (DynamoDB or S3) fails, in one of three ways, counted across both layers:

    * ``crash``: the process dies before the write (:class:`Crash`, which nothing may catch);
    * ``lost``: the write never happens and the layer raises StoreUnavailable (retries spent);
    * ``ambiguous``: the write happens but its reply is lost: StoreUnavailable all the same.

    After a ``lost`` or ``ambiguous`` fault the process lives on (its error handling runs) and
    later writes succeed."""

    def __init__(self, fail_at: int, mode: str = "crash"):
        assert mode in FAULT_MODES
        self.fail_at = fail_at
        self.mode = mode
        self.writes = 0
        self.fired = False

    def write(self, fn, *a, **kw):
        self.writes += 1
        if self.writes != self.fail_at:
            return fn(*a, **kw)
        self.fired = True
        if self.mode == "crash":
            raise Crash(f"crash at write {self.writes}")
        if self.mode == "ambiguous":
            try:
                fn(*a, **kw)
            except Exception:  # noqa: BLE001 - a failed condition and the like: the reply is lost anyway
                pass
        raise StoreUnavailable(f"injected {self.mode} fault at write {self.writes}")


class FaultyItems:
    """The item layer with :class:`Faults` on its writes."""

    def __init__(self, inner, faults: Faults):
        self.inner = inner
        self.faults = faults

    def put(self, *a, **kw):
        return self.faults.write(self.inner.put, *a, **kw)

    def update(self, *a, **kw):
        return self.faults.write(self.inner.update, *a, **kw)

    def delete(self, *a, **kw):
        return self.faults.write(self.inner.delete, *a, **kw)

    def batch_put(self, *a, **kw):
        return self.faults.write(self.inner.batch_put, *a, **kw)

    def get(self, *a, **kw):
        return self.inner.get(*a, **kw)

    def batch_get(self, *a, **kw):
        return self.inner.batch_get(*a, **kw)

    def query(self, *a, **kw):
        return self.inner.query(*a, **kw)


class FaultyBlobs:
    """The blob layer (S3) with the same :class:`Faults` on PUT, CopyObject and DELETE."""

    def __init__(self, inner, faults: Faults):
        self.inner = inner
        self.faults = faults

    def put(self, *a, **kw):
        return self.faults.write(self.inner.put, *a, **kw)

    def copy(self, *a, **kw):
        return self.faults.write(self.inner.copy, *a, **kw)

    def delete(self, *a, **kw):
        return self.faults.write(self.inner.delete, *a, **kw)

    def read(self, *a, **kw):
        return self.inner.read(*a, **kw)

    def exists(self, *a, **kw):
        return self.inner.exists(*a, **kw)


class Harness:
    def __init__(self, store):
        self.store = store
        self.store.repair_grace = 0.0

    def twin(self, items=None, blobs=None) -> LogStore:
        s = LogStore(items or self.store.items, blobs or self.store.blobs, spool_prefix=self.store.spool_prefix,
                     message_prefix=self.store.message_prefix)
        s.repair_grace = 0.0
        return s

    def faulty(self, fail_at: int, mode: str = "crash") -> tuple[LogStore, Faults]:
        """A store over the same table and bucket whose ``fail_at``-th write (DynamoDB or S3) fails."""
        f = Faults(fail_at, mode)
        return self.twin(FaultyItems(self.store.items, f), FaultyBlobs(self.store.blobs, f)), f

    def crashing(self, fail_at: int) -> LogStore:
        return self.faulty(fail_at)[0]

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
    # the email-id index names every live message (find_emails)
    index = {(pk, sk) for (pk, sk) in items if pk.startswith(f"E#{u}#")}
    for e in entries:
        if e.get("e") and (e["pk"].split("#", 2)[2] in live_states or not swept):
            k = keys.email_key(u, e["e"], e["pk"].split("#", 2)[2], int(e["uid"]))
            assert (k["pk"], k["sk"]) in index, f"entry uid {e['uid']} missing from the email-id index"
    blobs = h.blob_keys()
    spool = h.blob_keys(h.store.spool_prefix)  # a delivery's blob is its spool object, referenced in place
    live_refs = Counter()
    for e in entries:
        if e["pk"].split("#", 2)[2] in live_states or not swept:
            assert e["bl"] in blobs | spool, f"entry uid {e['uid']} lost its blob {e['bl']}"
            live_refs[e["bl"]] += 1
    for bl, n in live_refs.items():  # in place: every entry holds a reference (this account's part of the set)
        if bl.startswith(h.store.spool_prefix):
            b = items.get(tuple(keys.blob_key(bl).values())) or {}
            mine = {r for r in b.get("refs") or () if r.partition("/")[0] in states}
            assert len(mine) == n, f"spool blob {bl}: {n} entries, references {sorted(mine)}"
    # an IMAP APPEND's bytes wait under the spool prefix until their change commits: once committed,
    # the change adopts them and deletes the spool copy; never committed, the spool lifecycle expires them
    adopted = {m["sp"] for (pk, _), i in items.items() if pk == keys.log_pk(u) for m in i.get("m", ()) if m.get("sx")}
    left = adopted & h.blob_keys(h.store.spool_prefix)
    assert not left, f"spool copies of committed appends left behind: {sorted(left)}"
    if swept:
        owned = {bl for bl in live_refs if not bl.startswith(h.store.spool_prefix)}
        assert blobs == owned, f"orphaned blobs: {sorted(blobs - owned)}"
        for bl, n in live_refs.items():
            b = items.get(tuple(keys.blob_key(bl).values()))
            if n > 1 and bl in owned:
                assert b is not None and len(b.get("refs") or ()) == n, f"blob {bl}: {n} users, refs {b}"
