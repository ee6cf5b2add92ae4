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
    assert "Network Load Balancer" in labels and "public IPv4 addresses x4" in labels
    fargate = [r[0] for r in rows if r[0].startswith("Fargate")]
    assert len(fargate) == 2  # a row per service, each at its own task definition's size
    # both at Fargate's least for a quarter vCPU: the access task's IMAP worker and the gateway fit 0.5 GB
    # (test_template_ops::test_gateway_tasks_fit_the_gateway_peak_and_their_workers_with_room)
    assert "mail-in" in fargate[0] and "mailbox-access" in fargate[1] and all("0.5 GB" in f for f in fargate)
    assert all("0.25 vCPU" in f and "arm64" in f and "rspamd" not in f for f in fargate)
    assert total > floors["small (GatewayProfile=small)"][1] + 30  # what the NLB shape costs


def test_spam_filtering_is_priced_apart_from_the_floors():
    t, prices = load_template(), load_prices()
    rspamd, valkey, clamd = cost.spam_extras(t, prices)
    money = [[float(c.strip("$+").replace(",", "")) for c in r[1:]] for r in (rspamd, valkey, clamd)]
    # rspamd: 0.5 GB more in the mail-in task (1.30) + its alarm (0.10) + the lesson relay's polls (0.05);
    # small: 1.5 GB more (0.5 -> 2 GB: 3.90) + alarm + the relay's polls (its one task reads the JMAP function's
    # lessons: 0.05)
    assert money[0] == [pytest.approx(1.45, abs=0.01), pytest.approx(4.05, abs=0.01)]
    assert money[1] == [pytest.approx(6.13, abs=0.01)] * 2  # Valkey Serverless at its 100 MB minimum
    assert money[2][0] > 15  # clamd: ~1.2 GiB of signatures, its own task
    floor = cost.idle_floor(t, prices, {**cost.PROFILES["default (GatewayProfile=ha)"],
                                        **cost.SPAM_OPTIONS["default (GatewayProfile=ha)"]["rspamd"],
                                        "RspamdValkey": "true"})
    labels = " | ".join(r[0] for r in floor[0])
    assert "ElastiCache Serverless valkey SpamStateCache" in labels and "gateway + rspamd" in labels
    assert "spam lesson relay: 1 mail-in task(s)" in labels


def test_make_cost_floor_rewrites_only_the_floor_part_of_the_doc(tmp_path, capsys):
    doc = tmp_path / "cost.md"
    doc.write_text("# head\n\n" + cost.FLOOR_START + "default, old\n\nold rows\n\n" + cost.FLOOR_END
                   + " (JMAP)\n\nkept\n")
    assert cost.main(["--floor", "--out", str(doc)]) == 0
    text = doc.read_text()
    assert text.startswith("# head\n\n" + cost.FLOOR_START) and text.endswith(cost.FLOOR_END + " (JMAP)\n\nkept\n")
    assert "old rows" not in text and "| **total** | target <= $30: met |" in text
    assert "## Spam filtering, priced apart" in text
    printed = capsys.readouterr().out
    assert "idle floor, default (GatewayProfile=ha), per month:" in printed and "Network Load Balancer" in printed
    assert "target <= $50" in printed and "spam filtering, added to the floors above" in printed


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


def _alarm_row(rows) -> tuple[str, float]:
    (row,) = [r for r in rows if r[0].startswith("CloudWatch alarms")]
    return row[0], float(row[2].strip("$"))


def test_alarms_are_priced_per_metric_they_read_and_target_tracking_adds_two_each():
    """CloudWatch bills $0.10 a month per alarm metric: a metric-math alarm once per metric in its
    expression, and each target-tracking scaling policy creates two alarms (scale out, scale in)."""
    import copy

    t, prices = load_template(), load_prices()
    ha = cost.PROFILES["default (GatewayProfile=ha)"]
    label, base = _alarm_row(cost.idle_floor(t, prices, ha)[0])
    assert "2 per target-tracking scaling policy x4" in label  # two policies per service, two services
    more = copy.deepcopy(t)
    stat = {"Metric": {"Namespace": "AWS/SQS", "MetricName": "NumberOfMessagesSent"}, "Period": 60, "Stat": "Sum"}
    more["Resources"]["ThreeMetricAlarm"] = {"Type": "AWS::CloudWatch::Alarm", "Properties": {
        "Metrics": [{"Id": f"m{i}", "ReturnData": False, "MetricStat": stat} for i in range(3)]
        + [{"Id": "e", "Expression": "m0 + m1 + m2", "ReturnData": True}],
        "EvaluationPeriods": 1, "Threshold": 0, "ComparisonOperator": "GreaterThanThreshold"}}
    more["Resources"]["PlainAlarm"] = {"Type": "AWS::CloudWatch::Alarm", "Properties": {
        "Namespace": "AWS/SQS", "MetricName": "NumberOfMessagesSent", "Statistic": "Sum", "Period": 60,
        "EvaluationPeriods": 1, "Threshold": 0, "ComparisonOperator": "GreaterThanThreshold"}}
    assert _alarm_row(cost.idle_floor(more, prices, ha)[0])[1] == pytest.approx(base + 0.40)
    # the served certificate's days-left metric, which every task puts (the expiry alarm reads it)
    labels = " | ".join(r[0] for r in cost.idle_floor(t, prices, ha)[0])
    assert "TlsCertificateDaysLeft metric x1 (2 task(s)" in labels
