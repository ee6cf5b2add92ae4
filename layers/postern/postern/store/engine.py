"""The mail store, written once: an account change log over an item layer and a blob layer.

In:   the :class:`~postern.store.base.MailStore` calls; an item layer
      (``postern.items``: DynamoDB or its in-memory twin) and a blob layer
      (``store.blobs``: S3 or its twin). ``dynamo.py`` and ``memory.py`` only
      choose the layers.
Out:  the store's data objects; every change is a record in the account's log
      (``records``), then materialised (``materialise``).
Fails: the domain errors of ``base``; StoreUnavailable when the backend fails or
      an account stays contended past MAX_ATTEMPTS.

Commit (one conditional write per change, no transaction):
  1. read the account item: its ``ms`` is n, the newest change materialised;
  2. read what the change depends on (one BatchGetItem: mailbox state, message
     entries, dedup marker...): every change up to n is in them;
  3. write the change record at n+1 with ``attribute_not_exists``. It fails when
     another writer took n+1: wait (reads) until n+1 is materialised, or roll it
     forward ourselves if its writer has not within REPAIR_GRACE (a crash), and
     start again. A retry looks at the slot before writing (a read is cheaper
     than a failed conditional write).
  4. materialise the change (message entries, counters, account marker last).
So the order in which changes become visible is the order of their numbers, and
a watcher that read the log up to n can ask for "after n" and miss nothing.

Request costs (what ``make cost`` counts), one message, no contention:
  append    GetItem (account) + BatchGetItem (mailbox name, state, the dedup
            markers in B# and X#, thread ids, the thread's members item) + PutItem
            (change) + UpdateItem (blob reference: the spool object is the blob, no
            copy; and the delivery's dedup marker) + PutItem (entry) + BatchWriteItem
            (email-id index, the thread id of a reply: a root is found by its name)
            + UpdateItem (members item, ``counts``) + 2 UpdateItem (state, account)
  flags     GetItem + BatchGetItem + PutItem + UpdateItem per message + 2 UpdateItem
            (+ a BatchGetItem and an UpdateItem per thread whose unseen messages change)
  expunge   GetItem + BatchGetItem + PutItem + PutItem (tombstone) per message
            + DeleteObject (blob) + 2 UpdateItem
  SELECT    BatchGetItem (account, name) + Query (log above it) + GetItem (state)
            + paginated Query (entries)
  follow    one Query on the account's log partition
  find_emails  one Query per email id (its index items) + BatchGetItem (the entries)
  list_messages_desc  Query(Limit 64, ScanIndexForward=False) per page, pages growing to 1,000
  mailbox_counts  one BatchGetItem of the states (``counts``)
"""

from __future__ import annotations

import logging
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from .. import keys
from ..errors import (KeywordLimit, MailboxExists, MailboxLimit, MailboxNotFound, PosternError, QuotaExceeded,
                      StoreUnavailable)
from ..items import ConditionFailed, Update, absent, lt, present
from ..verdicts import STORED_SYMBOLS
from . import counts as C
from . import records as R
from .base import (
    SEEN,
    AppendResult,
    Change,
    FlagChange,
    MailboxInfo,
    MailStore,
    MessageMeta,
    StoreResult,
    apply_flags,
    is_keyword,
    normalize_mailbox_name,
    MAX_KEYWORDS,
)
from .counts import Counts, Move
from .materialise import Materialiser
from .schema import CURRENT
from .threads import id_hash, message_ids, thread_root

log = logging.getLogger("postern.store")

MAX_ATTEMPTS = 200
REPAIR_GRACE = 2.0  # seconds a committed change is left to its own writer before others roll it forward
FLAGS_CHUNK = 1000  # messages per change record (keeps a record far below DynamoDB's 400 KB)
EXPUNGE_CHUNK = 500
COPY_CHUNK = 250
MEMBERS_BATCH = 1000  # thread_messages reads (thread, mailbox) keys by BatchGetItem up to this many, else Queries
APPEND_SPOOL = "a/"  # under the spool prefix: an APPEND's bytes until their change commits (bucket lifecycle expires it)


@dataclass
class CommitStats:
    """Counters for the evidence: commits, log-slot conflicts, roll-forwards done for others."""

    commits: int = 0
    conflicts: int = 0  # the slot was taken when we came to write (found by a read or a failed write)
    failed_writes: int = 0  # of those, found by a failed conditional write (1 write unit each)
    repairs: int = 0

    def __post_init__(self):
        self._lock = threading.Lock()

    def add(self, **kw: int) -> None:
        with self._lock:
            for k, v in kw.items():
                setattr(self, k, getattr(self, k) + v)


class _Done(Exception):
    """A build found there is nothing to commit and has the answer already (a duplicate delivery)."""

    def __init__(self, result):
        self.result = result


def summary_for(prefix: bytes, raw: bytes | None, header: bytes | None, raw_size: int | None, spool_key: str | None):
    """The append summary from the full bytes, or from the header section alone."""
    from .summary import summarize, summarize_header

    if raw is not None:
        return summarize(prefix, raw), len(raw)
    if header is None or raw_size is None or not spool_key:
        raise ValueError("append without raw bytes needs spool_key, header and raw_size")
    return summarize_header(prefix, header, raw_size), raw_size


def new_id(kind: str, seed: str | None = None) -> str:
    """Stable object ids (RFC 8474 objectid, JMAP Id: letters and digits): E... emails, T... threads."""
    import hashlib

    digest = hashlib.sha256(seed.encode()).hexdigest() if seed else uuid.uuid4().hex
    return kind + digest[:24]


