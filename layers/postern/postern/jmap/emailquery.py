"""Email/query (RFC 8621 §4.4): filters, sorts, collapseThreads, windows.

In:   method arguments; the account view; header blocks (one BatchGetItem per
      mailbox and 100 messages, only when a condition or sort needs a header)
      and, for ``text``/``body`` conditions, the messages' text parts.
Out:  the query response (``ids``, ``position``, ``total``, ``queryState``).
Fails: ``unsupportedFilter`` / ``unsupportedSort`` for what this server does
      not know, and ``unsupportedFilter`` when a body search would read more
      than BODY_BUDGET bytes (narrow it with inMailbox or a date range);
      ``invalidArguments`` for a malformed filter (deeper than MAX_FILTER_DEPTH,
      more than MAX_CONDITIONS conditions).

Cost: the webmail's list (``{inMailbox: X}``, receivedAt descending, a ``limit``, with or without
collapseThreads) is answered from the newest page of X's entries (:func:`_newest_page`: two GetItem
and one Query for a page of 50, whatever the account's size, and one BatchGetItem for calculateTotal)
whenever the store's date order makes that exact; every other query reads the whole account view.

Matching is case-insensitive substring matching over decoded text (the
``i;unicode-casemap`` collation read as Unicode case folding). Work budget:
the filter tree is bounded; body text is read once per message per query.
"""

from __future__ import annotations

import datetime as _dt
import re

from ..errors import MailboxNotFound
from ..mail.header import Header
from . import args as A
from . import headers as H
from . import keywords as K
from . import mime
from .errors import MethodError, invalid_arguments
from .index import email_id_of, thread_id_of
from .mailbox import window

BODY_BUDGET = 64 * 1024 * 1024
MAX_FILTER_DEPTH = 8
MAX_CONDITIONS = 64
HEADER_CONDITIONS = {"text", "from", "to", "cc", "bcc", "subject", "header", "hasAttachment"}
CONDITIONS = {"inMailbox", "inMailboxOtherThan", "before", "after", "minSize", "maxSize",
              "allInThreadHaveKeyword", "someInThreadHaveKeyword", "noneInThreadHaveKeyword", "hasKeyword",
              "notKeyword", "body"} | HEADER_CONDITIONS
SORTS = {"receivedAt", "size", "from", "to", "subject", "sentAt", "hasKeyword", "allInThreadHaveKeyword",
         "someInThreadHaveKeyword"}
_PREFIX = re.compile(r"^\s*((re|fwd?|aw|sv|antw)\s*(\[\d+\])?\s*:\s*)+", re.IGNORECASE)


def _date(value, name: str) -> float:
    if not isinstance(value, str):
        raise invalid_arguments(f"{name} must be a UTCDate")
    try:
        d = _dt.datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ")  # RFC 8620 §1.4
    except ValueError:
        raise invalid_arguments(f"{name} must be a UTCDate") from None
    return d.replace(tzinfo=_dt.timezone.utc).timestamp()


class _Ctx:
    """Per-query caches: header views and body texts, read once."""

    def __init__(self, call, view):
        self.call, self.view = call, view
        self.metas: dict[str, object] = {}
        self.heads: dict[str, Header] = {}
        self.bodies: dict[str, str] = {}
        self.folded: dict[str, str] = {}
        self.body_bytes = 0

    def prefetch(self, entries) -> None:
        by_box: dict[str, list] = {}
        for e in entries:
            mbid, m = e.where[0]
            by_box.setdefault(mbid, []).append((m.uid, e.id))
        store = self.call.account.store
        for mbid, pairs in by_box.items():
            ids = dict(pairs)
            uids = sorted(ids)
            for i in range(0, len(uids), 100):
                for meta in store.get_messages(self.view.mailboxes[mbid], uids[i:i + 100]):
                    self.metas[ids[meta.uid]] = meta

    def header(self, e) -> Header:
        h = self.heads.get(e.id)
        if h is None:
            meta = self.metas.get(e.id) or self.view.full(e)
            self.metas[e.id] = meta
            data = meta.header if meta.header is not None else self.call.account.store.read(meta, 0, meta.header_len)
            h = self.heads[e.id] = Header(data)
        return h

    def body(self, e) -> str:
        """The Email's text parts, case-folded (what conditions match against)."""
        got = self.folded.get(e.id)
        if got is None:
            got = self.folded[e.id] = self.body_text(e).casefold()
        return got

    def body_text(self, e) -> str:
        text = self.bodies.get(e.id)
        if text is None:
            meta = self.metas.get(e.id) or self.view.full(e)
            self.body_bytes += meta.size
            if self.body_bytes > BODY_BUDGET:
                raise MethodError("unsupportedFilter", "a body search over this much mail: narrow it "
                                  "(inMailbox, before/after)")
            parsed = mime.parse(self.call.account.store.read(meta), e.first.blob_id)
            parts = [p for p in parsed.leaves.values() if p.type.startswith("text/")]
            text = self.bodies[e.id] = "\n".join(mime.decoded_text(p)[0] for p in parts)
        return text


