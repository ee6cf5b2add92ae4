"""Which messages X-Ray traces: one head-based decision per message, made where it enters.

In:   a queue id (24 hex digits, its last 10 random: ``smtp.spool.new_queue_id``)
      and the sample rate (``Settings.trace_sample_rate``, POSTERN_TRACE_SAMPLE,
      0..1).
Out:  :func:`sampled` (is this message traced?) and :func:`trace_header` (the
      ``AWSTraceHeader`` the gateway stamps on the inbound SQS message of a
      sampled message, None for the others).
Fails: nothing; a rate outside 0..1 is clamped.

Why here and not an X-Ray sampling rule: Lambda's own sampling (Tracing: Active)
traces 1 request a second plus 5 % and cannot be tuned per function, so at
Postern's volumes every invocation was traced ($5 per million traces, two or
more per message: a third of the per-message bill). The functions run with
Tracing: PassThrough, which traces an invocation only when its event carries a
header with ``Sampled=1`` (Lambda TracingConfig). The gateway decides once per
message and the decision travels with it: SQS keeps the header as the message's
``AWSTraceHeader`` system attribute, the router's and the store's sends carry
the same trace on (the X-Ray SDK that Powertools' Tracer patches into botocore
injects it), so a sampled message is traced end to end and the others cost
nothing in X-Ray. The decision is a function of the queue id, so ``postern trace
ID`` can tell whether a message has an X-Ray trace and which. Logs and metrics
are kept for every message; only the X-Ray segments are sampled.
"""

from __future__ import annotations

RANDOM_DIGITS = 10  # the random tail of a queue id


def _fraction(queue_id: str) -> float | None:
    tail = queue_id[-RANDOM_DIGITS:]
    try:
        return int(tail, 16) / 16 ** len(tail)
    except ValueError:
        return None


def sampled(queue_id: str, rate: float) -> bool:
    """True for about ``rate`` of all queue ids, always the same answer for one id."""
    rate = min(1.0, max(0.0, rate))
    if rate >= 1.0:
        return True
    f = _fraction(queue_id)
    return f is not None and f < rate


def trace_id(queue_id: str, received_at: float) -> str:
    """The X-Ray trace id of a message: ``1-<epoch seconds, 8 hex>-<96 bits: the queue id>``."""
    qid = (queue_id.lower() + "0" * 24)[:24]
    return f"1-{int(received_at) & 0xFFFFFFFF:08x}-{qid}"


def trace_header(queue_id: str, received_at: float, rate: float) -> str | None:
    """The X-Ray tracing header for a sampled message (None: not sampled, send no header)."""
    if not sampled(queue_id, rate):
        return None
    return f"Root={trace_id(queue_id, received_at)};Sampled=1"
