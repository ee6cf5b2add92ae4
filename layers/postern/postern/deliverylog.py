"""The outbound delivery log: per message, per recipient, in the state table.

In:   the deliver pipeline (after every attempt), the NDR pipeline (notices
      sent), the CLI (``queue list|retry|drop``, ``trace``). Keys come from
      :mod:`postern.keys`:
        ``Q#<queue id> / rcpt#<recipient>``        state of one recipient
        ``Q#<queue id> / deliver#<time>#<n>``      one attempt (all its results)
        ``Q#<queue id> / ndr#<time>#<n>``          a notice built for this message
        ``Q#<queue id> / notice#<kind>#<domain>``  "notice already sent" marker
        ``OUTQ / <queue id>#<domain>``            a pending outbound job: its next
                                                  body (``job``) and retry ``token``
        ``Q#<queue id> / ses#<message id>``       one SES send: domain, sender,
                                                  recipients (``ses_send``, read
                                                  back for SES events)
Out:  :class:`DeliveryLog` with ``states`` (one Query), ``record`` (one
      BatchWriteItem per 25 items), ``mark_notice`` (conditional put),
      ``pending`` / ``pending_for`` (Query of the OUTQ partition: no Scan;
      the partition only holds jobs not yet final, so it stays small),
      ``current_token`` (one GetItem: is a retry body still the live one?),
      ``retoken`` (conditional update: ``postern queue retry``), ``drop``,
      ``history``.
Fails: :class:`~postern.errors.StoreUnavailable` on any DynamoDB fault (the
      deliver function then lets SQS retry the record).

Recipient states: ``deferred`` (transient failure, will retry), and the final
ones ``delivered``, ``failed``, ``dropped``: a final recipient is never sent
to again, however often SQS redelivers the job. Items expire (TTL
``expires``) 30 days after the message would have expired from the queue.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from . import keys
from .errors import StoreUnavailable
from .items import deserialize, is_conditional_failure, serialize

FINAL = frozenset({"delivered", "failed", "dropped"})
KEEP_AFTER_EXPIRY = 30 * 86400


@dataclass(frozen=True)
class RecipientState:
    recipient: str
    state: str
    attempts: int = 0
    last_response: str = ""
    remote_mta: str = ""
    domain: str = ""
    updated: float = 0.0

    @property
    def final(self) -> bool:
        return self.state in FINAL


class DeliveryLog:
    def __init__(self, settings, clients):
        self.settings = settings
        self.clients = clients
        self.table = settings.state_table

    @property
    def _db(self):
        return self.clients.dynamodb

    def _expires(self, received_at: float, now: float) -> int:
        return int(max(received_at, now - self.settings.max_queue_age) + self.settings.max_queue_age + KEEP_AFTER_EXPIRY)

    def _query(self, pk: str, prefix: str = "") -> list[dict]:
        kwargs: dict[str, Any] = {"TableName": self.table, "ConsistentRead": True,
                                  "KeyConditionExpression": "pk = :pk",
                                  "ExpressionAttributeValues": {":pk": {"S": pk}}}
        if prefix:
            kwargs["KeyConditionExpression"] += " AND begins_with(sk, :p)"
            kwargs["ExpressionAttributeValues"][":p"] = {"S": prefix}
        out: list[dict] = []
        try:
            while True:
                r = self._db.query(**kwargs)
                out += [deserialize(i) for i in r.get("Items", [])]
                if "LastEvaluatedKey" not in r:
                    return out
                kwargs["ExclusiveStartKey"] = r["LastEvaluatedKey"]
        except (ClientError, BotoCoreError) as exc:
            raise StoreUnavailable(f"delivery log read failed: {exc.__class__.__name__}") from exc

    def _write(self, puts: list[dict], deletes: list[dict] = ()) -> None:
        requests = [{"PutRequest": {"Item": serialize(i)}} for i in puts]
        requests += [{"DeleteRequest": {"Key": serialize(k)}} for k in deletes]
        try:
            for i in range(0, len(requests), 25):
                pending = {self.table: requests[i:i + 25]}
                for _ in range(5):
                    r = self._db.batch_write_item(RequestItems=pending)
                    pending = r.get("UnprocessedItems") or {}
                    if not pending:
                        break
                else:
                    raise StoreUnavailable("delivery log write: unprocessed items after retries")
        except (ClientError, BotoCoreError) as exc:
            raise StoreUnavailable(f"delivery log write failed: {exc.__class__.__name__}") from exc

    # --- per recipient ------------------------------------------------------
    def states(self, queue_id: str) -> dict[str, RecipientState]:
        out = {}
        for item in self._query(keys.trace_pk(queue_id), "rcpt#"):
            st = RecipientState(item["recipient"], item["state"], int(item.get("attempts", 0)),
                                item.get("last_response", ""), item.get("remote_mta", ""), item.get("domain", ""),
                                float(item.get("updated", 0)))
            out[st.recipient.lower()] = st
        return out

    def record(self, job, attempt: int, results, final: dict[str, str], prior: dict[str, RecipientState], now: float,
               next_job=None, transport: str = "", ses_ids: dict[str, list[str]] | None = None) -> None:
        """Write one attempt: each recipient's new state, the attempt event, and the
        OUTQ entry (kept while any recipient is still deferred, deleted otherwise).
        ``next_job``: the body that will carry the next attempt (its ``token`` makes
        every other body of this job stale; ``postern queue retry`` re-sends it)."""
        next_attempt = next_job.not_before if next_job is not None else None
        exp = self._expires(job.received_at, now)
        puts: list[dict] = []
        deferred = []
        for res in results:
            state = final.get(res.recipient, "deferred")
            if state == "deferred":
                deferred.append(res.recipient)
            before = prior.get(res.recipient.lower())
            puts.append({**keys.delivery_rcpt_key(job.queue_id, res.recipient), "recipient": res.recipient,
                         "state": state, "attempts": (before.attempts if before else 0) + 1,
                         "last_response": res.response, "remote_mta": res.remote_mta, "domain": job.domain,
                         "updated": now, "expires": exp})
        puts.append({**keys.delivery_event_key(job.queue_id, "deliver", now, attempt), "stage": "deliver",
                     "at": now, "attempt": attempt, "domain": job.domain, "transport": transport,
                     "next_attempt": next_attempt, "expires": exp,
                     "results": [{"recipient": r.recipient, "state": final.get(r.recipient, "deferred"),
                                  "response": r.response, "remote_mta": r.remote_mta} for r in results]})
        deletes = []
        if deferred:
            last = results[-1].response if results else ""
            for r in results:
                if r.recipient in deferred:
                    last = r.response
            puts.append({**keys.outq_key(job.queue_id, job.domain), "queue_id": job.queue_id, "domain": job.domain,
                         "mail_from": job.mail_from, "recipients": deferred, "attempts": attempt,
                         "s3_key": job.s3_key, "original_recipients": [
                             dict(zip(job.recipients, job.original_recipients or ())).get(r, "") for r in deferred],
                         "last_response": last, "next_attempt": next_attempt, "received_at": job.received_at,
                         "token": next_job.token if next_job is not None else "",
                         "job": next_job.to_json() if next_job is not None else "",
                         "updated": now, "expires": exp})
        else:
            deletes.append(keys.outq_key(job.queue_id, job.domain))
        originals = dict(zip(job.recipients, job.original_recipients or ()))
        for mid, rcpts in (ses_ids or {}).items():  # what an SES event about this message id will need
            puts.append({**keys.ses_message_key(job.queue_id, mid), "stage": "ses", "at": now, "domain": job.domain,
                         "mail_from": job.mail_from, "s3_key": job.s3_key, "received_at": job.received_at,
                         "recipients": rcpts, "original_recipients": [originals.get(r, "") for r in rcpts],
                         "expires": exp})
        self._write(puts, deletes)

    def ses_send(self, queue_id: str, message_id: str) -> dict | None:
        """The record of one SES send (``record(..., ses_ids=...)``), or None."""
        try:
            r = self._db.get_item(TableName=self.table, Key=serialize(keys.ses_message_key(queue_id, message_id)),
                                  ConsistentRead=True)
        except (ClientError, BotoCoreError) as exc:
            raise StoreUnavailable(f"delivery log read failed: {exc.__class__.__name__}") from exc
        return deserialize(r["Item"]) if "Item" in r else None

    def ses_outcome(self, queue_id: str, recipients: list[tuple[str, str, str]], now: float, domain: str,
                    event: str, expires: int, set_state: bool = True) -> None:
        """What SES reported after accepting: per recipient (recipient, state, response), as an
        event and (``set_state``) as the recipient's state, which keeps its attempt count."""
        try:
            for r, st, resp in recipients if set_state else ():
                self._db.update_item(
                    TableName=self.table, Key=serialize(keys.delivery_rcpt_key(queue_id, r)),
                    UpdateExpression="SET recipient = :r, #s = :s, last_response = :resp, #d = :d, updated = :now, "
                                     "expires = if_not_exists(expires, :exp)",
                    ExpressionAttributeNames={"#s": "state", "#d": "domain"},
                    ExpressionAttributeValues=serialize({":r": r, ":s": st, ":resp": resp, ":d": domain, ":now": now,
                                                         ":exp": expires}))
        except (ClientError, BotoCoreError) as exc:
            raise StoreUnavailable(f"delivery log write failed: {exc.__class__.__name__}") from exc
        self._write([{**keys.delivery_event_key(queue_id, "sesevent", now), "stage": "sesevent", "at": now,
                      "event": event, "domain": domain, "expires": expires,
                      "results": [{"recipient": r, "state": st, "response": resp} for r, st, resp in recipients]}])

    # --- notices ------------------------------------------------------------
    def mark_notice(self, queue_id: str, kind: str, domain: str, now: float, received_at: float = 0.0) -> bool:
        """True the first time (this caller should send the notice), False after."""
        item = {**keys.notice_marker_key(queue_id, kind, domain), "at": now,
                "expires": self._expires(received_at or now, now)}
        try:
            self._db.put_item(TableName=self.table, Item=serialize(item), ConditionExpression="attribute_not_exists(pk)")
            return True
        except ClientError as exc:
            if is_conditional_failure(exc):
                return False
            raise StoreUnavailable(f"delivery log write failed: {exc.__class__.__name__}") from exc
        except BotoCoreError as exc:
            raise StoreUnavailable("delivery log write failed") from exc

    def notice_marked(self, queue_id: str, kind: str, domain: str) -> bool:
        try:
            r = self._db.get_item(TableName=self.table, Key=serialize(keys.notice_marker_key(queue_id, kind, domain)),
                                  ConsistentRead=True)
        except (ClientError, BotoCoreError) as exc:
            raise StoreUnavailable(f"delivery log read failed: {exc.__class__.__name__}") from exc
        return "Item" in r

    def event(self, queue_id: str, stage: str, now: float, n: int = 0, **attrs) -> None:
        item = {**keys.delivery_event_key(queue_id, stage, now, n), "stage": stage, "at": now,
                "expires": self._expires(now, now), **attrs}
        self._write([item])

    # --- the queue (CLI) ----------------------------------------------------
    def pending(self) -> list[dict]:
        return self._query(keys.OUTQ_PK)

    def pending_for(self, queue_id: str) -> list[dict]:
        return self._query(keys.OUTQ_PK, f"{queue_id}#")

    def current_token(self, queue_id: str, domain: str) -> str | None:
        """The retry token of the pending job, or None when nothing is pending (final or dropped)."""
        try:
            r = self._db.get_item(TableName=self.table, Key=serialize(keys.outq_key(queue_id, domain)),
                                  ConsistentRead=True, ProjectionExpression="#t", ExpressionAttributeNames={"#t": "token"})
        except (ClientError, BotoCoreError) as exc:
            raise StoreUnavailable(f"delivery log read failed: {exc.__class__.__name__}") from exc
        if "Item" not in r:
            return None
        return deserialize(r["Item"]).get("token", "")

    def retoken(self, queue_id: str, domain: str, old: str, new: str, job_json: str, now: float) -> bool:
        """Make ``new`` the live token (and ``job_json`` the next body) if ``old`` still is; False otherwise."""
        try:
            self._db.update_item(
                TableName=self.table, Key=serialize(keys.outq_key(queue_id, domain)),
                UpdateExpression="SET #t = :new, #j = :job, next_attempt = :now, updated = :now",
                ConditionExpression="#t = :old",
                ExpressionAttributeNames={"#t": "token", "#j": "job"},
                ExpressionAttributeValues=serialize({":new": new, ":old": old, ":job": job_json, ":now": now}))
            return True
        except ClientError as exc:
            if is_conditional_failure(exc):
                return False
            raise StoreUnavailable(f"delivery log write failed: {exc.__class__.__name__}") from exc
        except BotoCoreError as exc:
            raise StoreUnavailable("delivery log write failed") from exc

    def drop(self, queue_id: str, now: float) -> list[dict]:
        """Final state ``dropped`` for every still-deferred recipient of ``queue_id``."""
        jobs = self.pending_for(queue_id)
        puts = []
        for job in jobs:
            for rcpt in job.get("recipients", []):
                puts.append({**keys.delivery_rcpt_key(queue_id, rcpt), "recipient": rcpt, "state": "dropped",
                             "attempts": int(job.get("attempts", 0)), "last_response": "dropped by administrator",
                             "domain": job["domain"], "updated": now, "expires": int(job.get("expires", now + KEEP_AFTER_EXPIRY))})
            puts.append({**keys.delivery_event_key(queue_id, "drop", now), "stage": "drop", "at": now,
                         "domain": job["domain"], "recipients": job.get("recipients", []),
                         "expires": int(job.get("expires", now + KEEP_AFTER_EXPIRY))})
        self._write(puts, [keys.outq_key(queue_id, j["domain"]) for j in jobs])
        return jobs

    def history(self, queue_id: str) -> list[dict]:
        return self._query(keys.trace_pk(queue_id))
