"""Test doubles for the two seams production reaches through: AWS calls of the spooler, and DNS.

Not shipped: these lived in the gateway package (``smtp/memspool.py``, ``trust/dns.py``) until
issue 10; production never built one. Import them as ``from fakes import ...`` (pytest puts
``tests/`` on ``sys.path`` for its conftest).

:class:`MemoryClients`: in-memory twins of the boto3 calls the spooler makes
(``s3.put_object/get_object/delete_object``, ``sqs.send_message``), recording what was written
(``objects``: key -> bytes, ``metadata``, ``messages``: bodies, ``calls``). ``latency`` sleeps that
many seconds per call; ``fail_s3`` / ``fail_sqs`` make that service refuse every call with a
``ClientError``, as AWS does when it answers with an error.

:class:`FakeResolver`: the trust checks' DNS seam (:class:`postern_gateway.trust.dns.DnsResolver`)
answered from a table: names map to per-type answers or to an exception; unknown names answer
``[]`` (NXDOMAIN); ``queries`` logs every question asked.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping

from botocore.exceptions import ClientError

from postern_gateway.trust.dns import DnsTempError


def _norm(name: str) -> str:
    return name.rstrip(".").lower()


def _error(op: str) -> ClientError:
    return ClientError({"Error": {"Code": "ServiceUnavailable", "Message": "injected failure"}}, op)


class _S3:
    def __init__(self, owner: MemoryClients):
        self._o = owner

    def put_object(self, *, Bucket, Key, Body, **kw):
        self._o._call("PutObject", self._o.fail_s3)
        with self._o.lock:
            self._o.objects[Key] = bytes(Body)
            self._o.metadata[Key] = dict(kw.get("Metadata", {}))
        return {"ETag": '"x"'}

    def get_object(self, *, Bucket, Key, **kw):
        self._o._call("GetObject", self._o.fail_s3)
        with self._o.lock:
            return {"Body": self._o.objects[Key]}

    def delete_object(self, *, Bucket, Key, **kw):
        self._o._call("DeleteObject", self._o.fail_s3)
        with self._o.lock:
            self._o.objects.pop(Key, None)
        return {}


class _SQS:
    def __init__(self, owner: MemoryClients):
        self._o = owner

    def send_message(self, *, QueueUrl, MessageBody, **kw):
        self._o._call("SendMessage", self._o.fail_sqs)
        with self._o.lock:
            self._o.messages.append(MessageBody)
            return {"MessageId": str(len(self._o.messages))}


class MemoryClients:
    def __init__(self, *, latency: float = 0.0, fail_s3: bool = False, fail_sqs: bool = False):
        self.latency = latency
        self.fail_s3 = fail_s3
        self.fail_sqs = fail_sqs
        self.lock = threading.Lock()
        self.objects: dict[str, bytes] = {}
        self.metadata: dict[str, dict] = {}
        self.messages: list[str] = []
        self.calls: list[str] = []
        self.s3 = _S3(self)
        self.sqs = _SQS(self)

    def _call(self, op: str, fail: bool) -> None:
        with self.lock:
            self.calls.append(op)
        if self.latency:
            time.sleep(self.latency)
        if fail:
            raise _error(op)


class FakeResolver:
    """Answers from a table, for tests (and for a stack with no DNS at all).

    ``records`` maps a name to either an exception instance/class (every type
    fails with it) or a mapping ``{rdtype: answers | exception}``. TXT answers
    may be given as ``str`` or ``bytes``. Unknown names answer ``[]`` (NXDOMAIN).
    ``queries`` records every (name, rdtype) asked, in order.
    """

    def __init__(self, records: Mapping[str, object] | None = None):
        self.records: dict[str, object] = {}
        self.queries: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        for name, value in (records or {}).items():
            self.records[_norm(name)] = value

    def add(self, name: str, rdtype: str, *answers) -> None:
        with self._lock:
            entry = self.records.setdefault(_norm(name), {})
            if not isinstance(entry, dict):
                entry = self.records[_norm(name)] = {}
            entry.setdefault(rdtype, []).extend(answers)

    def fail(self, name: str, rdtype: str | None = None, exc: Exception | None = None) -> None:
        exc = exc or DnsTempError(f"SERVFAIL {name}")
        with self._lock:
            if rdtype is None:
                self.records[_norm(name)] = exc
            else:
                entry = self.records.setdefault(_norm(name), {})
                entry[rdtype] = exc

    def lookup(self, name: str, rdtype: str) -> list:
        key = _norm(name)
        with self._lock:
            self.queries.append((key, rdtype))
            entry = self.records.get(key)
        if entry is None:
            return []
        if isinstance(entry, BaseException) or (isinstance(entry, type) and issubclass(entry, BaseException)):
            raise entry
        answers = entry.get(rdtype, [])
        if isinstance(answers, BaseException) or (isinstance(answers, type) and issubclass(answers, BaseException)):
            raise answers
        if rdtype == "TXT":
            return [a.encode() if isinstance(a, str) else bytes(a) for a in answers]
        if rdtype == "MX":
            return [(int(p), _norm(h)) for p, h in answers]
        return list(answers)
