"""Count the AWS requests Postern makes, by service and operation, with what they bill.

In:   botocore events on every client of a :class:`postern.aws.Clients`
      (:meth:`RequestCounter.install`), or on one boto3 client
      (:meth:`RequestCounter.install_client`):
        ``before-parameter-build``  the call's Python parameters (item sizes, bodies)
        ``response-received``       one per HTTP attempt that got a response (what AWS bills)
        ``after-call``              the parsed response (items read, bytes returned)
Out:  :meth:`snapshot` -> :class:`Usage`: HTTP requests per ``service.Operation``
      and, for the cost report, the billed quantities: SQS requests in 64 KB
      chunks, S3 tier-1 (PUT/COPY/POST/LIST) and tier-2 (GET/HEAD/other) requests
      and bytes written, DynamoDB read and write request units computed from
      item sizes (below). Every figure is kept per *scope*: a label set per
      thread with :meth:`scope` (the pollers use ``lambda:<function>``), so one
      run can say which component made which call. Unscoped requests are
      labelled ``gateway``.
Fails: never on behalf of the call it watches: a bookkeeping error is counted
      in ``Usage.errors`` and the request proceeds.

DynamoDB units (AWS Developer Guide, "Read/write capacity mode" and "Item
sizes"): a write is ceil(item size / 1 KB) WRU, the larger of the old and new
item for UpdateItem, the deleted item for DeleteItem; transactional writes
and reads cost twice; GetItem is ceil(size / 4 KB) RRU (half when eventually
consistent, 1 even for a miss); Query sums the sizes of the items it returns
and rounds once; a write to an item carrying a GSI's key attributes also
writes the index (ALL projection: the same size; a changed index key: a
delete plus a put). Item sizes are computed from the attribute names and
values as the guide defines them. Sizes of items the call does not show us
(UpdateItem without ReturnValues=ALL_NEW, DeleteItem, transactional updates)
come from a *probe*: an un-hooked client that reads the item (GetItem) and
the table's indexes (DescribeTable). Probing is on by default for the cost
run and costs the measured system nothing; ``probe=False`` falls back to
"at least 1 KB" (1 WRU) for such writes and says so in ``Usage.estimated``.

Registration order matters only with the fault layer: install the counter
first, so a request the fault layer lets through and then "times out" after
it executed is still counted as billed.
"""

from __future__ import annotations

import base64
import math
import re
import threading
import time
from collections import Counter, defaultdict
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

SQS_CHUNK = 64 * 1024
S3_TIER1 = {
    "PutObject", "CopyObject", "PostObject", "ListObjects", "ListObjectsV2", "ListObjectVersions",
    "CreateMultipartUpload", "UploadPart", "UploadPartCopy", "CompleteMultipartUpload", "ListMultipartUploads",
    "ListParts", "PutObjectTagging", "PutObjectAcl", "CreateBucket", "PutBucketLifecycleConfiguration",
    "RestoreObject", "ListBuckets",
}
S3_FREE = {"DeleteObject", "DeleteObjects", "AbortMultipartUpload", "DeleteBucket"}
DEFAULT_SCOPE = "gateway"


# ---------------------------------------------------------------- item sizes
def _number_size(value) -> int:
    # "Numbers are variable length, with up to 38 significant digits. Leading
    # and trailing zeroes are trimmed. The size of a number is approximately
    # (length of attribute name) + (1 byte per two significant digits) + (1 byte)."
    s = str(value).lstrip("-").replace(".", "").lstrip("0").rstrip("0") or "0"
    if "E" in s.upper():
        s = s.upper().split("E")[0]
    return math.ceil(len(s) / 2) + 1


def _binary_len(value) -> int:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return len(value)
    if isinstance(value, str):  # base64 on the wire
        try:
            return len(base64.b64decode(value))
        except ValueError:
            return len(value)
    return len(bytes(value))


def attribute_value_size(av: dict) -> int:
    """Size in bytes of one DynamoDB AttributeValue in wire form ({"S": ...})."""
    (kind, v), = av.items()
    if kind == "S":
        return len(v.encode())
    if kind == "N":
        return _number_size(v)
    if kind == "B":
        return _binary_len(v)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "SS":
        return sum(len(x.encode()) for x in v)
    if kind == "NS":
        return sum(_number_size(x) for x in v)
    if kind == "BS":
        return sum(_binary_len(x) for x in v)
    if kind == "L":
        return 3 + sum(attribute_value_size(x) + 1 for x in v)
    if kind == "M":
        return 3 + sum(len(k.encode()) + attribute_value_size(x) + 1 for k, x in v.items())
    return 0


