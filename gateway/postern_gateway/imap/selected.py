"""The selected mailbox of one session (pymap ``selected.py``): what this client knows.

In:   the process :class:`~.watcher.MailboxIndex` at SELECT time, then change
      batches from the :class:`~.watcher.Watcher` (``on_changes``: messages,
      keywords new to the mailbox, \\Recent won) and the session's own writes
      (``told_flags``, ``announce``, ``expunged_now``).
Out:  the sequence-number <-> UID map the client sees, :meth:`resolve` for
      message sets, :meth:`flag_lines` (FLAGS and PERMANENTFLAGS), and
      :meth:`flush`: the untagged FLAGS / EXPUNGE / EXISTS / RECENT / FETCH FLAGS
      lines to send before a tagged reply.
Fails: :class:`~.errors.BadCommand` for sequence numbers beyond EXISTS.

Rules (RFC 3501 §5.2, §5.5, §7.4.1): sequence numbers change only when we
tell the client: an expunge by another session is held back until a command
during which EXPUNGE may be sent (never during FETCH, STORE or SEARCH; the
UID forms allow it). Messages that were expunged but not yet announced keep
their sequence numbers and last known metadata. Another session's flag change
reaches this view when it is announced (flush), so a FETCH never shows a flag
the client was not told about: a keyword new to the mailbox is announced with
``* FLAGS`` and ``* OK [PERMANENTFLAGS]`` first (RFC 3501 §7.2.6), whichever
session or gateway task introduced it. ``\\Recent`` is arbitrated by the store
(``claim_recent``): one session of all tasks is the first to be told.
"""

from __future__ import annotations

import asyncio
import bisect
from dataclasses import replace

from postern.store.base import MAX_KEYWORDS, SYSTEM_FLAGS, MailboxInfo, MessageMeta, is_keyword

from . import responses as R
from .errors import BadCommand
from .seqset import STAR, SeqSet, compress


