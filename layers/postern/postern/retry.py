"""The outbound retry schedule, written down in one place.

In:   the attempt number (SQS ``ApproximateReceiveCount``: 1 on the first
      delivery attempt), the message's age and the queue-age settings.
Out:  :func:`delay_after` - seconds to keep the SQS message invisible before
      the next attempt; :func:`plan` - a :class:`Plan` saying whether to retry,
      when, and whether the delayed-delivery notice is due.
Fails: never.

Schedule (Postfix's queue_run_delay/minimal_backoff family, made explicit):
after attempt 1 wait 1 min, then 5 min, 15 min, 30 min, 1 h, 2 h, 4 h, 8 h,
and every 12 h after that (12 h is also SQS's ceiling for one
ChangeMessageVisibility, so it can never be exceeded). A message older than
``max_queue_age`` (default 5 days since ``received_at``) is not retried: its
pending recipients get a failure notice. The final wait is shortened so the
last attempt happens when the message reaches that age, not up to 12 h later.
A delayed-delivery notice is due once, on the first transient failure at or
after ``delay_notice_after`` (default 4 h).
"""

from __future__ import annotations

from dataclasses import dataclass

MINUTE = 60
HOUR = 3600
SCHEDULE: tuple[int, ...] = (1 * MINUTE, 5 * MINUTE, 15 * MINUTE, 30 * MINUTE, 1 * HOUR, 2 * HOUR, 4 * HOUR, 8 * HOUR)
STEADY = 12 * HOUR
SQS_MAX_VISIBILITY = 12 * HOUR  # ChangeMessageVisibility ceiling (SQS API reference)


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
    delay: int = 0  # seconds of invisibility before the next attempt
    delay_notice_due: bool = False
    expires_at: float = 0.0  # received_at + max_queue_age (Will-Retry-Until)


def plan(attempt: int, received_at: float, now: float, max_queue_age: int, delay_notice_after: int) -> Plan:
    """What to do after a transient failure on attempt ``attempt`` at time ``now``."""
    expires = received_at + max_queue_age
    age = now - received_at
    if now >= expires:
        return Plan(retry=False, expires_at=expires)
    wait = min(delay_after(attempt), SQS_MAX_VISIBILITY, max(0, int(expires - now + 0.999)))
    return Plan(retry=True, delay=wait, delay_notice_due=age >= delay_notice_after, expires_at=expires)
