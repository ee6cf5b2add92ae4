"""The reports function's job: one ReportJob -> one stored summary (or one recorded refusal).

In:   a :class:`~postern.envelope.ReportJob` (the router saw reports@<domain> among the
      recipients), the spool object it names (S3 GetObject with a Range: at most
      :func:`~postern.reports.extract.message_cap` bytes are ever read), and the caps from the
      settings.
Out:  :func:`handle` -> the item written: the report's summary (:class:`~postern.reports.summaries.ReportStore`)
      or, for a message that is no report, too large, malformed or hostile, a refusal with its reason.
Fails: an S3 or state-table fault raises StoreUnavailable: SQS delivers the job again. A spool
      object that is gone (expired, NoSuchKey) is a refusal, not a retry.
"""

from __future__ import annotations

import logging

from botocore.exceptions import BotoCoreError, ClientError

from ..envelope import ReportJob
from ..errors import StoreUnavailable
from ..reports.archive import Caps
from ..reports.errors import ReportRefused
from ..reports.extract import extract, message_cap

log = logging.getLogger("postern.reports")


def read_message(s3, bucket: str, key: str, cap: int) -> bytes:
    """The first ``cap`` bytes of the spool object; ReportRefused when it is larger or gone."""
    try:
        r = s3.get_object(Bucket=bucket, Key=key, Range=f"bytes=0-{cap}")
        body = r["Body"].read(cap + 1)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code in ("NoSuchKey", "404", "InvalidRange"):
            raise ReportRefused("malformed", f"spool object missing ({code})") from None
        raise StoreUnavailable(f"spool read failed: {code}") from exc
    except BotoCoreError as exc:
        raise StoreUnavailable(f"spool read failed: {exc.__class__.__name__}") from exc
    if len(body) > cap:
        raise ReportRefused("too_large", f"message larger than {cap} bytes")
    return body


def handle(job: ReportJob, settings, clients, store) -> dict:
    caps = Caps.from_settings(settings)
    try:
        raw = read_message(clients.s3, settings.bucket, job.s3_key, message_cap(caps))
        kind, report = extract(raw, caps)
    except ReportRefused as refusal:
        log.warning("report refused queue_id=%s domain=%s from=%s reason=%s: %s", job.queue_id, job.domain,
                    job.mail_from, refusal.reason, refusal.text)
        return store.put_refused(job.domain, refusal, job.queue_id, job.mail_from, job.received_at)
    item = store.put(job.domain, report, job.queue_id, job.mail_from)
    log.info("report stored queue_id=%s domain=%s kind=%s org=%s", job.queue_id, job.domain, kind, report.org)
    return item
