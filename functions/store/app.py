"""store - append delivered mail to local mailboxes (Postfix virtual).

READS
    The store queue: one ``StoreJob`` per (message, local mailbox) from the
    router (SQS batches of up to 10, ReportBatchItemFailures). The spool
    object in S3 (GetObject) and the mail table; the Sieve script and
    managed rules of every recipient of the batch in one BatchGetItem.
WRITES
    One message through the one ingest path (``postern.mailboxes.append`` ->
    ``MailStore.append``): a change record in the account's change log (one
    conditional PutItem: UID, modseq, dedup key), then the index entry, the
    blob reference, the dedup marker, the email-id index, the thread id (a
    reply's), the mailbox counters and the account's quota usage; the spool
    object itself is the recipient's immutable mailbox blob (no copy). The trace prefix Return-Path / Delivered-To /
    the gateway's Received lines goes before the original bytes. The NDR queue: a
    ``NoticeJob(kind="failed")``, status 5.2.2, when the mailbox is over quota.
FAILURES
    Bounce when the mailbox is over quota (permanent: the record is done).
    Defer everything else: a backend fault fails the record and SQS
    redelivers it; a retried job never creates a second copy (dedup key
    ``queue_id#user#mailbox``). A body that is not a StoreJob is poison and
    reaches the store DLQ after maxReceiveCount receives.
    A Sieve script that fails at run time never loses mail: the message is
    kept in INBOX and the failure logged.
CODE
    postern.pipeline.store (the logic), postern.store.dynamo (the store),
    postern.sieve (the scripts).
"""

from __future__ import annotations

import contextlib

from aws_lambda_powertools import Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from postern.aws import get_clients
from postern.config import get_settings
from postern.lambdalog import Logger
from postern.envelope import StoreJob
from postern.pipeline import store as pipeline
from postern.pipeline.queues import send_bodies
from postern.sieve import delivery as sieve_delivery
from postern.store.dynamo import DynamoMailStore

logger = Logger()
metrics = Metrics()
tracer = Tracer()
processor = BatchProcessor(event_type=EventType.SQS)
_sieve: dict = {}  # built once per warm container (and settings); compiled scripts are cached inside


def sieve(settings, clients):
    if _sieve.get("for") != (id(settings), id(clients)):
        _sieve.update({"for": (id(settings), id(clients)), "sieve": sieve_delivery.from_settings(settings, clients)})
    return _sieve["sieve"]


_stores: dict = {}


def _store(settings, clients) -> DynamoMailStore:
    """One store per warm process (it remembers mailbox ids between invocations)."""
    key = (id(settings), id(clients))
    if key not in _stores:
        _stores.clear()
        _stores[key] = DynamoMailStore(settings, clients)
    return _stores[key]


@tracer.capture_method
def record_handler(record: SQSRecord) -> None:
    job = StoreJob.from_json(record.body)
    settings, clients = get_settings(), get_clients()
    outcome = pipeline.deliver(job, _store(settings, clients), settings.default_quota, sieve(settings, clients))
    filed = outcome.filed
    if filed is not None:
        if filed.error:
            logger.warning("sieve failed: message kept", queue_id=job.queue_id, user=job.user, error=filed.error)
            metrics.add_metric(name="SieveErrors", unit=MetricUnit.Count, value=1)
        if filed.notes:
            logger.info("sieve", queue_id=job.queue_id, user=job.user, notes=filed.notes, stored=filed.stored)
        if not filed.results and outcome.notice is None:
            logger.info("discarded by sieve", queue_id=job.queue_id, user=job.user)
            metrics.add_metric(name="Discarded", unit=MetricUnit.Count, value=1)
            return
    if outcome.notice is not None:
        send_bodies(clients.sqs, settings.ndr_queue_url, [outcome.notice.to_json()])
        logger.info("over quota", queue_id=job.queue_id, user=job.user)
        metrics.add_metric(name="OverQuota", unit=MetricUnit.Count, value=1)
        return
    if outcome.result is None:  # over quota, null sender: nothing to tell anyone
        metrics.add_metric(name="OverQuota", unit=MetricUnit.Count, value=1)
        return
    logger.info(
        "stored",
        queue_id=job.queue_id,
        user=job.user,
        mailbox=filed.stored if filed is not None else job.mailbox,
        uid=outcome.result.uid,
        duplicate=outcome.result.duplicate,
    )
    metrics.add_metric(name="Duplicates" if outcome.result.duplicate else "Stored", unit=MetricUnit.Count, value=1)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event, context):
    records = event.get("Records", [])
    metrics.add_metric(name="Records", unit=MetricUnit.Count, value=len(records))
    sv = sieve(get_settings(), get_clients())
    # The batch's Sieve items in one read, not one per record (SieveDelivery.batch).
    # Partial failures are reported per record; if every record fails, Powertools raises
    # BatchProcessingError and Lambda returns the whole batch to the queue.
    with sv.batch(_users(records)) if sv is not None else contextlib.nullcontext():
        return process_partial_response(event=event, record_handler=record_handler, processor=processor,
                                        context=context)


def _users(records: list[dict]) -> list[str]:
    """The recipients of a batch's store jobs (a body that is not one is left to its record's handler)."""
    out = []
    for r in records:
        try:
            out.append(StoreJob.from_json(r.get("body", "")).user)
        except Exception:  # noqa: BLE001 - poison: record_handler fails it, as before
            continue
    return out