def _check(f, depth: int = 0, count: list | None = None) -> bool:
    """Validate the filter tree; True when it needs header data."""
    count = count if count is not None else [0]
    count[0] += 1
    if depth > MAX_FILTER_DEPTH or count[0] > MAX_CONDITIONS:
        raise invalid_arguments("filter too deep or too large")
    if not isinstance(f, dict):
        raise invalid_arguments("a filter is an object")
    if "operator" in f:
        if f["operator"] not in ("AND", "OR", "NOT") or not isinstance(f.get("conditions"), list) or \
                set(f) - {"operator", "conditions"}:
            raise invalid_arguments("a FilterOperator has operator and conditions")
        return any([_check(c, depth + 1, count) for c in f["conditions"]])
    unknown = set(f) - CONDITIONS
    if unknown:
        raise MethodError("unsupportedFilter", f"unknown condition {sorted(unknown)[0][:60]!r}")
    for k in ("hasKeyword", "notKeyword", "allInThreadHaveKeyword", "someInThreadHaveKeyword",
              "noneInThreadHaveKeyword"):
        if k in f and not K.valid(f[k]):
            raise invalid_arguments(f"{k} must be a keyword")
    for k in ("text", "from", "to", "cc", "bcc", "subject", "body", "inMailbox"):
        if k in f and not isinstance(f[k], str):
            raise invalid_arguments(f"{k} must be a string")
    for k in ("before", "after"):
        if k in f:
            _date(f[k], k)
    for k in ("minSize", "maxSize"):
        if k in f:
            A.integer(f, k)
    if "inMailboxOtherThan" in f:
        A.ids(f, "inMailboxOtherThan")
    if "header" in f:
        h = f["header"]
        if not (isinstance(h, list) and 1 <= len(h) <= 2 and all(isinstance(x, str) for x in h)):
            raise invalid_arguments("header is [name] or [name, value]")
    return bool(set(f) & HEADER_CONDITIONS)


def _has_kw(flags, kw: str) -> bool:
    return kw.lower() in K.keywords(flags)


def _thread_flags(ctx: _Ctx, e) -> list[frozenset]:
    return [ctx.view.emails[i].flags for i in ctx.view.threads.get(e.thread_id, [e.id]) if i in ctx.view.emails]


def _field_text(h: Header, name: bytes) -> str:
    return " ".join(H._text(v) for v in h.get_all(name)).casefold()


