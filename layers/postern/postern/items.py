"""A small item layer over one DynamoDB table, and its in-memory twin.

In:   plain Python dicts (str, int, float, bool, bytes, list, dict, set values);
      conditions built with :func:`absent`, :func:`present`, :func:`eq`,
      :func:`lt`, :func:`newer` and ``&`` / ``|``; updates as :class:`Update`.
Out:  :class:`DynamoItems` (boto3 low-level client, (de)serialised with boto3's
      TypeSerializer) and :class:`MemoryItems` with the same methods and the same
      semantics: ``get``, ``batch_get`` (one BatchGetItem per 100 keys),
      ``put`` (optionally conditional), ``update`` (SET / ADD / DELETE / REMOVE,
      optionally conditional; creates the item when absent, as UpdateItem does),
      ``delete`` (optionally conditional), ``batch_put`` (BatchWriteItem, 25 per
      call, unprocessed items retried) and ``query`` (one partition, one sort-key
      condition, either direction, paginated under the hood).
Fails: a condition that does not hold raises :class:`ConditionFailed` (not a
      domain error: the caller decides what it means); ``put(..., if_absent=True)``
      raises :class:`~postern.errors.AlreadyExists` (the directory's use); a
      transient DynamoDB fault (throttling, 5xx, a timeout) is retried up to
      ATTEMPTS times within tens of milliseconds (every write here is safe to
      repeat: unconditional puts and set operations are idempotent, and a repeated
      conditional write fails its condition, which callers already expect); what
      still fails raises :class:`~postern.errors.StoreUnavailable` whose text is
      generic: AWS's own message is logged, never shown to a client.

Empty sets cannot be stored in DynamoDB: both twins drop an attribute whose set
becomes empty (``DELETE`` of the last element removes it). The mail store and
the directory are both written against this layer, so the in-memory twin used
by the unit tests cannot drift from what DynamoDB does.
"""

from __future__ import annotations

import copy
import logging
import random
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import Binary, TypeDeserializer, TypeSerializer
from botocore.exceptions import BotoCoreError, ClientError

from .errors import AlreadyExists, StoreUnavailable

log = logging.getLogger("postern.items")

_ser = TypeSerializer()
_de = TypeDeserializer()


class ConditionFailed(Exception):
    """A put/update/delete condition did not hold (ConditionalCheckFailedException)."""


ATTEMPTS = 3
_TRANSIENT = {"ThrottlingException", "ProvisionedThroughputExceededException", "RequestLimitExceeded",
              "InternalServerError", "InternalError", "ServiceUnavailable", "SlowDown", "InternalFailure"}


def transient(exc: BaseException) -> bool:
    """A fault worth one more try at once: throttling, a 5xx, a timeout or a dropped connection."""
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return err.get("Code", "") in _TRANSIENT or status >= 500
    return isinstance(exc, BotoCoreError)


def retrying(fn, /, **kwargs):
    """``fn(**kwargs)`` with up to ATTEMPTS tries for transient faults (jittered, at most ~100 ms in all)."""
    for attempt in range(ATTEMPTS):
        try:
            return fn(**kwargs)
        except (ClientError, BotoCoreError) as exc:
            if attempt + 1 >= ATTEMPTS or not transient(exc):
                raise
            time.sleep(random.uniform(0.005, 0.03) * (attempt + 1))


def _to_ddb_value(v: Any) -> Any:
    if isinstance(v, float):
        return Decimal(repr(v))
    if isinstance(v, dict):
        return {k: _to_ddb_value(x) for k, x in v.items() if x is not None and not _empty_set(x)}
    if isinstance(v, list | tuple):
        return [_to_ddb_value(x) for x in v]
    if isinstance(v, frozenset):
        return set(v)
    return v