class View:
    """What a change is computed from: everything up to change ``n - 1`` (read after the account marker)."""

    def __init__(self, items, user: str, acct: dict):
        self.items = items
        self.user = user
        self.acct = acct
        self.n = int(acct.get("ms", 0)) + 1
        self._cache: dict[tuple[str, str], dict | None] = {}

    def fetch(self, wanted: Iterable[dict]) -> None:
        missing = list({(k["pk"], k["sk"]): k for k in wanted if (k["pk"], k["sk"]) not in self._cache}.values())
        if missing:
            found = self.items.batch_get(missing)
            for k in missing:
                self._cache[(k["pk"], k["sk"])] = found.get((k["pk"], k["sk"]))

    def get(self, key: dict) -> dict | None:
        self.fetch([key])
        return self._cache[(key["pk"], key["sk"])]

    def entry(self, name: str) -> dict | None:
        e = self.get(keys.mailbox_key(self.user, name))
        return e if R.live(e) else None

    def state(self, mbid: str) -> dict:
        st = self.get(keys.state_key(self.user, mbid))
        if not R.live(st):
            raise MailboxNotFound()
        return st

    def box(self, name: str) -> dict:
        e = self.entry(name)
        if e is None:
            raise MailboxNotFound()
        return self.state(e["mb"])

    def box_keys(self, name: str, hint: str | None) -> list[dict]:
        """Keys to fetch for ``box(name)`` in the first batch: the name, and the state its id had last time."""
        out = [keys.mailbox_key(self.user, name)]
        if hint:
            out.append(keys.state_key(self.user, hint))
        return out


def _keywords_added(state: dict, flags: Iterable[str]) -> list[str]:
    have = set(state.get("kw") or ())
    new = sorted({f for f in flags if is_keyword(f)} - have)
    if new and len(have) + len(new) > MAX_KEYWORDS:
        raise KeywordLimit()
    return new


def _counters(st: dict, **delta: int) -> dict:
    out = {"un": int(st.get("un", 1)), "ex": int(st.get("ex", 0)), "sz": int(st.get("sz", 0)), "us": int(st.get("us", 0))}
    for k, v in delta.items():
        out[k] += v
    return out