def item_size(item: dict | None) -> int:
    """Size in bytes of a DynamoDB item in wire form, as the Developer Guide defines it."""
    if not item:
        return 0
    return sum(len(name.encode()) + attribute_value_size(av) for name, av in item.items())


def _wru(size: int) -> int:
    return max(1, math.ceil(size / 1024))


def _rru(size: int, consistent: bool) -> float:
    units = max(1, math.ceil(size / 4096))
    return float(units) if consistent else units / 2


# ---------------------------------------------------------------- results
@dataclass
class ScopeUsage:
    requests: Counter = field(default_factory=Counter)  # "service.Operation" -> HTTP requests (attempts)
    calls: Counter = field(default_factory=Counter)  # "service.Operation" -> API calls (before retries)
    sqs_chunks: int = 0  # billed SQS requests (each 64 KB of payload is one)
    s3_tier1: int = 0
    s3_tier2: int = 0
    s3_bytes_put: int = 0
    s3_bytes_got: int = 0
    ddb_wru: float = 0.0
    ddb_rru: float = 0.0
    ddb_bytes_written: int = 0
    latency: float = 0.0  # seconds spent inside calls (local endpoint)
    estimated: int = 0  # writes whose size was assumed (no probe)

    def add(self, other: ScopeUsage) -> None:
        self.requests.update(other.requests)
        self.calls.update(other.calls)
        for name in ("sqs_chunks", "s3_tier1", "s3_tier2", "s3_bytes_put", "s3_bytes_got", "ddb_wru",
                     "ddb_rru", "ddb_bytes_written", "latency", "estimated"):
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def minus(self, other: ScopeUsage) -> ScopeUsage:
        out = ScopeUsage(requests=self.requests - other.requests, calls=self.calls - other.calls)
        for name in ("sqs_chunks", "s3_tier1", "s3_tier2", "s3_bytes_put", "s3_bytes_got", "ddb_wru",
                     "ddb_rru", "ddb_bytes_written", "latency", "estimated"):
            setattr(out, name, getattr(self, name) - getattr(other, name))
        return out

    def copy(self) -> ScopeUsage:
        out = ScopeUsage()
        out.add(self)
        return out

    @property
    def total_requests(self) -> int:
        return sum(self.requests.values())

    def by_service(self) -> dict[str, int]:
        out: Counter = Counter()
        for key, n in self.requests.items():
            out[key.split(".", 1)[0]] += n
        return dict(out)

    def to_dict(self) -> dict[str, Any]:
        return {
            "requests": dict(sorted(self.requests.items())),
            "sqs_chunks": self.sqs_chunks,
            "s3_tier1": self.s3_tier1,
            "s3_tier2": self.s3_tier2,
            "s3_bytes_put": self.s3_bytes_put,
            "s3_bytes_got": self.s3_bytes_got,
            "ddb_wru": round(self.ddb_wru, 3),
            "ddb_rru": round(self.ddb_rru, 3),
            "ddb_bytes_written": self.ddb_bytes_written,
        }


@dataclass
class Usage:
    scopes: dict[str, ScopeUsage] = field(default_factory=dict)
    errors: int = 0

    def total(self) -> ScopeUsage:
        out = ScopeUsage()
        for s in self.scopes.values():
            out.add(s)
        return out

    def minus(self, other: Usage) -> Usage:
        out = Usage(errors=self.errors - other.errors)
        for name, s in self.scopes.items():
            out.scopes[name] = s.minus(other.scopes.get(name, ScopeUsage()))
        return out

    def by_service(self) -> dict[str, int]:
        return self.total().by_service()


