"""The spool: the single writer into the incoming queue (Postfix cleanup), for the gateway and the HTTPS function.

In:   the raw bytes of one accepted message, exactly as received (submission:
      plus prepended Message-ID/Date), and the envelope fields of the SMTP
      transaction; ``Settings`` (bucket, spool prefix, inbound queue URL) and
      ``Clients`` (boto3 S3 and SQS).
Out:  :meth:`Spooler.spool` (blocking: call it through ``backend.run``) PUTs the
      bytes to ``s3://{bucket}/{spool_prefix}{queue_id}`` with a JSON summary of
      the envelope in the object's user metadata, THEN sends the
      :class:`~postern.envelope.Envelope` JSON to the inbound queue, and
      returns that Envelope. Only then may the caller answer 250. A message
      sampled for X-Ray (``postern.tracing``) carries its ``AWSTraceHeader``.
Fails: :class:`~postern.errors.StoreUnavailable` if either call fails (the
      caller answers ``451 4.3.0``). Ordering guarantees no envelope points at
      a missing object: the envelope is sent only after the PUT succeeded. If
      SQS refuses the send (an error response, with no earlier attempt that
      may have landed: the message was not enqueued), the object is deleted
      best-effort so no orphan lingers. If the send fails
      ambiguously (timeout, dropped connection: SQS may have enqueued it), the
      same envelope is sent again, also after a later refusal (up to ``SEND_ATTEMPTS``; a duplicate with
      the same queue id is deduplicated downstream, while a 451 would make the
      client resend under a new id); if every attempt is ambiguous the object
      is kept, because deleting it could leave an envelope pointing at
      nothing, and the spool sweep deletes it after the spool window.

Queue ids are 24 lowercase hex digits: 14 of microseconds since the epoch
(sortable by arrival) then 10 random (unique across gateway tasks): ``postern.queueid``.
The spool object is also the stored message: the mail store references it in
place (no copy), and the mail store's spool sweep deletes it once it is past
the spool window and no mailbox references it (``store.engine``).
"""

from __future__ import annotations

import json
import logging
import time

from botocore.exceptions import ClientError

from postern.envelope import Envelope
from postern.errors import StoreUnavailable
from postern.queueid import new_queue_id
from postern.store.summary import inline_header
from postern.tracing import trace_header

log = logging.getLogger("postern.spool")

METADATA_KEY = "postern-envelope"
SEND_ATTEMPTS = 3  # sends of the same envelope after ambiguous failures (botocore retries within each)
_METADATA_BUDGET = 1800  # S3 allows 2 KB of user metadata in total


def metadata_summary(env: Envelope) -> str:
    """The envelope as ASCII JSON that fits S3 user metadata (recipient list trimmed if needed)."""
    d = {
        "queue_id": env.queue_id,
        "mail_from": env.mail_from,
        "rcpt_count": len(env.rcpt_to),
        "rcpt_to": list(env.rcpt_to),
        "received_at": env.received_at,
        "client_ip": env.client_ip,
        "auth_user": env.auth_user,
        "size": env.size,
    }
    text = json.dumps(d, separators=(",", ":"))  # ensure_ascii: metadata travels in HTTP headers
    while len(text) > _METADATA_BUDGET and d["rcpt_to"]:
        d["rcpt_to"] = d["rcpt_to"][: len(d["rcpt_to"]) // 2]
        text = json.dumps(d, separators=(",", ":"))
    if len(text) > _METADATA_BUDGET:
        d["mail_from"] = d["mail_from"][:200]
        text = json.dumps(d, separators=(",", ":"))
    return text


class Spooler:
    """``Spooler(settings, clients).spool(raw, mail_from=..., rcpt_to=..., ...) -> Envelope``"""

    def __init__(self, settings, clients):
        self.settings = settings
        self.clients = clients

    def spool(self, raw: bytes, **fields) -> Envelope:
        queue_id = fields.pop("queue_id", None) or new_queue_id()
        fields.setdefault("received_at", time.time())
        fields["rcpt_to"] = tuple(fields.get("rcpt_to", ()))
        key = self.settings.spool_prefix + queue_id
        fields.setdefault("header", inline_header(raw))
        env = Envelope(queue_id=queue_id, s3_key=key, size=len(raw), **fields)
        s3, sqs = self.clients.s3, self.clients.sqs
        try:
            s3.put_object(
                Bucket=self.settings.bucket,
                Key=key,
                Body=raw,
                ContentType="message/rfc822",
                Metadata={METADATA_KEY: metadata_summary(env)},
            )
        except Exception as exc:  # any failure: nothing was enqueued, nothing to undo
            log.warning("spool put failed queue_id=%s: %s", queue_id, exc)
            raise StoreUnavailable() from exc
        body = env.to_json()
        send = {"QueueUrl": self.settings.inbound_queue_url, "MessageBody": body}
        header = trace_header(queue_id, env.received_at, self.settings.trace_sample_rate)
        if header:  # X-Ray: this message is traced through every function (postern.tracing)
            send["MessageSystemAttributes"] = {"AWSTraceHeader": {"DataType": "String", "StringValue": header}}
        ambiguous = False  # has any attempt possibly enqueued the envelope?
        for attempt in range(1, SEND_ATTEMPTS + 1):
            try:
                sqs.send_message(**send)
                break
            except ClientError as exc:  # SQS answered this request with an error
                # botocore may have retried inside the call after a timeout: then an earlier
                # request may have landed, exactly as after one of our own ambiguous attempts.
                retried = exc.response.get("ResponseMetadata", {}).get("RetryAttempts", 0)
                if ambiguous or retried:
                    ambiguous = True
                    if attempt < SEND_ATTEMPTS:
                        # The envelope may be queued already: answering 451 now makes the client
                        # resend under a new queue id (two copies, RFC 1047); another send of the
                        # same body is deduplicated downstream. The fault campaign (seed 2) saw a
                        # late timeout, then ServiceUnavailable, then 451 and a duplicate.
                        log.warning("spool send refused after an ambiguous attempt queue_id=%s attempt=%d,"
                                    " resending: %s", queue_id, attempt, exc)
                        continue
                    log.error("spool send failed after ambiguous attempts queue_id=%s, keeping %s: %s",
                              queue_id, key, exc)
                else:
                    log.warning("spool send refused queue_id=%s: %s", queue_id, exc)
                    self._discard(key, queue_id)  # nothing was enqueued: no orphan either
                raise StoreUnavailable() from exc
            except Exception as exc:  # ambiguous: SQS may have enqueued it
                ambiguous = True
                if attempt < SEND_ATTEMPTS:
                    # Resend the same body: a duplicate envelope with the same queue id is
                    # deduplicated downstream, whereas a 451 makes the client resend under a new id.
                    log.warning("spool send ambiguous queue_id=%s attempt=%d, resending: %s", queue_id, attempt, exc)
                    continue
                log.error("spool send ambiguous queue_id=%s, keeping %s for the spool sweep: %s",
                          queue_id, key, exc)
                raise StoreUnavailable() from exc
        # the caller logs the acceptance (one line per message: the gateway's "accepted", with the client's
        # address and role; JMAP's "submitted"): a line here as well doubled the gateway's log bytes
        log.debug("spooled queue_id=%s size=%d rcpts=%d", queue_id, env.size, len(env.rcpt_to))
        return env

    def _discard(self, key: str, queue_id: str) -> None:
        try:
            self.clients.s3.delete_object(Bucket=self.settings.bucket, Key=key)
        except Exception as exc:  # best effort: the spool sweep is the backstop
            log.warning("spool cleanup failed queue_id=%s key=%s: %s", queue_id, key, exc)
