"""Sending bodies to a queue with the fewest requests.

In:   a boto3 SQS client, a queue URL, JSON bodies.
Out:  one SendMessage for one body, one SendMessageBatch per ten otherwise.
Fails: StoreUnavailable when the URL is unset, the call fails or any batch
      entry fails (the caller's record is then retried by SQS as a whole).
"""

from __future__ import annotations

from botocore.exceptions import BotoCoreError, ClientError

from ..errors import StoreUnavailable


def send_bodies(sqs, queue_url: str, bodies: list[str]) -> None:
    """SendMessage for one body, SendMessageBatch per ten otherwise; any failed entry raises."""
    if not bodies:
        return
    if not queue_url:
        raise StoreUnavailable("queue URL not configured")
    try:
        if len(bodies) == 1:
            sqs.send_message(QueueUrl=queue_url, MessageBody=bodies[0])
            return
        for i in range(0, len(bodies), 10):
            chunk = bodies[i:i + 10]
            r = sqs.send_message_batch(
                QueueUrl=queue_url,
                Entries=[{"Id": str(n), "MessageBody": b} for n, b in enumerate(chunk)],
            )
            if r.get("Failed"):
                raise StoreUnavailable(f"SendMessageBatch: {len(r['Failed'])} entries failed")
    except (ClientError, BotoCoreError) as exc:
        raise StoreUnavailable(f"queue send failed: {exc.__class__.__name__}") from exc
