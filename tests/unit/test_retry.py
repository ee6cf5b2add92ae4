"""The written-down retry schedule and the plan after a transient failure."""

from __future__ import annotations

import pytest

from postern import clock, retry

H = 3600


def test_schedule_is_the_documented_one():
    assert retry.schedule(11) == [60, 300, 900, 1800, H, 2 * H, 4 * H, 8 * H, 12 * H, 12 * H, 12 * H]


@pytest.mark.parametrize("not_before, now, max_hop, expected", [
    (1000.0, 1000.0, 900, 0),  # due: no delay
    (1060.0, 1000.0, 900, 60),
    (1000.0 + 12 * H, 1000.0, 900, 900),  # a 12 h wait leaves in 900 s hops (SQS DelaySeconds maximum)
    (1000.5, 1000.0, 900, 1),  # never early
    (5000.0, 1000.0, 5000, 900),  # a setting above SQS's ceiling is capped
    (900.0, 1000.0, 900, 0),  # overdue
])
def test_hop_delay_never_exceeds_sqs_delayseconds(not_before, now, max_hop, expected):
    assert retry.hop_delay(not_before, now, max_hop) == expected == min(expected, retry.SQS_MAX_DELAY)


@pytest.mark.parametrize(
    "attempt, age, expected",
    [
        (1, 0, retry.Plan(retry=True, delay=60, delay_notice_due=False, expires_at=5 * 86400)),
        (3, 360, retry.Plan(retry=True, delay=900, delay_notice_due=False, expires_at=5 * 86400)),
        (8, 4 * H + 1, retry.Plan(retry=True, delay=8 * H, delay_notice_due=True, expires_at=5 * 86400)),
        (20, 5 * 86400 - 100, retry.Plan(retry=True, delay=100, delay_notice_due=True, expires_at=5 * 86400)),
        (21, 5 * 86400, retry.Plan(retry=False, expires_at=5 * 86400)),
    ],
)
def test_plan(attempt, age, expected):
    assert retry.plan(attempt, 0.0, float(age), 5 * 86400, 4 * H) == expected


def test_walking_the_schedule_ends_exactly_at_max_age():
    """Attempt, wait as planned, attempt again... until the plan gives up: the last
    attempt happens at max_queue_age and the delayed notice falls due once past 4 h."""
    t, attempt, times, first_notice = 0.0, 1, [], None
    while True:
        p = retry.plan(attempt, 0.0, t, 5 * 86400, 4 * H)
        times.append(t)
        if not p.retry:
            break
        if p.delay_notice_due and first_notice is None:
            first_notice = attempt
        t += p.delay
        attempt += 1
    assert times[:9] == [0, 60, 360, 1260, 3060, 6660, 13860, 28260, 57060]
    assert times[-1] == 5 * 86400
    assert first_notice == 8  # 28260 s is the first attempt at or after 4 h
    assert len(times) == 18  # attempts; maxReceiveCount counts crashes only (re-enqueued, not redelivered)


def test_fake_clock_controls_now():
    with clock.frozen(1000.0) as c:
        assert clock.now() == 1000.0
        c.advance(60)
        assert clock.now() == 1060.0
    assert clock.now() > 1_600_000_000
