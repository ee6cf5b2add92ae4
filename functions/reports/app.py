"""reports - DMARC aggregate and TLS-RPT reports sent to reports@<domain>, summarised.

READS
    The reports queue: one ``ReportJob`` per message the router saw addressed to
    reports@<local domain> (postern.routing.REPORT_ACCOUNTS), batches of up to 10,
    ReportBatchItemFailures. The message's spool object, at most
    postern.reports.extract.message_cap bytes of it (a ranged GetObject): the router reads
    no bodies, this function does, and nothing else.
WRITES
    The state table: one summary item per report (postern.reports.summaries; DMARC: reporter,
    period, pass/fail per source IP; TLS-RPT: sessions and failure details per policy), or one
    "refused" item with the reason, both with a TTL of POSTERN_REPORT_RETENTION_DAYS.
    ``postern report dmarc|tls`` and the admin HTTPS route read them.
FAILURES
    A report that is too large, a decompression bomb (size and ratio caps checked while
    decompressing), XML with a DTD or entities (defusedxml), nesting too deep, malformed XML or
    JSON, or a message with no report at all is refused: recorded with its reason, the record is
    done (parsing it again cannot succeed). An S3 or DynamoDB fault fails the record and SQS
    retries it; a body that is no ReportJob is poison and reaches the reports DLQ.
CODE
    postern.pipeline.reports, postern.reports.
"""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from postern.aws import get_clients
from postern.config import get_settings
from postern.envelope import ReportJob
from postern.pipeline import reports as pipeline
from postern.reports.summaries import REFUSED, report_store

logger = Logger()
metrics = Metrics()
tracer = Tracer()
processor = BatchProcessor(event_type=EventType.SQS)


@tracer.capture_method
def record_handler(record: SQSRecord) -> None:
    job = ReportJob.from_json(record.body)
    settings, clients = get_settings(), get_clients()
    item = pipeline.handle(job, settings, clients, report_store(settings, clients))
    metrics.add_metric(name="ReportsRefused" if item["kind"] == REFUSED else "ReportsStored",
                       unit=MetricUnit.Count, value=1)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event, context):
    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
