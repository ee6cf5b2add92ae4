"""The fault campaign: mail in over SMTP while AWS calls fail, then count every message.

In:   a :class:`~postern_local.faults.FaultSpec`, how many messages, how many
      concurrent SMTP clients, and whether clients retry a 4xx (as every MTA does).
Out:  :func:`run_campaign` -> :class:`CampaignResult`: per message what the
      client was told (250 / 4xx / 5xx, per attempt) and how many copies
      reached each recipient's mailbox (Message-IDs read back through the
      store with un-hooked clients), what sits in each DLQ and why (the
      exception the handler's batch processor recorded for that SQS message),
      what is still in flight; then, with faults off, the DLQs are redriven
      to their source queues and everything is counted again.
      ``CampaignResult.table()`` prints: sent, accepted, temp-failed,
      delivered, duplicated, lost, in DLQ (before and after the redrive).
Fails: never on a bad count (the caller asserts); stack errors propagate.

Classification of a message (Message-ID) for recipient R:
  accepted (any attempt got 250): delivered when R's mailbox holds it once,
      duplicated when more than once, in DLQ when absent but one of its SQS
      messages is in a DLQ, lost when absent and nowhere.
  never accepted (every attempt 4xx/5xx): fine when absent; "delivered
      anyway" when present (an ambiguous failure the gateway reported as 4xx
      though the message went through).
The stack runs its pollers in the background, as Lambda would, while the
clients send; handlers are wrapped with :class:`~postern_local.evidence.Evidence`.
"""

from __future__ import annotations

import re
import smtplib
import socket
import threading
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.parser import BytesHeaderParser
from email.policy import SMTP as SMTP_POLICY
from email.policy import default as DEFAULT_POLICY

from .evidence import Evidence
from .faults import FaultSpec

MAIN_QUEUES = ("InboundQueue", "StoreQueue", "NdrQueue")
POLLER_CONCURRENCY = 4  # batches of one queue handled at once (RemoteHandler's max_workers)
DLQS = {"InboundDLQ": "InboundQueue", "StoreDLQ": "StoreQueue", "NdrDLQ": "NdrQueue", "OutboundDLQ": "OutboundQueue"}
QUEUED_AS = re.compile(rb"queued as <?([0-9a-zA-Z]+)>?")