# ---------------------------------------------------------------- the counter
class RequestCounter:
    """Botocore hooks that count requests and billed units. Thread-safe."""

    def __init__(self, probe: bool = True, session=None):
        self._lock = threading.Lock()
        self._local = threading.local()
        self._scopes: dict[str, ScopeUsage] = defaultdict(ScopeUsage)
        self.errors = 0
        self.probe = probe
        self._session = session
        self._probe_client = None
        self._probe_lock = threading.Lock()
        self._indexes: dict[str, list[tuple[str, ...]]] = {}

    # --- installation -------------------------------------------------------
    _EVENTS = (
        ("before-parameter-build", "_on_params"),
        ("response-received", "_on_response"),
        ("after-call", "_on_after_call"),
    )

    def install(self, clients) -> RequestCounter:
        """Register on a :class:`postern.aws.Clients` (every client it has built or will build)."""
        for event, meth in self._EVENTS:
            clients.register_hook(event, getattr(self, meth))
        return self

    def install_client(self, client) -> RequestCounter:
        for event, meth in self._EVENTS:
            client.meta.events.register(event, getattr(self, meth))
        return self

    # --- scopes -------------------------------------------------------------
    @contextmanager
    def scope(self, label: str):
        """Attribute requests made by this thread inside the block to ``label``."""
        prev = getattr(self._local, "label", None)
        self._local.label = label
        try:
            yield
        finally:
            self._local.label = prev

    def current_scope(self) -> str:
        return getattr(self._local, "label", None) or DEFAULT_SCOPE

    # --- reading ------------------------------------------------------------
    def snapshot(self) -> Usage:
        with self._lock:
            return Usage(scopes={k: v.copy() for k, v in self._scopes.items()}, errors=self.errors)

    def reset(self) -> None:
        with self._lock:
            self._scopes.clear()
            self.errors = 0

    def merge(self, usage: Usage) -> None:
        """Add what another counter saw (a Lambda worker process's, postern_local.worker)."""
        with self._lock:
            for label, s in usage.scopes.items():
                self._scopes[label].add(s)
            self.errors += usage.errors

    @contextmanager
    def measure(self):
        """``with counter.measure() as m: ...`` then ``m.usage`` is what the block cost."""
        box = _Measured()
        before = self.snapshot()
        try:
            yield box
        finally:
            box.usage = self.snapshot().minus(before)

    # --- hooks --------------------------------------------------------------
    def _on_params(self, params=None, model=None, context=None, **kwargs):
        if context is None:
            return
        context["postern_count"] = {
            "scope": self.current_scope(),
            "params": params,
            "t0": time.perf_counter(),
            "op": model.name if model is not None else "?",
            # Measured now: botocore later swaps an S3 Body for a file object it reads.
            "body_len": _body_len((params or {}).get("Body")) if isinstance(params, dict) else 0,
        }

    def _on_response(self, context=None, exception=None, response_dict=None, parsed_response=None, **kwargs):
        # One per HTTP attempt. An attempt that got no HTTP response (connection
        # error) never reached AWS and is not billed.
        info = (context or {}).get("postern_count")
        if info is None or response_dict is None:
            return
        event = kwargs.get("event_name", "")
        service = event.split(".")[1] if event.count(".") >= 2 else "?"
        with self._lock:
            s = self._scopes[info["scope"]]
            s.requests[f"{service}.{info['op']}"] += 1
            if service == "s3" and info["op"] not in S3_FREE:
                if info["op"] in S3_TIER1:
                    s.s3_tier1 += 1
                else:
                    s.s3_tier2 += 1
            if service == "sqs":
                s.sqs_chunks += self._sqs_chunks(info["op"], info["params"] or {}, parsed_response or {})

    def _on_after_call(self, http_response=None, parsed=None, model=None, context=None, **kwargs):
        info = (context or {}).get("postern_count")
        if info is None:
            return
        event = kwargs.get("event_name", "")
        service = event.split(".")[1] if event.count(".") >= 2 else "?"
        op = info["op"]
        try:
            status = getattr(http_response, "status_code", 0)
            code = (parsed or {}).get("Error", {}).get("Code", "")
            if status >= 300 and not (service == "dynamodb" and code in ("ConditionalCheckFailedException", "TransactionCanceledException")):
                wru = rru = 0.0
                written = 0
                estimated = 0
            elif service == "dynamodb":
                wru, rru, written, estimated = self._dynamodb_units(op, info["params"] or {}, parsed or {})
            else:
                wru = rru = 0.0
                written = estimated = 0
            put = got = 0
            if service == "s3" and status < 300:
                if op in ("PutObject", "UploadPart"):
                    put = info["body_len"]
                elif op == "GetObject":
                    got = int((parsed or {}).get("ContentLength") or 0)
        except Exception:  # bookkeeping must never break the call it watches
            with self._lock:
                self.errors += 1
            return
        with self._lock:
            s = self._scopes[info["scope"]]
            s.calls[f"{service}.{op}"] += 1
            s.ddb_wru += wru
            s.ddb_rru += rru
            s.ddb_bytes_written += written
            s.estimated += estimated
            s.s3_bytes_put += put
            s.s3_bytes_got += got
            s.latency += time.perf_counter() - info["t0"]

    # --- SQS ----------------------------------------------------------------
    @staticmethod
    def _sqs_chunks(op: str, params: dict, parsed: dict) -> int:
        # "Each 64 KB chunk of a payload is billed as 1 request" (SQS pricing).
        size = 0
        if op == "SendMessage":
            size = sqs_message_size(params.get("MessageBody", ""), params.get("MessageAttributes"))
        elif op == "SendMessageBatch":
            size = sum(sqs_message_size(e.get("MessageBody", ""), e.get("MessageAttributes"))
                       for e in params.get("Entries", []))
        elif op == "ReceiveMessage":
            size = sum(sqs_message_size(m.get("Body", ""), m.get("MessageAttributes"))
                       for m in parsed.get("Messages", []) or [])
        return max(1, math.ceil(size / SQS_CHUNK))

    # --- DynamoDB -----------------------------------------------------------
    def _probe(self):
        with self._probe_lock:
            if self._probe_client is None:
                import boto3

                from postern.aws import Clients

                # Same endpoint and region as the watched clients, no hooks.
                session = self._session or boto3.session.Session()
                self._probe_client = session.client("dynamodb", config=Clients().config)
            return self._probe_client

    def _gsi_keys(self, table: str) -> list[tuple[str, ...]]:
        if table in self._indexes:
            return self._indexes[table]
        keys: list[tuple[str, ...]] = []
        if self.probe:
            try:
                desc = self._probe().describe_table(TableName=table)["Table"]
                for gsi in desc.get("GlobalSecondaryIndexes", []) or []:
                    keys.append(tuple(k["AttributeName"] for k in gsi["KeySchema"]))
            except Exception:
                keys = []
        self._indexes[table] = keys
        return keys

    def _probe_item(self, table: str, key: dict) -> dict | None:
        if not self.probe:
            return None
        try:
            return self._probe().get_item(TableName=table, Key=key, ConsistentRead=True).get("Item")
        except Exception:
            return None

    def _write_units(self, table: str, old: dict | None, new: dict | None, key: dict | None,
                     changed_attrs: set[str] | None, factor: int) -> tuple[float, int, int]:
        """WRU of one item write (base table + GSIs), bytes written, 1 if estimated."""
        if new is None and old is None:
            return float(factor), 1024, 1  # unknown size: at least one unit
        size = max(item_size(old), item_size(new))
        units = _wru(size)
        for gsi in self._gsi_keys(table):
            in_old = old is not None and all(a in old for a in gsi)
            in_new = new is not None and all(a in new for a in gsi)
            key_changed = in_old and in_new and any(old.get(a) != new.get(a) for a in gsi)
            if key_changed:
                units += _wru(item_size(old)) + _wru(item_size(new))  # index delete + put
            elif in_old or in_new:
                if changed_attrs is None or changed_attrs - set(key or {}) or not (in_old and in_new):
                    units += _wru(size)
        return float(units * factor), size, 0

    def _dynamodb_units(self, op: str, p: dict, parsed: dict) -> tuple[float, float, int, int]:
        wru = rru = 0.0
        written = estimated = 0
        consistent = bool(p.get("ConsistentRead"))
        if op == "PutItem":
            table = p["TableName"]
            # A replaced item costs max(old, new); the old one is seen only with ALL_OLD.
            old = parsed.get("Attributes") if p.get("ReturnValues") == "ALL_OLD" else None
            w, size, est = self._write_units(table, old, p.get("Item"), None, None, 1)
            wru, written, estimated = w, size, est
        elif op == "UpdateItem":
            table, key = p["TableName"], p["Key"]
            new = parsed.get("Attributes") if p.get("ReturnValues") == "ALL_NEW" else None
            if new is None:
                new = self._probe_item(table, key)
            changed = _update_attrs(p)
            w, size, est = self._write_units(table, None, new, key, changed, 1)
            wru, written, estimated = w, size, est
        elif op == "DeleteItem":
            table, key = p["TableName"], p["Key"]
            old = parsed.get("Attributes") if p.get("ReturnValues") == "ALL_OLD" else None
            w, size, est = self._write_units(table, old, None, key, None, 1)
            if old is None:  # the item is gone now; a missing item still costs 1 WRU
                w, est = 1.0, 1 if self.probe is False else 0
            wru, written, estimated = w, size, est
        elif op == "GetItem":
            rru = _rru(item_size(parsed.get("Item")), consistent)
        elif op in ("Query", "Scan"):
            size = sum(item_size(i) for i in parsed.get("Items", []) or [])
            rru = _rru(size, consistent)
        elif op == "BatchGetItem":
            for table, items in (parsed.get("Responses") or {}).items():
                c = bool((p.get("RequestItems", {}).get(table) or {}).get("ConsistentRead"))
                rru += sum(_rru(item_size(i), c) for i in items)
        elif op == "BatchWriteItem":
            for table, reqs in (p.get("RequestItems") or {}).items():
                for r in reqs:
                    if "PutRequest" in r:
                        w, size, est = self._write_units(table, None, r["PutRequest"]["Item"], None, None, 1)
                    else:
                        w, size, est = 1.0, 0, 0
                    wru += w
                    written += size
                    estimated += est
        elif op == "TransactWriteItems":
            for action in p.get("TransactItems", []):
                (kind, a), = action.items()
                table = a["TableName"]
                if kind == "Put":
                    w, size, est = self._write_units(table, None, a["Item"], None, None, 2)
                elif kind == "Update":
                    w, size, est = self._write_units(table, None, self._probe_item(table, a["Key"]), a["Key"],
                                                     _update_attrs(a), 2)
                elif kind == "Delete":
                    w, size, est = 2.0, 0, 0
                else:  # ConditionCheck: a transactional read of the item
                    item = self._probe_item(table, a["Key"])
                    rru += 2 * _rru(item_size(item), True)
                    continue
                wru += w
                written += size
                estimated += est
        elif op == "TransactGetItems":
            for r in parsed.get("Responses", []) or []:
                rru += 2 * _rru(item_size(r.get("Item")), True)
        return wru, rru, written, estimated


