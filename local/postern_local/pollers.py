"""SQS pollers: Lambda's event source mapping, played locally.

In:   the functions loaded from template.yaml (:mod:`postern_local.lambdas`),
      the local queue URLs/ARNs, an SQS client.
Out:  :class:`Poller` per (function, SQS event source): ``poll_once()``
      receives up to BatchSize messages (AttributeNames=All,
      MessageAttributeNames=All), builds the event Lambda would build
      (``Records`` with messageId, receiptHandle, body, attributes,
      messageAttributes, md5OfBody, eventSource ``aws:sqs``, eventSourceARN,
      awsRegion), calls the real handler and deletes every record not named
      in ``batchItemFailures``. :class:`Pollers` runs them on background
      threads (``make run``; ``concurrency`` threads per SQS poller, as
      Lambda runs several batches of a queue at once) or pumps them
      synchronously with ``drain()`` until every queue is empty (what
      end-to-end tests use).
Fails: a handler that raises deletes nothing (Lambda's behaviour: the whole
      batch returns to the queue). Failed records stay in the queue; with a
      ``failure_visibility`` (seconds) they become visible again that soon
      instead of after the queue's visibility timeout, so retries and the
      DLQ redrive (moto applies the queue's RedrivePolicy on receive, after
      maxReceiveCount receives, as SQS does) happen quickly in local mode.
      An invocation that timed out (:class:`postern_local.worker.HandlerTimeout`)
      is not shortened: its batch returns after the queue's visibility timeout,
      as on Lambda.

The local stack's handlers run in their own worker processes
(:mod:`postern_local.worker`), so invocations of different functions run in
parallel and share no state, as Lambda execution environments do.
"""

from __future__ import annotations

import base64
import logging
import threading
import time
from dataclasses import dataclass

from .lambdas import LocalFunction, SqsSource

log = logging.getLogger("postern.local")

def _message_attributes(attrs: dict) -> dict:
    """SQS API MessageAttributes -> Lambda event messageAttributes (camelCase, binary base64)."""
    out = {}
    for name, a in (attrs or {}).items():
        v = {"stringListValues": [], "binaryListValues": [], "dataType": a.get("DataType", "String")}
        if "StringValue" in a:
            v["stringValue"] = a["StringValue"]
        if "BinaryValue" in a:
            raw = a["BinaryValue"]
            v["binaryValue"] = base64.b64encode(raw if isinstance(raw, bytes) else bytes(raw)).decode()
        out[name] = v
    return out


def sqs_event(messages: list[dict], queue_arn: str, region: str) -> dict:
    """Lambda's SQS event for received messages (AWS docs: "Using Lambda with Amazon SQS", example event)."""
    records = []
    for m in messages:
        attrs = m.get("Attributes", {})
        records.append({
            "messageId": m["MessageId"],
            "receiptHandle": m["ReceiptHandle"],
            "body": m.get("Body", ""),
            "attributes": {
                "ApproximateReceiveCount": attrs.get("ApproximateReceiveCount", "1"),
                "SentTimestamp": attrs.get("SentTimestamp", str(int(time.time() * 1000))),
                "SenderId": attrs.get("SenderId", "AIDAIENQZJOLO23YVJ4VO"),
                "ApproximateFirstReceiveTimestamp": attrs.get(
                    "ApproximateFirstReceiveTimestamp", str(int(time.time() * 1000))),
                **{k: v for k, v in attrs.items() if k in ("MessageGroupId", "MessageDeduplicationId",
                                                           "SequenceNumber", "AWSTraceHeader")},
            },
            "messageAttributes": _message_attributes(m.get("MessageAttributes", {})),
            "md5OfBody": m.get("MD5OfBody", ""),
            "eventSource": "aws:sqs",
            "eventSourceARN": queue_arn,
            "awsRegion": region,
        })
    return {"Records": records}