def make_message(sender: str, rcpts: list[str], size: int = 2048) -> tuple[str, bytes]:
    mid = f"<{uuid.uuid4().hex}@faults.example.test>"
    m = EmailMessage(policy=SMTP_POLICY)
    m["From"] = sender
    m["To"] = ", ".join(rcpts)
    m["Subject"] = "fault campaign"
    m["Message-ID"] = mid
    m["Date"] = "Tue, 01 Dec 2026 10:00:00 +0000"
    m.set_content(("All work and no play makes Jack a dull boy.\n" * max(1, size // 44)))
    return mid, m.as_bytes()


@dataclass
class Sent:
    mid: str
    rcpts: list[str]
    replies: list[str] = field(default_factory=list)  # per attempt: "250", "451", "conn", ...
    queue_ids: list[str] = field(default_factory=list)
    accepted_for: set[str] = field(default_factory=set)  # recipients a 250 after DATA covered
    refused: set[str] = field(default_factory=set)  # recipients refused permanently (5xx)

    @property
    def accepted(self) -> bool:
        return bool(self.accepted_for)

    @property
    def complete(self) -> bool:
        return self.accepted_for | self.refused >= set(self.rcpts)

    @property
    def temp_failed(self) -> bool:
        """Some recipient was never accepted and never refused: the client gave up on 4xx replies."""
        return bool(self.replies) and not self.complete


@dataclass
class Count:
    delivered: int = 0
    duplicated: int = 0
    lost: int = 0
    in_dlq: int = 0
    delivered_anyway: int = 0  # never accepted, yet present (once or more)
    stuck: int = 0
    pending: int = 0  # absent while queues still hold messages: in flight, not (yet) lost
    dup_after_4xx: int = 0  # twice, and the client had been told 4xx/no reply for an attempt that landed


@dataclass
class CampaignResult:
    spec: str
    sent: list[Sent]
    before: Count
    after: Count
    dlq: list[dict]
    injected: dict
    crashes: dict
    redeliveries: dict
    seconds: float
    in_flight: dict
    duplicates: list[str] = field(default_factory=list)
    lost_ids: list[str] = field(default_factory=list)

    @property
    def accepted(self) -> int:
        return sum(1 for s in self.sent if s.accepted)

    @property
    def temp_failed(self) -> int:
        return sum(1 for s in self.sent if s.temp_failed)

    @property
    def retried(self) -> int:
        return sum(1 for s in self.sent if len(s.replies) > 1)

    def table(self) -> str:
        rows = [
            ("messages sent", sum(1 for s in self.sent if s.replies), ""),
            ("not attempted (sending time cap reached)", sum(1 for s in self.sent if not s.replies), ""),
            ("accepted (250 for every recipient, after client retries)", sum(1 for s in self.sent if s.complete and s.accepted), ""),
            ("temp-failed (some recipient 4xx on every attempt)", self.temp_failed, ""),
            ("retried by the client after a 4xx", self.retried, ""),
            ("deliveries expected (accepted recipients)", sum(len(s.accepted_for) for s in self.sent), ""),
            ("delivered exactly once", self.before.delivered, self.after.delivered),
            ("duplicated", self.before.duplicated, self.after.duplicated),
            ("twice after a failure reply the client retried", self.before.dup_after_4xx, self.after.dup_after_4xx),
            ("lost", self.before.lost, self.after.lost),
            ("in DLQ", self.before.in_dlq, self.after.in_dlq),
            ("4xx'd yet delivered", self.before.delivered_anyway, self.after.delivered_anyway),
            ("stuck in a queue at the deadline (SQS messages)", self.before.stuck, self.after.stuck),
            ("not yet delivered while queues were busy", self.before.pending, self.after.pending),
        ]
        w = max(len(r[0]) for r in rows)
        out = [f"{'':{w}}  {'with faults':>11}  {'after DLQ redrive':>17}", f"{'-' * w}  {'-' * 11}  {'-' * 17}"]
        for name, a, b in rows:
            out.append(f"{name:{w}}  {a!s:>11}  {b!s:>17}")
        return "\n".join(out)

    def report(self) -> str:
        lines = [f"fault campaign: {self.spec}; {self.seconds:.1f} s", self.table(), ""]
        inj = ", ".join(f"{svc}: " + " ".join(f"{k}={v}" for k, v in sorted(d.items())) for svc, d in sorted(self.injected.items()))
        lines.append(f"injected: {inj or 'nothing'}")
        if self.crashes:
            lines.append("handler crashes after side effects: " + ", ".join(f"{k} {v}" for k, v in sorted(self.crashes.items())))
        if self.redeliveries:
            lines.append("extra deliveries: " + ", ".join(f"{k} {v}" for k, v in sorted(self.redeliveries.items())))
        if self.dlq:
            lines.append(f"DLQ contents ({len(self.dlq)}):")
            reasons = Counter((d["queue"], d["reason"]) for d in self.dlq)
            for (q, reason), n in reasons.most_common():
                lines.append(f"  {q}: {n} x {reason}")
        else:
            lines.append("DLQ contents: none")
        if self.in_flight:
            lines.append(f"still in flight at the deadline: {self.in_flight}")
        if self.duplicates:
            by_mid = {s.mid: s for s in self.sent}
            lines.append("duplicated Message-IDs (client replies per attempt; queue ids given 250):")
            for mid in self.duplicates[:10]:
                s = by_mid.get(mid)
                lines.append(f"  {mid}: replies {s.replies if s else '?'}, queue ids {s.queue_ids if s else '?'}")
        if self.lost_ids:
            lines.append("lost Message-IDs: " + ", ".join(self.lost_ids[:10]))
        return "\n".join(lines)


# ---------------------------------------------------------------- sending
def _send_one(conn_box: list, host: str, port: int, sender: str, s: Sent, raw: bytes) -> str:
    if conn_box[0] is None:
        c = smtplib.SMTP(host, port, timeout=30)
        c.ehlo("client.faults.example.test")
        conn_box[0] = c
    c = conn_box[0]
    code, _msg = c.mail(sender)
    if code != 250:
        c.rset()
        return str(code)
    ok = []
    worst = "250"
    # An MTA retries only the recipients not yet accepted (RFC 5321 §4.5.4.1).
    for r in [r for r in s.rcpts if r not in s.accepted_for and r not in s.refused]:
        rc, _ = c.rcpt(r)
        if rc in (250, 251):
            ok.append(r)
        elif 500 <= rc < 600:
            s.refused.add(r)
            worst = str(rc) if worst == "250" else worst
        else:
            worst = str(rc)
    if not ok:
        c.rset()
        return worst
    code, msg = c.data(raw)
    if code == 250:
        s.accepted_for.update(ok)
        m = QUEUED_AS.search(msg or b"")
        if m:
            s.queue_ids.append(m.group(1).decode())
        return worst  # "250" unless some recipient still needs a retry
    return str(code)


def send_all(host: str, port: int, jobs: list[tuple[Sent, bytes]], clients: int, sender: str,
             retries: int, retry_delay: float, deadline: float) -> None:
    lock = threading.Lock()
    it = iter(jobs)

    def worker():
        box = [None]
        while True:
            with lock:
                job = next(it, None)
            if job is None:
                break
            s, raw = job
            for attempt in range(1 + retries):
                try:
                    reply = _send_one(box, host, port, sender, s, raw)
                except (smtplib.SMTPException, OSError, socket.timeout):
                    reply = "conn"
                    try:
                        if box[0] is not None:
                            box[0].close()
                    except Exception:  # noqa: BLE001
                        pass
                    box[0] = None
                s.replies.append(reply)
                if s.complete or time.monotonic() > deadline:
                    break
                time.sleep(retry_delay * (attempt + 1))
        if box[0] is not None:
            try:
                box[0].quit()
            except Exception:  # noqa: BLE001
                pass

    threads = [threading.Thread(target=worker, name=f"smtp-client-{i}", daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(max(1.0, deadline - time.monotonic() + 60))


# ---------------------------------------------------------------- reading back
def _queue_depth(sqs, url: str) -> int:
    a = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=[
        "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible", "ApproximateNumberOfMessagesDelayed"])
    return sum(int(v) for v in a["Attributes"].values())


def wait_quiet(stack, sqs, deadline: float, queues=MAIN_QUEUES, settle: int = 3) -> dict:
    """Wait until every main queue is empty ``settle`` checks in a row; returns what is left at the deadline."""
    quiet = 0
    while time.monotonic() < deadline:
        depth = {q: _queue_depth(sqs, stack.queue_url(q)) for q in queues if q in stack.resources.queues}
        if not any(depth.values()):
            quiet += 1
            if quiet >= settle:
                return {}
        else:
            quiet = 0
        time.sleep(0.3)
    depth = {q: _queue_depth(sqs, stack.queue_url(q)) for q in queues if q in stack.resources.queues}
    return {q: n for q, n in depth.items() if n}


def mailbox_ids(store, users: list[str]) -> dict[str, Counter]:
    """user -> Counter of Message-IDs in INBOX."""
    from postern.errors import MailboxNotFound

    parser = BytesHeaderParser(policy=DEFAULT_POLICY)
    out: dict[str, Counter] = {}
    for u in users:
        c: Counter = Counter()
        try:
            mb = store.get_mailbox(u, "INBOX")
        except MailboxNotFound:
            out[u] = c
            continue
        for meta in store.list_messages(mb):
            header = meta.header
            if header is None:
                header = store.read(meta, 0, meta.header_len or 4096)
            mid = parser.parsebytes(header).get("Message-ID")
            c[str(mid).strip() if mid else f"(none uid {meta.uid})"] += 1
        out[u] = c
    return out


def dlq_contents(stack, sqs, reasons: dict[str, str]) -> list[dict]:
    """Every message in every DLQ (received with a short visibility timeout, not deleted)."""
    from postern.envelope import EnvelopeError, parse_body

    out = []
    for dlq in DLQS:
        if dlq not in stack.resources.queues:
            continue
        url = stack.queue_url(dlq)
        seen = set()
        for _ in range(200):
            r = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=30,
                                    AttributeNames=["All"])
            msgs = r.get("Messages", [])
            if not msgs:
                break
            for m in msgs:
                if m["MessageId"] in seen:
                    continue
                seen.add(m["MessageId"])
                try:
                    body = parse_body(m["Body"])
                    qid, kind = body.queue_id, body.TYPE
                    who = getattr(body, "user", "") or ",".join(getattr(body, "rcpt_to", ()) or ())
                except EnvelopeError as exc:
                    qid, kind, who = "?", f"unparseable ({exc})", ""
                out.append({
                    "queue": dlq, "message_id": m["MessageId"], "receipt": m["ReceiptHandle"], "body": m["Body"],
                    "queue_id": qid, "type": kind, "for": who,
                    "receives": m.get("Attributes", {}).get("ApproximateReceiveCount", "?"),
                    "reason": reasons.get(m["MessageId"], "no failure recorded for this SQS message"),
                })
    return out


def redrive(stack, sqs, dlq: list[dict]) -> None:
    """Move DLQ messages back to their source queues (what `aws sqs start-message-move-task` does)."""
    for d in dlq:
        sqs.send_message(QueueUrl=stack.queue_url(DLQS[d["queue"]]), MessageBody=d["body"])
        sqs.delete_message(QueueUrl=stack.queue_url(d["queue"]), ReceiptHandle=d["receipt"])


def classify(sent: list[Sent], boxes: dict[str, Counter], dlq_qids: set[str], stuck: int) -> tuple[Count, list, list]:
    c = Count(stuck=stuck)
    dups, lost = [], []
    for s in sent:
        for r in s.rcpts:
            n = boxes.get(r, Counter()).get(s.mid, 0)
            if r in s.accepted_for:
                if n == 1:
                    c.delivered += 1
                elif n > 1:
                    if any(r != "250" for r in s.replies):
                        c.dup_after_4xx += 1  # SMTP's ambiguity (RFC 5321 §6.1), not a dedup failure
                    else:
                        c.duplicated += 1
                    dups.append(s.mid)
                elif any(q in dlq_qids for q in s.queue_ids):
                    c.in_dlq += 1
                elif stuck:
                    c.pending += 1  # the queues were not drained by the deadline: cannot call it lost
                else:
                    c.lost += 1
                    lost.append(s.mid)
            elif n:
                c.delivered_anyway += 1
    return c, dups, lost


# ---------------------------------------------------------------- the campaign
def run_campaign(spec: str | FaultSpec = "s3=0.1,sqs=0.1,dynamodb=0.1,timeout=0.02,crash=0.02,seed=1",
                 messages: int = 2000, clients: int = 20, users: int = 5, max_rcpts: int = 3,
                 retries: int = 5, retry_delay: float = 0.05, time_limit: float = 600.0,
                 size: int = 2048, stack=None, domain: str | None = None) -> CampaignResult:
    """Run the campaign on ``stack`` (a started LocalStack, e.g. the e2e session one; its
    pollers are run in the background for the duration) or on a fresh one."""
    from postern.aws import Clients
    from postern.store.dynamo import DynamoMailStore

    from .stack import LocalStack

    fs = spec if isinstance(spec, FaultSpec) else FaultSpec.parse(spec)
    ev = Evidence(fs, probe=False)
    t0 = time.monotonic()
    deadline = t0 + time_limit
    own = stack is None
    if own:
        # Four batches per queue at once (each function's four workers), as Lambda scales out: one
        # at a time, the 2,000-message campaign spent most of its time waiting (18% CPU) and did
        # not drain within its bound.
        stack = LocalStack({"POSTERN_LOGIN_FAIL_DELAY": "0"}, ephemeral_ports=True, background=True,
                           handler_wrapper=ev.handler_wrapper, poller_concurrency=POLLER_CONCURRENCY)
        stack.start()
    started_pollers = False
    try:
        domain = domain or f"faults-{uuid.uuid4().hex[:6]}.test"
        try:
            stack.directory.add_domain(domain)
        except Exception:  # noqa: BLE001 - already there
            pass
        addrs = [f"user{i}@{domain}" for i in range(users)]
        for a in addrs:
            stack.directory.add_user(a, "pw-" + a)
        quiet_clients = Clients(stack.settings)  # un-hooked: read back without faults or counting
        quiet_store = DynamoMailStore(stack.settings, quiet_clients)
        sqs = quiet_clients.sqs
        for a in addrs:  # mailboxes exist before the campaign (first delivery creates them otherwise)
            quiet_store.ensure_mailboxes(a)
        ev.attach(stack, wrap_handlers=not own)
        if not stack.pollers.running:
            stack.pollers.start()
            started_pollers = True

        jobs = []
        for i in range(messages):
            k = 1 + (i % max_rcpts)
            rcpts = [addrs[(i + j) % users] for j in range(k)]
            mid, raw = make_message("sender@remote.test", rcpts, size)
            jobs.append((Sent(mid, rcpts), raw))
        send_all("127.0.0.1", stack.smtp_port, jobs, clients, "sender@remote.test", retries, retry_delay,
                 t0 + time_limit * 0.6)
        sent = [j[0] for j in jobs]
        mine = {q for s in sent for q in s.queue_ids}
        left = wait_quiet(stack, sqs, deadline)
        dlq = [d for d in dlq_contents(stack, sqs, dict(ev.reasons)) if d["queue_id"] in mine]
        boxes = mailbox_ids(quiet_store, addrs)
        before, dups, lost = classify(sent, boxes, {d["queue_id"] for d in dlq}, sum(left.values()))

        # Faults off; give the DLQ back to the pipeline and count again.
        if ev.injector is not None:
            ev.injector.enabled = False
        ev.handler_faults.spec = FaultSpec()  # no more crashes or redeliveries
        redrive(stack, sqs, dlq)
        left_after = wait_quiet(stack, sqs, max(deadline, time.monotonic() + 30))
        dlq_after = [d for d in dlq_contents(stack, sqs, dict(ev.reasons)) if d["queue_id"] in mine]
        boxes = mailbox_ids(quiet_store, addrs)
        after, dups_after, lost_after = classify(sent, boxes, {d["queue_id"] for d in dlq_after},
                                                 sum(left_after.values()))
        for d in dlq:
            d.pop("receipt", None)
            d.pop("body", None)
        return CampaignResult(
            spec=_spec_text(fs), sent=sent, before=before, after=after, dlq=dlq,
            injected=ev.injector.summary() if ev.injector else {},
            crashes=dict(ev.handler_faults.crashes), redeliveries=dict(ev.handler_faults.redeliveries),
            seconds=time.monotonic() - t0, in_flight=left,
            duplicates=sorted(set(dups) | set(dups_after)), lost_ids=sorted(set(lost_after)),
        )
    finally:
        if own:
            stack.stop()
        else:
            if started_pollers:
                stack.pollers.stop()
            ev.detach(stack)


def _spec_text(fs: FaultSpec) -> str:
    parts = [f"{k}={v}" for k, v in sorted(fs.rates.items())]
    for k in ("timeout", "late", "crash"):
        if getattr(fs, k):
            parts.append(f"{k}={getattr(fs, k)}")
    if fs.redeliver > 1:
        parts.append(f"redeliver={fs.redeliver}")
    parts.append(f"seed={fs.seed}")
    return ",".join(parts)


def _by_recipient(sent: list[Sent]) -> dict[str, list[Sent]]:
    out: dict[str, list[Sent]] = defaultdict(list)
    for s in sent:
        for r in s.rcpts:
            out[r].append(s)
    return out
