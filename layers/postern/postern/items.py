"""A tiny key/value item layer over one DynamoDB table, and its in-memory twin.

In:   plain Python dicts (str, int, bool, bytes, list, dict, set values).
Out:  :class:`DynamoItems` (boto3 low-level client, (de)serialised with
      boto3's TypeSerializer) and :class:`MemoryItems` with the same methods:
      ``get``, ``batch_get`` (many keys, one BatchGetItem per 100), ``put``
      (optionally only-if-absent), ``delete``, ``query`` (partition +
      sort-key prefix, paginated under the hood).
Fails: ``put(..., if_absent=True)`` on an existing item raises
      :class:`~postern.errors.AlreadyExists`; a DynamoDB fault raises
      :class:`~postern.errors.StoreUnavailable`.

The directory uses this directly; the mail store needs transactions and a
GSI and talks to DynamoDB itself (``postern.store.dynamo``).
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import Binary, TypeDeserializer, TypeSerializer
from botocore.exceptions import BotoCoreError, ClientError

from .errors import AlreadyExists, StoreUnavailable

_ser = TypeSerializer()
_de = TypeDeserializer()


def _to_ddb_value(v: Any) -> Any:
    if isinstance(v, float):
        return Decimal(repr(v))
    if isinstance(v, dict):
        return {k: _to_ddb_value(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_to_ddb_value(x) for x in v]
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


def serialize(item: dict) -> dict:
    return {k: _ser.serialize(_to_ddb_value(v)) for k, v in item.items() if v is not None}


def deserialize(item: dict) -> dict:
    return {k: _from_ddb_value(_de.deserialize(v)) for k, v in item.items()}


def is_conditional_failure(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"


class DynamoItems:
    def __init__(self, client_factory, table: str):
        self._client_factory = client_factory  # callable -> boto3 dynamodb client
        self.table = table

    @property
    def _c(self):
        return self._client_factory()

    def get(self, key: dict, consistent: bool = True) -> dict | None:
        try:
            r = self._c.get_item(TableName=self.table, Key=serialize(key), ConsistentRead=consistent)
        except (ClientError, BotoCoreError) as exc:
            raise StoreUnavailable(f"directory read failed: {exc.__class__.__name__}") from exc
        item = r.get("Item")
        return deserialize(item) if item else None

    def put(self, item: dict, if_absent: bool = False) -> None:
        kwargs: dict[str, Any] = {"TableName": self.table, "Item": serialize(item)}
        if if_absent:
            kwargs["ConditionExpression"] = "attribute_not_exists(pk)"
        try:
            self._c.put_item(**kwargs)
        except ClientError as exc:
            if is_conditional_failure(exc):
                raise AlreadyExists() from None
            raise StoreUnavailable(f"directory write failed: {exc.__class__.__name__}") from exc
        except BotoCoreError as exc:
            raise StoreUnavailable("directory write failed") from exc

    def delete(self, key: dict) -> bool:
        try:
            r = self._c.delete_item(TableName=self.table, Key=serialize(key), ReturnValues="ALL_OLD")
        except (ClientError, BotoCoreError) as exc:
            raise StoreUnavailable("directory delete failed") from exc
        return bool(r.get("Attributes"))

    def batch_get(self, keys: list[dict], consistent: bool = True) -> dict[tuple[str, str], dict]:
        """Many items in as few BatchGetItem calls as possible (100 keys per call;
        unprocessed keys are retried). Returns {(pk, sk): item} for the items found."""
        out: dict[tuple[str, str], dict] = {}
        unique = list({(k["pk"], k["sk"]): k for k in keys}.values())
        for i in range(0, len(unique), 100):
            request = {self.table: {"Keys": [serialize(k) for k in unique[i:i + 100]], "ConsistentRead": consistent}}
            for _attempt in range(5):
                try:
                    r = self._c.batch_get_item(RequestItems=request)
                except (ClientError, BotoCoreError) as exc:
                    raise StoreUnavailable(f"directory read failed: {exc.__class__.__name__}") from exc
                for item in r.get("Responses", {}).get(self.table, []):
                    d = deserialize(item)
                    out[(d["pk"], d["sk"])] = d
                request = r.get("UnprocessedKeys") or {}
                if not request:
                    break
            else:
                raise StoreUnavailable("directory read failed: unprocessed keys after retries")
        return out

    def query(self, pk: str, sk_prefix: str = "") -> Iterator[dict]:
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": "pk = :pk" + (" AND begins_with(sk, :p)" if sk_prefix else ""),
            "ExpressionAttributeValues": serialize({"pk": pk, **({"p": sk_prefix} if sk_prefix else {})}),
            "ConsistentRead": True,
        }
        kwargs["ExpressionAttributeValues"] = {
            ":" + k: v for k, v in kwargs["ExpressionAttributeValues"].items()
        }
        while True:
            try:
                r = self._c.query(**kwargs)
            except (ClientError, BotoCoreError) as exc:
                raise StoreUnavailable("directory query failed") from exc
            for item in r.get("Items", []):
                yield deserialize(item)
            lek = r.get("LastEvaluatedKey")
            if not lek:
                return
            kwargs["ExclusiveStartKey"] = lek


class MemoryItems:
    """Same interface, a dict under a lock. For tests and the in-memory benchmark."""

    def __init__(self):
        self._items: dict[tuple[str, str], dict] = {}
        self._lock = threading.Lock()

    def get(self, key: dict, consistent: bool = True) -> dict | None:
        with self._lock:
            item = self._items.get((key["pk"], key["sk"]))
            return copy.deepcopy(item) if item else None

    def batch_get(self, keys: list[dict], consistent: bool = True) -> dict[tuple[str, str], dict]:
        with self._lock:
            return {
                (k["pk"], k["sk"]): copy.deepcopy(self._items[(k["pk"], k["sk"])])
                for k in keys
                if (k["pk"], k["sk"]) in self._items
            }

    def put(self, item: dict, if_absent: bool = False) -> None:
        k = (item["pk"], item["sk"])
        with self._lock:
            if if_absent and k in self._items:
                raise AlreadyExists()
            self._items[k] = copy.deepcopy({a: v for a, v in item.items() if v is not None})

    def delete(self, key: dict) -> bool:
        with self._lock:
            return self._items.pop((key["pk"], key["sk"]), None) is not None

    def query(self, pk: str, sk_prefix: str = "") -> Iterator[dict]:
        with self._lock:
            rows = sorted(
                (k[1], copy.deepcopy(v)) for k, v in self._items.items() if k[0] == pk and k[1].startswith(sk_prefix)
            )
        for _, v in rows:
            yield v