class _Measured:
    usage: Usage | None = None


def sqs_message_size(body: str, attrs: dict | None) -> int:
    """The size SQS counts against MaximumMessageSize and bills in 64 KB chunks: the body's
    bytes plus each message attribute's name, data type and value (SQS Developer Guide,
    "Amazon SQS message attributes")."""
    return len((body or "").encode()) + _sqs_attr_size(attrs)


def _sqs_attr_size(attrs: dict | None) -> int:
    if not attrs:
        return 0
    size = 0
    for name, v in attrs.items():
        size += len(name.encode()) + len(v.get("DataType", "").encode())
        if "StringValue" in v:
            size += len(v["StringValue"].encode())
        if "BinaryValue" in v:
            size += _binary_len(v["BinaryValue"])
    return size


def _body_len(body) -> int:
    if body is None:
        return 0
    if isinstance(body, (bytes, bytearray, memoryview)):
        return len(body)
    if isinstance(body, str):
        return len(body.encode())
    try:
        pos = body.tell()
        body.seek(0, 2)
        end = body.tell()
        body.seek(pos)
        return end
    except Exception:
        return 0


def _update_attrs(p: dict) -> set[str] | None:
    """Attribute names an UpdateExpression touches (None if unknown)."""
    expr = p.get("UpdateExpression")
    if not expr:
        return None
    names = p.get("ExpressionAttributeNames") or {}
    out: set[str] = set()
    for tok in re.findall(r"(?<![:\w#])#?[A-Za-z_]\w*", expr):
        if tok.upper() in ("SET", "ADD", "REMOVE", "DELETE", "IF_NOT_EXISTS", "LIST_APPEND"):
            continue
        out.add(names.get(tok, tok))
    return out