class Selected:
    def __init__(self, watcher, mb: MailboxInfo, readonly: bool, condstore: bool = False, qresync: bool = False):
        self.watcher = watcher
        self.mb = mb
        self.readonly = readonly
        self.condstore = condstore or qresync
        self.qresync = qresync  # RFC 7162 §3.2.10: expunges are reported as VANISHED
        idx = watcher.index
        self.metas: dict[int, MessageMeta] = dict(idx.metas)
        self.uids: list[int] = sorted(self.metas)
        self.pending_expunge: set[int] = set()
        self.pending_flags: dict[int, MessageMeta] = {}  # another session's change, not told yet
        self.pending_new: dict[int, MessageMeta] = {}
        self.pending_keywords: set[str] = set()
        self.recent: set[int] = set()  # set by SELECT (claim_recent) and by the watcher
        self.gone = False
        self.announce_highestmodseq = False  # owed: untagged OK [HIGHESTMODSEQ] (enable_condstore)
        self.changed = asyncio.Event()
        self.keywords: set[str] = set(idx.keywords)  # announced to this client

    # --- FLAGS / PERMANENTFLAGS ----------------------------------------------------
    def flag_lines(self) -> list[bytes]:
        """``* FLAGS`` and ``* OK [PERMANENTFLAGS]`` for what this client has been told (RFC 3501 §7.2.6)."""
        flags = list(SYSTEM_FLAGS) + sorted(self.keywords)
        perm = "" if self.readonly else " ".join(flags + (["\\*"] if len(self.keywords) < MAX_KEYWORDS else []))
        return [R.untagged(f"FLAGS ({' '.join(flags)})"), R.ok_code(f"PERMANENTFLAGS ({perm})", "Flags permitted")]

    def announce(self, keywords) -> list[bytes]:
        """The FLAGS lines to send before a response that shows ``keywords``, if any is new to the client."""
        new = {k for k in keywords if is_keyword(k)} - self.keywords
        self.pending_keywords -= new
        if not new:
            return []
        self.keywords |= new
        return self.flag_lines()

    # --- inputs -------------------------------------------------------------
    def mark_gone(self) -> None:
        self.gone = True
        self.changed.set()

    def on_changes(self, changes: list[MessageMeta], keywords=(), recent=()) -> None:
        top = self.uids[-1] if self.uids else 0
        self.pending_keywords |= set(keywords) - self.keywords
        self.recent |= set(recent)
        for m in changes:
            if m.expunged:
                if m.uid in self.metas:
                    self.pending_expunge.add(m.uid)
                    self.pending_flags.pop(m.uid, None)
                self.pending_new.pop(m.uid, None)
                continue
            cur = self.metas.get(m.uid)
            if cur is not None:
                seen = self.pending_flags.get(m.uid, cur)
                if m.modseq > seen.modseq and m.uid not in self.pending_expunge:
                    self.pending_flags[m.uid] = m
            elif m.uid in self.pending_new:
                if self.pending_new[m.uid].modseq < m.modseq:
                    self.pending_new[m.uid] = replace(self.pending_new[m.uid], flags=m.flags, modseq=m.modseq)
            elif m.uid > top:
                self.pending_new[m.uid] = m
        if self.pending_expunge or self.pending_flags or self.pending_new or self.pending_keywords:
            self.changed.set()

    def enable_condstore(self) -> None:
        """A CONDSTORE-enabling command in this mailbox (RFC 7162 §3.1): from now on FETCH carries
        MODSEQ, and if the mailbox was selected without CONDSTORE the client is owed an untagged
        ``OK [HIGHESTMODSEQ n]`` before that command's tagged reply (sent by :meth:`flush`)."""
        if not self.condstore:
            self.condstore = True
            self.announce_highestmodseq = True

    def told_flags(self, uid: int, meta: MessageMeta) -> None:
        """Our own STORE/FETCH already told the client these flags (after :meth:`announce`)."""
        cur = self.metas.get(uid)
        if cur is not None and cur.modseq <= meta.modseq:
            self.metas[uid] = meta
            pending = self.pending_flags.get(uid)
            if pending is not None and pending.modseq <= meta.modseq:
                del self.pending_flags[uid]

    def expunged_now(self, uid: int) -> int | None:
        """Remove ``uid`` and return the sequence number to announce in an EXPUNGE."""
        seq = self.seq_of(uid)
        if seq is None:
            return None
        del self.uids[seq - 1]
        self.metas.pop(uid, None)
        self.pending_expunge.discard(uid)
        self.pending_flags.pop(uid, None)
        self.recent.discard(uid)
        return seq

    # --- queries ------------------------------------------------------------
    @property
    def exists(self) -> int:
        return len(self.uids)

    def seq_of(self, uid: int) -> int | None:
        i = bisect.bisect_left(self.uids, uid)
        return i + 1 if i < len(self.uids) and self.uids[i] == uid else None

    def live(self, uid: int) -> bool:
        return uid in self.metas and uid not in self.pending_expunge

    def resolve(self, ss: SeqSet, uid: bool) -> list[tuple[int, int]]:
        """(seq, uid) pairs of a message set, ascending. UID sets silently skip UIDs not present."""
        n = len(self.uids)
        if not uid:
            for lo, hi in ss.ranges:
                # a number beyond EXISTS is an error; "n:*" is fine (it covers EXISTS, or nothing if empty)
                if lo != STAR and hi != STAR and max(lo, hi) > n:
                    raise BadCommand("Invalid message sequence number")
            return [(s, self.uids[s - 1]) for s in ss.iter(n)]
        top = self.uids[-1] if self.uids else 0
        if not self.uids:
            return []
        picked: set[int] = set()
        for lo, hi in ss.ranges:
            a, b = SeqSet._resolve(lo, hi, top)
            i = bisect.bisect_left(self.uids, a)
            j = bisect.bisect_right(self.uids, b)
            picked.update(range(i, j))
        return [(i + 1, self.uids[i]) for i in sorted(picked)]

    def missing_uids(self, ss: SeqSet | None, uidnext: int) -> list[int]:
        """UIDs below ``uidnext`` (in ``ss`` if given) that are not in this view: VANISHED (EARLIER).

        A superset of what was expunged since the client's modseq; clients ignore UIDs they never had.
        """
        top = uidnext - 1
        if top < 1:
            return []
        ranges = [(1, top)] if ss is None else [SeqSet._resolve(lo, hi, top) for lo, hi in ss.ranges]
        out: set[int] = set()
        for a, b in ranges:
            a, b = max(a, 1), min(b, top)
            if a > b or b - a > 1_000_000:
                continue  # bounded work; an absurd range from a client is skipped
            i = bisect.bisect_left(self.uids, a)
            present = set(self.uids[i : bisect.bisect_right(self.uids, b)])
            out.update(u for u in range(a, b + 1) if u not in present)
        return sorted(out)

    def first_unseen(self) -> int | None:
        for i, u in enumerate(self.uids):
            if "\\Seen" not in self.metas[u].flags:
                return i + 1
        return None

    def flags_of(self, uid: int) -> frozenset[str]:
        m = self.metas.get(uid)
        fl = m.flags if m else frozenset()
        if uid in self.recent:
            return fl | {"\\Recent"}
        return fl

    def highestmodseq(self) -> int:
        return max(self.watcher.index.modseq, self.mb.highestmodseq)

    def told_highestmodseq(self) -> int:
        """HIGHESTMODSEQ including this session's own changes not yet seen by the watcher."""
        return max(self.highestmodseq(), max((m.modseq for m in self.metas.values()), default=0))

    # --- output -------------------------------------------------------------
    def flush(self, allow_expunge: bool, with_uid: bool = False) -> list[bytes]:
        out: list[bytes] = []
        shown = {f for m in [*self.pending_new.values(), *self.pending_flags.values()] for f in m.flags}
        if self.pending_keywords or not shown <= self.keywords | set(SYSTEM_FLAGS):
            out += self.announce(self.pending_keywords | shown)  # before any FETCH showing them (RFC 3501 §7.2.6)
            self.pending_keywords.clear()
        if allow_expunge and self.pending_expunge:
            gone = []
            for uid in sorted(self.pending_expunge):  # RFC 3501 §7.4.1: each EXPUNGE renumbers
                seq = self.expunged_now(uid)
                if seq is not None:
                    gone.append(uid)
                    if not self.qresync:
                        out.append(R.untagged(f"{seq} EXPUNGE"))
            if gone and self.qresync:
                out.append(R.untagged(f"VANISHED {compress(gone)}"))
            self.pending_expunge.clear()
        if self.pending_new:
            new = sorted(self.pending_new)
            top = self.uids[-1] if self.uids else 0
            for uid in new:
                if uid > top:
                    m = self.pending_new[uid]
                    self.uids.append(uid)
                    self.metas[uid] = m
                    top = uid
            self.pending_new.clear()
            out.append(R.untagged(f"{len(self.uids)} EXISTS"))
            out.append(R.untagged(f"{len(self.recent)} RECENT"))
        if self.pending_flags:
            changed = [m for m in self.pending_flags.values() if m.flags != self.metas[m.uid].flags or self.condstore]
            for m in self.pending_flags.values():
                self.metas[m.uid] = replace(self.metas[m.uid], flags=m.flags, modseq=m.modseq)
            for m in sorted(changed, key=lambda x: x.uid):
                uid = m.uid
                seq = self.seq_of(uid)
                if seq is None:
                    continue
                m = self.metas[uid]
                items = [b"FLAGS " + R.flag_bytes(self.flags_of(uid))]
                if with_uid or self.condstore:
                    items.append(b"UID %d" % uid)
                if self.condstore:
                    items.append(b"MODSEQ (%d)" % m.modseq)
                out.append(R.fetch_line(seq, items))
            self.pending_flags.clear()
        if self.announce_highestmodseq:  # RFC 7162 §3.1, after the updates it covers
            self.announce_highestmodseq = False
            out.append(R.ok_code(f"HIGHESTMODSEQ {self.told_highestmodseq()}", "Highest"))
        self.changed.clear()
        return out
