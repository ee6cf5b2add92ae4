"""Email/get, /changes, /set (RFC 8621 §4) over the store's messages; Email/query is in ``emailquery``.

In:   method arguments; the account view (``index``: an Email is the store's
      email id, in every mailbox holding a message with it); message bytes
      through ``store.read`` (the logical message: trace prefix + as received).
Out:  the method responses.
Fails: MethodError for bad arguments; per-object SetErrors in /set
      (``notFound``, ``invalidProperties``, ``tooManyKeywords``, ``overQuota``).

What is read: metadata properties (ids, keywords, size, receivedAt) come from
the index alone; header properties from the header block the store keeps
beside the index entry (or a ranged read of the header section); body
properties (bodyStructure, bodyValues, textBody, htmlBody, attachments,
preview) parse the whole message with the stdlib email package (``mime``).

Writes are the IMAP primitives: a keyword change is a STORE (``add``/``remove``
for a patch, so a concurrent IMAP change is never undone; ``replace`` for a
whole keywords object), a mailbox change is COPY then EXPUNGE (the email id
survives, so the Email keeps its id), destroy is EXPUNGE in every mailbox. A mailbox change is the
user's own move: into Junk the copy gets ``$junk`` (and loses ``$notjunk``), out of Junk (not into Trash)
the reverse, in the store's copy (``postern.junk``, as IMAP MOVE), and the lessons for the spam filter
go to ``Account.learn`` once the updates are done (the learn queue; none when no filter learns).
"""

from __future__ import annotations

import datetime as _dt
from collections import Counter
from email.parser import BytesParser

from .. import junk
from ..errors import KeywordLimit, MailboxNotFound, QuotaExceeded
from ..mail.header import Header
from . import args as A
from . import headers as H
from . import keywords as K
from . import mime
from .changes import Delta, compute
from .errors import MethodError, invalid_arguments, set_error

DEFAULT_PROPERTIES = ["id", "blobId", "threadId", "mailboxIds", "keywords", "size", "receivedAt", "messageId",
                      "inReplyTo", "references", "sender", "from", "to", "cc", "bcc", "replyTo", "subject",
                      "sentAt", "hasAttachment", "preview", "bodyValues", "textBody", "htmlBody", "attachments"]
META = {"id", "blobId", "threadId", "mailboxIds", "keywords", "size", "receivedAt"}
HEADER = {"messageId", "inReplyTo", "references", "sender", "from", "to", "cc", "bcc", "replyTo", "subject",
          "sentAt", "headers", "hasAttachment"}
BODY = {"bodyStructure", "bodyValues", "textBody", "htmlBody", "attachments", "preview"}
BODY_PROPERTIES = ["partId", "blobId", "size", "headers", "name", "type", "charset", "disposition", "cid",
                   "language", "location", "subParts"]
DEFAULT_BODY_PROPERTIES = ["partId", "blobId", "size", "name", "type", "charset", "disposition", "cid",
                           "language", "location"]


MAX_HEADER_PROPERTIES = 100  # a bound on the parsing one Email/get can ask for


