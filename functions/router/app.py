"""router - route accepted mail (Postfix qmgr + trivial-rewrite).

READS
    The inbound queue: one ``Envelope`` per SMTP transaction accepted by the
    gateway (SQS batches of up to 10, ReportBatchItemFailures). The directory
    table: domains, users, aliases, catch-alls, in one BatchGetItem per
    envelope, remembered by the warm container for DIRECTORY_CACHE_TTL (a
    recipient that would bounce is looked up again first). Routing is on the envelope recipients only, never on To:/Cc:.
    The SRS secret (POSTERN_SRS_SECRET_ID) when a recipient is an SRS address.
WRITES
    The store queue: one ``StoreJob`` per final local mailbox. The outbound
    queue: one ``OutboundJob`` per remote domain (authenticated submission,
    and aliases that forward outside; a bounce to one of our SRS addresses
    goes on to the sender it stands for, postern.srs). The NDR queue: one
    ``NoticeJob(kind="failed")`` for recipients that resolve nowhere (no such
    user 5.1.1, relaying denied 5.7.1, alias loop 5.4.6), never when the
    sender is ``<>``. The reports queue: one ``ReportJob`` per domain whose
    reports@ the message was sent to (postern.routing.REPORT_ACCOUNTS).
FAILURES
    Unknown recipients bounce (a notice, the record is done). A directory or
    SQS fault fails the record: SQS redelivers it after the visibility
    timeout; jobs already sent may be sent again and are deduplicated
    downstream. A body that is not an Envelope is poison: it fails every time
    and reaches the inbound DLQ after maxReceiveCount receives.
CODE
    postern.pipeline.router (the logic), postern.routing (pure resolution).
"""

from __future__ import annotations

from aws_lambda_powertools import Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from postern.aws import get_clients
from postern.config import get_settings
from postern.lambdalog import Logger
from postern.directory import ItemCache, dynamo_directory
from postern.envelope import Envelope
from postern.pipeline import router
from postern.srs import Srs
from postern.srs import optional as optional_srs

logger = Logger()
metrics = Metrics()
tracer = Tracer()
processor = BatchProcessor(event_type=EventType.SQS)
# Directory items kept by the warm container between envelopes (postern.directory.ItemCache: stale for at
# most the TTL, as the gateway's RCPT cache; a bounce is always decided from fresh reads).
DIRECTORY_CACHE_TTL = 30.0
_directory_cache = ItemCache(ttl=DIRECTORY_CACHE_TTL)


@tracer.capture_method
def record_handler(record: SQSRecord) -> None:
    env = Envelope.from_json(record.body)
    settings, clients = get_settings(), get_clients()
    # The SRS secrets only for a bounce to one of our SRS addresses (most mail needs none).
    srs = optional_srs(settings, clients) if any(Srs.is_srs(r) for r in env.rcpt_to) else None
    p = router.plan(env, dynamo_directory(settings, clients), srs=srs, cache=_directory_cache)
    router.send_plan(p, settings, clients.sqs)
    logger.info(
        "routed",
        queue_id=env.queue_id,
        local=len(p.store),
        remote_domains=len(p.outbound),
        failed=len(p.decision.failed),
        reports=len(p.reports),
    )
    metrics.add_metric(name="LocalCopies", unit=MetricUnit.Count, value=len(p.store))
    metrics.add_metric(name="RemoteJobs", unit=MetricUnit.Count, value=len(p.outbound))
    metrics.add_metric(name="RouteFailures", unit=MetricUnit.Count, value=len(p.decision.failed))


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event, context):
    metrics.add_metric(name="Records", unit=MetricUnit.Count, value=len(event.get("Records", [])))
    # Partial failures are reported per record; if every record fails, Powertools raises
    # BatchProcessingError and Lambda returns the whole batch to the queue.
    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
