"""deliver - send remote mail and schedule its retries (Postfix smtp + deferred queue).

READS
    The outbound queue: one ``OutboundJob`` per (message, destination domain)
    from the router (authenticated submission, aliases forwarding out) and
    from the NDR function (reports to remote senders); batches of up to 5,
    ReportBatchItemFailures. ``ApproximateReceiveCount`` is the attempt
    number. The spool object in S3, the delivery log in the state table,
    the sender domain's DKIM key (Secrets Manager ``postern/dkim/<domain>``
    or SSM), DNS (mx transport).
WRITES
    The message to the transport chosen by POSTERN_OUTBOUND_TRANSPORT
    (``ses`` SESv2 SendEmail raw; ``smarthost``; ``mx`` direct), with
    DKIM-Signature and Received prepended as bytes; for a forward
    (postern.forwarding) an SRS envelope sender, with ``ses`` the From:
    rewrite, and an ARC set. Per-recipient state and
    one event per attempt in the delivery log. NoticeJobs to the NDR queue.
FAILURES
    Bounce at once on 5xx, null MX (5.1.10), NXDOMAIN and ``.invalid``
    (5.1.2). Defer 4xx, timeouts, refused connections and SERVFAIL: the
    deferred recipients leave as a new body on the outbound queue carrying
    the next attempt number and the time it is due per ``postern.retry``
    (1m, 5m, 15m, 30m, 1h, 2h, 4h, 8h, then every 12h), sent on in hops of
    at most 900 s DelaySeconds, so nothing waits in flight; a delay notice
    once after POSTERN_DELAY_NOTICE_AFTER, a failure notice after
    POSTERN_MAX_QUEUE_AGE. Recipients already final are never sent again; a
    body the delivery log no longer knows (dropped, finished, retried by
    hand) is dropped. Backend faults fail the record (queue visibility
    timeout, then DLQ after maxReceiveCount: only crashes count); a body
    that is not an OutboundJob is poison and reaches the DLQ. The ``mx``
    transport is refused unless POSTERN_OUTBOUND_VPC (the VPC option).
CODE
    postern.pipeline.deliver, postern.transports, postern.forwarding, postern.srs, postern.dkim,
    postern.deliverylog.
"""

from __future__ import annotations

from aws_lambda_powertools import Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from postern.aws import get_clients
from postern.config import get_settings
from postern.lambdalog import Logger
from postern.pipeline import deliver as pipeline

logger = Logger()
metrics = Metrics()
tracer = Tracer()
# Failures are reported per record even when every record of the batch failed (e.g. all poison):
# SQS then retries exactly those, as ReportBatchItemFailures does for a partial batch.
processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
_deliverer: pipeline.Deliverer | None = None


def deliverer() -> pipeline.Deliverer:
    """Built once per execution environment, and again if the process settings or
    clients were rebuilt (the local stack does that when it restarts)."""
    global _deliverer
    settings, clients = get_settings(), get_clients()
    if _deliverer is None or _deliverer.settings is not settings or _deliverer.clients is not clients:
        _deliverer = pipeline.Deliverer(settings, clients)
    return _deliverer


@tracer.capture_method
def attempt(record: SQSRecord) -> pipeline.Outcome:
    outcome = pipeline.handle_record(record.raw_event, deliverer())
    job = outcome.job
    if outcome.hop is not None or outcome.stale:
        logger.debug("outbound hop", queue_id=job.queue_id, domain=job.domain, attempt=job.attempt,
                     delay=outcome.hop, stale=outcome.stale)
        return outcome
    logger.info("outbound attempt", queue_id=job.queue_id, domain=job.domain, attempt=outcome.attempt,
                delivered=outcome.delivered, failed=outcome.failed, deferred=outcome.deferred,
                skipped=outcome.skipped, responses=[r.response for r in outcome.results],
                retry_in=outcome.retry_delay)
    for name, items in (("Delivered", outcome.delivered), ("Bounced", outcome.failed), ("Deferred", outcome.deferred)):
        if items:
            metrics.add_metric(name=name, unit=MetricUnit.Count, value=len(items))
    return outcome


def record_handler(record: SQSRecord) -> None:
    attempt(record)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event, context):
    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
