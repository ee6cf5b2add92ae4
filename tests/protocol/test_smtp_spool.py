"""The real Spooler on moto (S3 then SQS), directly and behind the MX listener."""

from __future__ import annotations

import json
import smtplib

import pytest
from botocore.exceptions import ClientError
from helpers import HOST, ServerThread, memory_backend

from postern.envelope import Envelope
from postern.errors import StoreUnavailable
from postern_gateway.smtp.server import start_smtp
from postern_gateway.smtp.spool import METADATA_KEY, SEND_ATTEMPTS, Spooler, metadata_summary, new_queue_id

RAW = b"From: s@remote.test\r\nSubject: hi\r\n\r\nbody\r\n"


def queued(clients, url) -> list[Envelope]:
    out = clients.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
    return [Envelope.from_json(m["Body"]) for m in out.get("Messages", [])]


def keys(clients, settings) -> list[str]:
    out = clients.s3.list_objects_v2(Bucket=settings.bucket, Prefix=settings.spool_prefix)
    return [o["Key"] for o in out.get("Contents", [])]


def test_spool_puts_then_sends(aws):
    settings, clients, _ = aws
    env = Spooler(settings, clients).spool(RAW, mail_from="s@remote.test", rcpt_to=["alice@example.test"],
                                           client_ip="192.0.2.1", helo="h", trace_headers="Received: x\r\n")
    obj = clients.s3.get_object(Bucket=settings.bucket, Key=env.s3_key)
    assert obj["Body"].read() == RAW
    assert obj["ContentType"] == "message/rfc822"
    meta = json.loads(obj["Metadata"][METADATA_KEY])
    assert meta["queue_id"] == env.queue_id and meta["rcpt_to"] == ["alice@example.test"]
    (got,) = queued(clients, settings.inbound_queue_url)
    assert got == env
    assert got.s3_key == settings.spool_prefix + got.queue_id and got.size == len(RAW)


def test_s3_failure_sends_nothing(aws):
    settings, clients, _ = aws
    broken = settings.replace(bucket="no-such-bucket")
    with pytest.raises(StoreUnavailable):
        Spooler(broken, clients).spool(RAW, mail_from="", rcpt_to=["a@example.test"])
    assert queued(clients, settings.inbound_queue_url) == []


def test_sqs_refusal_removes_the_object(aws):
    settings, clients, _ = aws
    broken = settings.replace(inbound_queue_url=settings.inbound_queue_url + "-missing")
    with pytest.raises(StoreUnavailable) as exc:
        Spooler(broken, clients).spool(RAW, mail_from="", rcpt_to=["a@example.test"])
    assert isinstance(exc.value.__cause__, ClientError)
    assert keys(clients, settings) == []  # no orphan, and no envelope anywhere points at it
    assert queued(clients, settings.inbound_queue_url) == []


class _FlakySQS:
    """First send 'times out' (it may have landed), the next is refused with an error response."""

    def __init__(self):
        self.sent = 0

    def send_message(self, **kw):
        from botocore.exceptions import ReadTimeoutError

        self.sent += 1
        if self.sent == 1:
            raise ReadTimeoutError(endpoint_url="injected://sqs")
        raise ClientError({"Error": {"Code": "InternalError", "Message": "x"}}, "SendMessage")


def test_refusal_after_ambiguous_send_keeps_the_object():
    from postern.config import Settings
    from fakes import MemoryClients

    clients = MemoryClients()
    clients.sqs = _FlakySQS()
    with pytest.raises(StoreUnavailable):
        Spooler(Settings(), clients).spool(RAW, mail_from="", rcpt_to=["a@example.test"])
    assert clients.sqs.sent == SEND_ATTEMPTS  # refusals after an ambiguous send are resent too (same queue id)
    assert len(clients.objects) == 1  # the first send may have enqueued an envelope pointing at it


def test_queue_ids_sort_by_time_and_are_unique():
    ids = [new_queue_id() for _ in range(2000)]
    assert len(set(ids)) == len(ids)
    assert all(len(i) == 24 and int(i, 16) >= 0 for i in ids)
    assert [i[:14] for i in ids] == sorted(i[:14] for i in ids)


def test_metadata_summary_fits_s3_limit():
    env = Envelope(queue_id="q", mail_from="s@remote.test", rcpt_to=tuple(f"user{i}@example.test" for i in range(100)),
                   s3_key="spool/q", size=1, received_at=0.0)
    text = metadata_summary(env)
    assert len(text) <= 1800 and text.isascii()
    assert json.loads(text)["rcpt_count"] == 100


def test_mx_listener_on_moto(aws):
    settings, clients, _ = aws
    backend = memory_backend(hostname=settings.hostname)
    backend.directory.add_domain("example.test")
    backend.directory.add_alias("alice@example.test", ["someone@remote.test"])  # no argon2 needed
    backend.spooler = Spooler(backend.settings.replace(bucket=settings.bucket, spool_prefix=settings.spool_prefix,
                                                       inbound_queue_url=settings.inbound_queue_url), clients)
    with ServerThread(start_smtp, backend, role="mx") as srv:
        c = smtplib.SMTP(HOST, srv.port, timeout=10)
        assert c.sendmail("s@remote.test", ["alice@example.test"], RAW) == {}
        c.quit()
    (env,) = queued(clients, settings.inbound_queue_url)
    assert clients.s3.get_object(Bucket=settings.bucket, Key=env.s3_key)["Body"].read() == RAW
    assert env.trace_headers.startswith("Received: from ")


def test_mx_listener_on_moto_answers_451_when_sqs_refuses(aws):
    settings, clients, _ = aws
    backend = memory_backend(hostname=settings.hostname)
    backend.directory.add_domain("example.test")
    backend.directory.add_alias("alice@example.test", ["someone@remote.test"])
    broken = backend.settings.replace(bucket=settings.bucket, spool_prefix=settings.spool_prefix,
                                      inbound_queue_url=settings.inbound_queue_url + "-missing")
    backend.spooler = Spooler(broken, clients)
    with ServerThread(start_smtp, backend, role="mx") as srv:
        c = smtplib.SMTP(HOST, srv.port, timeout=10)
        c.ehlo("client.example")
        c.mail("s@remote.test")
        c.rcpt("alice@example.test")
        code, text = c.data(RAW)
        assert (code, text[:5]) == (451, b"4.3.0")
        c.quit()
    assert keys(clients, settings) == [] and queued(clients, settings.inbound_queue_url) == []
