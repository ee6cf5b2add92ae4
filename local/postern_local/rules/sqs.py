"""SQS limits that moto does not enforce (or enforces differently).

In:   SQS calls (JSON protocol, what boto3 speaks) before they reach moto, and
      the responses of ReceiveMessage/DeleteMessage after.
Out:  :class:`SqsRules`: ``before(call)`` raises :class:`~postern_local.rules.wire.AwsError`
      for a call AWS would refuse, or returns a :class:`~postern_local.rules.Rewrite`
      that drops the refused entries of a batch (reported back as ``Failed``
      entries, as SQS reports per-entry errors); ``after(call, response)``
      keeps the receive-time ledger.
Fails: only as AWS would: InvalidParameterValue, InvalidAttributeValue,
      BatchRequestTooLong, with AWS's wording.

The rules (SQS API Reference; the same text ships in botocore's service model):
  * Visibility timeout at most 12 hours (43,200 s), counted from the
    **receive**: ``ChangeMessageVisibility`` may extend a message's timeout
    only up to 12 h after the ReceiveMessage that returned its receipt
    handle; asking for more than the time left is an error, SQS does not
    cap it ("If you try to extend the visibility timeout beyond the maximum,
    your request is rejected"). moto counts from the *send* instead and
    checks only the value in the batch form.
  * A message (body plus message attributes, in bytes) at most the queue's
    ``MaximumMessageSize`` (1,024 to 1,048,576 bytes; default 1 MiB); a
    ``SendMessageBatch`` at most 1 MiB in total. moto compares the body's
    *characters* only, without the attributes.
  * ``DelaySeconds`` 0 to 900 per message and per queue; queue attributes
    in their documented ranges (VisibilityTimeout 0-43,200,
    MessageRetentionPeriod 60-1,209,600, ReceiveMessageWaitTimeSeconds 0-20).
  * ReceiveMessage: VisibilityTimeout 0-43,200, WaitTimeSeconds 0-20,
    MaxNumberOfMessages 1-10.
The ledger of receive times is bounded (:data:`LEDGER_MAX` entries, entries
older than 12 h dropped): a receipt handle it no longer knows is passed to
moto unchecked.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from ..requests import sqs_message_size
from .upstream import Upstream
from .wire import AwsError, Call

MAX_VISIBILITY = 43_200
MAX_DELAY = 900
MAX_MESSAGE = 1_048_576  # the ceiling of MaximumMessageSize, and of a whole batch
DEFAULT_MAX_MESSAGE = 1_048_576
LEDGER_MAX = 200_000

QUEUE_ATTRIBUTE_RANGES = {
    "DelaySeconds": (0, MAX_DELAY),
    "VisibilityTimeout": (0, MAX_VISIBILITY),
    "MaximumMessageSize": (1024, MAX_MESSAGE),
    "MessageRetentionPeriod": (60, 1_209_600),
    "ReceiveMessageWaitTimeSeconds": (0, 20),
}


def sqs_clock() -> float:
    """moto's SQS clock (seconds): the receive-time ledger follows the same time as moto's message
    timers, including a test's ``postern_local.timetravel`` clock."""
    import moto.sqs.models

    return moto.sqs.models.unix_time_millis() / 1000.0