def _match(ctx: _Ctx, e, f: dict) -> bool:
    if "operator" in f:
        results = (_match(ctx, e, c) for c in f["conditions"])
        if f["operator"] == "AND":
            return all(results)
        if f["operator"] == "OR":
            return any(results)
        return not any(results)
    mbs = e.mailbox_ids
    for k, v in f.items():
        if k == "inMailbox":
            ok = v in mbs
        elif k == "inMailboxOtherThan":
            ok = any(m not in v for m in mbs)
        elif k == "before":
            ok = e.received < _date(v, k)
        elif k == "after":
            ok = e.received >= _date(v, k)
        elif k == "minSize":
            ok = e.size >= v
        elif k == "maxSize":
            ok = e.size < v
        elif k == "hasKeyword":
            ok = _has_kw(e.flags, v)
        elif k == "notKeyword":
            ok = not _has_kw(e.flags, v)
        elif k == "allInThreadHaveKeyword":
            ok = all(_has_kw(fl, v) for fl in _thread_flags(ctx, e))
        elif k == "someInThreadHaveKeyword":
            ok = any(_has_kw(fl, v) for fl in _thread_flags(ctx, e))
        elif k == "noneInThreadHaveKeyword":
            ok = not any(_has_kw(fl, v) for fl in _thread_flags(ctx, e))
        elif k == "hasAttachment":
            from .email import _has_attachment

            ok = _has_attachment(None, ctx.header(e)) == bool(v)
        elif k in ("from", "to", "cc", "bcc", "subject"):
            ok = v.casefold() in _field_text(ctx.header(e), k.encode())
        elif k == "header":
            vals = ctx.header(e).get_all(v[0].lower().encode("ascii", "replace"))
            ok = bool(vals) if len(v) == 1 else any(v[1].casefold() in H._text(x).casefold() for x in vals)
        elif k == "text":
            needle = v.casefold()
            h = ctx.header(e)
            ok = any(needle in _field_text(h, n) for n in (b"from", b"to", b"cc", b"bcc", b"subject")) or \
                needle in ctx.body(e)
        elif k == "body":
            ok = v.casefold() in ctx.body(e)
        else:
            raise MethodError("unsupportedFilter", k)
        if not ok:
            return False
    return True


def _first_address(h: Header, name: bytes) -> str:
    got = H.addresses(h.get(name) or b"")
    return (got[0]["email"] if got else "").casefold()


def _sort_key(ctx: _Ctx, c: dict):
    prop = c.get("property")
    if prop == "receivedAt":
        return lambda e: e.received
    if prop == "size":
        return lambda e: e.size
    if prop in ("from", "to"):
        return lambda e: _first_address(ctx.header(e), prop.encode())
    if prop == "subject":
        return lambda e: _PREFIX.sub("", ctx.header(e).text(b"subject") or "").strip().casefold()
    if prop == "sentAt":
        def sent(e):
            d = ctx.header(e).date()
            return d.timestamp() if d is not None else e.received
        return sent
    kw = c.get("keyword")
    if not K.valid(kw):
        raise invalid_arguments(f"sorting by {prop} needs a keyword")
    if prop == "hasKeyword":
        return lambda e: _has_kw(e.flags, kw)
    if prop == "allInThreadHaveKeyword":
        return lambda e: all(_has_kw(fl, kw) for fl in _thread_flags(ctx, e))
    return lambda e: any(_has_kw(fl, kw) for fl in _thread_flags(ctx, e))


def query(call, args: dict) -> dict:
    A.known(args, {"accountId", "filter", "sort", "position", "anchor", "anchorOffset", "limit", "calculateTotal",
                   "collapseThreads"})
    view = call.view()
    flt = args.get("filter")
    sort = args.get("sort")
    if sort is None:
        sort = [{"property": "receivedAt", "isAscending": False}]
    if not isinstance(sort, list) or len(sort) > 8 or not all(isinstance(c, dict) for c in sort):
        raise invalid_arguments("sort is a list of Comparators")
    for c in sort:
        if c.get("property") not in SORTS:
            raise MethodError("unsupportedSort", f"cannot sort by {str(c.get('property'))[:60]!r}")
    needs_header = (flt is not None and _check(flt)) or any(c["property"] in ("from", "to", "subject", "sentAt")
                                                          for c in sort)
    fast = _newest_page(call, view, args, flt, sort)
    if fast is not None:
        return fast
    ctx = _Ctx(call, view)
    entries = list(view.emails.values())
    if flt is not None and isinstance(flt, dict) and isinstance(flt.get("inMailbox"), str):
        entries = [e for e in entries if flt["inMailbox"] in e.mailbox_ids]  # the common case, before any read
    if needs_header:
        ctx.prefetch(entries)
    if flt is not None:
        entries = [e for e in entries if _match(ctx, e, flt)]
    entries.sort(key=lambda e: e.id)
    for c in reversed(sort):  # stable sorts, last comparator first
        entries.sort(key=_sort_key(ctx, c), reverse=c.get("isAscending", True) is False)
    if A.boolean(args, "collapseThreads"):
        seen: set[str] = set()
        entries = [e for e in entries if not (e.thread_id in seen or seen.add(e.thread_id))]
    return window(call, args, [e.id for e in entries], view.state_string)