def _from_ddb_value(v: Any) -> Any:
    if isinstance(v, Decimal):
        return int(v) if v == v.to_integral_value() else float(v)
    if isinstance(v, Binary):
        return bytes(v)
    if isinstance(v, dict):
        return {k: _from_ddb_value(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_from_ddb_value(x) for x in v]
    if isinstance(v, set):
        return {_from_ddb_value(x) for x in v}
    return v


def _empty_set(v: Any) -> bool:
    return isinstance(v, set | frozenset) and not v


def serialize(item: dict) -> dict:
    return {k: _ser.serialize(_to_ddb_value(v)) for k, v in item.items() if v is not None and not _empty_set(v)}


def deserialize(item: dict) -> dict:
    return {k: _from_ddb_value(_de.deserialize(v)) for k, v in item.items()}


def is_conditional_failure(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"


# --- conditions -------------------------------------------------------------------
@dataclass(frozen=True)
class Cond:
    """A condition on one item. ``op``: absent, present, eq, lt, le, gt, and, or."""

    op: str
    attr: str = ""
    value: Any = None
    parts: tuple = ()

    def __and__(self, other: Cond) -> Cond:
        return Cond("and", parts=(self, other))

    def __or__(self, other: Cond) -> Cond:
        return Cond("or", parts=(self, other))


def absent(attr: str = "pk") -> Cond:
    return Cond("absent", attr)


def present(attr: str = "pk") -> Cond:
    return Cond("present", attr)


def eq(attr: str, value: Any) -> Cond:
    return Cond("eq", attr, value)


def lt(attr: str, value: Any) -> Cond:
    return Cond("lt", attr, value)


def le(attr: str, value: Any) -> Cond:
    return Cond("le", attr, value)


def gt(attr: str, value: Any) -> Cond:
    return Cond("gt", attr, value)


def newer(attr: str, value: Any) -> Cond:
    """``value`` is newer than what the item records in ``attr`` (or the item/attribute is absent)."""
    return absent(attr) | lt(attr, value)


def holds(cond: Cond | None, item: dict | None) -> bool:
    """Evaluate a condition against an item as DynamoDB would (None = the item is absent)."""
    if cond is None:
        return True
    op = cond.op
    if op == "and":
        return all(holds(p, item) for p in cond.parts)
    if op == "or":
        return any(holds(p, item) for p in cond.parts)
    has = item is not None and cond.attr in item
    if op == "absent":
        return not has
    if op == "present":
        return has
    if not has:
        return False
    a, b = item[cond.attr], cond.value
    try:
        if op == "eq":
            return a == b
        if op == "lt":
            return a < b
        if op == "le":
            return a <= b
        if op == "gt":
            return a > b
    except TypeError:
        return False
    raise ValueError(f"unknown condition {op!r}")


class _Expr:
    """Placeholders for one request's expression attribute names and values."""

    def __init__(self):
        self.names: dict[str, str] = {}
        self.values: dict[str, Any] = {}

    def name(self, attr: str) -> str:
        for k, v in self.names.items():
            if v == attr:
                return k
        k = f"#a{len(self.names)}"
        self.names[k] = attr
        return k

    def value(self, v: Any) -> str:
        k = f":v{len(self.values)}"
        self.values[k] = v
        return k

    def cond(self, c: Cond) -> str:
        if c.op in ("and", "or"):
            return "(" + f" {c.op.upper()} ".join(self.cond(p) for p in c.parts) + ")"
        if c.op == "absent":
            return f"attribute_not_exists({self.name(c.attr)})"
        if c.op == "present":
            return f"attribute_exists({self.name(c.attr)})"
        sym = {"eq": "=", "lt": "<", "le": "<=", "gt": ">"}[c.op]
        return f"{self.name(c.attr)} {sym} {self.value(c.value)}"

    def apply(self, kwargs: dict) -> dict:
        if self.names:
            kwargs["ExpressionAttributeNames"] = self.names
        if self.values:
            kwargs["ExpressionAttributeValues"] = {k: _ser.serialize(_to_ddb_value(v)) for k, v in self.values.items()}
        return kwargs


# --- updates ----------------------------------------------------------------------
@dataclass
class Update:
    """SET attributes (None removes), ADD numbers or set elements, DELETE set elements, REMOVE attributes."""

    set: dict = field(default_factory=dict)
    add: dict = field(default_factory=dict)
    delete: dict = field(default_factory=dict)
    remove: tuple = ()

    def expression(self, ex: _Expr) -> str:
        sets = [f"{ex.name(k)} = {ex.value(v)}" for k, v in self.set.items() if v is not None and not _empty_set(v)]
        removes = [ex.name(k) for k in self.remove] + [
            ex.name(k) for k, v in self.set.items() if v is None or _empty_set(v)
        ]
        adds = [f"{ex.name(k)} {ex.value(v)}" for k, v in self.add.items() if not _empty_set(v)]
        dels = [f"{ex.name(k)} {ex.value(v)}" for k, v in self.delete.items() if not _empty_set(v)]
        parts = []
        if sets:
            parts.append("SET " + ", ".join(sets))
        if adds:
            parts.append("ADD " + ", ".join(adds))
        if dels:
            parts.append("DELETE " + ", ".join(dels))
        if removes:
            parts.append("REMOVE " + ", ".join(removes))
        return " ".join(parts)

    def applied(self, item: dict) -> dict:
        """The item after this update (what UpdateItem does), for the in-memory twin."""
        out = copy.deepcopy(item)
        for k, v in self.set.items():
            if v is None or _empty_set(v):
                out.pop(k, None)
            else:
                out[k] = copy.deepcopy(set(v) if isinstance(v, frozenset) else v)
        for k, v in self.add.items():
            if isinstance(v, set | frozenset):
                if v:
                    out[k] = set(out.get(k, set())) | set(v)
            else:
                out[k] = out.get(k, 0) + v
        for k, v in self.delete.items():
            if k in out:
                rest = set(out[k]) - set(v)
                if rest:
                    out[k] = rest
                else:
                    del out[k]
        for k in self.remove:
            out.pop(k, None)
        return out


def _key(key: dict) -> tuple[str, str]:
    return key["pk"], key["sk"]


# --- DynamoDB ---------------------------------------------------------------------
class DynamoItems:
    def __init__(self, client_factory, table: str, label: str = "directory"):
        self._client_factory = client_factory  # callable -> boto3 dynamodb client
        self.table = table
        self.label = label

    @property
    def _c(self):
        return self._client_factory()

    def _call(self, op: str, fn, **kwargs):
        try:
            return retrying(fn, **kwargs)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code == "ConditionalCheckFailedException":
                raise ConditionFailed() from None
            log.warning("%s %s failed: %s", self.label, op, exc)
            raise StoreUnavailable(f"{self.label} {op} failed") from exc
        except BotoCoreError as exc:
            log.warning("%s %s failed: %s", self.label, op, exc.__class__.__name__)
            raise StoreUnavailable(f"{self.label} {op} failed") from exc

    def get(self, key: dict, consistent: bool = True) -> dict | None:
        r = self._call("read", self._c.get_item, TableName=self.table, Key=serialize(key), ConsistentRead=consistent)
        item = r.get("Item")
        return deserialize(item) if item else None

    def put(self, item: dict, if_absent: bool = False, cond: Cond | None = None) -> None:
        if if_absent:
            cond = absent() if cond is None else (absent() & cond)
        kwargs: dict[str, Any] = {"TableName": self.table, "Item": serialize(item)}
        if cond is not None:
            ex = _Expr()
            kwargs["ConditionExpression"] = ex.cond(cond)
            ex.apply(kwargs)
        try:
            self._call("write", self._c.put_item, **kwargs)
        except ConditionFailed:
            if if_absent:
                raise AlreadyExists() from None
            raise

    def update(self, key: dict, upd: Update, cond: Cond | None = None, returns: str | None = None) -> dict | None:
        """UpdateItem; ``returns``: None, "ALL_NEW" or "ALL_OLD" (the whole item, {} when there was none)."""
        ex = _Expr()
        kwargs: dict[str, Any] = {"TableName": self.table, "Key": serialize(key), "UpdateExpression": upd.expression(ex)}
        if cond is not None:
            kwargs["ConditionExpression"] = ex.cond(cond)
        if returns:
            kwargs["ReturnValues"] = returns
        r = self._call("write", self._c.update_item, **ex.apply(kwargs))
        return deserialize(r.get("Attributes", {})) if returns else None

    def delete(self, key: dict, cond: Cond | None = None) -> bool:
        """DeleteItem; True when there was an item to delete."""
        return self.delete_returning(key, cond) is not None

    def delete_returning(self, key: dict, cond: Cond | None = None) -> dict | None:
        """DeleteItem returning the item deleted (None when there was none): take-once reads."""
        kwargs: dict[str, Any] = {"TableName": self.table, "Key": serialize(key), "ReturnValues": "ALL_OLD"}
        if cond is not None:
            ex = _Expr()
            kwargs["ConditionExpression"] = ex.cond(cond)
            ex.apply(kwargs)
        r = self._call("delete", self._c.delete_item, **kwargs)
        return deserialize(r["Attributes"]) if r.get("Attributes") else None

    def batch_get(self, keys: list[dict], consistent: bool = True) -> dict[tuple[str, str], dict]:
        """Many items in as few BatchGetItem calls as possible (100 keys per call;
        unprocessed keys are retried). Returns {(pk, sk): item} for the items found."""
        out: dict[tuple[str, str], dict] = {}
        unique = list({_key(k): k for k in keys}.values())
        for i in range(0, len(unique), 100):
            request = {self.table: {"Keys": [serialize(k) for k in unique[i:i + 100]], "ConsistentRead": consistent}}
            for attempt in range(8):
                r = self._call("read", self._c.batch_get_item, RequestItems=request)
                for item in r.get("Responses", {}).get(self.table, []):
                    d = deserialize(item)
                    out[(d["pk"], d["sk"])] = d
                request = r.get("UnprocessedKeys") or {}
                if not request:
                    break
                time.sleep(min(0.5, 0.01 * 2**attempt))
            else:
                raise StoreUnavailable(f"{self.label} read failed: throttled")
        return out

    def batch_put(self, items: list[dict]) -> None:
        """Unconditional puts, 25 per BatchWriteItem (unprocessed items retried)."""
        for i in range(0, len(items), 25):
            request = {self.table: [{"PutRequest": {"Item": serialize(it)}} for it in items[i:i + 25]]}
            for attempt in range(8):
                r = self._call("write", self._c.batch_write_item, RequestItems=request)
                request = r.get("UnprocessedItems") or {}
                if not request:
                    break
                time.sleep(min(0.5, 0.01 * 2**attempt))
            else:
                raise StoreUnavailable(f"{self.label} write failed: throttled")

    def query(self, pk: str, sk_prefix: str = "", *, gt: str | None = None, lt: str | None = None,
              reverse: bool = False, limit: int | None = None, consistent: bool = True) -> Iterator[dict]:
        """Items of partition ``pk`` in sort-key order (descending with ``reverse``): all of them,
        those whose sort key starts with ``sk_prefix``, or those strictly between ``gt`` and ``lt``."""
        ex = _Expr()
        cond = f"{ex.name('pk')} = {ex.value(pk)}"
        if sk_prefix:
            cond += f" AND begins_with({ex.name('sk')}, {ex.value(sk_prefix)})"
        elif gt is not None and lt is not None:
            cond += f" AND {ex.name('sk')} BETWEEN {ex.value(gt)} AND {ex.value(lt)}"
        elif gt is not None:
            cond += f" AND {ex.name('sk')} > {ex.value(gt)}"
        elif lt is not None:
            cond += f" AND {ex.name('sk')} < {ex.value(lt)}"
        kwargs: dict[str, Any] = ex.apply({"TableName": self.table, "KeyConditionExpression": cond,
                                           "ConsistentRead": consistent, "ScanIndexForward": not reverse})
        left = limit
        while True:
            if left is not None:
                kwargs["Limit"] = max(1, min(left, 1000))
            r = self._call("query", self._c.query, **kwargs)
            for item in r.get("Items", []):
                d = deserialize(item)
                if gt is not None and lt is not None and not (gt < d["sk"] < lt):
                    continue  # BETWEEN is inclusive
                yield d
                if left is not None:
                    left -= 1
                    if left <= 0:
                        return
            lek = r.get("LastEvaluatedKey")
            if not lek:
                return
            kwargs["ExclusiveStartKey"] = lek


# --- in memory --------------------------------------------------------------------
class MemoryItems:
    """Same interface and semantics, a dict under a lock. For tests and the in-memory benchmark."""

    def __init__(self):
        self._items: dict[tuple[str, str], dict] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _clean(item: dict) -> dict:
        return {a: (set(v) if isinstance(v, frozenset) else copy.deepcopy(v)) for a, v in item.items()
                if v is not None and not _empty_set(v)}

    def get(self, key: dict, consistent: bool = True) -> dict | None:
        with self._lock:
            item = self._items.get(_key(key))
            return copy.deepcopy(item) if item else None

    def batch_get(self, keys: list[dict], consistent: bool = True) -> dict[tuple[str, str], dict]:
        with self._lock:
            return {_key(k): copy.deepcopy(self._items[_key(k)]) for k in keys if _key(k) in self._items}

    def put(self, item: dict, if_absent: bool = False, cond: Cond | None = None) -> None:
        k = _key(item)
        with self._lock:
            cur = self._items.get(k)
            if if_absent and cur is not None:
                raise AlreadyExists()
            if not holds(cond, cur):
                raise ConditionFailed()
            self._items[k] = self._clean(item)

    def update(self, key: dict, upd: Update, cond: Cond | None = None, returns: str | None = None) -> dict | None:
        k = _key(key)
        with self._lock:
            cur = self._items.get(k)
            if not holds(cond, cur):
                raise ConditionFailed()
            new = upd.applied(cur if cur is not None else {"pk": k[0], "sk": k[1]})
            self._items[k] = self._clean(new)
            if returns == "ALL_NEW":
                return copy.deepcopy(self._items[k])
            if returns == "ALL_OLD":
                return copy.deepcopy(cur) if cur else {}
            return None

    def delete(self, key: dict, cond: Cond | None = None) -> bool:
        k = _key(key)
        with self._lock:
            cur = self._items.get(k)
            if not holds(cond, cur):
                raise ConditionFailed()
            return self._items.pop(k, None) is not None

    def delete_returning(self, key: dict, cond: Cond | None = None) -> dict | None:
        k = _key(key)
        with self._lock:
            cur = self._items.get(k)
            if not holds(cond, cur):
                raise ConditionFailed()
            return self._items.pop(k, None)

    def batch_put(self, items: Iterable[dict]) -> None:
        with self._lock:
            for it in items:
                self._items[_key(it)] = self._clean(it)

    def query(self, pk: str, sk_prefix: str = "", *, gt: str | None = None, lt: str | None = None,
              reverse: bool = False, limit: int | None = None, consistent: bool = True) -> Iterator[dict]:
        with self._lock:
            rows = sorted(
                (k[1], copy.deepcopy(v)) for k, v in self._items.items()
                if k[0] == pk and k[1].startswith(sk_prefix)
                and (gt is None or k[1] > gt) and (lt is None or k[1] < lt)
            )
        if reverse:
            rows.reverse()
        if limit is not None:
            rows = rows[:limit]
        for _, v in rows:
            yield v

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def dump(self) -> dict[tuple[str, str], dict]:
        """Every item (tests: invariants over the whole table)."""
        with self._lock:
            return copy.deepcopy(self._items)
