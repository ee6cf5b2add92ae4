"""The mail store on DynamoDB (index) and S3 (immutable message bytes).

In:   :class:`~postern.store.base.MailStore` calls; the mail table and bucket
      named by settings; keys from :mod:`postern.keys`.
Out:  the store's data objects.
Fails: ConditionalCheckFailed / TransactionCanceled become the domain errors
      (MailboxNotFound, MailboxExists, QuotaExceeded, or a duplicate result);
      every other client or connection error becomes StoreUnavailable, which
      the SMTP side turns into 451 4.3.0, IMAP into NO [UNAVAILABLE], and a
      queue consumer into a retry.

Request costs (what the benchmarks count):
  append            UpdateItem (UID + modseq) + TransactWriteItems (message,
                    dedup marker, mailbox counters, quota, blob refcount)
  flags on n msgs   UpdateItem (modseq block) + n UpdateItem + UpdateItem (unseen)
  expunge of n      UpdateItem (modseq block) + n TransactWriteItems + n UpdateItem (blob refs)
  changes_since     one Query on the ``bymodseq`` GSI
  list_messages     paginated Query (light projection for FLAGS/UID/SIZE)
  read              S3 GetObject with Range, or nothing when the header block answers
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Iterator
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from .. import keys
from ..aws import Clients, get_clients
from ..config import Settings, get_settings
from ..errors import MailboxExists, MailboxInvalid, MailboxNotFound, QuotaExceeded, StoreUnavailable
from ..items import deserialize, serialize
from .base import (
    DEFAULT_MAILBOXES,
    DELIMITER,
    SEEN,
    AppendResult,
    FlagChange,
    MailboxInfo,
    MailStore,
    MessageMeta,
    StoreResult,
    apply_flags,
    normalize_mailbox_name,
    summary_for,
    validate_mailbox_name,
)

TOMBSTONE_TTL = 30 * 86400
DEDUP_TTL = 15 * 86400  # longer than SQS's 14-day maximum retention
LIGHT_PROJECTION = "pk, sk, #uid, modseq, flags, idate, #sz, #blob, rsize, hlen"


def _code(exc: ClientError) -> str:
    return exc.response.get("Error", {}).get("Code", "")


def _values(**kw) -> dict:
    return {f":{k}": v for k, v in serialize(kw).items()}


class DynamoMailStore(MailStore):
    def __init__(self, settings: Settings | None = None, clients: Clients | None = None):
        self.settings = settings or get_settings()
        self.clients = clients or get_clients()
        self.table = self.settings.mail_table
        self.bucket = self.settings.bucket

    # --- plumbing ---------------------------------------------------------
    @property
    def _db(self):
        return self.clients.dynamodb

    @property
    def _s3(self):
        return self.clients.s3

    def _call(self, fn, **kwargs):
        try:
            return fn(**kwargs)
        except ClientError as exc:
            if _code(exc) in ("ConditionalCheckFailedException", "TransactionCanceledException", "NoSuchKey"):
                raise
            raise StoreUnavailable(f"mail store: {_code(exc) or exc.__class__.__name__}: {exc}") from exc
        except BotoCoreError as exc:
            raise StoreUnavailable(f"mail store: {exc.__class__.__name__}") from exc

    @staticmethod
    def _mailbox(item: dict) -> MailboxInfo:
        return MailboxInfo(
            user=item["user"],
            name=item["sk"][len(keys.MAILBOX_PREFIX):],
            mailbox_id=item["mbid"],
            uidvalidity=int(item["uidvalidity"]),
            uidnext=int(item["uidnext"]),
            highestmodseq=int(item["highestmodseq"]),
            exists=int(item.get("exists", 0)),
            size=int(item.get("size", 0)),
            unseen=int(item.get("unseen", 0)),
            special_use=item.get("special_use"),
        )

    @staticmethod
    def _meta(item: dict, light: bool = False) -> MessageMeta:
        if item.get("expunged"):
            return MessageMeta(uid=int(item["uid"]), modseq=int(item["modseq"]), expunged=True)
        struct = item.get("struct")
        return MessageMeta(
            uid=int(item["uid"]),
            modseq=int(item["modseq"]),
            flags=frozenset(item.get("flags") or ()),
            internaldate=float(item.get("idate", 0)),
            size=int(item.get("size", 0)),
            blob_key=item.get("blob", ""),
            raw_size=int(item.get("rsize", 0)),
            prefix=bytes(item.get("prefix", b"")),
            header=bytes(item["hdr"]) if "hdr" in item else None,
            header_len=int(item.get("hlen", 0)),
            structure=struct if isinstance(struct, dict) else None,
            light=light,
        )

    def _new_uidvalidity(self, user: str) -> int:
        # time + a per-user counter: strictly increasing across delete/recreate (RFC 3501 §2.3.1.1).
        r = self._call(
            self._db.update_item,
            TableName=self.table,
            Key=serialize(keys.usage_key(user)),
            UpdateExpression="ADD uvseq :one",
            ExpressionAttributeValues=_values(one=1),
            ReturnValues="UPDATED_NEW",
        )
        return int(time.time()) + int(deserialize(r["Attributes"])["uvseq"])

    def _mailbox_item(self, user: str, name: str, special_use: str | None, mbid: str | None = None) -> dict:
        return {
            **keys.mailbox_key(user, name),
            "user": user.lower(),
            "mbid": mbid or uuid.uuid4().hex,
            "uidvalidity": self._new_uidvalidity(user),
            "uidnext": 1,
            "highestmodseq": 1,
            "exists": 0,
            "size": 0,
            "unseen": 0,
            "special_use": special_use,
            "created": time.time(),
        }

    # --- mailboxes --------------------------------------------------------
    def ensure_mailboxes(self, user: str) -> None:
        have = {mb.name for mb in self.list_mailboxes(user)}
        for name, use in DEFAULT_MAILBOXES.items():
            if name not in have:
                try:
                    self.create_mailbox(user, name, use)
                except MailboxExists:
                    pass
                if name != "INBOX":
                    self.subscribe(user, name)
        if "INBOX" not in have:
            self.subscribe(user, "INBOX")

    def list_mailboxes(self, user: str) -> list[MailboxInfo]:
        out: list[MailboxInfo] = []
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :p)",
            "ExpressionAttributeValues": _values(pk=keys.user_pk(user), p=keys.MAILBOX_PREFIX),
            "ConsistentRead": True,
        }
        while True:
            r = self._call(self._db.query, **kwargs)
            out.extend(self._mailbox(deserialize(i)) for i in r.get("Items", []))
            if not r.get("LastEvaluatedKey"):
                return out
            kwargs["ExclusiveStartKey"] = r["LastEvaluatedKey"]

    def get_mailbox(self, user: str, name: str) -> MailboxInfo:
        r = self._call(
            self._db.get_item,
            TableName=self.table,
            Key=serialize(keys.mailbox_key(user, normalize_mailbox_name(name))),
            ConsistentRead=True,
        )
        if "Item" not in r:
            raise MailboxNotFound()
        return self._mailbox(deserialize(r["Item"]))

    def create_mailbox(self, user: str, name: str, special_use: str | None = None) -> MailboxInfo:
        n = validate_mailbox_name(name)
        item = self._mailbox_item(user, n, special_use)
        try:
            self._call(
                self._db.put_item,
                TableName=self.table,
                Item=serialize(item),
                ConditionExpression="attribute_not_exists(pk)",
            )
        except ClientError:
            raise MailboxExists() from None
        return self._mailbox(item)

    def delete_mailbox(self, user: str, name: str) -> None:
        n = normalize_mailbox_name(name)
        if n == "INBOX":
            raise MailboxInvalid("INBOX cannot be deleted")
        mb = self.get_mailbox(user, n)
        try:
            self._call(
                self._db.delete_item,
                TableName=self.table,
                Key=serialize(keys.mailbox_key(user, n)),
                ConditionExpression="mbid = :id",
                ExpressionAttributeValues=_values(id=mb.mailbox_id),
            )
        except ClientError:
            raise MailboxNotFound() from None
        # The mailbox is gone for every client; now release its messages.
        for meta in self._query_messages(mb, 0, light=True, include_tombstones=True):
            self._call(self._db.delete_item, TableName=self.table, Key=serialize(keys.message_key(user, mb.mailbox_id, meta.uid)))
            if not meta.expunged:
                self._add_usage(user, -meta.size)
                self._unref(meta.blob_key)

    def rename_mailbox(self, user: str, old: str, new: str) -> None:
        o, n = normalize_mailbox_name(old), validate_mailbox_name(new)
        if o == n:
            raise MailboxExists()
        boxes = {mb.name: mb for mb in self.list_mailboxes(user)}
        if o not in boxes:
            raise MailboxNotFound()
        if n in boxes:
            raise MailboxExists()
        if o == "INBOX":
            src = boxes["INBOX"]
            moved = self._raw_mailbox(user, "INBOX")
            moved.update(keys.mailbox_key(user, n))
            moved["special_use"] = None
            fresh = self._mailbox_item(user, "INBOX", None)
            self._transact(
                [
                    {"Put": {"TableName": self.table, "Item": serialize(moved), "ConditionExpression": "attribute_not_exists(pk)"}},
                    {
                        "Put": {
                            "TableName": self.table,
                            "Item": serialize(fresh),
                            "ConditionExpression": "mbid = :id AND uidnext = :un",
                            "ExpressionAttributeValues": _values(id=src.mailbox_id, un=src.uidnext),
                        }
                    },
                ],
                on_fail=MailboxExists,
            )
            return
        ops = []
        for name in sorted(boxes):
            if name == o or name.startswith(o + DELIMITER):
                item = self._raw_mailbox(user, name)
                new_name = n + name[len(o):]
                ops.append({"Delete": {"TableName": self.table, "Key": serialize(keys.mailbox_key(user, name)),
                                       "ConditionExpression": "mbid = :id",
                                       "ExpressionAttributeValues": _values(id=item["mbid"])}})
                item.update(keys.mailbox_key(user, new_name))
                ops.append({"Put": {"TableName": self.table, "Item": serialize(item),
                                    "ConditionExpression": "attribute_not_exists(pk)"}})
        for i in range(0, len(ops), 100):  # TransactWriteItems takes at most 100 actions
            self._transact(ops[i:i + 100], on_fail=MailboxExists)

    def _raw_mailbox(self, user: str, name: str) -> dict:
        r = self._call(self._db.get_item, TableName=self.table, Key=serialize(keys.mailbox_key(user, name)), ConsistentRead=True)
        if "Item" not in r:
            raise MailboxNotFound()
        return deserialize(r["Item"])

    def subscribe(self, user: str, name: str) -> None:
        self._call(self._db.put_item, TableName=self.table,
                   Item=serialize({**keys.subscription_key(user, normalize_mailbox_name(name)), "name": normalize_mailbox_name(name)}))

    def unsubscribe(self, user: str, name: str) -> None:
        self._call(self._db.delete_item, TableName=self.table, Key=serialize(keys.subscription_key(user, normalize_mailbox_name(name))))

    def list_subscriptions(self, user: str) -> list[str]:
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :p)",
            "ExpressionAttributeValues": _values(pk=keys.user_pk(user), p=keys.SUB_PREFIX),
        }
        out: list[str] = []
        while True:
            r = self._call(self._db.query, **kwargs)
            out.extend(deserialize(i)["name"] for i in r.get("Items", []))
            if not r.get("LastEvaluatedKey"):
                return out
            kwargs["ExclusiveStartKey"] = r["LastEvaluatedKey"]

    # --- blobs ------------------------------------------------------------
    def put_blob(self, raw: bytes) -> str:
        key = f"{self.settings.message_prefix}{uuid.uuid4().hex}"
        self._call(self._s3.put_object, Bucket=self.bucket, Key=key, Body=raw)
        return key

    def adopt_spool(self, spool_key: str, queue_id: str) -> str:
        key = f"{self.settings.message_prefix}{queue_id}"
        # Same source, same destination: repeating the copy is harmless (idempotent).
        self._call(self._s3.copy_object, Bucket=self.bucket, Key=key, CopySource={"Bucket": self.bucket, "Key": spool_key})
        return key

    def read_spool(self, spool_key: str) -> bytes:
        r = self._call(self._s3.get_object, Bucket=self.bucket, Key=spool_key)
        return r["Body"].read()

    def _unref(self, blob: str) -> None:
        if not blob:
            return
        r = self._call(
            self._db.update_item,
            TableName=self.table,
            Key=serialize(keys.blob_key(blob)),
            UpdateExpression="ADD refs :m",
            ExpressionAttributeValues=_values(m=-1),
            ReturnValues="UPDATED_NEW",
        )
        if int(deserialize(r.get("Attributes", {})).get("refs", 0)) <= 0:
            try:
                self._call(self._db.delete_item, TableName=self.table, Key=serialize(keys.blob_key(blob)),
                           ConditionExpression="refs <= :z", ExpressionAttributeValues=_values(z=0))
            except ClientError:
                return  # someone referenced it again meanwhile
            self._call(self._s3.delete_object, Bucket=self.bucket, Key=blob)

    def _add_usage(self, user: str, delta: int) -> None:
        self._call(self._db.update_item, TableName=self.table, Key=serialize(keys.usage_key(user)),
                   UpdateExpression="ADD used :d", ExpressionAttributeValues=_values(d=delta))

    # --- messages ---------------------------------------------------------
    def _allocate(self, user: str, name: str, n: int, mbid: str | None = None) -> dict:
        """Reserve n UIDs and n modseqs; returns the updated mailbox item."""
        cond = "attribute_exists(pk)" + (" AND mbid = :id" if mbid else "")
        vals = {"n": n, **({"id": mbid} if mbid else {})}
        r = self._call(
            self._db.update_item,
            TableName=self.table,
            Key=serialize(keys.mailbox_key(user, name)),
            UpdateExpression="ADD uidnext :n, highestmodseq :n",
            ConditionExpression=cond,
            ExpressionAttributeValues=_values(**vals),
            ReturnValues="ALL_NEW",
        )
        return deserialize(r["Attributes"])

    def _reserve_modseq(self, mb: MailboxInfo, n: int) -> int:
        """Reserve n modseqs; returns the highest (the block is hms-n+1 .. hms)."""
        try:
            r = self._call(
                self._db.update_item,
                TableName=self.table,
                Key=serialize(keys.mailbox_key(mb.user, mb.name)),
                UpdateExpression="ADD highestmodseq :n",
                ConditionExpression="mbid = :id",
                ExpressionAttributeValues=_values(n=n, id=mb.mailbox_id),
                ReturnValues="UPDATED_NEW",
            )
        except ClientError:
            raise MailboxNotFound() from None
        return int(deserialize(r["Attributes"])["highestmodseq"])

    def _transact(self, items: list[dict], on_fail=None) -> None:
        try:
            self._call(self._db.transact_write_items, TransactItems=items)
        except ClientError as exc:
            if on_fail is not None:
                raise on_fail() from None
            raise

    def _message_item(self, user, mbid, uid, modseq, fl, idate, size, blob, rsize, prefix, header, hlen, struct=None) -> dict:
        item = {
            **keys.message_key(user, mbid, uid),
            "uid": uid,
            "modseq": modseq,
            "flags": set(fl) if fl else None,
            "idate": idate,
            "size": size,
            "blob": blob,
            "rsize": rsize,
            "prefix": prefix,
            "hlen": hlen,
        }
        if header is not None:
            item["hdr"] = header
        if struct is not None:
            item["struct"] = struct
        return item

    def append(self, user, mailbox, raw, *, blob_key=None, prefix=b"", flags=(), internaldate=None, dedup=None, quota=0,
               header=None, raw_size=None):
        u = user.lower()
        name = normalize_mailbox_name(mailbox)
        s, rsize = summary_for(prefix, raw, header, raw_size, blob_key)
        fl = frozenset(flags)
        if quota and s.size > quota:
            raise QuotaExceeded()
        # No dedup pre-read: the transaction's condition on the dedup marker is what
        # guarantees one copy; a retried delivery only burns a UID (a gap is legal,
        # RFC 3501 §2.3.1.1) and saves a request on every first delivery.
        try:
            mbitem = self._allocate(u, name, 1)
        except ClientError:
            if name not in DEFAULT_MAILBOXES:
                raise MailboxNotFound() from None
            self.ensure_mailboxes(u)
            try:
                mbitem = self._allocate(u, name, 1)
            except ClientError:
                raise MailboxNotFound() from None
        mb = self._mailbox(mbitem)
        uid, modseq = mb.uidnext - 1, mb.highestmodseq
        key = blob_key or self.put_blob(raw)
        item = self._message_item(u, mb.mailbox_id, uid, modseq, fl, internaldate or time.time(), s.size, key,
                                  rsize, bytes(prefix), s.header, s.header_len)
        ops: list[dict] = [
            {"Put": {"TableName": self.table, "Item": serialize(item), "ConditionExpression": "attribute_not_exists(pk)"}},
            {
                "Update": {
                    "TableName": self.table,
                    "Key": serialize(keys.mailbox_key(u, name)),
                    "UpdateExpression": "ADD #e :one, #sz :sz, unseen :un",
                    "ConditionExpression": "mbid = :id",
                    "ExpressionAttributeNames": {"#e": "exists", "#sz": "size"},
                    "ExpressionAttributeValues": _values(one=1, sz=s.size, un=0 if SEEN in fl else 1, id=mb.mailbox_id),
                }
            },
            {
                "Update": {
                    "TableName": self.table,
                    "Key": serialize(keys.usage_key(u)),
                    "UpdateExpression": "ADD used :sz",
                    **(
                        {"ConditionExpression": "attribute_not_exists(used) OR used <= :max",
                         "ExpressionAttributeValues": _values(sz=s.size, max=quota - s.size)}
                        if quota else {"ExpressionAttributeValues": _values(sz=s.size)}
                    ),
                }
            },
            {
                "Update": {
                    "TableName": self.table,
                    "Key": serialize(keys.blob_key(key)),
                    "UpdateExpression": "ADD refs :one",
                    "ExpressionAttributeValues": _values(one=1),
                }
            },
        ]
        if dedup is not None:
            ops.append({
                "Put": {
                    "TableName": self.table,
                    "Item": serialize({**keys.dedup_key(dedup), "uid": uid, "uidvalidity": mb.uidvalidity, "modseq": modseq,
                                       "mbid": mb.mailbox_id, "expires": int(time.time()) + DEDUP_TTL}),
                    "ConditionExpression": "attribute_not_exists(pk)",
                }
            })
        try:
            self._call(self._db.transact_write_items, TransactItems=ops)
        except ClientError as exc:
            reasons = [r.get("Code") for r in exc.response.get("CancellationReasons", [])]
            if dedup is not None and len(reasons) == len(ops) and reasons[-1] == "ConditionalCheckFailed":
                prior = self._dedup_result(dedup)
                if prior is not None:
                    return prior
            if len(reasons) >= 3 and reasons[2] == "ConditionalCheckFailed":
                raise QuotaExceeded() from None
            if len(reasons) >= 2 and reasons[1] == "ConditionalCheckFailed":
                raise MailboxNotFound() from None
            if not reasons and quota and self.usage(u) + s.size > quota:
                raise QuotaExceeded() from None
            raise StoreUnavailable(f"append failed: {reasons or _code(exc)}") from None
        return AppendResult(uid, mb.uidvalidity, modseq, mb.mailbox_id)

    def _dedup_result(self, dedup: str) -> AppendResult | None:
        r = self._call(self._db.get_item, TableName=self.table, Key=serialize(keys.dedup_key(dedup)), ConsistentRead=True)
        if "Item" not in r:
            return None
        d = deserialize(r["Item"])
        return AppendResult(int(d["uid"]), int(d["uidvalidity"]), int(d["modseq"]), d["mbid"], duplicate=True)

    def _query_messages(self, mb: MailboxInfo, since_uid: int, light: bool, include_tombstones: bool = False) -> Iterator[MessageMeta]:
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": "pk = :pk AND sk > :s",
            "ExpressionAttributeValues": _values(pk=keys.messages_pk(mb.user, mb.mailbox_id), s=keys.uid_sk(since_uid)),
            "ConsistentRead": True,
        }
        if light:
            kwargs["ProjectionExpression"] = LIGHT_PROJECTION + ", expunged"
            kwargs["ExpressionAttributeNames"] = {"#sz": "size", "#blob": "blob", "#uid": "uid"}
        while True:
            r = self._call(self._db.query, **kwargs)
            for i in r.get("Items", []):
                m = self._meta(deserialize(i), light)
                if include_tombstones or not m.expunged:
                    yield m
            if not r.get("LastEvaluatedKey"):
                return
            kwargs["ExclusiveStartKey"] = r["LastEvaluatedKey"]

    def list_messages(self, mb: MailboxInfo, since_uid: int = 0, light: bool = False) -> Iterator[MessageMeta]:
        return self._query_messages(mb, since_uid, light)

    def get_messages(self, mb: MailboxInfo, uids: Iterable[int]) -> list[MessageMeta]:
        wanted = sorted(set(uids))
        out: list[MessageMeta] = []
        for i in range(0, len(wanted), 100):  # BatchGetItem takes at most 100 keys
            pending = {self.table: {"Keys": [serialize(keys.message_key(mb.user, mb.mailbox_id, u)) for u in wanted[i:i + 100]],
                                    "ConsistentRead": True}}
            for _ in range(8):
                r = self._call(self._db.batch_get_item, RequestItems=pending)
                out.extend(self._meta(deserialize(x)) for x in r.get("Responses", {}).get(self.table, []))
                pending = r.get("UnprocessedKeys") or {}
                if not pending:
                    break
            else:
                raise StoreUnavailable("batch read throttled")
        return sorted((m for m in out if not m.expunged), key=lambda m: m.uid)

    def changes_since(self, mb: MailboxInfo, modseq: int) -> list[MessageMeta]:
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "IndexName": keys.MODSEQ_INDEX,
            "KeyConditionExpression": "pk = :pk AND modseq > :m",
            "ExpressionAttributeValues": _values(pk=keys.messages_pk(mb.user, mb.mailbox_id), m=modseq),
        }
        out: list[MessageMeta] = []
        while True:
            r = self._call(self._db.query, **kwargs)
            out.extend(self._meta(deserialize(i)) for i in r.get("Items", []))
            if not r.get("LastEvaluatedKey"):
                return out
            kwargs["ExclusiveStartKey"] = r["LastEvaluatedKey"]

    def read(self, meta: MessageMeta, start: int = 0, end: int | None = None) -> bytes:
        total = meta.size
        end = total if end is None else min(end, total)
        start = max(0, start)
        if start >= end:
            return b""
        if meta.header is not None and end <= len(meta.header):
            return meta.header[start:end]
        plen = len(meta.prefix)
        head = meta.prefix[start:end] if start < plen else b""
        rs, re_ = max(0, start - plen), end - plen
        body = b""
        if re_ > rs:
            kwargs = {"Bucket": self.bucket, "Key": meta.blob_key}
            if rs > 0 or re_ < meta.raw_size:
                kwargs["Range"] = f"bytes={rs}-{re_ - 1}"  # RFC 9110 §14.1.2: inclusive
            try:
                body = self._call(self._s3.get_object, **kwargs)["Body"].read()
            except ClientError as exc:
                raise StoreUnavailable(f"message body missing: {_code(exc)}") from None
        return head + body

    def store_flags(self, mb, metas, flags, mode, unchanged_since=None) -> StoreResult:
        metas = list(metas)
        result = StoreResult()
        if not metas:
            return result
        fl = frozenset(flags)
        hi = self._reserve_modseq(mb, len(metas))
        next_modseq = hi - len(metas) + 1
        unseen_delta = 0
        for m in metas:
            key = serialize(keys.message_key(mb.user, mb.mailbox_id, m.uid))
            cond = "attribute_exists(pk) AND attribute_not_exists(expunged)"
            names: dict[str, str] = {}
            vals: dict[str, Any] = {"m": next_modseq}
            if unchanged_since is not None:
                cond += " AND modseq <= :us"
                vals["us"] = unchanged_since
            if mode == "replace":
                if fl:
                    expr = "SET flags = :f, modseq = :m"
                    vals["f"] = set(fl)
                else:
                    expr = "SET modseq = :m REMOVE flags"
            elif not fl:
                continue
            else:
                expr = ("ADD" if mode == "add" else "DELETE") + " flags :f SET modseq = :m"
                vals["f"] = set(fl)
            kwargs = {"TableName": self.table, "Key": key, "UpdateExpression": expr, "ConditionExpression": cond,
                      "ExpressionAttributeValues": _values(**vals), "ReturnValues": "ALL_OLD"}
            if names:
                kwargs["ExpressionAttributeNames"] = names
            try:
                r = self._call(self._db.update_item, **kwargs)
            except ClientError:
                if unchanged_since is not None:
                    # Either expunged meanwhile or modified since: tell them apart cheaply.
                    if any(x.uid == m.uid for x in self.get_messages(mb, [m.uid])):
                        result.failed.append(m.uid)
                continue
            old = frozenset(deserialize(r.get("Attributes", {})).get("flags") or ())
            new = apply_flags(old, fl, mode)
            unseen_delta += (SEEN in old) - (SEEN in new)
            result.changed.append(FlagChange(m.uid, new, next_modseq))
            next_modseq += 1
        if unseen_delta:
            self._call(self._db.update_item, TableName=self.table, Key=serialize(keys.mailbox_key(mb.user, mb.name)),
                       UpdateExpression="ADD unseen :d", ExpressionAttributeValues=_values(d=unseen_delta))
        return result

    def expunge(self, mb, metas) -> list[int]:
        metas = [m for m in metas if not m.expunged]
        if not metas:
            return []
        full = {m.uid: m for m in self.get_messages(mb, [m.uid for m in metas])}
        if not full:
            return []
        hi = self._reserve_modseq(mb, len(full))
        modseq = hi - len(full) + 1
        done: list[int] = []
        expires = int(time.time()) + TOMBSTONE_TTL
        for uid in sorted(full):
            m = full[uid]
            tomb = {**keys.message_key(mb.user, mb.mailbox_id, uid), "uid": uid, "modseq": modseq, "expunged": True,
                    "expires": expires}
            ops = [
                {"Put": {"TableName": self.table, "Item": serialize(tomb),
                         "ConditionExpression": "attribute_exists(pk) AND attribute_not_exists(expunged)"}},
                {"Update": {"TableName": self.table, "Key": serialize(keys.mailbox_key(mb.user, mb.name)),
                            "UpdateExpression": "ADD #e :m1, #sz :ms, unseen :mu",
                            "ExpressionAttributeNames": {"#e": "exists", "#sz": "size"},
                            "ExpressionAttributeValues": _values(m1=-1, ms=-m.size, mu=0 if m.seen else -1)}},
                {"Update": {"TableName": self.table, "Key": serialize(keys.usage_key(mb.user)),
                            "UpdateExpression": "ADD used :ms", "ExpressionAttributeValues": _values(ms=-m.size)}},
            ]
            modseq += 1
            try:
                self._call(self._db.transact_write_items, TransactItems=ops)
            except ClientError:
                continue  # another session expunged it first
            self._unref(m.blob_key)
            done.append(uid)
        return done

    def copy(self, mb, metas, dest, quota=0):
        src = self.get_messages(mb, [m.uid for m in metas])
        d = self.get_mailbox(mb.user, dest)
        if not src:
            return d, []
        total = sum(m.size for m in src)
        if quota and self.usage(mb.user) + total > quota:
            raise QuotaExceeded()
        try:
            item = self._allocate(d.user, d.name, len(src), d.mailbox_id)
        except ClientError:
            raise MailboxNotFound() from None
        d2 = self._mailbox(item)
        uid = d2.uidnext - len(src)
        modseq = d2.highestmodseq - len(src) + 1
        pairs: list[tuple[int, int]] = []
        for m in src:
            new = self._message_item(d.user, d.mailbox_id, uid, modseq, m.flags, m.internaldate, m.size, m.blob_key,
                                     m.raw_size, m.prefix, m.header, m.header_len, m.structure)
            ops = [
                {"Put": {"TableName": self.table, "Item": serialize(new), "ConditionExpression": "attribute_not_exists(pk)"}},
                {"Update": {"TableName": self.table, "Key": serialize(keys.blob_key(m.blob_key)),
                            "UpdateExpression": "ADD refs :one", "ExpressionAttributeValues": _values(one=1)}},
                {"Update": {"TableName": self.table, "Key": serialize(keys.mailbox_key(d.user, d.name)),
                            "UpdateExpression": "ADD #e :one, #sz :sz, unseen :un",
                            "ExpressionAttributeNames": {"#e": "exists", "#sz": "size"},
                            "ExpressionAttributeValues": _values(one=1, sz=m.size, un=0 if m.seen else 1)}},
                {"Update": {"TableName": self.table, "Key": serialize(keys.usage_key(d.user)),
                            "UpdateExpression": "ADD used :sz", "ExpressionAttributeValues": _values(sz=m.size)}},
            ]
            self._transact(ops)
            pairs.append((m.uid, uid))
            uid += 1
            modseq += 1
        return self.get_mailbox(d.user, d.name), pairs

    def usage(self, user: str) -> int:
        r = self._call(self._db.get_item, TableName=self.table, Key=serialize(keys.usage_key(user)), ConsistentRead=True)
        return int(deserialize(r.get("Item", {})).get("used", 0)) if "Item" in r else 0
