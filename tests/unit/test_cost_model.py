"""bench/cost.py's model of the template: the idle floor of both profiles, line by line, and the X-Ray
share it prices (the measured per-message figures come from `make cost`, not from tests)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import cost  # noqa: E402

from postern.costs import load_prices  # noqa: E402
from postern_local.template import load_template  # noqa: E402


@pytest.fixture(scope="module")
def floors():
    t, prices = load_template(), load_prices()
    return {name: cost.idle_floor(t, prices, o) for name, o in cost.PROFILES.items()}


def test_small_profile_floor_is_priced_without_a_load_balancer_and_within_its_target(floors):
    rows, total, _ = floors["small (GatewayProfile=small)"]
    labels = " | ".join(r[0] for r in rows)
    assert "Load Balancer" not in labels and "Container Insights" not in labels
    assert "1 gateway task" in labels and "public IPv4 addresses x1" in labels
    for item in ("alarms", "Secrets Manager", "hosted zone", "OpenSessions", "log ingestion", "SQS long polls"):
        assert item in labels, item
    assert total <= cost.FLOOR_TARGETS["small (GatewayProfile=small)"]


def test_default_profile_floor_counts_the_nlb_its_addresses_and_both_services(floors):
    rows, total, _ = floors["default (GatewayProfile=ha)"]
    labels = " | ".join(r[0] for r in rows)
    assert "Network Load Balancer" in labels and "public IPv4 addresses x4" in labels and "2 service(s)" in labels
    assert total > floors["small (GatewayProfile=small)"][1] + 30  # what the NLB shape costs


def test_traces_are_priced_at_the_templates_sample_rate_and_functions_at_its_architecture():
    t = load_template()
    assert cost.trace_sample_rate(t) == 0.01
    assert cost.trace_sample_rate({"Globals": {"Function": {"Tracing": "Active"}}}) == 1.0
    assert cost.lambda_arch(t) == "arm64"


def test_trace_cost_agrees_with_make_cost():
    """`postern trace ID --cost` of an inbound one-recipient message and of an outbound one, from the profile
    `make cost` wrote, against the same run's scenario totals (outbound: less its data out, which the trace
    prices by the message's own size)."""
    from postern.costs import load_profile, message_cost

    prof = load_profile()
    inbound = message_cost({"accept": 1, "route": 1, "store": 1}, size=10 * 1024, profile=prof, storage_months=0)
    assert inbound.total == pytest.approx(prof["scenarios"]["inbound, 1 recipient"], rel=0.01)


def test_event_source_requests_are_modelled_for_sqs_fed_functions_only():
    """The event source's receive + delete are SQS requests for the SQS-fed functions; the FeedFunction reads
    the mail table's stream, which Lambda does at no charge. The change feed's SNS publishes are priced."""
    fed = cost.sqs_functions(load_template())
    assert {"RouterFunction", "StoreFunction", "DeliverFunction", "NdrFunction"} <= fed
    assert "FeedFunction" not in fed
    assert "sns_publish" in load_prices()["items"]
