"""Spooler: a refusal after an ambiguous send is resent too (the first send may have landed).

Found by the fault campaign (bench/faults.py seed 2): SendMessage executed then
timed out, the resend got ServiceUnavailable, the gateway answered 451 and the
client's resend under a new queue id made a second copy in each mailbox.
"""

from __future__ import annotations

import pytest
from botocore.exceptions import ReadTimeoutError

from postern.errors import StoreUnavailable
from postern_gateway.smtp.spool import SEND_ATTEMPTS, Spooler


class _Resp:
    status_code = 503
    headers: dict = {}
    content = b""
    text = ""


def _script(clients, plan):
    """SendMessage call i follows plan[i]: "late" (executes, then times out), "refuse" (503), "ok"."""
    state = {"i": 0, "late": False}

    def before(model=None, **kw):
        if model.name != "SendMessage":
            return None
        step = plan[min(state["i"], len(plan) - 1)]
        state["i"] += 1
        if step == "refuse":
            return _Resp(), {"Error": {"Code": "ServiceUnavailable", "Message": "injected"},
                             "ResponseMetadata": {"HTTPStatusCode": 503, "RetryAttempts": 0}}
        state["late"] = step == "late"
        return None

    def after(model=None, **kw):
        if model.name == "SendMessage" and state.pop("late", False):
            raise ReadTimeoutError(endpoint_url="injected://sqs")

    clients.register_hook("before-call.sqs.SendMessage", before)
    clients.register_hook("after-call.sqs.SendMessage", after)
    return state


def _bodies(clients, settings):
    r = clients.sqs.receive_message(QueueUrl=settings.inbound_queue_url, MaxNumberOfMessages=10)
    return [m["Body"] for m in r.get("Messages", [])]


def _keys(clients, settings):
    return [o["Key"] for o in clients.s3.list_objects_v2(Bucket=settings.bucket).get("Contents", [])]


RAW = b"Subject: x\r\n\r\nhi\r\n"


def test_late_timeout_then_refusal_then_success_is_accepted_once_per_queue_id(aws):
    settings, clients, _ = aws
    state = _script(clients, ["late", "refuse", "ok"])
    env = Spooler(settings, clients).spool(RAW, mail_from="a@b.test", rcpt_to=["u@example.test"])
    assert state["i"] == 3
    assert _bodies(clients, settings) == [env.to_json()] * 2  # one queue id: the store keeps one copy


def test_refusals_after_an_ambiguous_send_keep_the_object_and_fail(aws):
    settings, clients, _ = aws
    state = _script(clients, ["late"] + ["refuse"] * 10)
    with pytest.raises(StoreUnavailable):
        Spooler(settings, clients).spool(RAW, mail_from="a@b.test", rcpt_to=["u@example.test"])
    assert state["i"] == SEND_ATTEMPTS
    assert len(_bodies(clients, settings)) == 1  # the late one landed ...
    assert len(_keys(clients, settings)) == 1  # ... and still finds its object


def test_a_clean_refusal_is_not_resent_and_leaves_no_object(aws):
    settings, clients, _ = aws
    state = _script(clients, ["refuse", "ok"])
    with pytest.raises(StoreUnavailable):
        Spooler(settings, clients).spool(RAW, mail_from="a@b.test", rcpt_to=["u@example.test"])
    assert state["i"] == 1
    assert _bodies(clients, settings) == [] and _keys(clients, settings) == []