def _newest_page(call, view, args: dict, flt, sort) -> dict | None:
    """The common query, newest first in one mailbox (``{inMailbox: X}``, receivedAt descending, a
    ``limit``), answered from a page of that mailbox's entries; None when this cannot be exact (the
    general path answers then).

    Why a page suffices: the store keeps, per mailbox, ``sorted_above`` (``records.order_fields``): every
    message above that UID is dated strictly later than every message below it, so newest-first by
    receivedAt is newest-first by UID there, without ties (the general order breaks ties by Email id).
    An Email's copies share their INTERNALDATE (COPY/MOVE keep it, RFC 3501 §6.4.7), so a message's date
    is its Email's receivedAt, and within that range no Email has two UIDs (a copy into the same mailbox
    is not later than its original, so it is below ``sorted_above``). Reading newest UID first, the
    answer is exact for as long as the messages read stay above ``sorted_above``; collapseThreads keeps
    the first Email of each Thread seen, as the general path does. ``total`` (RFC 8620 §5.5) is the
    mailbox's totalEmails, or its totalThreads when threads are collapsed: the counts the store keeps
    (``store.counts``, the same numbers Mailbox/get shows). An entry newer than the state
    read first (a UID at or past its UIDNEXT) also hands over to the general path.
    """
    if not (isinstance(flt, dict) and set(flt) == {"inMailbox"} and flt["inMailbox"] in view.mailboxes):
        return None
    if len(sort) != 1 or sort[0].get("property") != "receivedAt" or sort[0].get("isAscending", True) is not False:
        return None
    position = A.integer(args, "position", 0, minimum=None)
    limit = A.integer(args, "limit", None)
    anchor = args.get("anchor")
    offset = A.integer(args, "anchorOffset", 0, minimum=None)
    collapse = A.boolean(args, "collapseThreads")
    total = A.boolean(args, "calculateTotal")
    if limit is None or (anchor is None and position < 0):
        return None  # the whole list: the general path
    store = call.account.store
    mbid = flt["inMailbox"]
    try:
        mb = store.get_mailbox_by_id(call.account.user, mbid)  # its counters: UIDNEXT, EXISTS, sorted_above
    except MailboxNotFound:
        return None  # deleted since the view was read: the general path answers from the view
    counted = store.mailbox_counts(call.account.user, [mbid]).get(mbid) if total else None
    if total and counted is None:
        return None  # deleted since: the general path answers from the view
    need = position + limit if anchor is None else None
    ids: list[str] = []
    threads: set[str] = set()
    complete = True
    for m in store.list_messages_desc(mb):
        if m.uid >= mb.uidnext or m.uid <= mb.sorted_above:
            return None
        eid = email_id_of(mbid, m)
        if collapse:
            tid = thread_id_of(eid, m)
            if tid in threads:
                continue
            threads.add(tid)
        ids.append(eid)
        view.thread_hints[eid] = thread_id_of(eid, m)  # Email/get of this page finds it through its thread
        if need is None and eid == anchor:
            need = max(0, len(ids) - 1 + offset) + limit
        if need is not None and len(ids) >= need:
            complete = False
            break
    if complete:  # the whole mailbox was read: the general window over it
        return window(call, args, ids, view.state_string)
    out = window(call, args, ids, view.state_string)  # ids holds the whole page: position + limit <= len(ids)
    if total:  # the mailbox's Emails, or its Threads when collapsed (store.counts: exact, kept at each write)
        out["total"] = counted.threads if collapse else counted.emails
    return out


def query_changes(call, args: dict) -> dict:
    """Email/queryChanges and Mailbox/queryChanges (RFC 8620 §5.6): queries say canCalculateChanges
    false, so a client re-runs the query; asked anyway, the answer is the RFC's error for that."""
    raise MethodError("cannotCalculateChanges", "re-run the query")
