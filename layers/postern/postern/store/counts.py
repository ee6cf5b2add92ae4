"""A mailbox's JMAP counts (RFC 8621 §2), kept by the store at the write that changes them: the rule, once.

In:   a mailbox's state item; the thread members items (``keys.members_key``) a change's build read;
      the :class:`Move` list of that change (a message arriving, leaving, or its \\Seen changing);
      or a mailbox's entries (:func:`recount`).
Out:  :func:`from_state` (the four counts a state holds, or None when it cannot say them exactly),
      :func:`change` (what a change record carries: ``tc``, the members items' updates, and the
      state's new ``tt``/``ut``), :func:`members_update` (the item write of one ``tc`` entry),
      :func:`recount` (the reference: the counts and members read from the entries themselves).
Fails: never (pure functions).

What the counts mean (the recount is the definition; the counters must always equal it):

* an Email is in a mailbox when one of its messages is (a COPY of a mailbox into itself gives one
  Email two UIDs there: still one Email);
* an Email is unread in a mailbox when one of its messages there lacks \\Seen: per mailbox, as IMAP
  STATUS UNSEEN counts, so the webmail and an IMAP client show the same number (RFC 8621's unread
  also excludes $draft and looks at the Email's other mailboxes; Postern counts what the folder holds);
* a Thread is in a mailbox when one of its Emails is, and unread there when one of those is unread.

How they are kept:

* totalEmails/unreadEmails are the state's EXISTS/UNSEEN counters (``ex``, ``us``: kept by every
  change since the first layout) while no Email has two UIDs in the mailbox (``dp``, set by a COPY of
  the mailbox into itself, ``records.order_fields``); such a mailbox counts its Emails by reading its
  own entries (the store's ``mailbox_counts``), never the account.
* totalThreads/unreadThreads are ``tt``/``ut`` in the state. Each (thread, mailbox) pair has a
  members item: ``m``, the UIDs of the thread's messages in the mailbox, and ``s``, those unseen.
  A change's build reads the items of the threads it touches (exact: every earlier change is
  materialised before a change is built, ``engine``), moves ``tt`` on the thread's 0<->1 transitions
  of ``m`` and ``ut`` on those of ``s``, and its record carries the new ``tt``/``ut`` in ``st`` and,
  per thread, the UIDs to add and remove (``tc``). The materialiser applies a ``tc`` entry once: the
  write is conditioned on the item's ``ms`` being older than the change, so a change rolled forward
  twice never counts twice. A thread's first message in a mailbox writes its item, a reply updates it:
  one conditional write per delivery, 1 write unit while the thread has fewer than ~150 messages there.
* The members items of a mailbox belong to its counting generation ``tg`` (in the key), so that
  items written by an abandoned recount can never be taken for the live ones.

Mail stored before the counters (a state without ``tt``): no change maintains it; the store's
``mailbox_counts`` answers it by :func:`recount` (exact as read) and starts counting: it writes the
members items under a fresh generation, then commits a ``count`` change that sets ``tt``, ``ut``,
``tg`` only if the mailbox's HIGHESTMODSEQ is still the one it read (so no delivery, flag change or
expunge happened in between; otherwise it tries again on a later call). A ``count`` change goes
through the log like any other, which is what orders it against concurrent deliveries.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ..items import Update
from .base import SEEN, MessageMeta

FIRST_GENERATION = "0"


@dataclass(frozen=True)
class Counts:
    emails: int
    unread_emails: int
    threads: int
    unread_threads: int


@dataclass(frozen=True)
class Move:
    """One message of a change: its thread, UID, and whether it is in the mailbox / unseen before and after."""

    thread: str
    uid: int
    was_in: bool
    is_in: bool
    was_unseen: bool
    is_unseen: bool


def email_of(mailbox_id: str, uid: int, email_id: str) -> str:
    """A stored message's Email id: its own, or for a message stored before Email ids, one made from
    its mailbox and UID (JMAP's ids, ``jmap.index``)."""
    return email_id or f"E{mailbox_id[:8]}{uid}"


def thread_of(email_id: str, thread_id: str) -> str:
    """A stored message's Thread id: its own, or a Thread of that Email alone."""
    return thread_id or "T" + email_id[1:]


def thread_of_entry(mailbox_id: str, item: dict, uid: int | None = None) -> str:
    """The Thread id of a message entry (or an append record's entry) at ``uid`` of this mailbox."""
    u = int(item["uid"]) if uid is None else uid
    return thread_of(email_of(mailbox_id, u, item.get("e", "")), item.get("th", ""))


def counting(st: dict) -> bool:
    """The state's thread counters exist (a mailbox created since, or one :func:`recount` started)."""
    return "tt" in st


def generation(st: dict) -> str:
    return str(st.get("tg", FIRST_GENERATION))


def new_state_fields() -> dict:
    """What a new mailbox's state starts with: counting, nothing in it."""
    return {"tt": 0, "ut": 0, "tg": FIRST_GENERATION}


def from_state(st: dict) -> Counts | None:
    """The counts a state holds exactly; None when they must be read (no thread counters yet, or an
    Email may have two UIDs in the mailbox)."""
    if not counting(st) or st.get("dp"):
        return None
    return Counts(int(st.get("ex", 0)), int(st.get("us", 0)), int(st["tt"]), int(st["ut"]))


def members(item: dict | None) -> tuple[set[int], set[int]]:
    if not item:
        return set(), set()
    return {int(u) for u in item.get("m") or ()}, {int(u) for u in item.get("s") or ()}


def change(st: dict, items: dict[str, dict | None], moves: Iterable[Move]) -> tuple[list[dict], dict]:
    """The record fields for ``moves`` in the mailbox of ``st``: (``tc`` entries, ``{"tt", "ut"}`` for
    the record's ``st``); nothing when the mailbox does not count threads. ``items``: thread id ->
    its members item in this mailbox's generation as the build read it (None: absent)."""
    if not counting(st):
        return [], {}
    by_thread: dict[str, list[Move]] = {}
    for mv in moves:
        by_thread.setdefault(mv.thread, []).append(mv)
    tt, ut = int(st["tt"]), int(st["ut"])
    out: list[dict] = []
    for tid in sorted(by_thread):
        m, s = members(items.get(tid))
        m0, s0 = bool(m), bool(s)
        plus_m, minus_m, plus_s, minus_s = set(), set(), set(), set()
        for mv in by_thread[tid]:
            if mv.is_in and not mv.was_in:
                m.add(mv.uid), plus_m.add(mv.uid)
            elif mv.was_in and not mv.is_in:
                m.discard(mv.uid), minus_m.add(mv.uid)
            now_unseen = mv.is_in and mv.is_unseen
            if now_unseen and not (mv.was_in and mv.was_unseen):
                s.add(mv.uid), plus_s.add(mv.uid)
            elif not now_unseen and mv.was_in and mv.was_unseen:
                s.discard(mv.uid), minus_s.add(mv.uid)
        if not (plus_m or minus_m or plus_s or minus_s):
            continue
        tt += bool(m) - m0
        ut += bool(s) - s0
        entry: dict = {"th": tid}
        for name, plus, minus in (("m", plus_m, minus_m), ("s", plus_s, minus_s)):
            if plus and minus:  # one UpdateItem cannot ADD and DELETE one attribute: say the result
                entry[name] = sorted(m if name == "m" else s)
            else:
                if plus:
                    entry["+" + name] = sorted(plus)
                if minus:
                    entry["-" + name] = sorted(minus)
        if not m:
            entry["z"] = True  # the thread has left the mailbox: the item may expire
        out.append(entry)
    return out, {"tt": tt, "ut": ut}


def members_update(entry: dict, h: int, expires: int) -> Update:
    """The UpdateItem of one ``tc`` entry by change ``h`` (conditioned on ``ms`` by the caller). An item
    left with no UIDs gets a TTL (``expires``); one holding some keeps none."""
    upd = Update(set={"ms": h})
    for name in ("m", "s"):
        if name in entry:
            upd.set[name] = {int(u) for u in entry[name]} or None
        if entry.get("+" + name):
            upd.add[name] = {int(u) for u in entry["+" + name]}
        if entry.get("-" + name):
            upd.delete[name] = {int(u) for u in entry["-" + name]}
    if entry.get("z"):
        upd.set["expires"] = expires
    else:
        upd.remove = ("expires",)
    return upd


def recount(mailbox_id: str, metas: Iterable[MessageMeta]) -> tuple[Counts, dict[str, tuple[set[int], set[int]]]]:
    """The four counts of a mailbox from its live entries (light metas), and each thread's members."""
    emails: dict[str, bool] = {}  # Email id -> unread here
    threads: dict[str, tuple[set[int], set[int]]] = {}
    thread_unread: dict[str, bool] = {}
    for meta in metas:
        eid = email_of(mailbox_id, meta.uid, meta.email_id)
        tid = thread_of(eid, meta.thread_id)
        unseen = SEEN not in meta.flags
        emails[eid] = emails.get(eid, False) or unseen
        m, s = threads.setdefault(tid, (set(), set()))
        m.add(meta.uid)
        if unseen:
            s.add(meta.uid)
        thread_unread[tid] = thread_unread.get(tid, False) or unseen
    counts = Counts(len(emails), sum(emails.values()), len(threads), sum(thread_unread.values()))
    return counts, threads