class SqsRules:
    def __init__(self, upstream: Upstream, clock=sqs_clock):
        self.upstream = upstream
        self.clock = clock
        self._ledger: OrderedDict[str, float] = OrderedDict()
        self._max_size: dict[str, int] = {}
        self._lock = threading.Lock()

    # --- before -------------------------------------------------------------
    def before(self, call: Call):
        if call.protocol != "json":
            return None
        p = call.params
        op = call.operation
        if op == "SendMessage":
            self._check_delay(p.get("DelaySeconds"))
            self._check_size(p, self.max_size(p.get("QueueUrl", "")))
        elif op == "SendMessageBatch":
            return self._send_batch(p)
        elif op == "ReceiveMessage":
            _range("VisibilityTimeout", p.get("VisibilityTimeout"), 0, MAX_VISIBILITY)
            _range("WaitTimeSeconds", p.get("WaitTimeSeconds"), 0, 20)
            _range("MaxNumberOfMessages", p.get("MaxNumberOfMessages"), 1, 10)
        elif op == "ChangeMessageVisibility":
            self._check_visibility(p.get("ReceiptHandle", ""), p.get("VisibilityTimeout"))
        elif op == "ChangeMessageVisibilityBatch":
            return self._visibility_batch(p)
        elif op in ("CreateQueue", "SetQueueAttributes"):
            for name, (lo, hi) in QUEUE_ATTRIBUTE_RANGES.items():
                value = (p.get("Attributes") or {}).get(name)
                if value is not None and not _within(value, lo, hi):
                    raise AwsError("InvalidAttributeValue", f"Invalid value for the parameter {name}.")
            with self._lock:
                self._max_size.pop(_queue_key(p.get("QueueUrl") or p.get("QueueName", "")), None)
        return None

    def _check_delay(self, delay) -> None:
        if delay is not None and not _within(delay, 0, MAX_DELAY):
            raise AwsError("InvalidParameterValue", f"Value {delay} for parameter DelaySeconds is invalid. "
                                                    f"Reason: DelaySeconds must be >= 0 and <= {MAX_DELAY}.")

    @staticmethod
    def _check_size(entry: dict, limit: int) -> None:
        if sqs_message_size(entry.get("MessageBody", ""), entry.get("MessageAttributes")) > limit:
            raise AwsError("InvalidParameterValue", "One or more parameters are invalid. "
                                                    f"Reason: Message must be shorter than {limit} bytes.")

    def _send_batch(self, p: dict):
        from . import Rewrite

        entries = p.get("Entries") or []
        total = sum(sqs_message_size(e.get("MessageBody", ""), e.get("MessageAttributes")) for e in entries)
        if total > MAX_MESSAGE:
            raise AwsError("BatchRequestTooLong", f"Batch requests cannot be longer than {MAX_MESSAGE} bytes. "
                                                  f"You have sent {total} bytes.")
        limit = self.max_size(p.get("QueueUrl", ""))
        keep, failed = [], []
        for e in entries:
            try:
                self._check_delay(e.get("DelaySeconds"))
                self._check_size(e, limit)
            except AwsError as err:
                failed.append({"Id": e.get("Id"), "SenderFault": True, "Code": err.code, "Message": err.message})
            else:
                keep.append(e)
        return Rewrite({**p, "Entries": keep}, failed) if failed else None

    def _check_visibility(self, receipt: str, timeout) -> None:
        _range("VisibilityTimeout", timeout, 0, MAX_VISIBILITY)
        with self._lock:
            received = self._ledger.get(receipt)
        if received is None or timeout is None:
            return
        elapsed = int(self.clock() - received)
        if elapsed + int(timeout) > MAX_VISIBILITY:
            # The wording SQS (and moto) use; the limit counts from the receive.
            raise AwsError("InvalidParameterValue",
                           f"Value {timeout} for parameter VisibilityTimeout is invalid. Reason: Total "
                           f"VisibilityTimeout for the message is beyond the limit [{MAX_VISIBILITY} seconds]")

    def _visibility_batch(self, p: dict):
        from . import Rewrite

        keep, failed = [], []
        for e in p.get("Entries") or []:
            try:
                self._check_visibility(e.get("ReceiptHandle", ""), e.get("VisibilityTimeout"))
            except AwsError as err:
                failed.append({"Id": e.get("Id"), "SenderFault": True, "Code": err.code, "Message": err.message})
            else:
                keep.append(e)
        return Rewrite({**p, "Entries": keep}, failed) if failed else None

    def max_size(self, queue_url: str) -> int:
        key = _queue_key(queue_url)
        with self._lock:
            if key in self._max_size:
                return self._max_size[key]
        status, body = self.upstream.json("sqs", "AmazonSQS.GetQueueAttributes",
                                          {"QueueUrl": queue_url, "AttributeNames": ["MaximumMessageSize"]})
        size = DEFAULT_MAX_MESSAGE
        if status == 200:
            try:
                size = int(body.get("Attributes", {}).get("MaximumMessageSize", DEFAULT_MAX_MESSAGE))
            except ValueError:
                pass
            with self._lock:
                self._max_size[key] = size
        return size

    # --- after --------------------------------------------------------------
    def wants_response(self, call: Call) -> bool:
        return call.protocol == "json" and call.operation == "ReceiveMessage"

    def after(self, call: Call, status: int, response: dict | None) -> None:
        if status != 200 or call.protocol != "json":
            return
        op = call.operation
        if op == "ReceiveMessage" and response:
            now = self.clock()
            with self._lock:
                for m in response.get("Messages") or []:
                    self._ledger[m["ReceiptHandle"]] = now
                self._prune(now)
        elif op == "DeleteMessage":
            with self._lock:
                self._ledger.pop(call.params.get("ReceiptHandle", ""), None)
        elif op == "DeleteMessageBatch":
            with self._lock:
                for e in call.params.get("Entries") or []:
                    self._ledger.pop(e.get("ReceiptHandle", ""), None)

    def _prune(self, now: float) -> None:
        while self._ledger and (len(self._ledger) > LEDGER_MAX
                                or now - next(iter(self._ledger.values())) > MAX_VISIBILITY):
            self._ledger.popitem(last=False)

    @property
    def ledger_size(self) -> int:
        with self._lock:
            return len(self._ledger)


def _queue_key(url_or_name: str) -> str:
    return str(url_or_name).rstrip("/").rsplit("/", 1)[-1]


def _within(value, lo: int, hi: int) -> bool:
    try:
        v = int(value)
    except (TypeError, ValueError):
        return False
    return lo <= v <= hi


def _range(name: str, value, lo: int, hi: int) -> None:
    if value is not None and not _within(value, lo, hi):
        raise AwsError("InvalidParameterValue", f"Value {value} for parameter {name} is invalid. "
                                                f"Reason: Must be between {lo} and {hi}.")
