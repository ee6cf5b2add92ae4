"""The gateway task's end of the change feed: a queue of its own on ChangeFeedTopic, long-polled.

In:   Settings (``change_topic_arn``, ``change_queue_prefix``, ``change_feed_mail``), Clients (``sqs``,
      ``sqs_long_poll``, ``sns``: the task role's), and ``on_notices``, called on the
      gateway's event loop with each batch of :class:`postern.feed.Notice` read, and
      ``on_credentials`` with the accounts whose credentials changed (postern.feed.Batch).
Out:  :class:`ChangeFeed`. ``open()`` (blocking) creates the queue
      ``<prefix><random id>`` (SQS-managed encryption, notices kept a minute, a policy
      that lets only the topic send, tags ``postern:feed`` and ``postern:alive``) and
      subscribes it to the topic with raw delivery (confirming the subscription if SNS asks;
      with ``change_feed_mail`` off, filtered to credential changes: a task that serves no
      mailbox reads no notice per change);
      ``start(loop)`` runs one daemon
      thread that long-polls it (20 s: an idle task makes three requests a minute, whatever
      its number of clients) and hands the notices to the loop, deleting nothing: a notice
      read stays hidden (:data:`VISIBILITY`) until past the queue's retention, so SQS drops
      it without a DeleteMessage (one request per poll less, in every task); it
      refreshes ``postern:alive`` every :data:`HEARTBEAT` seconds and, at start and every
      :data:`SWEEP` seconds, removes the queues (and subscriptions) of dead tasks: those
      whose ``postern:alive`` is older than :data:`STALE`, or whose queue is gone.
      ``close()`` (blocking; SIGTERM drain's end) unsubscribes and deletes the queue.
      ``live``: the last receive worked; while it does, the IMAP watchers read the log only
      every ``POSTERN_CHANGE_FEED_POLL_INTERVAL`` (the safety net), otherwise every
      ``POSTERN_IMAP_POLL_INTERVAL``.
Fails: ``open()`` raises the AWS error (the gateway then runs without the feed, polling);
      a failed receive, heartbeat or sweep is logged, ``live`` turns False (``on_state``
      tells the watchers), and the thread tries again after :data:`BACKOFF` seconds. A task
      killed without ``close()`` leaves its queue until another task's sweep removes it
      (within STALE + SWEEP); SNS drops what it cannot deliver to a deleted queue.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
import time
from collections.abc import Callable

from postern import feed

log = logging.getLogger("postern.gateway.changefeed")

WAIT = 20  # seconds: SQS's longest long poll
RETENTION = 60  # seconds (SQS's minimum): a notice older than that is no news (the safety-net poll has it)
# A received notice is hidden for longer than the queue keeps any message, so it is never received again
# and needs no DeleteMessage: SQS drops it at its retention (Developer Guide, "visibility timeout": a
# message not deleted becomes visible again only when the timeout ends, by then past its retention).
# What is in flight meanwhile is at most a minute of notices, far below SQS's ~120,000 in-flight limit.
VISIBILITY = 2 * RETENTION
HEARTBEAT = 300  # seconds between refreshes of the queue's postern:alive tag
STALE = 1800  # seconds without a heartbeat after which another task removes the queue
SWEEP = 3600  # seconds between sweeps for the queues of dead tasks
BACKOFF = 5.0  # seconds after a failed receive
ALIVE_TAG = "postern:alive"
FEED_TAG = "postern:feed"


def _arn_parts(topic_arn: str) -> tuple[str, str, str]:
    """(partition, region, account) of an ARN."""
    parts = topic_arn.split(":")
    return parts[1], parts[3], parts[4]


class ChangeFeed:
    def __init__(self, settings, clients, on_notices: Callable[[list[feed.Notice]], None],
                 on_state: Callable[[bool], None] | None = None, name: str | None = None,
                 on_credentials: Callable[[list[str]], None] | None = None):
        self.topic = settings.change_topic_arn
        self.prefix = settings.change_queue_prefix
        self.mail = getattr(settings, "change_feed_mail", True)  # False: credential changes only
        self.clients = clients
        self.on_notices = on_notices
        self.on_state = on_state
        self.on_credentials = on_credentials
        self.name = name or f"{self.prefix}{secrets.token_hex(8)}"
        partition, region, account = _arn_parts(self.topic)
        self.queue_arn = f"arn:{partition}:sqs:{region}:{account}:{self.name}"
        self.queue_url = ""
        self.subscription = ""
        self.live = False
        self.received = 0  # notices handed to the loop (bench, tests)
        self.credentials = 0  # credential changes applied on the loop (tests)
        self._loop = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._next_heartbeat = 0.0
        self._next_sweep = 0.0

    # --- lifecycle (blocking calls: run them off the event loop) ----------------------------
    def open(self) -> None:
        policy = {"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Principal": {"Service": "sns.amazonaws.com"}, "Action": "sqs:SendMessage",
            "Resource": self.queue_arn, "Condition": {"ArnEquals": {"aws:SourceArn": self.topic}}}]}
        self.queue_url = self.clients.sqs.create_queue(
            QueueName=self.name,
            Attributes={"MessageRetentionPeriod": str(RETENTION), "ReceiveMessageWaitTimeSeconds": str(WAIT),
                        "VisibilityTimeout": str(VISIBILITY), "SqsManagedSseEnabled": "true", "Policy": json.dumps(policy)},
            tags={FEED_TAG: "1", ALIVE_TAG: str(int(time.time()))},
        )["QueueUrl"]
        self._next_heartbeat = time.monotonic() + HEARTBEAT
        try:
            attributes = {"RawMessageDelivery": "true"}
            if not self.mail:  # no mailbox served here: the credential changes only (feed.CREDENTIALS_ONLY)
                attributes["FilterPolicy"] = json.dumps(feed.CREDENTIALS_ONLY)
            self.subscription = self.clients.sns.subscribe(
                TopicArn=self.topic, Protocol="sqs", Endpoint=self.queue_arn,
                Attributes=attributes, ReturnSubscriptionArn=True)["SubscriptionArn"]
        except Exception:
            self._delete_queue()
            raise
        self.live = True
        log.info("change feed: queue %s subscribed to %s", self.name, self.topic)

    def start(self, loop) -> None:
        self._loop = loop
        self._thread = threading.Thread(target=self._run, name="change-feed", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Unsubscribe and delete the queue (the receive under way fails and the thread ends)."""
        self._stop.set()
        self.live = False
        if self.subscription:
            try:
                self.clients.sns.unsubscribe(SubscriptionArn=self.subscription)
            except Exception:  # noqa: BLE001 - the sweep of another task removes it
                log.warning("change feed: unsubscribe failed", exc_info=True)
            self.subscription = ""
        self._delete_queue()

    def _delete_queue(self) -> None:
        if self.queue_url:
            try:
                self.clients.sqs.delete_queue(QueueUrl=self.queue_url)
            except Exception:  # noqa: BLE001 - the sweep of another task removes it
                log.warning("change feed: queue deletion failed", exc_info=True)
            self.queue_url = ""

    # --- the thread ------------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.is_set():
            now = time.monotonic()
            try:
                if now >= self._next_sweep:
                    self._next_sweep = now + SWEEP
                    self.sweep()
                if now >= self._next_heartbeat:
                    self._next_heartbeat = now + HEARTBEAT
                    self.clients.sqs.tag_queue(QueueUrl=self.queue_url, Tags={ALIVE_TAG: str(int(time.time()))})
                self.receive_once(WAIT)
                self._set_live(True)
            except Exception:  # noqa: BLE001 - the feed must survive any fault
                if self._stop.is_set():
                    return
                log.warning("change feed: receive failed; polling the log meanwhile", exc_info=True)
                self._set_live(False)
                self._stop.wait(BACKOFF)

    def _set_live(self, live: bool) -> None:
        if live != self.live:
            self.live = live
            if self.on_state is not None and self._loop is not None:
                self._loop.call_soon_threadsafe(self.on_state, live)

    def receive_once(self, wait: int = WAIT) -> int:
        """One long poll: hand the notices to the loop (nothing to delete: VISIBILITY). Returns notices."""
        r = self.clients.sqs_long_poll.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10,
                                                       WaitTimeSeconds=wait)
        messages = r.get("Messages", [])
        if not messages:
            return 0
        for m in messages:
            self._confirm(m.get("Body", ""))
        batches = [feed.read(m.get("Body", "")) for m in messages]
        notices = [n for b in batches for n in b.notices]
        credentials = [a for b in batches for a in b.credentials]
        if credentials and self._loop is not None and self.on_credentials is not None:
            self._loop.call_soon_threadsafe(self._revoke, credentials)
        if notices and self._loop is not None:
            self.received += len(notices)
            self._loop.call_soon_threadsafe(self.on_notices, notices)
        return len(notices)

    def _revoke(self, accounts: list[str]) -> None:
        """On the loop: hand credential changes over, then count them (a test that sees the count
        knows every login after it finds them applied)."""
        self.on_credentials(accounts)
        self.credentials += len(accounts)

    def _confirm(self, body: str) -> None:
        """A subscription SNS left pending sends a confirmation (SNS Developer Guide, "Confirm the
        subscription"): confirm it, so the feed works whatever SNS decided at Subscribe."""
        if '"SubscriptionConfirmation"' not in body:
            return
        try:
            doc = json.loads(body)
        except ValueError:
            return
        if doc.get("Type") == "SubscriptionConfirmation" and doc.get("TopicArn") == self.topic and doc.get("Token"):
            arn = self.clients.sns.confirm_subscription(TopicArn=self.topic, Token=doc["Token"]).get("SubscriptionArn")
            if arn:
                self.subscription = arn

    def sweep(self) -> int:
        """Remove the queues and subscriptions of dead tasks. Returns how many were removed."""
        removed, token = 0, None
        while True:
            page = self.clients.sns.list_subscriptions_by_topic(
                TopicArn=self.topic, **({"NextToken": token} if token else {}))
            for sub in page.get("Subscriptions", []):
                endpoint = sub.get("Endpoint", "")
                name = endpoint.rsplit(":", 1)[-1]
                if sub.get("Protocol") != "sqs" or not name.startswith(self.prefix) or name == self.name:
                    continue
                if self._dead(endpoint, name):
                    removed += 1
                    self._remove(sub.get("SubscriptionArn", ""), endpoint, name)
            token = page.get("NextToken")
            if not token:
                return removed

    def _queue_url(self, name: str) -> str:
        base = self.queue_url.rsplit("/", 1)[0]
        return f"{base}/{name}"

    def _dead(self, endpoint: str, name: str) -> bool:
        try:
            tags = self.clients.sqs.list_queue_tags(QueueUrl=self._queue_url(name)).get("Tags", {})
        except self.clients.sqs.exceptions.QueueDoesNotExist:
            return True
        except Exception as exc:  # noqa: BLE001 - NonExistentQueue in the query-protocol spelling
            return "NonExistentQueue" in str(exc) or "QueueDoesNotExist" in str(exc)
        try:
            alive = int(tags.get(ALIVE_TAG, "0"))
        except ValueError:
            alive = 0
        return time.time() - alive > STALE

    def _remove(self, subscription: str, endpoint: str, name: str) -> None:
        log.info("change feed: removing the queue of a dead task: %s", name)
        try:
            if subscription and subscription.startswith("arn:"):
                self.clients.sns.unsubscribe(SubscriptionArn=subscription)
            self.clients.sqs.delete_queue(QueueUrl=self._queue_url(name))
        except Exception:  # noqa: BLE001 - gone already, or the next sweep tries again
            log.debug("change feed: removal of %s incomplete", name, exc_info=True)