class LogStore(MailStore):
    def __init__(self, items, blobs, *, spool_prefix: str = "spool/", message_prefix: str = "msg/",
                 spool_days: float = 14):
        self.items = items
        self.blobs = blobs
        self.spool_prefix = spool_prefix
        self.message_prefix = message_prefix
        self.spool_days = spool_days
        self.materialiser = Materialiser(items, blobs, spool_prefix=spool_prefix, spool_window=spool_days * 86400.0)
        self.stats = CommitStats()
        self.repair_grace = REPAIR_GRACE
        self._ids: dict[tuple[str, str], str] = {}  # (user, name) -> mailbox id last seen (a hint, verified)
        self._gens: dict[str, str] = {}  # mailbox id -> its thread-count generation last seen (a hint)

    # --- the commit -----------------------------------------------------------------
    def _commit(self, user: str, build: Callable[[View], dict | None]) -> dict | None:
        u = user.lower()
        token = uuid.uuid4().hex  # tells our own record from another writer's after an ambiguous write
        for attempt in range(MAX_ATTEMPTS):
            acct = self.items.get(keys.account_key(u)) or {}
            view = View(self.items, u, acct)
            rec = build(view)
            if rec is None:
                return None
            if R.size(rec) > R.MAX_RECORD_BYTES:  # DynamoDB refuses items over 400 KB; say why, before trying
                raise MailboxLimit("Too many mailboxes in one change")
            n = view.n
            rec.update(keys.change_key(u, n))
            rec.update(v=CURRENT, u=u, ms=n, t=time.time(), tk=token)
            if attempt and self.items.get(keys.change_key(u, n)) is not None:
                # contended: look (a read) before writing (a failed conditional write costs a write unit)
                self.stats.add(conflicts=1)
                self._catch_up(u, n - 1, attempt)
                continue
            try:
                self.items.put(rec, cond=absent())
            except ConditionFailed:
                landed = self.items.get(keys.change_key(u, n))
                if landed is not None and landed.get("tk") == token:
                    break  # a retried write whose first attempt had landed (a timeout after AWS applied it)
                self.stats.add(conflicts=1, failed_writes=1)
                self._catch_up(u, n - 1, attempt)
                continue
            break
        else:
            raise StoreUnavailable(f"mail store: account {u} contended past {MAX_ATTEMPTS} attempts")
        self.stats.add(commits=1)
        return rec

    def _catch_up(self, user: str, after: int, attempt: int = 0) -> None:
        """Another writer took slot ``after + 1``: wait (cheap reads) until it is materialised, or roll it
        forward ourselves once it is older than ``repair_grace`` (its writer died). Then try again."""
        deadline = time.monotonic() + 0.5 + 0.01 * attempt
        while True:
            acct = self.items.get(keys.account_key(user)) or {}
            done = int(acct.get("ms", 0))
            if done > after:
                break
            head = self.items.get(keys.change_key(user, done + 1))  # the only one that can be unmaterialised
            if head is None:
                break
            if time.time() - float(head.get("t", 0)) >= self.repair_grace or attempt >= MAX_ATTEMPTS // 2:
                self.stats.add(repairs=1)
                self.materialiser.apply(head)
                return
            if time.monotonic() > deadline:
                break
            time.sleep(random.uniform(0.004, 0.012))
        # everyone who lost this slot retries now: spread them a little
        time.sleep(random.uniform(0, min(0.02, 0.001 * 2 ** min(attempt, 5))))

    def _finish(self, rec: dict, payload: dict | None = None) -> None:
        """Materialise our own change. Past the commit the change has happened: a backend fault here is
        logged, and whoever touches the account next completes it (same result either way)."""
        try:
            self.materialiser.apply(rec, payload)
        except PosternError:
            log.warning("change %s of %s committed; materialisation left to the next writer", rec["ms"], rec["u"],
                        exc_info=True)

    def repair(self, user: str) -> bool:
        """Roll the newest change of the account forward if it is not materialised (readers that miss
        an item call this; so do the sweeper and ``postern migrate``). True when it did."""
        u = user.lower()
        did = False
        for _ in range(8):  # only the change after the marker can be unmaterialised; others follow it
            done = int((self.items.get(keys.account_key(u)) or {}).get("ms", 0))
            rec = self.items.get(keys.change_key(u, done + 1))
            if rec is None:
                break
            self.stats.add(repairs=1)
            self.materialiser.apply(rec)
            did = True
        return did

    def ensure_mailboxes(self, user: str) -> None:
        """Convenience for callers holding only a store; the rule is ``postern.mailboxes.ensure_defaults``."""
        from ..mailboxes import ensure_defaults

        ensure_defaults(self, user)

    # --- names ----------------------------------------------------------------------
    def _partition(self, user: str) -> tuple[dict, dict[tuple[str, str], dict]]:
        """The user partition (account, names, subscriptions, sweeps), resolved through any change
        committed but not yet materialised (readers see a RENAME's new names at once)."""
        u = user.lower()
        items = {(i["pk"], i["sk"]): i for i in self.items.query(keys.user_pk(u))}
        acct = items.get((keys.user_pk(u), "ACCT"), {})
        pending = list(self.items.query(keys.log_pk(u), gt=keys.modseq_sk(int(acct.get("ms", 0)))))
        return acct, R.resolve_names(items, u, pending)

    def list_mailboxes(self, user: str) -> list[MailboxInfo]:
        acct, items = self._partition(user)
        pos = int(acct.get("ms", 0))
        boxes = [R.entry_info(user, i, pos) for (_, sk), i in items.items()
                 if sk.startswith(keys.MAILBOX_PREFIX) and R.live(i)]
        return sorted(boxes, key=lambda m: m.name)

    def list_subscriptions(self, user: str) -> list[str]:
        _, items = self._partition(user)
        return sorted(i["n"] for (_, sk), i in items.items() if sk.startswith(keys.SUB_PREFIX) and R.live(i))

    def get_mailbox(self, user: str, name: str, _repaired: bool = False) -> MailboxInfo:
        u = user.lower()
        n = normalize_mailbox_name(name)
        got = self.items.batch_get([keys.account_key(u), keys.mailbox_key(u, n)])
        acct = got.get((keys.user_pk(u), "ACCT"), {})
        entry = got.get(tuple(keys.mailbox_key(u, n).values()))
        pos = int(acct.get("ms", 0))
        pending = list(self.items.query(keys.log_pk(u), gt=keys.modseq_sk(pos)))
        if pending and not _repaired and time.time() - float(pending[-1].get("t", 0)) >= self.repair_grace:
            self.repair(u)  # its writer died after the commit: finish it before anyone reads around it
            return self.get_mailbox(user, name, _repaired=True)
        if any(r["k"] in R.STRUCTURAL_KINDS for r in pending):
            _, items = self._partition(u)
            entry = items.get(tuple(keys.mailbox_key(u, n).values()))
        if not R.live(entry):
            raise MailboxNotFound()
        st = self.items.get(keys.state_key(u, entry["mb"]))
        if not R.live(st):
            raise MailboxNotFound()
        return R.mailbox_info(u, st, pos, name=n)

    def get_mailbox_by_id(self, user: str, mailbox_id: str) -> MailboxInfo:
        u = user.lower()
        acct = self.items.get(keys.account_key(u)) or {}
        st = self.items.get(keys.state_key(u, mailbox_id))
        if not R.live(st):
            raise MailboxNotFound()
        return R.mailbox_info(u, st, int(acct.get("ms", 0)))

    def _live_states(self, u: str, mailbox_ids: Iterable[str]) -> dict[str, dict]:
        """The state items of those mailboxes that still exist, by id, in one BatchGetItem."""
        ids = list(dict.fromkeys(mailbox_ids))
        got = self.items.batch_get([keys.state_key(u, i) for i in ids])
        out: dict[str, dict] = {}
        for mbid in ids:
            k = keys.state_key(u, mbid)
            st = got.get((k["pk"], k["sk"]))
            if R.live(st):
                out[mbid] = st
        return out

    def mailbox_counts(self, user: str, mailbox_ids: Iterable[str]) -> dict[str, Counts]:
        u = user.lower()
        out: dict[str, Counts] = {}
        for mbid, st in self._live_states(u, mailbox_ids).items():
            counts = C.from_state(st)
            out[mbid] = counts if counts is not None else self._recount(u, st)
        return out

    def thread_messages(self, user: str, mailbox_ids: Iterable[str], thread_ids: Iterable[str],
                        light: bool = True) -> dict[str, list[tuple[str, MessageMeta]]] | None:
        u = user.lower()
        gens: dict[str, str] = {}
        for mbid, st in self._live_states(u, mailbox_ids).items():
            if not C.counting(st):
                return None  # its threads' members are not known yet: the caller reads the account
            gens[mbid] = C.generation(st)
        tids = list(dict.fromkeys(thread_ids))
        if len(tids) * len(gens) <= MEMBERS_BATCH:  # every (thread, mailbox) key: a few BatchGetItem
            found = self.items.batch_get([keys.members_key(u, t, mb, gen) for t in tids for mb, gen in gens.items()])
            pks = {keys.members_pk(u, t): t for t in tids}
            items = [(pks[pk], it) for (pk, _), it in found.items()]
        else:  # many mailboxes: one Query per thread
            items = [(t, it) for t in tids for it in self.items.query(keys.members_pk(u, t))]
        wanted: dict[tuple[str, str], tuple[str, str]] = {}  # entry key -> (thread id, mailbox id)
        for tid, it in items:
            mbid, _, gen = it["sk"].partition("#")
            if gens.get(mbid) == gen:
                for uid in C.members(it)[0]:
                    k = keys.message_key(u, mbid, uid)
                    wanted[(k["pk"], k["sk"])] = (tid, mbid)
        out: dict[str, list[tuple[str, MessageMeta]]] = {}
        found = self.items.batch_get([{"pk": pk, "sk": sk} for pk, sk in wanted]) if wanted else {}
        for k in sorted(wanted):
            tid, mbid = wanted[k]
            it = found.get(k)
            if R.live(it):  # an entry expunged while its members item was read is skipped
                out.setdefault(tid, []).append((mbid, R.meta(it, light=light)))
        return out

    def _recount(self, user: str, st: dict) -> Counts:
        """The counts of one mailbox read from its entries (``counts.recount``); a mailbox that does not
        count threads yet starts counting here (``counts``: legacy mail)."""
        metas = list(self.list_messages(R.mailbox_info(user, st, 0), light=True))
        counts, threads = C.recount(st["mb"], metas)
        if not C.counting(st):
            try:
                self._start_counting(user, st, counts, threads, duplicates=counts.emails < len(metas))
            except PosternError:
                log.warning("could not start thread counts of %s/%s (the next read tries again)", user, st["mb"],
                            exc_info=True)
        return counts

    def _start_counting(self, user: str, st: dict, counts: Counts, threads: dict, duplicates: bool) -> None:
        """Write the members items under a fresh generation, then commit a ``count`` change that sets the
        state's thread counters, only if no message change touched the mailbox since ``st`` was read (its
        HIGHESTMODSEQ is unchanged: then the entries read are exactly what the counters start from).
        ``duplicates``: some Email has two UIDs in it (``dp``, from a COPY before COPY checked for that)."""
        mbid, h0 = st["mb"], int(st.get("hm", 0))
        gen = uuid.uuid4().hex[:12]
        self.items.batch_put([{**keys.members_key(user, tid, mbid, gen), "m": m, "s": s or None, "ms": h0}
                              for tid, (m, s) in threads.items()])

        def build(v: View) -> dict | None:
            cur = v.state(mbid)
            if C.counting(cur) or int(cur.get("hm", 0)) != h0:
                return None  # started by someone else, or mail moved meanwhile: a later read starts again
            return {"k": "count", "mb": mbid, "st": {"tt": counts.threads, "ut": counts.unread_threads, "tg": gen,
                                                     "dp": bool(cur.get("dp")) or duplicates}}

        rec = self._commit(user, build)
        if rec is not None:
            self._finish(rec)

    # --- mailbox changes --------------------------------------------------------------
    def create_mailboxes(self, user, boxes, subscribe=()) -> list[MailboxInfo]:
        wanted = [(normalize_mailbox_name(n), su) for n, su in boxes]
        subs = [normalize_mailbox_name(n) for n in subscribe]

        def build(v: View) -> dict | None:
            v.fetch([keys.mailbox_key(v.user, n) for n, _ in wanted])
            if any(v.entry(n) is not None for n, _ in wanted):
                raise MailboxExists()
            if not wanted and not subs:
                return None
            uv = max(int(time.time()), int(v.acct.get("uv", 0)) + 1)
            return {"k": "create", "b": [{"mb": uuid.uuid4().hex, "n": n, "su": su, "uv": uv} for n, su in wanted],
                    "sub": subs}

        rec = self._commit(user, build)
        if rec is None:
            return []
        self._finish(rec)
        return [R.mailbox_info(user, R.state_item(rec["u"], b, rec["ms"]), rec["ms"]) for b in rec["b"]]

    def rename_mailboxes(self, user, moves, creates=()) -> None:
        mv = [(normalize_mailbox_name(o), normalize_mailbox_name(n)) for o, n in moves]
        cr = [(normalize_mailbox_name(n), su) for n, su in creates]

        def build(v: View) -> dict:
            v.fetch([keys.mailbox_key(v.user, n) for pair in mv for n in pair] +
                    [keys.mailbox_key(v.user, n) for n, _ in cr])
            olds = {o for o, _ in mv}
            out = []
            for o, n in mv:
                e = v.entry(o)
                if e is None:
                    raise MailboxNotFound()
                out.append({"mb": e["mb"], "o": o, "n": n, "uv": e["uv"], "su": e.get("su")})
            for n in [n for _, n in mv] + [n for n, _ in cr]:
                if v.entry(n) is not None and n not in olds:
                    raise MailboxExists()
            if len({n for _, n in mv} | {n for n, _ in cr}) != len(mv) + len(cr):
                raise MailboxExists()
            uv = max(int(time.time()), int(v.acct.get("uv", 0)) + 1)
            return {"k": "rename", "mv": out, "b": [{"mb": uuid.uuid4().hex, "n": n, "su": su, "uv": uv} for n, su in cr]}

        self._finish(self._commit(user, build))

    def delete_mailbox(self, user: str, name: str) -> None:
        n = normalize_mailbox_name(name)

        def build(v: View) -> dict:
            e = v.entry(n)
            if e is None:
                raise MailboxNotFound()
            st = v.state(e["mb"])
            return {"k": "destroy", "mb": e["mb"], "n": n, "ud": -int(st.get("sz", 0))}

        self._finish(self._commit(user, build))

    def _subscription(self, user: str, name: str, on: bool) -> None:
        n = normalize_mailbox_name(name)

        def build(v: View) -> dict | None:
            have = R.live(v.get(keys.subscription_key(v.user, n)))
            if have == on:
                return None
            return {"k": "subscribe" if on else "unsubscribe", "n": n}

        rec = self._commit(user, build)
        if rec is not None:
            self._finish(rec)

    def subscribe(self, user: str, name: str) -> None:
        self._subscription(user, name, True)

    def unsubscribe(self, user: str, name: str) -> None:
        self._subscription(user, name, False)

    # --- append -----------------------------------------------------------------------
    def read_spool(self, spool_key: str) -> bytes:
        return self.blobs.read(spool_key)

    def append(self, user, mailbox, raw, *, spool_key=None, prefix=b"", flags=(), internaldate=None, dedup=None,
               quota=0, header=None, raw_size=None, spam=None) -> AppendResult:
        u = user.lower()
        name = normalize_mailbox_name(mailbox)
        s, rsize = summary_for(prefix, raw, header, raw_size, spool_key)
        if quota and s.size > quota:
            raise QuotaExceeded()
        fl = sorted(set(flags) - {"\\Recent"})
        eid = new_id("E", dedup)
        # a delivery's spool object is its blob, referenced in place (one S3 write per message; materialise)
        in_place = spool_key is not None and spool_key.startswith(self.spool_prefix)
        blob = spool_key if in_place else f"{self.message_prefix}{eid}"
        own, refs = message_ids(header if header is not None else raw[: s.header_len - len(prefix)])
        source = spool_key
        if source is None:
            source = f"{self.spool_prefix}{APPEND_SPOOL}{eid}"  # expires with the spool unless committed (no orphan)
            self.blobs.put(source, raw)

        # a delivery's marker rides in its spool object's B# item, which the delivery writes anyway (records.dedup_marker)
        marked_in = keys.blob_key(blob) if in_place and dedup and blob == self.spool_prefix + dedup.partition("#")[0] \
            else None
        root = thread_root(own, refs)  # names the thread when none of it is indexed (threads.py)
        guess = new_id("T", f"{u}#{id_hash(root)}") if root else None  # its members item, fetched with the state

        def build(v: View) -> dict:
            hint = self._ids.get((u, name))
            want = v.box_keys(name, hint)
            want += [keys.thread_key(u, id_hash(i)) for i in ([own] if own else []) + refs]
            if dedup is not None:
                want += [keys.dedup_key(dedup)] + ([marked_in] if marked_in else [])
            if hint and guess:
                want.append(keys.members_key(u, guess, hint, self._gens.get(hint, C.FIRST_GENERATION)))
            v.fetch(want)
            markers = R.dedup_markers(v.get(marked_in)) if marked_in else {}
            if dedup is not None:
                d = markers.get(dedup.partition("#")[2]) or v.get(keys.dedup_key(dedup))
                if d is not None:
                    raise _Done(AppendResult(int(d["uid"]), int(d["uv"]), int(d["ms"]), d["mb"], duplicate=True,
                                             email_id=d.get("e") or eid, thread_id=d.get("th", "")))
            entry = v.entry(name)
            if entry is None:
                raise MailboxNotFound()
            mbid = entry["mb"]
            gen = self._gens.get(mbid, C.FIRST_GENERATION)
            v.fetch([keys.state_key(u, mbid)] + ([keys.members_key(u, guess, mbid, gen)] if guess else []))
            st = v.state(mbid)
            self._remember(u, name, st["mb"])
            if quota and int(v.acct.get("used", 0)) + s.size > quota:
                raise QuotaExceeded()
            ka = _keywords_added(st, fl)
            tid = next((t["th"] for i in ([own] if own else []) + refs
                        if (t := v.get(keys.thread_key(u, id_hash(i)))) is not None), None) or guess or new_id("T")
            uid = int(st.get("un", 1))
            m = {"uid": uid, "e": eid, "th": tid, "fl": fl, "sz": s.size, "rs": rsize, "hl": s.header_len,
                 "id": internaldate or time.time(), "bl": blob, "sp": source, "sx": spool_key is None, "pf": bytes(prefix), "dd": dedup,
                 "mi": id_hash(own) if own and refs else None}  # a root is found by its name, not indexed
            if marked_in and len(markers) < R.DEDUP_IN_BLOB:
                m["db"] = 1
            if spam is not None:
                m["sv"] = spam.to_dict(STORED_SYMBOLS)
            rec = {"k": "append", "mb": st["mb"], "uv": int(st["uv"]), "m": [m], "ka": ka, "ud": s.size,
                   "st": {**_counters(st, un=1, ex=1, sz=s.size, us=0 if SEEN in fl else 1), "hm": v.n,
                          **R.order_fields(st, [m["id"]], uid)}}
            moves = [Move(tid, uid, False, True, False, SEEN not in fl)]
            return self._with_threads(rec, self._thread_fields(v, st, moves, frozenset() if root else {tid}))

        try:
            rec = self._commit(u, build)
        except _Done as done:
            self._drop_spool(spool_key, source)
            self.repair(u)  # the first attempt may have died between its marker and the end of its change
            return done.result
        except PosternError as exc:
            if exc.permanent:  # refused before any write that could name the spool object
                self._drop_spool(spool_key, source)
            raise
        self._finish(rec, {rec["m"][0]["uid"]: s.header})
        m = rec["m"][0]
        return AppendResult(int(m["uid"]), int(rec["uv"]), int(rec["ms"]), rec["mb"], email_id=eid,
                            thread_id=m["th"])

    def _remember(self, user: str, name: str, mbid: str) -> None:
        if len(self._ids) > 10_000:
            self._ids.clear()
        self._ids[(user, name)] = mbid

    def _thread_fields(self, v: View, st: dict, moves: list[Move], fresh: frozenset[str] = frozenset()) -> dict:
        """The change record's thread-count fields for these moves (``counts.change``): ``tc`` and ``tg``
        for the record, ``tt``/``ut`` for its ``st``; {} when the mailbox does not count threads yet.
        The members items come in one BatchGetItem (none when the build fetched them already); a thread
        in ``fresh`` is new (its id was just made), so it has no item to read."""
        if not C.counting(st) or not moves:
            return {}
        mbid, gen = st["mb"], C.generation(st)
        self._gens[mbid] = gen
        tids = sorted({mv.thread for mv in moves})
        ks = {t: keys.members_key(v.user, t, mbid, gen) for t in tids}
        v.fetch([k for t, k in ks.items() if t not in fresh])
        tc, st_fields = C.change(st, {t: None if t in fresh else v.get(k) for t, k in ks.items()}, moves)
        return {"tc": tc, "tg": gen, "st": st_fields}

    def _duplicates(self, v: View, st: dict, msgs: list[dict]) -> bool:
        """This COPY brings an Email the mailbox holds already, or two messages of one Email: one Email would
        have two UIDs there (``dp``; the state's EXISTS then counts it twice, ``counts``). The mailbox's
        messages of the copied threads are its members items (read by ``_thread_fields``); their entries
        are read only when there are some. A mailbox that does not count threads yet is checked when its
        counting starts (``_start_counting``)."""
        eids = [m["e"] for m in msgs if m.get("e")]  # a message without one is an Email of its own
        if len(set(eids)) < len(eids):
            return True
        if not eids or not C.counting(st):
            return False
        mbid, gen = st["mb"], C.generation(st)
        uids: set[int] = set()
        for m in msgs:
            if m.get("e"):
                uids |= C.members(v.get(keys.members_key(v.user, C.thread_of_entry(mbid, m), mbid, gen)))[0]
        if not uids:
            return False
        v.fetch([keys.message_key(v.user, mbid, u) for u in uids])
        return any(R.live(it := v.get(keys.message_key(v.user, mbid, u))) and it.get("e") in set(eids) for u in uids)

    @staticmethod
    def _with_threads(rec: dict, fields: dict) -> dict:
        if fields:
            rec["st"].update(fields["st"])
            if fields["tc"]:
                rec["tc"], rec["tg"] = fields["tc"], fields["tg"]
        return rec

    def _drop_spool(self, given: str | None, ours: str) -> None:
        if given is None:
            try:
                self.blobs.delete(ours)
            except PosternError:
                log.warning("could not delete %s (the spool lifecycle will)", ours)

    # --- reads ------------------------------------------------------------------------
    def list_messages(self, mb: MailboxInfo, since_uid: int = 0, light: bool = False) -> Iterator[MessageMeta]:
        for item in self.items.query(keys.messages_pk(mb.user, mb.mailbox_id), gt=keys.uid_sk(since_uid)):
            if not item.get("x"):
                yield R.meta(item, light)

    def list_messages_desc(self, mb: MailboxInfo, light: bool = True) -> Iterator[MessageMeta]:
        pk, below, page = keys.messages_pk(mb.user, mb.mailbox_id), keys.uid_sk(max(mb.uidnext, 1)), 64
        while True:  # sk < below only (a BETWEEN would make the layer drop its inclusive end: a 2nd Query)
            got = list(self.items.query(pk, lt=below, reverse=True, limit=page))
            for item in got:
                if item["sk"] == keys.STATE_SK:  # sorts below every UID: the partition's end
                    return
                if not item.get("x"):
                    yield R.meta(item, light)
            if len(got) < page:
                return
            below, page = got[-1]["sk"], min(page * 4, 1000)  # tombstones or a deep page: read more per Query

    def get_messages(self, mb: MailboxInfo, uids: Iterable[int]) -> list[MessageMeta]:
        wanted = sorted(set(uids))
        found = self._entries(mb, wanted)
        missing = [u for u in wanted if u not in found]
        if missing and self.repair(mb.user):  # a change committed but not yet written out (crash or in flight)
            found.update(self._entries(mb, missing))
        return [R.meta(found[u]) for u in wanted if u in found and not found[u].get("x")]

    def find_emails(self, user: str, email_ids: Iterable[str]) -> dict[str, list[tuple[str, MessageMeta]]]:
        u = user.lower()
        wanted: dict[tuple[str, str], tuple[str, str]] = {}  # entry key -> (email id, mailbox id)
        for eid in dict.fromkeys(email_ids):
            for it in self.items.query(keys.email_pk(u, eid)):
                mbid, _, uid = it["sk"].rpartition("#")
                k = keys.message_key(u, mbid, int(uid))
                wanted[(k["pk"], k["sk"])] = (eid, mbid)
        if not wanted:
            return {}
        found = self.items.batch_get([{"pk": pk, "sk": sk} for pk, sk in wanted])
        out: dict[str, list[tuple[str, MessageMeta]]] = {}
        for k in sorted(wanted):
            eid, mbid = wanted[k]
            it = found.get(k)
            if R.live(it) and it.get("e") == eid:  # a stale index item (its message expunged) is skipped
                out.setdefault(eid, []).append((mbid, R.meta(it)))
        return out

    def _entries(self, mb: MailboxInfo, uids: list[int]) -> dict[int, dict]:
        got = self.items.batch_get([keys.message_key(mb.user, mb.mailbox_id, u) for u in uids])
        return {int(i["uid"]): i for i in got.values()}

    def follow(self, user: str, after: int, limit: int | None = None) -> list[Change]:
        return [R.change(r) for r in self.items.query(keys.log_pk(user.lower()), gt=keys.modseq_sk(after), limit=limit)]

    def changes_since(self, mb: MailboxInfo, modseq: int) -> list[MessageMeta]:
        out: list[MessageMeta] = []
        for ch in self.follow(mb.user, modseq):
            if ch.mailbox_id == mb.mailbox_id and ch.kind in R.MESSAGE_KINDS:
                out.extend(ch.messages)
        return out

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
        body = self.blobs.read(meta.blob_key, rs, re_ if re_ < meta.raw_size else None) if re_ > rs else b""
        return head + body

    def usage(self, user: str) -> int:
        return int((self.items.get(keys.account_key(user.lower())) or {}).get("used", 0))

    # --- message changes ----------------------------------------------------------------
    def store_flags(self, mb, metas, flags, mode, unchanged_since=None) -> StoreResult:
        uids = sorted({m.uid for m in metas})
        fl = frozenset(flags) - {"\\Recent"}
        result = StoreResult()
        added: set[str] = set()
        for i in range(0, len(uids), FLAGS_CHUNK):
            chunk = uids[i:i + FLAGS_CHUNK]
            failed: list[int] = []

            def build(v: View, chunk=chunk, failed=failed) -> dict | None:
                failed.clear()
                v.fetch([keys.state_key(v.user, mb.mailbox_id)] + [keys.message_key(v.user, mb.mailbox_id, u) for u in chunk])
                st = v.state(mb.mailbox_id)
                groups: dict[frozenset, list[int]] = {}
                unseen = 0
                moves: list[Move] = []
                for uid in chunk:
                    it = v.get(keys.message_key(v.user, mb.mailbox_id, uid))
                    if not R.live(it):
                        continue
                    if unchanged_since is not None and int(it["ms"]) > unchanged_since:
                        failed.append(uid)  # RFC 7162 §3.1.3
                        continue
                    old = frozenset(it.get("fl") or ())
                    new = apply_flags(old, fl, mode)
                    if new == old:
                        continue  # no change, no new MODSEQ
                    groups.setdefault(new, []).append(uid)
                    unseen += (SEEN in old) - (SEEN in new)
                    if (SEEN in old) != (SEEN in new):
                        moves.append(Move(C.thread_of_entry(mb.mailbox_id, it), uid, True, True, SEEN not in old,
                                          SEEN not in new))
                if not groups:
                    return None
                ka = _keywords_added(st, set().union(*groups))
                rec = {"k": "flags", "mb": mb.mailbox_id, "ka": ka,
                       "g": [{"f": sorted(f), "u": us} for f, us in groups.items()],
                       "st": {**_counters(st, us=unseen), "hm": v.n}}
                return self._with_threads(rec, self._thread_fields(v, st, moves))

            rec = self._commit(mb.user, build)
            result.failed.extend(failed)
            if rec is None:
                continue
            self._finish(rec)
            added.update(rec.get("ka") or ())
            for g in rec["g"]:
                result.changed.extend(FlagChange(uid, frozenset(g["f"]), int(rec["ms"])) for uid in g["u"])
        result.changed.sort(key=lambda c: c.uid)
        result.keywords = frozenset(added)
        return result

    def expunge(self, mb, metas) -> list[int]:
        uids = sorted({m.uid for m in metas if not m.expunged})
        done: list[int] = []
        for i in range(0, len(uids), EXPUNGE_CHUNK):
            chunk = uids[i:i + EXPUNGE_CHUNK]

            def build(v: View, chunk=chunk) -> dict | None:
                v.fetch([keys.state_key(v.user, mb.mailbox_id)] + [keys.message_key(v.user, mb.mailbox_id, u) for u in chunk])
                st = v.state(mb.mailbox_id)
                gone = [it for u in chunk if R.live(it := v.get(keys.message_key(v.user, mb.mailbox_id, u)))]
                if not gone:
                    return None
                size = sum(int(it["sz"]) for it in gone)
                unseen = sum(1 for it in gone if SEEN not in (it.get("fl") or ()))
                rec = {"k": "expunge", "mb": mb.mailbox_id, "ud": -size,
                       "x": [{"uid": int(it["uid"]), "bl": it["bl"], "sz": int(it["sz"]), "e": it.get("e", ""),
                              "th": it.get("th", "")}
                             for it in gone],
                       "st": {**_counters(st, ex=-len(gone), sz=-size, us=-unseen), "hm": v.n}}
                moves = [Move(C.thread_of_entry(mb.mailbox_id, it), int(it["uid"]), True, False,
                              SEEN not in (it.get("fl") or ()), False) for it in gone]
                return self._with_threads(rec, self._thread_fields(v, st, moves))

            rec = self._commit(mb.user, build)
            if rec is not None:
                self._finish(rec)
                done.extend(int(x["uid"]) for x in rec["x"])
        return done

    def copy(self, mb, metas, dest, quota=0, by_user=False):
        from ..junk import lesson, retag  # the Junk rule (above the store: it reads mailbox roles)

        uids = sorted({m.uid for m in metas})
        dname = normalize_mailbox_name(dest)
        pairs: list[tuple[int, int]] = []
        dest_id = ""
        try:
            for i in range(0, len(uids), COPY_CHUNK):
                chunk = uids[i:i + COPY_CHUNK]

                def build(v: View, chunk=chunk) -> dict | None:
                    v.fetch([keys.mailbox_key(v.user, dname)] +
                            [keys.message_key(v.user, mb.mailbox_id, u) for u in chunk])
                    dst = v.box(dname)
                    src = [it for u in chunk if R.live(it := v.get(keys.message_key(v.user, mb.mailbox_id, u)))]
                    if not src:
                        return None
                    size = sum(int(it["sz"]) for it in src)
                    if quota and int(v.acct.get("used", 0)) + size > quota:
                        raise QuotaExceeded()
                    # a user's copy into Junk is $Junk, out of it $NotJunk (postern.junk), in this same change
                    spam = lesson(mb, R.mailbox_info(v.user, dst, v.n, name=dname)) if by_user else None
                    fls = [sorted(it.get("fl") or ()) if spam is None else retag(it.get("fl") or (), spam) for it in src]
                    ka = _keywords_added(dst, {f for fl in fls for f in fl})
                    first = int(dst.get("un", 1))
                    msgs = [{"uid": first + j, "e": it.get("e", ""), "th": it.get("th", ""), "fl": fls[j],
                             "sz": int(it["sz"]), "rs": int(it["rs"]), "hl": int(it["hl"]), "id": it.get("id", 0.0),
                             "bl": it["bl"], "src": f"{mb.mailbox_id}/{int(it['uid'])}", "orig": int(it["uid"]),
                             **({"sv": it["sv"]} if it.get("sv") else {})}
                            for j, it in enumerate(src)]
                    unseen = sum(1 for it in src if SEEN not in (it.get("fl") or ()))
                    moves = [Move(C.thread_of_entry(dst["mb"], m), int(m["uid"]), False, True, False,
                                  SEEN not in m["fl"]) for m in msgs]
                    threads = self._thread_fields(v, dst, moves)  # reads the members items _duplicates looks at
                    dup = dst["mb"] == mb.mailbox_id or self._duplicates(v, dst, msgs)
                    rec = {"k": "append", "mb": dst["mb"], "uv": int(dst["uv"]), "m": msgs, "ka": ka, "ud": size,
                           "st": {**_counters(dst, un=len(src), ex=len(src), sz=size, us=unseen), "hm": v.n,
                                  **R.order_fields(dst, [m["id"] for m in msgs], first, duplicate=dup)}}
                    return self._with_threads(rec, threads)

                rec = self._commit(mb.user, build)
                if rec is None:
                    continue
                self._finish(rec)
                dest_id = rec["mb"]
                pairs.extend((int(m["orig"]), int(m["uid"])) for m in rec["m"])
        except BaseException:
            if pairs:  # RFC 3501 §6.4.7: a failed COPY leaves the destination as it was
                self._undo_copy(mb.user, dest_id, [b for _, b in pairs])
            raise
        d = self.get_mailbox(mb.user, dname)
        return d, pairs

    def _undo_copy(self, user: str, mbid: str, uids: list[int]) -> None:
        try:
            self.expunge(self.get_mailbox_by_id(user, mbid), [MessageMeta(uid=u, modseq=0) for u in uids])
        except PosternError:
            log.warning("could not undo a partial COPY into %s", mbid, exc_info=True)

    def claim_recent(self, mb: MailboxInfo, upto_uid: int) -> int:
        try:
            old = self.items.update(keys.state_key(mb.user, mb.mailbox_id), Update(set={"ru": upto_uid}),
                                    cond=present("mb") & absent("gone") & (absent("ru") | lt("ru", upto_uid)),
                                    returns="ALL_OLD")
        except ConditionFailed:
            return upto_uid
        return int(old.get("ru", 0))

    def sweep(self, user: str) -> int:
        self.repair(user)
        return self.materialiser.sweep(user.lower())

    def sweep_spool(self, now: float | None = None) -> int:
        """Delete spool objects past the spool window that no mailbox references (``spoolsweep``)."""
        from .spoolsweep import sweep_spool

        return sweep_spool(self.items, self.blobs, self.spool_prefix, self.spool_days,
                           time.time() if now is None else now)
