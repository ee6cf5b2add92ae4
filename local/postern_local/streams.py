"""DynamoDB stream pollers: Lambda's stream event source mapping, played locally.

In:   a function loaded from template.yaml with a ``Type: DynamoDB`` event source
      (:class:`postern_local.lambdas.StreamSource`), the table's stream ARN on the
      local endpoint (moto implements DynamoDB Streams: DescribeStream,
      GetShardIterator, GetRecords) and a ``dynamodbstreams`` client.
Out:  :class:`StreamPoller`: reads every shard from LATEST (the template's
      StartingPosition) as of its creation; ``poll_once()`` reads what is new, keeps
      the records the source's FilterCriteria match (Lambda event filtering: exact
      values and ``prefix``), and calls the real handler with Lambda's DynamoDB event
      (``Records`` with eventID, eventName, eventVersion, eventSource ``aws:dynamodb``,
      awsRegion, ``dynamodb`` {ApproximateCreationDateTime, Keys, NewImage,
      SequenceNumber, SizeBytes, StreamViewType}, eventSourceARN). Records are handed
      in order, at most BatchSize at a time.
Fails: a handler that raises, or names records in ``batchItemFailures``, gets the
      batch again from the first failed sequence number on the next poll (as Lambda
      does with ReportBatchItemFailures), up to ``max_retries`` times; then the batch
      is dropped with a warning and, when ``dlq_url`` is set, its description is sent
      to that queue (the on-failure destination). A stream read that fails is
      retried on the next poll.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime

from .lambdas import LocalFunction, StreamSource

log = logging.getLogger("postern.local")


def matches(pattern, value) -> bool:
    """Does ``value`` match an event-filtering pattern (the subset the template uses:
    nested objects, lists of exact values, ``{"prefix": ...}``)."""
    if isinstance(pattern, dict):
        if not isinstance(value, dict):
            return False
        return all(matches(p, value.get(k)) for k, p in pattern.items())
    if isinstance(pattern, list):
        for alt in pattern:
            if isinstance(alt, dict) and "prefix" in alt:
                if isinstance(value, str) and value.startswith(alt["prefix"]):
                    return True
            elif value == alt:
                return True
        return False
    return pattern == value


def lambda_record(r: dict, stream_arn: str, region: str) -> dict:
    """GetRecords' record -> the record of Lambda's DynamoDB event."""
    ddb = dict(r.get("dynamodb") or {})
    t = ddb.get("ApproximateCreationDateTime")
    if isinstance(t, datetime):
        ddb["ApproximateCreationDateTime"] = int(t.timestamp())
    return {"eventID": r.get("eventID", ""), "eventName": r.get("eventName", ""), "eventVersion": "1.1",
            "eventSource": "aws:dynamodb", "awsRegion": region, "dynamodb": ddb, "eventSourceARN": stream_arn}


@dataclass
class StreamPoller:
    function: LocalFunction
    source: StreamSource
    stream_arn: str
    streams: object  # boto3 dynamodbstreams client
    region: str = "us-east-1"
    max_retries: int = 5
    dlq_url: str = ""
    sqs: object | None = None  # for dlq_url
    _iterators: dict = field(default_factory=dict)  # shard id -> iterator
    _pending: list = field(default_factory=list)  # Lambda-shaped records read, not yet handled
    _attempts: int = 0

    def __post_init__(self) -> None:
        self._open("LATEST")

    @property
    def name(self) -> str:
        return f"{self.function.logical_id}<-{self.source.table} stream"

    def _open(self, position: str) -> None:
        shards = self.streams.describe_stream(StreamArn=self.stream_arn)["StreamDescription"].get("Shards", [])
        for shard in shards:
            if shard["ShardId"] not in self._iterators:
                self._iterators[shard["ShardId"]] = self.streams.get_shard_iterator(
                    StreamArn=self.stream_arn, ShardId=shard["ShardId"], ShardIteratorType=position)["ShardIterator"]

    def _read(self) -> None:
        for shard, it in list(self._iterators.items()):
            if it is None:
                continue
            r = self.streams.get_records(ShardIterator=it, Limit=1000)
            self._iterators[shard] = r.get("NextShardIterator")
            for rec in r.get("Records", []):
                lr = lambda_record(rec, self.stream_arn, self.region)
                if not self.source.filters or any(matches(f, lr) for f in self.source.filters):
                    self._pending.append(lr)

    def poll_once(self, wait: int = 0) -> int:
        """Read the stream, hand one batch to the handler. Returns the records handed. ``wait``
        (background pollers): nothing new sleeps a tenth of a second (Lambda reads a shard
        about four times a second)."""
        self._read()
        batch = self._pending[: max(1, self.source.batch_size)]
        if not batch:
            if wait:
                time.sleep(0.1)
            return 0
        try:
            response = self.function.handler({"Records": batch}, self.function.context(self.region))
        except Exception as exc:  # noqa: BLE001 - the whole batch is retried
            log.warning("%s: handler raised %s: %s; the batch of %d is retried", self.name,
                        getattr(exc, "type_name", exc.__class__.__name__), exc, len(batch))
            return self._retry(batch, 0)
        failed = []
        if self.source.report_failures and isinstance(response, dict):
            failed = [f.get("itemIdentifier") for f in response.get("batchItemFailures", [])]
        if not failed:
            del self._pending[: len(batch)]
            self._attempts = 0
            return len(batch)
        seqs = [r["dynamodb"].get("SequenceNumber") for r in batch]
        start = min((seqs.index(s) for s in failed if s in seqs), default=0)  # unknown id: the whole batch
        del self._pending[:start]
        return self._retry(batch[start:], len(batch))

    def _retry(self, rest: list, handled: int) -> int:
        self._attempts += 1
        if self._attempts > self.max_retries:
            log.warning("%s: %d records failed %d times, dropped (on-failure destination)", self.name, len(rest),
                        self._attempts)
            if self.dlq_url and self.sqs is not None:
                first, last = rest[0]["dynamodb"], rest[-1]["dynamodb"]
                self.sqs.send_message(QueueUrl=self.dlq_url, MessageBody=json.dumps({"DDBStreamBatchInfo": {
                    "streamArn": self.stream_arn, "batchSize": len(rest),
                    "startSequenceNumber": first.get("SequenceNumber"),
                    "endSequenceNumber": last.get("SequenceNumber")}}))
            del self._pending[: len(rest)]
            self._attempts = 0
        return max(handled, len(rest))