def utc(ts: float) -> str:
    return _dt.datetime.fromtimestamp(ts, _dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")  # RFC 8620 §1.4 UTCDate


def _properties(args: dict) -> tuple[list[str], dict[str, tuple]]:
    props = A.strings(args, "properties")
    props = DEFAULT_PROPERTIES if props is None else list(dict.fromkeys(["id", *props]))
    parsed: dict[str, tuple] = {}
    if sum(p.startswith("header:") for p in props) > MAX_HEADER_PROPERTIES:
        raise invalid_arguments(f"at most {MAX_HEADER_PROPERTIES} header: properties")
    for p in props:
        hp = H.parse_property(p)
        if hp is not None:
            parsed[p] = hp
        elif p not in META | HEADER | BODY:
            raise invalid_arguments(f"unknown property {p[:60]!r}")
    return props, parsed


def _body_properties(args: dict) -> list[str]:
    props = A.strings(args, "bodyProperties")
    if props is None:
        return DEFAULT_BODY_PROPERTIES
    bad = [p for p in props if p not in BODY_PROPERTIES and not p.startswith("header:")]
    if bad:
        raise invalid_arguments(f"unknown body property {bad[0][:60]!r}")
    return [p for p in props if p in BODY_PROPERTIES]


def get(call, args: dict) -> dict:
    A.known(args, {"accountId", "ids", "properties", "bodyProperties", "fetchTextBodyValues",
                   "fetchHTMLBodyValues", "fetchAllBodyValues", "maxBodyValueBytes"})
    props, hprops = _properties(args)
    body_props = _body_properties(args)
    opts = _get_options(args)
    view = call.view()
    ids = A.ids(args)
    if ids is None:
        if len(view.emails) > A.CORE_LIMITS["maxObjectsInGet"]:
            raise MethodError("requestTooLarge", "too many Emails to return them all: give ids")
        ids = list(view.emails)
    found, missing = [], []
    entries = view.entries(call.resolve_id(i) or "" for i in ids)
    for i in ids:
        entry = entries.get(call.resolve_id(i) or "")
        if entry is None:
            missing.append(i)
            continue
        found.append(_email(call, view, entry, props, hprops, body_props, opts))
    return {"accountId": call.account.id, "state": view.state_string, "list": found, "notFound": missing}


def _email(call, view, entry, props, hprops, body_props, opts) -> dict:
    store = call.account.store
    wanted = set(props)
    meta = None
    if wanted - META:
        meta = view.full(entry)
    raw = None
    if wanted & BODY:
        raw = store.read(meta)
    header = None
    if wanted & HEADER or hprops:
        hbytes = raw if raw is not None else (meta.header if meta.header is not None
                                              else store.read(meta, 0, meta.header_len))
        header = Header(hbytes)
    parsed = mime.parse(raw, entry.first.blob_id) if raw is not None else None
    known = {"id": entry.id, "blobId": entry.first.blob_id, "threadId": entry.thread_id,
             "mailboxIds": entry.mailbox_ids, "keywords": K.keywords(entry.flags), "size": entry.size,
             "receivedAt": utc(entry.received)}
    return _content(props, known, hprops, body_props, opts, header, parsed)


def _content(props, known: dict, hprops, body_props, opts, header, parsed) -> dict:
    """The Email object: metadata from ``known``, the rest from the header view and the parsed MIME."""
    out: dict = {}
    for p in props:
        if p in META:
            out[p] = known.get(p)
        elif p == "hasAttachment":
            out[p] = _has_attachment(parsed, header)
        elif p in hprops:
            out[p] = H.header_property(header, *hprops[p])
        elif p in HEADER:
            out[p] = H.convenience(header, p)
        elif p == "bodyStructure":
            out[p] = mime.body_part(parsed.structure, body_props + (["subParts"] if "subParts" not in body_props else []))
        elif p in ("textBody", "htmlBody", "attachments"):
            parts = {"textBody": parsed.text_body, "htmlBody": parsed.html_body, "attachments": parsed.attachments}[p]
            out[p] = [mime.body_part(x, [b for b in body_props if b != "subParts"]) for x in parts]
        elif p == "preview":
            out[p] = mime.preview(parsed)
        elif p == "bodyValues":
            chosen: dict[str, mime.Part] = {}
            if opts["all"]:
                chosen.update((k, v) for k, v in parsed.leaves.items() if v.type.startswith("text/"))
            if opts["text"] or opts["all"]:
                chosen.update((x.part_id, x) for x in parsed.text_body if x.type.startswith("text/"))
            if opts["html"] or opts["all"]:
                chosen.update((x.part_id, x) for x in parsed.html_body if x.type.startswith("text/"))
            out[p] = {k: mime.body_value(v, opts["max"]) for k, v in chosen.items()}
    return out


def _get_options(args: dict) -> dict:
    return {"text": A.boolean(args, "fetchTextBodyValues"), "html": A.boolean(args, "fetchHTMLBodyValues"),
            "all": A.boolean(args, "fetchAllBodyValues"), "max": A.integer(args, "maxBodyValueBytes", 0)}


PARSE_DEFAULT = ["messageId", "inReplyTo", "references", "sender", "from", "to", "cc", "bcc", "replyTo", "subject",
                 "sentAt", "hasAttachment", "preview", "bodyValues", "textBody", "htmlBody", "attachments"]


def parse(call, args: dict) -> dict:
    """Email/parse (RFC 8621 §4.9): blobs read as Emails without storing them (an attached message,
    an upload); id, threadId, mailboxIds, keywords and receivedAt are null."""
    A.known(args, {"accountId", "blobIds", "properties", "bodyProperties", "fetchTextBodyValues",
                   "fetchHTMLBodyValues", "fetchAllBodyValues", "maxBodyValueBytes"})
    blob_ids = A.ids(args, "blobIds") or []
    props, hprops = _properties({**args, "properties": args.get("properties") or PARSE_DEFAULT})
    body_props = _body_properties(args)
    opts = _get_options(args)
    from . import blobs

    out = {"accountId": call.account.id, "parsed": {}, "notParsable": [], "notFound": []}
    for b in blob_ids:
        got = blobs.read(call, b)
        if got is None:
            out["notFound"].append(b)
            continue
        raw = got[0]
        if len(raw) > 25_000_000:
            out["notParsable"].append(b)
            continue
        known = {"blobId": b, "size": len(raw)}
        out["parsed"][b] = _content(props, known, hprops, body_props, opts, Header(raw), mime.parse(raw, b))
    return out


def _has_attachment(parsed, header) -> bool:
    """RFC 8621 §4.1.4: true when some attachment is not inline. Without the body parsed, the top-level
    Content-Type decides (the RFC allows a heuristic): multipart/mixed, or a part that is not text."""
    if parsed is not None:
        return any(a.disposition != "inline" for a in parsed.attachments)
    value = header.get(b"content-type") if header is not None else None
    if value is None:
        return False
    msg = BytesParser(policy=mime.POLICY).parsebytes(b"Content-Type: " + value[:1024] + b"\r\n\r\n", headersonly=True)
    ctype = msg.get_content_type()
    return ctype == "multipart/mixed" or not (ctype.startswith("text/") or ctype.startswith("multipart/"))


# --- /changes ---------------------------------------------------------------------------------
def changes(call, args: dict) -> dict:
    view = call.view()
    by_uid: dict[tuple[str, int], str] = {}
    for e in view.emails.values():
        for mbid, m in e.where:
            by_uid[(mbid, m.uid)] = e.id
    adds: Counter = Counter()
    drops: Counter = Counter()

    def read(ch, d: Delta) -> None:
        from .changes import Skip

        if ch.kind == "append":
            for m in ch.messages:
                d.created.add(m.email_id)
                adds[m.email_id] += 1
        elif ch.kind == "flags":
            d.updated.update(i for m in ch.messages if (i := by_uid.get((ch.mailbox_id, m.uid))))
        elif ch.kind == "expunge":
            for m in ch.messages:
                if m.email_id:
                    d.updated.add(m.email_id)
                    drops[m.email_id] += 1
        elif ch.kind == "destroy":
            raise Skip()  # the messages of a deleted mailbox are released without a change of their own

    out, _ = compute(call, args, read, lambda i: i in view.emails)
    # a COPY then EXPUNGE (a move) of an Email that existed before is an update, not a creation
    moved = [i for i in out["created"] if adds[i] <= drops[i]]
    if moved:
        out["created"] = [i for i in out["created"] if i not in moved]
        out["updated"] = sorted(set(out["updated"]) | set(moved))
    return out


# --- /set ------------------------------------------------------------------------------------
class _Invalid(Exception):
    def __init__(self, props: list[str], description: str = "invalid property"):
        super().__init__(description)
        self.props = props


def _unescape(token: str) -> str:
    return token.replace("~1", "/").replace("~0", "~")  # RFC 6901 (patch paths, RFC 8620 §5.3)


def _read_patch(call, view, patch: dict):
    kw_full, kw_add, kw_remove = None, set(), set()
    mb_full, mb_add, mb_remove = None, set(), set()
    for path, value in patch.items():
        if path == "keywords":
            if not isinstance(value, dict) or not all(K.valid(k) and v is True for k, v in value.items()):
                raise _Invalid(["keywords"])
            kw_full = {k.lower() for k in value}
        elif path.startswith("keywords/"):
            k = _unescape(path[len("keywords/"):])
            if not K.valid(k) or value not in (True, None, False):
                raise _Invalid([path])
            (kw_add if value is True else kw_remove).add(k.lower())
        elif path == "mailboxIds":
            if not isinstance(value, dict) or not all(v is True for v in value.values()):
                raise _Invalid(["mailboxIds"])
            mb_full = {call.resolve_id(k) for k in value}
            if not all(m in view.mailboxes for m in mb_full):
                raise _Invalid(["mailboxIds"], "no such mailbox")
        elif path.startswith("mailboxIds/"):
            m = call.resolve_id(_unescape(path[len("mailboxIds/"):]))
            if m not in view.mailboxes or value not in (True, None, False):
                raise _Invalid([path], "no such mailbox")
            (mb_add if value is True else mb_remove).add(m)
        else:
            raise _Invalid([path], "only keywords and mailboxIds can change")  # the rest is immutable
    if (kw_full is not None and (kw_add or kw_remove)) or (mb_full is not None and (mb_add or mb_remove)):
        raise _Invalid(["keywords" if kw_full is not None else "mailboxIds"], "a whole value and a patch of it")
    return kw_full, kw_add, kw_remove, mb_full, mb_add, mb_remove


def _update(call, view, entry, patch: dict, lessons: list) -> None:
    store = call.account.store
    kw_full, kw_add, kw_remove, mb_full, mb_add, mb_remove = _read_patch(call, view, patch)
    for mbid, meta in entry.where:
        mb = view.mailboxes[mbid]
        if kw_full is not None:
            store.store_flags(mb, [meta], K.to_flags(meta.flags, kw_full), "replace")
        if kw_add:
            store.store_flags(mb, [meta], {f for k in kw_add for f in K.matching(meta.flags, k)}, "add")
        if kw_remove:
            gone = {f for k in kw_remove for f in K.matching(meta.flags, k)}
            store.store_flags(mb, [meta], gone, "remove")
    current = set(entry.mailbox_ids)
    target = mb_full if mb_full is not None else (current | mb_add) - mb_remove
    if target == current:
        return
    if not target:
        raise _Invalid(["mailboxIds"], "an Email is in at least one mailbox")  # RFC 8621 §4.1.1
    src_id, src = entry.where[0]
    for mbid in sorted(target - current):  # copy first: the Email is never in no mailbox
        # the user's move: into Junk is $junk and a spam lesson, out of it $notjunk and ham (postern.junk)
        dmb, pairs = store.copy(view.mailboxes[src_id], [src], view.mailboxes[mbid].name, quota=call.account.quota,
                                by_user=True)
        spam = junk.lesson(view.mailboxes[src_id], dmb)
        if spam is not None and pairs:
            lessons.append(junk.Lesson(dmb.user, dmb.mailbox_id, tuple(d for _, d in pairs), spam))
    for mbid, meta in entry.where:
        if mbid not in target:
            store.expunge(view.mailboxes[mbid], [meta])


def _set_error(exc: Exception) -> dict:
    if isinstance(exc, _Invalid):
        return set_error("invalidProperties", str(exc), properties=exc.props)
    if isinstance(exc, KeywordLimit):
        return set_error("tooManyKeywords")
    if isinstance(exc, QuotaExceeded):
        return set_error("overQuota")
    if isinstance(exc, MailboxNotFound):
        return set_error("notFound")
    raise exc


def set_(call, args: dict) -> dict:
    A.known(args, {"accountId", "ifInState", "create", "update", "destroy"})
    create, update = A.obj(args, "create") or {}, A.obj(args, "update") or {}
    destroy = A.ids(args, "destroy", limit=10**9) or []
    A.set_limit(create, update, destroy)
    view = call.view()
    if args.get("ifInState") is not None and args["ifInState"] != view.state_string:
        raise MethodError("stateMismatch")  # RFC 8620 §5.3
    out = {"accountId": call.account.id, "oldState": view.state_string, "created": {}, "updated": {},
           "destroyed": [], "notCreated": {}, "notUpdated": {}, "notDestroyed": {}}
    from .compose import create_email

    for cid, obj in create.items():
        try:
            made = create_email(call, view, obj)
            call.created_ids[cid] = made["id"]
            out["created"][cid] = made
        except (_Invalid, KeywordLimit, QuotaExceeded, MailboxNotFound) as exc:
            out["notCreated"][cid] = _set_error(exc)
        except MethodError as exc:
            out["notCreated"][cid] = set_error(exc.type, exc.description, **exc.extra)
    if create:
        call.changed()
        view = call.view()
    targets = view.entries([call.resolve_id(i) or i for i in list(update) + list(destroy)])
    lessons: list[junk.Lesson] = []
    for raw_id, patch in update.items():
        eid = call.resolve_id(raw_id) or raw_id
        entry = targets.get(eid)
        if entry is None:
            out["notUpdated"][raw_id] = set_error("notFound")
            continue
        try:
            if not isinstance(patch, dict):
                raise _Invalid([], "not a patch object")
            _update(call, view, entry, patch, lessons)
            out["updated"][eid] = None
        except (_Invalid, KeywordLimit, QuotaExceeded, MailboxNotFound) as exc:
            out["notUpdated"][raw_id] = _set_error(exc)
    for raw_id in destroy:
        eid = call.resolve_id(raw_id) or raw_id
        entry = targets.get(eid)
        if entry is None:
            out["notDestroyed"][raw_id] = set_error("notFound")
            continue
        try:
            for mbid, meta in entry.where:
                call.account.store.expunge(view.mailboxes[mbid], [meta])
            out["destroyed"].append(eid)
        except MailboxNotFound:
            out["notDestroyed"][raw_id] = set_error("notFound")
    if lessons and call.account.learn is not None:  # after the moves, one send per mailbox (advice: never fails)
        call.account.learn(lessons)
    call.changed()
    out["newState"] = call.view().state_string
    return out