@dataclass
class Poller:
    function: LocalFunction
    source: SqsSource
    queue_url: str
    queue_arn: str
    sqs: object  # boto3 SQS client: the event source mapping's (the function's role)
    region: str = "us-east-1"
    failure_visibility: int | None = None
    local_sqs: object | None = None  # for the failure_visibility shortcut, which AWS does not take (administrator)

    @property
    def name(self) -> str:
        return f"{self.function.logical_id}<-{self.source.queue}"

    def poll_once(self, wait: int = 0) -> int:
        """One receive + invoke + delete. Returns the number of messages received."""
        r = self.sqs.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=max(1, min(10, self.source.batch_size)),
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
            WaitTimeSeconds=wait,
        )
        messages = r.get("Messages", [])
        if not messages:
            return 0
        event = sqs_event(messages, self.queue_arn, self.region)
        by_id = {m["MessageId"]: m for m in messages}
        timed_out = False
        try:
            response = self.function.handler(event, self.function.context(self.region))
        except Exception as exc:
            kind = getattr(exc, "type_name", exc.__class__.__name__)
            timed_out = kind == "Sandbox.Timedout"
            if kind == "BatchProcessingError":  # Powertools: every record failed
                log.warning("%s: all %d records failed (%s); they return to the queue", self.name, len(messages),
                            (str(exc).splitlines() or [""])[0])
            elif timed_out:
                log.warning("%s: %s; the batch of %d returns after the queue's visibility timeout", self.name, exc,
                            len(messages))
            else:
                log.error("%s: handler raised %s: %s; the batch of %d returns to the queue", self.name, kind, exc,
                          len(messages), exc_info=not hasattr(exc, "type_name"))
                if getattr(exc, "trace", ""):
                    log.error("%s", exc.trace)
            failed = set(by_id)
        else:
            failed = set()
            if self.source.report_failures and isinstance(response, dict):
                failed = {f.get("itemIdentifier") for f in response.get("batchItemFailures", [])}
                # Lambda treats an unknown or empty itemIdentifier as a failure of the whole batch.
                if failed - set(by_id):
                    failed = set(by_id)
        done = [m for mid, m in by_id.items() if mid not in failed]
        if done:
            self.sqs.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(done)],
            )
        if failed and self.failure_visibility is not None and not timed_out:
            (self.local_sqs or self.sqs).change_message_visibility_batch(
                QueueUrl=self.queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": by_id[mid]["ReceiptHandle"],
                          "VisibilityTimeout": int(self.failure_visibility)}
                         for i, mid in enumerate(sorted(failed))],
            )
        return len(messages)


class DrainTimeout(RuntimeError):
    """The queues did not empty within ``max_rounds``."""


class Pollers:
    """All pollers of a stack: background threads (``start``) or synchronous ``drain``.

    Use one or the other: ``drain`` decides the queues are empty when a whole
    round receives nothing, which a background thread holding messages in
    flight would make untrue."""

    def __init__(self, pollers: list[Poller], concurrency: int = 1):
        self.pollers = pollers
        # Background threads per SQS poller: Lambda's event source mapping runs several batches of a
        # queue at once (each in its own execution environment: RemoteHandler's workers); a stream
        # shard is read by one poller, in order.
        self.concurrency = max(1, concurrency)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    @property
    def running(self) -> bool:
        return bool(self._threads)

    def drain(self, max_rounds: int = 50) -> int:
        """Poll every queue until a whole round receives nothing. Returns messages handled."""
        if self.running:
            raise RuntimeError("drain() with the background pollers running: stop them first")
        total = 0
        for _ in range(max_rounds):
            n = sum(p.poll_once(wait=0) for p in self.pollers)
            total += n
            if n == 0:
                return total
        raise DrainTimeout(f"queues still busy after {max_rounds} rounds ({total} messages handled)")

    def start(self, wait: int = 1) -> None:
        self._stop.clear()
        for p in self.pollers:
            for i in range(self.concurrency if isinstance(p, Poller) else 1):
                t = threading.Thread(target=self._run, args=(p, wait), name=f"poller-{p.name}-{i}", daemon=True)
                t.start()
                self._threads.append(t)

    def _run(self, p: Poller, wait: int) -> None:
        while not self._stop.is_set():
            try:
                p.poll_once(wait=wait)  # long poll: returns as soon as a message arrives
            except Exception:  # the endpoint went away during shutdown, or a transient fault
                if self._stop.is_set():
                    return
                log.exception("%s: poll failed", p.name)
                self._stop.wait(1.0)

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=35)
        self._threads.clear()
