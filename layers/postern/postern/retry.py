"""The outbound retry schedule and the re-enqueue hops that carry it, written down in one place.

In:   the attempt number (1 on the first delivery attempt; the job carries
      it, SQS's ApproximateReceiveCount does not), the message's age and the
      queue-age settings; for hops, the job's ``not_before`` and the clock.
Out:  :func:`delay_after` - seconds to wait after a failed attempt;
      :func:`plan` - a :class:`Plan` saying whether to retry, when, and
      whether the delayed-delivery notice is due; :func:`hop_delay` - the
      DelaySeconds of the next re-enqueue hop.
Fails: never.

Schedule (Postfix's queue_run_delay/minimal_backoff family, made explicit):
after attempt 1 wait 1 min, then 5 min, 15 min, 30 min, 1 h, 2 h, 4 h, 8 h,
and every 12 h after that. A message older than ``max_queue_age`` (default
5 days since ``received_at``) is not retried: its pending recipients get a
failure notice. The final wait is shortened so the last attempt happens
when the message reaches that age. A delayed-delivery notice is due once,
on the first transient failure at or after ``delay_notice_after`` (4 h).

How a wait is carried (AWS rules, ``AWS-LIMITS.md``): nothing waits as an
in-flight SQS message. ChangeMessageVisibility is capped at 12 h counted
from the *receive*, and a standard queue holds only about 120,000 messages
in flight. So a deferred job is deleted and sent again as a new message
carrying its attempt number and ``not_before``, with ``DelaySeconds`` of at
most 900 (the SQS maximum, ``SQS_MAX_DELAY``). A job that arrives before
its ``not_before`` is only sent on again (a hop: one SendMessage, no
delivery attempt); a 12 h wait is 48 hops. The queue's maxReceiveCount then
counts crashes of one attempt only, never the schedule.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

MINUTE = 60
HOUR = 3600
SCHEDULE: tuple[int, ...] = (1 * MINUTE, 5 * MINUTE, 15 * MINUTE, 30 * MINUTE, 1 * HOUR, 2 * HOUR, 4 * HOUR, 8 * HOUR)
STEADY = 12 * HOUR
SQS_MAX_DELAY = 900  # SendMessage DelaySeconds ceiling (SQS API reference, "SendMessage")


def delay_after(attempt: int) -> int:
    """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
    if attempt < 1:
        attempt = 1
    if attempt <= len(SCHEDULE):
        return SCHEDULE[attempt - 1]
    return STEADY


def schedule(n: int) -> list[int]:
    """The first ``n`` waits, for documentation and tests."""
    return [delay_after(i) for i in range(1, n + 1)]


@dataclass(frozen=True)
class Plan:
    retry: bool  # False: give up on the pending recipients (failure notice)
    delay: int = 0  # seconds until the next attempt
    delay_notice_due: bool = False
    expires_at: float = 0.0  # received_at + max_queue_age (Will-Retry-Until)


def plan(attempt: int, received_at: float, now: float, max_queue_age: int, delay_notice_after: int) -> Plan:
    """What to do after a transient failure on attempt ``attempt`` at time ``now``."""
    expires = received_at + max_queue_age
    age = now - received_at
    if now >= expires:
        return Plan(retry=False, expires_at=expires)
    wait = min(delay_after(attempt), max(0, int(expires - now + 0.999)))
    return Plan(retry=True, delay=wait, delay_notice_due=age >= delay_notice_after, expires_at=expires)


def hop_delay(not_before: float, now: float, max_hop: int = SQS_MAX_DELAY) -> int:
    """DelaySeconds for sending a job on that is due at ``not_before`` (0 when due)."""
    return max(0, min(int(max_hop), SQS_MAX_DELAY, math.ceil(round(not_before - now, 3))))
