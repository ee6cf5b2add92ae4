"""The in-memory twin of the mail store: same semantics, one lock, no AWS.

In:   the :class:`~postern.store.base.MailStore` calls.
Out:  the same data objects as the DynamoDB store.
Fails: the same domain errors (never StoreUnavailable).

Used by unit tests (the contract suite runs against both) and by the IMAP
benchmark's in-memory mode.
"""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import replace

from ..errors import MailboxExists, MailboxInvalid, MailboxNotFound, QuotaExceeded
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


class MemoryMailStore(MailStore):
    def __init__(self):
        self._lock = threading.RLock()
        self._mailboxes: dict[tuple[str, str], MailboxInfo] = {}  # (user, name)
        self._messages: dict[str, dict[int, MessageMeta]] = {}  # mailbox_id -> uid -> meta (incl. tombstones)
        self._subs: dict[str, set[str]] = {}
        self._usage: dict[str, int] = {}
        self._blobs: dict[str, bytes] = {}
        self._refs: dict[str, int] = {}
        self._dedup: dict[str, AppendResult] = {}
        self._spool: dict[str, bytes] = {}
        self._uv = itertools.count(1)

    # --- helpers ----------------------------------------------------------
    def _new_mailbox(self, user: str, name: str, special_use: str | None) -> MailboxInfo:
        mb = MailboxInfo(
            user=user.lower(),
            name=name,
            mailbox_id=uuid.uuid4().hex,
            uidvalidity=int(time.time()) + next(self._uv),
            uidnext=1,
            highestmodseq=1,
            special_use=special_use,
        )
        self._mailboxes[(user.lower(), name)] = mb
        self._messages[mb.mailbox_id] = {}
        return mb

    def _mb(self, user: str, name: str) -> MailboxInfo:
        mb = self._mailboxes.get((user.lower(), normalize_mailbox_name(name)))
        if mb is None:
            raise MailboxNotFound()
        return mb

    def _current(self, mb: MailboxInfo) -> MailboxInfo:
        cur = self._mailboxes.get((mb.user, mb.name))
        if cur is None or cur.mailbox_id != mb.mailbox_id:
            raise MailboxNotFound()
        return cur

    def put_spool(self, key: str, raw: bytes) -> None:
        """Test helper: what the gateway's S3 PUT does."""
        self._spool[key] = raw

    # --- mailboxes --------------------------------------------------------
    def ensure_mailboxes(self, user: str) -> None:
        with self._lock:
            for name, use in DEFAULT_MAILBOXES.items():
                if (user.lower(), name) not in self._mailboxes:
                    self._new_mailbox(user, name, use)

    def list_mailboxes(self, user: str) -> list[MailboxInfo]:
        with self._lock:
            return sorted((mb for (u, _), mb in self._mailboxes.items() if u == user.lower()), key=lambda m: m.name)

    def get_mailbox(self, user: str, name: str) -> MailboxInfo:
        with self._lock:
            return self._mb(user, name)

    def create_mailbox(self, user: str, name: str, special_use: str | None = None) -> MailboxInfo:
        n = validate_mailbox_name(name)
        with self._lock:
            if (user.lower(), n) in self._mailboxes:
                raise MailboxExists()
            return self._new_mailbox(user, n, special_use)

    def delete_mailbox(self, user: str, name: str) -> None:
        n = normalize_mailbox_name(name)
        if n == "INBOX":
            raise MailboxInvalid("INBOX cannot be deleted")
        with self._lock:
            mb = self._mb(user, n)
            live = [m for m in self._messages[mb.mailbox_id].values() if not m.expunged]
            for m in live:
                self._unref(m.blob_key)
                self._usage[mb.user] = self._usage.get(mb.user, 0) - m.size
            del self._mailboxes[(mb.user, n)]
            del self._messages[mb.mailbox_id]

    def rename_mailbox(self, user: str, old: str, new: str) -> None:
        o, n = normalize_mailbox_name(old), validate_mailbox_name(new)
        u = user.lower()
        with self._lock:
            src = self._mb(u, o)
            if (u, n) in self._mailboxes:
                raise MailboxExists()
            if o == "INBOX":
                # RFC 3501 §6.3.5: messages move to the new name, INBOX stays, empty.
                self._mailboxes[(u, n)] = replace(src, name=n, special_use=None)
                del self._mailboxes[(u, "INBOX")]
                self._new_mailbox(u, "INBOX", None)
                return
            moves = [(k, mb) for k, mb in self._mailboxes.items() if k[0] == u and (k[1] == o or k[1].startswith(o + DELIMITER))]
            for (_, name), mb in moves:
                del self._mailboxes[(u, name)]
            for (_, name), mb in moves:
                new_name = n + name[len(o):]
                self._mailboxes[(u, new_name)] = replace(mb, name=new_name)

    def subscribe(self, user: str, name: str) -> None:
        with self._lock:
            self._subs.setdefault(user.lower(), set()).add(normalize_mailbox_name(name))

    def unsubscribe(self, user: str, name: str) -> None:
        with self._lock:
            self._subs.setdefault(user.lower(), set()).discard(normalize_mailbox_name(name))

    def list_subscriptions(self, user: str) -> list[str]:
        with self._lock:
            return sorted(self._subs.get(user.lower(), set()))

    # --- blobs ------------------------------------------------------------
    def put_blob(self, raw: bytes) -> str:
        key = f"msg/{uuid.uuid4().hex}"
        with self._lock:
            self._blobs[key] = bytes(raw)
        return key

    def adopt_spool(self, spool_key: str, queue_id: str) -> str:
        key = f"msg/{queue_id}"
        with self._lock:
            if key not in self._blobs:
                self._blobs[key] = self._spool[spool_key]
        return key

    def read_spool(self, spool_key: str) -> bytes:
        with self._lock:
            return self._spool[spool_key]

    def _unref(self, key: str) -> None:
        self._refs[key] = self._refs.get(key, 0) - 1
        if self._refs[key] <= 0:
            self._refs.pop(key, None)
            self._blobs.pop(key, None)

    def blob_count(self) -> int:
        with self._lock:
            return len(self._blobs)

    # --- messages ---------------------------------------------------------
    def append(self, user, mailbox, raw, *, blob_key=None, prefix=b"", flags=(), internaldate=None, dedup=None, quota=0,
               header=None, raw_size=None):
        u = user.lower()
        name = normalize_mailbox_name(mailbox)
        with self._lock:
            if dedup is not None and dedup in self._dedup:
                return replace(self._dedup[dedup], duplicate=True)
            if (u, name) not in self._mailboxes and name in DEFAULT_MAILBOXES:
                self.ensure_mailboxes(u)
            mb = self._mb(u, name)
            s, rsize = summary_for(prefix, raw, header, raw_size, blob_key)
            if quota and self._usage.get(u, 0) + s.size > quota:
                raise QuotaExceeded()
            key = blob_key or self.put_blob(raw)
            if key not in self._blobs:
                self._blobs[key] = bytes(raw)
            uid, modseq = mb.uidnext, mb.highestmodseq + 1
            fl = frozenset(flags)
            meta = MessageMeta(
                uid=uid, modseq=modseq, flags=fl, internaldate=internaldate or time.time(), size=s.size,
                blob_key=key, raw_size=rsize, prefix=bytes(prefix), header=s.header, header_len=s.header_len,
            )
            self._messages[mb.mailbox_id][uid] = meta
            self._refs[key] = self._refs.get(key, 0) + 1
            self._usage[u] = self._usage.get(u, 0) + s.size
            self._mailboxes[(u, name)] = replace(
                mb, uidnext=uid + 1, highestmodseq=modseq, exists=mb.exists + 1, size=mb.size + s.size,
                unseen=mb.unseen + (0 if SEEN in fl else 1),
            )
            result = AppendResult(uid, mb.uidvalidity, modseq, mb.mailbox_id)
            if dedup is not None:
                self._dedup[dedup] = result
            return result

    def list_messages(self, mb: MailboxInfo, since_uid: int = 0, light: bool = False) -> Iterator[MessageMeta]:
        with self._lock:
            msgs = self._messages.get(mb.mailbox_id)
            if msgs is None:
                raise MailboxNotFound()
            rows = [m for uid, m in sorted(msgs.items()) if uid > since_uid and not m.expunged]
        yield from rows

    def get_messages(self, mb: MailboxInfo, uids: Iterable[int]) -> list[MessageMeta]:
        with self._lock:
            msgs = self._messages.get(mb.mailbox_id, {})
            return [msgs[u] for u in sorted(set(uids)) if u in msgs and not msgs[u].expunged]

    def changes_since(self, mb: MailboxInfo, modseq: int) -> list[MessageMeta]:
        with self._lock:
            msgs = self._messages.get(mb.mailbox_id)
            if msgs is None:
                raise MailboxNotFound()
            return sorted((m for m in msgs.values() if m.modseq > modseq), key=lambda m: m.modseq)

    def read(self, meta: MessageMeta, start: int = 0, end: int | None = None) -> bytes:
        with self._lock:
            data = meta.prefix + self._blobs[meta.blob_key]
        return data[start:end]

    def store_flags(self, mb, metas, flags, mode, unchanged_since=None) -> StoreResult:
        result = StoreResult()
        with self._lock:
            cur = self._current(mb)
            msgs = self._messages[cur.mailbox_id]
            hms, unseen = cur.highestmodseq, cur.unseen
            for m in metas:
                live = msgs.get(m.uid)
                if live is None or live.expunged:
                    continue
                if unchanged_since is not None and live.modseq > unchanged_since:
                    result.failed.append(m.uid)
                    continue
                new = apply_flags(live.flags, flags, mode)
                if new == live.flags:
                    continue
                hms += 1
                unseen += (SEEN in live.flags) - (SEEN in new)
                msgs[m.uid] = replace(live, flags=new, modseq=hms)
                result.changed.append(FlagChange(m.uid, new, hms))
            self._mailboxes[(cur.user, cur.name)] = replace(cur, highestmodseq=hms, unseen=unseen)
        return result

    def expunge(self, mb, metas) -> list[int]:
        done: list[int] = []
        with self._lock:
            cur = self._current(mb)
            msgs = self._messages[cur.mailbox_id]
            hms, exists, size, unseen = cur.highestmodseq, cur.exists, cur.size, cur.unseen
            for m in metas:
                live = msgs.get(m.uid)
                if live is None or live.expunged:
                    continue
                hms += 1
                msgs[m.uid] = MessageMeta(uid=m.uid, modseq=hms, expunged=True)
                exists -= 1
                size -= live.size
                unseen -= 0 if live.seen else 1
                self._usage[cur.user] = self._usage.get(cur.user, 0) - live.size
                self._unref(live.blob_key)
                done.append(m.uid)
            self._mailboxes[(cur.user, cur.name)] = replace(cur, highestmodseq=hms, exists=exists, size=size, unseen=unseen)
        return done

    def copy(self, mb, metas, dest, quota=0):
        pairs: list[tuple[int, int]] = []
        with self._lock:
            src = self._messages[self._current(mb).mailbox_id]
            d = self._mb(mb.user, dest)
            total = sum(src[m.uid].size for m in metas if m.uid in src and not src[m.uid].expunged)
            if quota and self._usage.get(d.user, 0) + total > quota:
                raise QuotaExceeded()
            dm = self._messages[d.mailbox_id]
            uidnext, hms, exists, size, unseen = d.uidnext, d.highestmodseq, d.exists, d.size, d.unseen
            for m in metas:
                live = src.get(m.uid)
                if live is None or live.expunged:
                    continue
                hms += 1
                dm[uidnext] = replace(live, uid=uidnext, modseq=hms)
                self._refs[live.blob_key] = self._refs.get(live.blob_key, 0) + 1
                self._usage[d.user] = self._usage.get(d.user, 0) + live.size
                pairs.append((live.uid, uidnext))
                uidnext += 1
                exists += 1
                size += live.size
                unseen += 0 if live.seen else 1
            d = replace(d, uidnext=uidnext, highestmodseq=hms, exists=exists, size=size, unseen=unseen)
            self._mailboxes[(d.user, d.name)] = d
        return d, pairs

    def usage(self, user: str) -> int:
        with self._lock:
            return self._usage.get(user.lower(), 0)
