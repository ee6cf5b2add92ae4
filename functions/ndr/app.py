"""ndr - failure and delay notices to senders (Postfix bounce + defer).

READS
    The NDR queue: ``NoticeJob(kind="failed"|"delayed")`` from deliver
    (remote failures and delays), router (no such user, alias pointing
    nowhere) and store (over quota); and the SES events queue: bounce,
    complaint and delivery-delay events SES publishes through the
    configuration set's SNS topic (a remote 5xx after SES accepted the
    message becomes a "failed" notice). Batches of up to 10,
    ReportBatchItemFailures. The original's header block from its spool
    object (ranged GetObject), the directory (is the sender local?), the
    delivery log (what an SES message id was).
WRITES
    An RFC 3464 report (multipart/report; report-type=delivery-status) from
    MAILER-DAEMON@<domain>, envelope sender <>, Auto-Submitted: auto-replied:
    into a local sender's INBOX through MailStore.append (dedup key per
    report id, so a retried notice gives one copy), or to a remote sender as
    a spool object plus an OutboundJob (mail_from "") on the outbound queue.
    An ``ndr`` event in the delivery log.
FAILURES
    Never reports on a message whose sender was <> (logged and dropped); a
    sender that resolves nowhere or is over quota is logged and dropped.
    Backend faults fail the record and SQS retries it; a body that is
    neither a NoticeJob nor an SES event is poison and reaches the DLQ. An
    SES event about a message Postern has no record of is logged, dropped.
CODE
    postern.pipeline.ndr, postern.pipeline.sesevents, postern.dsn.
"""

from __future__ import annotations

import json

from aws_lambda_powertools import Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from postern.aws import get_clients
from postern.config import get_settings
from postern.lambdalog import Logger
from postern.envelope import NoticeJob
from postern.pipeline import ndr as pipeline

logger = Logger()
metrics = Metrics()
tracer = Tracer()
processor = BatchProcessor(event_type=EventType.SQS)
_reporter: pipeline.Reporter | None = None


def reporter() -> pipeline.Reporter:
    """Built once per execution environment, and again if the process settings or
    clients were rebuilt (the local stack does that when it restarts)."""
    global _reporter
    settings, clients = get_settings(), get_clients()
    if _reporter is None or _reporter.settings is not settings or _reporter.clients is not clients:
        _reporter = pipeline.Reporter(settings, clients)
    return _reporter


def _is_notice(body: str) -> bool:
    """A NoticeJob (``"type": "notice"``), or else an SES event (the SES events queue)."""
    try:
        return json.loads(body).get("type") == NoticeJob.TYPE
    except (ValueError, AttributeError):
        return True  # not even JSON: let NoticeJob's parser call it poison


@tracer.capture_method
def record_handler(record: SQSRecord) -> None:
    if _is_notice(record.body):
        outcome = reporter().handle(NoticeJob.from_json(record.body))
    else:
        outcome = reporter().handle_ses(record.body)
        metrics.add_metric(name="SesEvents", unit=MetricUnit.Count, value=1)
    job = outcome.job
    logger.info("notice", queue_id=job.queue_id, kind=job.kind, report_id=outcome.report_id,
                local=outcome.local, remote=outcome.remote, dropped=outcome.dropped)
    metrics.add_metric(name="NoticesDropped" if outcome.dropped else f"Notices_{job.kind}",
                       unit=MetricUnit.Count, value=1)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event, context):
    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
