"""In-memory twins of the two AWS calls the spooler makes (as MemoryMailStore is the store's).

In:   the boto3 call shapes ``s3.put_object/get_object/delete_object`` and
      ``sqs.send_message`` that :class:`~postern_gateway.smtp.spool.Spooler` uses.
Out:  :class:`MemoryClients` with ``.s3`` and ``.sqs`` recording what was written
      (``objects``: key -> bytes, ``messages``: bodies). ``latency`` sleeps that
      many seconds per call (the benchmark's fixed-latency fake); ``fail_s3`` /
      ``fail_sqs`` make that service refuse every call with a ``ClientError``,
      as AWS does when it answers with an error.
Fails: only as configured.

Used by the protocol tests and ``bench/smtp_ingest.py``; production code never
builds one.
"""

from __future__ import annotations

import threading
import time

from botocore.exceptions import ClientError


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
