"""The change feed end to end: store -> the mail table's stream -> FeedFunction -> SNS -> each task's queue.

Two gateway processes (postern_local.gatewayproc) over the local stack, the safety-net poll
set to 10 minutes: an IMAP client in IDLE on task A is told of a message delivered through
the pipeline and of a flag set through task B within seconds, which only the feed explains.
Each task made a queue of its own at start; SIGTERM deletes it and its subscription, and a
task's sweep removes the queue of a task that died without doing so. A password changed with
the CLI reaches the gateway on the feed too (the directory table's stream): the cached login of
the old password ends there without a directory read per login.
"""

from __future__ import annotations

import imaplib
import io
import smtplib
import socket
import time

import pytest

from postern.cli import main as postern
from postern_local.gatewayproc import GatewayProcess

SAFETY_NET = "600"  # seconds: far longer than any wait below
WITHIN = 15.0  # liveness ceiling (the bench measures the latency)


@pytest.fixture(scope="module")
def tasks(stack):
    env = {"POSTERN_CHANGE_FEED_POLL_INTERVAL": SAFETY_NET, "POSTERN_DRAIN_TIMEOUT": "2"}
    a, b = GatewayProcess(stack, env), GatewayProcess(stack, env)
    a.spawn(), b.spawn()
    try:
        a.wait_ready(), b.wait_ready()
        yield a, b
    finally:
        a.stop(), b.stop()


def _feed_queues(stack) -> list[str]:
    prefix = stack.env["POSTERN_CHANGE_QUEUE_PREFIX"]
    return stack.clients.sqs.list_queues(QueueNamePrefix=prefix).get("QueueUrls", [])


def _subscribed(stack) -> set[str]:
    topic = stack.env["POSTERN_CHANGE_TOPIC_ARN"]
    subs = stack.clients.sns.list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"]
    return {s["Endpoint"].rsplit(":", 1)[-1] for s in subs}


class Imap:
    def __init__(self, port: int, user: str, pw: str):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.f = self.sock.makefile("rb")
        self.f.readline()
        self.sock.sendall(f"a LOGIN {user} {pw}\r\nb SELECT INBOX\r\n".encode())
        self.until(lambda ln: ln.startswith(b"b "), 30)

    def until(self, pred, timeout: float) -> list[bytes]:
        self.sock.settimeout(timeout)
        end, lines = time.monotonic() + timeout, []
        while time.monotonic() < end:
            ln = self.f.readline()
            if not ln:
                break
            lines.append(ln)
            if pred(ln):
                return lines
        raise AssertionError(f"not seen within {timeout}s: {lines!r}")

    def close(self) -> None:
        self.sock.close()


def test_idle_on_one_task_hears_of_mail_and_flags_through_the_feed_only(stack, tasks, new_user):
    a, b = tasks
    user, pw = new_user()
    stack.store.ensure_mailboxes(user)
    stack.drain()
    idle = Imap(a.ports["imap"], user, pw)
    idle.sock.sendall(b"c IDLE\r\n")
    idle.until(lambda ln: ln.startswith(b"+ "), 10)

    with smtplib.SMTP("127.0.0.1", b.ports["smtp"], timeout=30) as c:
        c.sendmail("far@remote.test", [user], b"Subject: through the feed\r\n\r\nhello\r\n")
    t0 = time.monotonic()
    stack.drain()  # router, store, then the stream: FeedFunction publishes; SNS delivers to A's queue
    idle.until(lambda ln: ln == b"* 1 EXISTS\r\n", WITHIN)
    assert time.monotonic() - t0 < WITHIN

    other = Imap(b.ports["imap"], user, pw)
    other.sock.sendall(b"d STORE 1 +FLAGS (\\Flagged)\r\n")
    other.until(lambda ln: ln.startswith(b"d OK"), 10)
    stack.drain()
    lines = idle.until(lambda ln: b"FETCH" in ln, WITHIN)
    assert b"\\Flagged" in lines[-1]
    idle.sock.sendall(b"DONE\r\n")
    idle.until(lambda ln: ln.startswith(b"c OK"), 10)
    idle.close(), other.close()


def test_each_task_has_its_own_queue_and_sigterm_removes_it(stack, tasks):
    before = {u.rsplit("/", 1)[-1] for u in _feed_queues(stack)}
    assert len(before) >= 3  # the stack's own gateway, a and b
    assert before <= _subscribed(stack)
    c = GatewayProcess(stack, {"POSTERN_DRAIN_TIMEOUT": "2"}).start()
    mine = {u.rsplit("/", 1)[-1] for u in _feed_queues(stack)} - before
    assert len(mine) == 1 and mine <= _subscribed(stack)
    c.stop()
    assert c.proc.returncode is not None
    after = {u.rsplit("/", 1)[-1] for u in _feed_queues(stack)}
    assert after == before and not (mine & _subscribed(stack))


def test_the_sweep_removes_the_queue_of_a_task_that_died(stack, tasks):
    from postern_gateway.changefeed import ALIVE_TAG, FEED_TAG, STALE

    prefix, topic = stack.env["POSTERN_CHANGE_QUEUE_PREFIX"], stack.env["POSTERN_CHANGE_TOPIC_ARN"]
    sqs = stack.clients.sqs
    dead = sqs.create_queue(QueueName=f"{prefix}deadtask", tags={FEED_TAG: "1",
                                                                  ALIVE_TAG: str(int(time.time() - STALE - 60))})
    arn = sqs.get_queue_attributes(QueueUrl=dead["QueueUrl"], AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    stack.clients.sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn)
    live_before = {u.rsplit("/", 1)[-1] for u in _feed_queues(stack)} - {f"{prefix}deadtask"}
    cf = stack.gateway.change_feed  # the stack's own gateway task, under the task role
    assert cf is not None and cf.live
    assert cf.sweep() == 1
    assert {u.rsplit("/", 1)[-1] for u in _feed_queues(stack)} == live_before  # the living stay
    assert f"{prefix}deadtask" not in _subscribed(stack)


class Imap2(imaplib.IMAP4):
    """imaplib from 127.0.0.2: the failed login below counts against an address no other test shares."""

    def _create_socket(self, timeout):
        return socket.create_connection((self.host, self.port), timeout, source_address=("127.0.0.2", 0))


def imap_login(port: int, user: str, pw: str) -> bool:
    c = Imap2("127.0.0.1", port, timeout=30)
    try:
        c.login(user, pw)
        return True
    except imaplib.IMAP4.error:
        return False
    finally:
        c.shutdown()


def heard_credential_changes(stack, before: int) -> None:
    """Wait until the stack's gateway task applied a credential change it read from its queue."""
    cf = stack.gateway.change_feed
    end = time.monotonic() + WITHIN
    while cf.credentials <= before and time.monotonic() < end:
        time.sleep(0.05)
    assert cf.credentials > before, "no credential change reached the gateway on the feed"


def test_a_password_changed_with_the_cli_ends_the_cached_login_through_the_feed(stack, new_user):
    user, old = new_user()
    port = stack.imap_port
    assert imap_login(port, user, old) and imap_login(port, user, old)  # verified, then a cached login
    before = stack.gateway.change_feed.credentials
    new = old + "-changed"
    assert postern(["user", "passwd", user, "--password-stdin"], settings=stack.settings, clients=stack.clients,
                   stdin=io.StringIO(new + "\n"), out=io.StringIO()) == 0
    stack.drain()  # the directory's stream: FeedFunction publishes the change; SNS delivers to the task's queue
    heard_credential_changes(stack, before)
    assert not imap_login(port, user, old)
    assert imap_login(port, user, new)
