"""The evidence tooling: request counter, fault layer, price table (local/postern_local, postern.costs)."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError, ConnectTimeoutError, ReadTimeoutError

from postern.aws import Clients
from postern.costs import Breakdown, cost_of, load_prices, message_cost
from postern_local.faults import FaultInjector, FaultSpec, HandlerFaults, InjectedCrash
from postern_local.requests import RequestCounter, item_size


# ---------------------------------------------------------------- item sizes
@pytest.mark.parametrize(
    "item, size",
    [
        ({"pk": {"S": "abc"}}, 2 + 3),
        ({"n": {"N": "12345"}}, 1 + 3 + 1),  # 5 significant digits -> 3 bytes + 1
        ({"b": {"B": b"\x00" * 10}}, 1 + 10),
        ({"ok": {"BOOL": True}}, 2 + 1),
        ({"tags": {"SS": ["a", "bc"]}}, 4 + 3),
        ({"m": {"M": {"k": {"S": "v"}}}}, 1 + 3 + (1 + 1 + 1)),
    ],
)
def test_item_size(item, size):
    assert item_size(item) == size


# ---------------------------------------------------------------- counting
def test_counter_counts_requests_and_units_per_scope(aws):
    settings, clients, _ = aws
    counter = RequestCounter().install(clients)
    with counter.scope("lambda:store"):
        clients.s3.put_object(Bucket=settings.bucket, Key="spool/x", Body=b"x" * 5000)
        clients.s3.get_object(Bucket=settings.bucket, Key="spool/x")["Body"].read()
        clients.dynamodb.put_item(TableName=settings.mail_table,
                                  Item={"pk": {"S": "p"}, "sk": {"S": "s"}, "blob": {"B": b"y" * 1500}})
        clients.dynamodb.get_item(TableName=settings.mail_table, Key={"pk": {"S": "p"}, "sk": {"S": "s"}},
                                  ConsistentRead=True)
        clients.dynamodb.update_item(TableName=settings.mail_table, Key={"pk": {"S": "p"}, "sk": {"S": "s"}},
                                     UpdateExpression="ADD n :one", ExpressionAttributeValues={":one": {"N": "1"}})
    clients.sqs.send_message(QueueUrl=settings.inbound_queue_url, MessageBody="z" * (64 * 1024 + 1))
    u = counter.snapshot()
    store, gw = u.scopes["lambda:store"], u.scopes["gateway"]
    assert store.requests["s3.PutObject"] == 1 and store.requests["s3.GetObject"] == 1
    assert (store.s3_tier1, store.s3_tier2, store.s3_bytes_put, store.s3_bytes_got) == (1, 1, 5000, 5000)
    assert store.ddb_wru == 2 + 2  # a 1.5 KB item written twice (put, then update probed at its size)
    assert store.ddb_rru == 1
    assert gw.requests == {"sqs.SendMessage": 1} and gw.sqs_chunks == 2  # 64 KB + 1 byte = two chunks
    assert u.by_service() == {"s3": 2, "dynamodb": 3, "sqs": 1}


def test_measure_gives_the_delta(aws):
    settings, clients, _ = aws
    counter = RequestCounter(probe=False).install(clients)
    clients.sqs.send_message(QueueUrl=settings.inbound_queue_url, MessageBody="a")
    with counter.measure() as m:
        clients.sqs.send_message(QueueUrl=settings.inbound_queue_url, MessageBody="b")
        clients.sqs.receive_message(QueueUrl=settings.inbound_queue_url, MaxNumberOfMessages=10)
    assert m.usage.total().requests == {"sqs.SendMessage": 1, "sqs.ReceiveMessage": 1}


# ---------------------------------------------------------------- faults
def test_fault_spec_parse():
    spec = FaultSpec.parse("s3=0.1,sqs=0.2,dynamodb=0.1,timeout=0.02,seed=7,crash=0.05,redeliver=2,skip=Query")
    assert spec.rates == {"s3": 0.1, "sqs": 0.2, "dynamodb": 0.1}
    assert (spec.timeout, spec.seed, spec.crash, spec.redeliver) == (0.02, 7, 0.05, 2)
    assert "Query" in spec.skip and "CreateQueue" in spec.skip
    assert not FaultSpec.parse("").active
    with pytest.raises(ValueError, match="s3"):
        FaultSpec.parse("s3=2")
    with pytest.raises(ValueError):
        FaultSpec.parse("s3")


def _run(clients, settings, n):
    outcomes = []
    for i in range(n):
        try:
            clients.sqs.send_message(QueueUrl=settings.inbound_queue_url, MessageBody=str(i))
            outcomes.append("ok")
        except ClientError as exc:
            outcomes.append(exc.response["Error"]["Code"])
        except ConnectTimeoutError:
            outcomes.append("timeout")
        except ReadTimeoutError:
            outcomes.append("late")
    return outcomes


def test_faults_rate_seed_and_counts(aws):
    settings, clients, _ = aws
    counter = RequestCounter(probe=False).install(clients)
    inj = FaultInjector(FaultSpec.parse("sqs=0.2,timeout=0.1,seed=3")).install(clients)
    outcomes = _run(clients, settings, 120)
    injected = sum(1 for o in outcomes if o != "ok")
    assert injected == inj.total() and 15 <= injected <= 60  # ~30% of 120
    assert inj.summary()["sqs"]["calls"] == 120
    # Late timeouts executed: the queue holds every ok message plus every late one, and they were billed.
    late = outcomes.count("late")
    assert late > 0
    assert counter.snapshot().total().requests["sqs.SendMessage"] == outcomes.count("ok") + late
    attrs = clients.sqs.get_queue_attributes(QueueUrl=settings.inbound_queue_url,
                                             AttributeNames=["ApproximateNumberOfMessages"])
    assert int(attrs["Attributes"]["ApproximateNumberOfMessages"]) == outcomes.count("ok") + late

    # Same seed, same single-threaded sequence -> same outcomes.
    other = Clients(settings)
    FaultInjector(FaultSpec.parse("sqs=0.2,timeout=0.1,seed=3")).install(other)
    assert _run(other, settings, 120) == outcomes


def test_handler_crash_after_side_effects_and_redelivery():
    calls = []

    def handler(event, context):
        calls.append(event["Records"][0]["attributes"]["ApproximateReceiveCount"])
        return {"batchItemFailures": []}

    event = {"Records": [{"messageId": "m1", "attributes": {"ApproximateReceiveCount": "1"}}]}
    hf = HandlerFaults(FaultSpec.parse("crash=1,redeliver=2"))
    wrapped = hf.wrap("StoreFunction", handler)
    with pytest.raises(InjectedCrash):
        wrapped(event, None)
    assert calls == ["1", "2"]  # the side effects ran (twice) before the crash
    assert hf.crashes["StoreFunction"] == 1 and hf.redeliveries["StoreFunction"] == 1
    assert event["Records"][0]["attributes"]["ApproximateReceiveCount"] == "1"  # caller's event untouched


# ---------------------------------------------------------------- prices
def test_price_table_has_date_and_every_item_prices():
    p = load_prices()
    assert p["region"] == "us-east-1" and p["as_of"]
    b = cost_of({"lambda_requests": 1_000_000, "ddb_wru": 2_000_000, "ses_inbound": 1000})
    assert b.total == pytest.approx(0.20 + 1.25 + 0.10)
    with pytest.raises(KeyError):
        cost_of({"bitcoin": 1})


def test_message_cost_from_profile():
    profile = {
        "measured": "test",
        "stages": {"accept": {"s3_tier1": 1, "sqs_requests": 1}, "store": {"ddb_wru": 10, "lambda_requests": 0.5}},
    }
    b = message_cost({"accept": 1, "store": 3}, size=200 * 1024, profile=profile)
    q = {line.item: line.quantity for line in b.lines}
    assert q["sqs_requests"] == 4  # 200 KB = four 64 KB chunks
    assert q["ddb_wru"] == 30 and q["lambda_requests"] == 1.5
    assert q["s3_gb_month"] > 0
    assert "estimate" in b.note
    assert isinstance(message_cost({"accept": 1}, profile={}), Breakdown)


def test_a_lambda_worker_counts_the_log_bytes_each_invocation_prints(tmp_path):
    """make cost prices CloudWatch Logs from what each handler prints (bench/cost.py: plus Lambda's own
    START/END/REPORT lines), counted per invocation in its worker (postern_local.worker)."""
    import os
    from pathlib import Path

    from postern_local.worker import FunctionSpec, RemoteHandler

    (tmp_path / "app.py").write_text(
        "import sys\nprint('printed during Init')\n"
        "def lambda_handler(event, context):\n"
        "    print('x' * event['n'])\n"
        "    print('{\"level\":\"INFO\"}')\n"
        "    sys.stderr.write('\\u00e9\\n')\n"
        "    return {'ok': True}\n")
    repo = Path(__file__).resolve().parents[2]
    h = RemoteHandler(FunctionSpec("Probe", str(tmp_path), "app.lambda_handler", 60, 256), dict(os.environ), repo,
                      max_workers=1)
    try:
        for n in (100, 5):
            out = h.invoke({"n": n})
            assert out.result() == {"ok": True}
            # 'é' is two bytes in UTF-8; the second line is a Powertools-like record
            assert (out.report.log_bytes, out.report.log_events, out.report.log_records) == (n + 1 + 17 + 3, 3, 1)
    finally:
        h.close()
