"""The mail table's item formats, and the change log record, written once (pure functions).

In:   items as the item layer returns them (plain dicts), change records.
Out:  data objects (:class:`MessageMeta`, :class:`MailboxInfo`, :class:`Change`),
      the items a change writes for names and subscriptions (:func:`name_writes`,
      used both to materialise a change and to resolve names through a change
      not materialised yet: :func:`resolve_names`).
Fails: never (a malformed record is a programming error).

Change log record (``keys.change_key(user, n)``), self-describing so that the
IMAP watcher, JMAP and a DynamoDB stream consumer need nothing else (a stream
consumer keeps the INSERTs whose ``pk`` begins with ``L#``: a Lambda event
filter can; every other item of the table is derived from these)::

    v   schema version (postern.store.schema.CURRENT)
    u   the account (user address, lower case)       ms  the change number n
    k   kind: append | flags | expunge | create | rename | destroy | subscribe | unsubscribe | count
    t   commit time (epoch seconds)                    tk  the writer's token (an ambiguous write recognised)
    mb  mailbox id (message kinds, destroy)           n   mailbox name (destroy, subscribe, unsubscribe)
    st  the mailbox's counters after the change: un (UIDNEXT), hm (HIGHESTMODSEQ = n),
        ex (EXISTS), sz (bytes), us (unseen); appends and copies add ri, rb, dp (:func:`order_fields`);
        tt, ut (threads, unread threads: ``counts``) when the mailbox counts threads; a count
        change (the mailbox starts counting threads, ``counts``) holds tt, ut, tg only
    tc  the thread members items the change moves (``counts.change``), tg their generation
    ka  keywords the change added to the mailbox's keyword set (FLAGS must announce them)
    ud  change of the account's bytes used (quota)
    m   append: one entry per new message: uid, e (email id), th (thread id), fl (flags),
        sz, rs (raw size), hl (header length), id (INTERNALDATE), bl (blob key), and where
        its bytes come from: sp (the spool object: bl == sp, referenced in place; or, older records
        and IMAP APPEND, copied to bl; sx: only this change uses it) or src ("<mailbox id>/<uid>", COPY);
        pf (trace prefix), dd (dedup key), db (the dedup marker rides in the spool object's B# item, not an
        X# item: :func:`dedup_marker`), mi (Message-ID hash for the thread index),
        sv (the MX's spam verdict, ``SpamVerdict.to_dict``: SMTP deliveries only; COPY keeps it)
    g   flags: groups {f: resulting flags, u: [uids]}
    x   expunge: {uid, bl, sz, e (email id), th (thread id)}
    b   create (and rename's creates): {mb, n, su (SPECIAL-USE), uv (UIDVALIDITY)}
    mv  rename: {mb, o (old name), n (new name), uv, su}
    sub create: names to subscribe

Message entry (``keys.message_key``): uid, ms (MODSEQ), fl, id, sz, bl, rs, pf, the
header block when small (:func:`header_fields`: hz, the part after the trace prefix ``pf``
zlib-compressed, or hr uncompressed when that is smaller; entries written before hold hd,
the whole block, prefix included), hl, e, th, sv (when delivered over SMTP); a tombstone has x=True and a TTL. Mailbox
state (``keys.state_key``): mb, n (current name), uv, su, un, hm, ex, sz, us, kw
(keyword set), ru (\\Recent claimed through), tt, ut, tg (``counts``), ms; gone=True after DELETE. Name
entry (``keys.mailbox_key``): n, mb, uv, su, ms; gone=True (tombstone) after
DELETE or RENAME. Every materialised item carries ``ms``, the change that last
wrote it, and is only ever written if that change is newer (``items.newer``): a
slow writer can never undo a later change.
"""

from __future__ import annotations

import time
import zlib

from .. import keys
from ..verdicts import SpamVerdict
from .base import Change, MailboxInfo, MessageMeta
from .counts import new_state_fields

TOMBSTONE_TTL = 30 * 86400
DEDUP_IN_BLOB = 4  # delivery markers a spool object's B# item carries; later ones get X# items (see dedup_marker)
DEDUP_ATTR = "d#"
MESSAGE_KINDS = ("append", "flags", "expunge")
STRUCTURAL_KINDS = ("create", "rename", "destroy", "subscribe", "unsubscribe")


MAX_RECORD_BYTES = 350_000  # a change record's DynamoDB item size, below the 400 KB item limit with a margin


def size(value) -> int:
    """An upper estimate of a record's DynamoDB item size (names and values, UTF-8; numbers 21 bytes)."""
    if isinstance(value, dict):
        return 3 + sum(len(k.encode()) + 1 + size(v) for k, v in value.items())
    if isinstance(value, list | tuple | set | frozenset):
        return 3 + sum(1 + size(v) for v in value)
    if isinstance(value, str):
        return len(value.encode("utf-8", "surrogatepass"))
    if isinstance(value, bytes | bytearray):
        return len(value)
    return 21


def expires(now: float | None = None) -> int:
    return int(now if now is not None else time.time()) + TOMBSTONE_TTL


def live(item: dict | None) -> bool:
    return item is not None and not item.get("gone") and not item.get("x")


# --- messages ---------------------------------------------------------------------
def dedup_attr(dedup: str) -> str:
    """The attribute of a spool object's ``B#`` item that marks one delivery of it: ``d#<user>#<mailbox>``
    (the dedup key ``<queue id>#<user>#<mailbox>`` less the queue id the item's key already names)."""
    return DEDUP_ATTR + dedup.partition("#")[2]


def dedup_marker(m: dict, uv: int, modseq: int, mbid: str, at: float | None) -> dict:
    """What a delivery marker holds (in ``B#`` or an ``X#`` item): enough to answer the duplicate again.

    A delivery references its spool object in ``B#`` anyway (one UpdateItem per delivery, materialise), so
    its marker rides in that same write instead of an ``X#`` item of its own (one write unit less per
    delivery). Only the first DEDUP_IN_BLOB do: the item is rewritten whole by every delivery, and past
    1 KB each update costs a write unit more (a message to many local recipients would pay
    quadratically); the others, and appends whose blob is not a spool object (a report, IMAP APPEND),
    write ``X#``. Readers look in both (one BatchGetItem)."""
    return {"uid": int(m["uid"]), "uv": uv, "ms": modseq, "mb": mbid, "th": m.get("th", ""), "at": at}


def dedup_markers(blob_item: dict | None) -> dict[str, dict]:
    """``<user>#<mailbox>`` -> marker, of the deliveries a ``B#`` item marks."""
    return {k[len(DEDUP_ATTR):]: v for k, v in (blob_item or {}).items() if k.startswith(DEDUP_ATTR)}


def header_fields(prefix: bytes, header: bytes | None) -> dict:
    """How an entry stores its header block (``prefix`` + the message's header section): the part after
    the prefix, which the entry holds already as ``pf``, zlib-compressed (``hz``) unless that is no smaller
    (``hr``). A DynamoDB write unit is 1 KB of item: a typical delivered message's entry fits in one
    this way, where the block stored whole beside its prefix took two (``make cost``)."""
    if header is None:
        return {}
    if not header.startswith(prefix):
        return {"hd": header}
    rest = header[len(prefix):]
    packed = zlib.compress(rest, 6)
    return {"hz": packed} if len(packed) < len(rest) else {"hr": rest}


def header_of(item: dict) -> bytes | None:
    """The header block of an entry, whichever way it is stored (None: larger than HEADER_CAP, not kept)."""
    if "hd" in item:
        return bytes(item["hd"])
    if "hz" in item:
        return bytes(item.get("pf", b"")) + zlib.decompress(bytes(item["hz"]))
    if "hr" in item:
        return bytes(item.get("pf", b"")) + bytes(item["hr"])
    return None


def message_item(user: str, mbid: str, m: dict, modseq: int, prefix: bytes, header: bytes | None) -> dict:
    """The index entry of a message appended or copied by a change (``m`` is its record entry)."""
    return {
        **keys.message_key(user, mbid, int(m["uid"])),
        "uid": int(m["uid"]),
        "ms": modseq,
        "fl": set(m.get("fl") or ()),
        "id": m.get("id", 0.0),
        "sz": int(m["sz"]),
        "bl": m["bl"],
        "rs": int(m["rs"]),
        "pf": bytes(prefix),
        **header_fields(bytes(prefix), header),
        "hl": int(m["hl"]),
        "e": m.get("e", ""),
        "th": m.get("th", ""),
        **({"sv": m["sv"]} if m.get("sv") else {}),
    }


def tombstone_item(user: str, mbid: str, uid: int, modseq: int) -> dict:
    return {**keys.message_key(user, mbid, uid), "uid": uid, "ms": modseq, "x": True, "expires": expires()}


def meta(item: dict, light: bool = False) -> MessageMeta:
    if item.get("x"):
        return MessageMeta(uid=int(item["uid"]), modseq=int(item["ms"]), expunged=True)
    return MessageMeta(
        uid=int(item["uid"]),
        modseq=int(item["ms"]),
        flags=frozenset(item.get("fl") or ()),
        internaldate=float(item.get("id", 0)),
        size=int(item.get("sz", 0)),
        blob_key=item.get("bl", ""),
        raw_size=int(item.get("rs", 0)),
        prefix=b"" if light else bytes(item.get("pf", b"")),
        header=None if light else header_of(item),
        header_len=int(item.get("hl", 0)),
        light=light,
        email_id=item.get("e", ""),
        thread_id=item.get("th", ""),
        spam=verdict(item),
    )


def verdict(entry: dict) -> SpamVerdict | None:
    """The spam verdict a message entry or an append record's entry holds (None: none recorded)."""
    return SpamVerdict.from_dict(entry["sv"]) if entry.get("sv") else None


# --- mailboxes --------------------------------------------------------------------
def state_item(user: str, box: dict, modseq: int) -> dict:
    """A new mailbox's state (``box`` is a create entry: mb, n, su, uv)."""
    return {
        **keys.state_key(user, box["mb"]),
        "mb": box["mb"], "n": box["n"], "uv": int(box["uv"]), "su": box.get("su"),
        "un": 1, "hm": modseq, "ex": 0, "sz": 0, "us": 0, "ms": modseq, **new_state_fields(),
    }


def order_fields(st: dict, dates: list[float], first_uid: int, duplicate: bool = False) -> dict:
    """The date-order fields of a mailbox state after appending messages dated ``dates`` at UIDs
    ``first_uid``.. (a delivery, an APPEND or a COPY/MOVE into it, ``duplicate`` when that brings an Email
    the mailbox holds already: ``engine``'s COPY says when).

    ``ri``: the latest INTERNALDATE ever appended; ``rb``: the highest UID appended at or before ``ri``
    (out of order). So every message above ``rb`` is strictly later than every message below it, and the
    newest-first date order of those messages is their UID order (Email/query reads only a page of them).
    Expunges keep this true (removing messages cannot unsort the rest), so only appends write these.
    ``dp``: a COPY/MOVE brought an Email the mailbox held already (two UIDs may then hold one Email).
    A state written before these fields existed (``ri`` absent, UIDs already given) knows no order:
    everything appended to it stays below ``rb`` (the general query path answers for it).
    """
    known = "ri" in st or int(st.get("un", 1)) == 1
    ri = float(st.get("ri", 0.0))
    rb = sorted_above(st)
    for j, t in enumerate(dates):
        if not known or float(t) <= ri:  # a tie is out of order too: ties are ordered by Email id, not UID
            rb = first_uid + j
        ri = max(ri, float(t))
    out = {"rb": rb, "dp": bool(st.get("dp")) or duplicate}
    if known:
        out["ri"] = ri
    return out


def sorted_above(st: dict) -> int:
    """``MailboxInfo.sorted_above`` of a state item (all its UIDs when it predates ``order_fields``)."""
    if "rb" in st:
        return int(st["rb"])
    return 0 if int(st.get("un", 1)) == 1 else int(st.get("un", 1)) - 1


def mailbox_info(user: str, state: dict, pos: int, name: str | None = None) -> MailboxInfo:
    return MailboxInfo(
        user=user.lower(),
        name=name if name is not None else state["n"],
        mailbox_id=state["mb"],
        uidvalidity=int(state["uv"]),
        uidnext=int(state.get("un", 1)),
        highestmodseq=int(state.get("hm", 0)),
        exists=int(state.get("ex", 0)),
        size=int(state.get("sz", 0)),
        unseen=int(state.get("us", 0)),
        special_use=state.get("su"),
        keywords=frozenset(state.get("kw") or ()),
        recent_uid=int(state.get("ru", 0)),
        pos=pos,
        sorted_above=sorted_above(state),
        self_copied=bool(state.get("dp")),
    )


def entry_info(user: str, entry: dict, pos: int) -> MailboxInfo:
    """What a name entry alone says (no counters): list_mailboxes."""
    return MailboxInfo(user=user.lower(), name=entry["n"], mailbox_id=entry["mb"], uidvalidity=int(entry["uv"]),
                       special_use=entry.get("su"), pos=pos)


def name_writes(user: str, rec: dict) -> list[dict]:
    """Name entries and subscriptions a structural change writes (one write per key, tombstones included)."""
    h = int(rec["ms"])
    k = rec["k"]
    out: dict[tuple[str, str], dict] = {}

    def put(item: dict) -> None:
        out[(item["pk"], item["sk"])] = item

    def tomb(key: dict, name: str, mbid: str = "") -> dict:
        return {**key, "n": name, "mb": mbid, "gone": True, "ms": h, "expires": expires(rec.get("t"))}

    if k == "rename":
        for mv in rec.get("mv", ()):
            put(tomb(keys.mailbox_key(user, mv["o"]), mv["o"], mv["mb"]))
        for mv in rec.get("mv", ()):
            put({**keys.mailbox_key(user, mv["n"]), "n": mv["n"], "mb": mv["mb"], "uv": int(mv["uv"]),
                 "su": mv.get("su"), "ms": h})
    if k in ("create", "rename"):
        for b in rec.get("b", ()):
            put({**keys.mailbox_key(user, b["n"]), "n": b["n"], "mb": b["mb"], "uv": int(b["uv"]),
                 "su": b.get("su"), "ms": h})
        for name in rec.get("sub", ()):
            put({**keys.subscription_key(user, name), "n": name, "ms": h})
    elif k == "destroy":
        put(tomb(keys.mailbox_key(user, rec["n"]), rec["n"], rec["mb"]))
    elif k == "subscribe":
        put({**keys.subscription_key(user, rec["n"]), "n": rec["n"], "ms": h})
    elif k == "unsubscribe":
        put(tomb(keys.subscription_key(user, rec["n"]), rec["n"]))
    return list(out.values())


def resolve_names(items: dict[tuple[str, str], dict], user: str, pending: list[dict]) -> dict[tuple[str, str], dict]:
    """The user partition as it is once ``pending`` changes are materialised (readers resolve names
    through a change whose items are not all written yet: a crash mid-RENAME shows the new names)."""
    out = dict(items)
    for rec in pending:
        if rec["k"] not in STRUCTURAL_KINDS:
            continue
        for w in name_writes(user, rec):
            k = (w["pk"], w["sk"])
            cur = out.get(k)
            if cur is None or int(cur.get("ms", 0)) < int(w["ms"]):
                out[k] = w
    return out


# --- the change log -----------------------------------------------------------------
def change(rec: dict) -> Change:
    """The :class:`Change` a log record describes (light metas; flags entries carry uid, modseq, flags)."""
    h = int(rec["ms"])
    k = rec["k"]
    msgs: list[MessageMeta] = []
    if k == "append":
        for m in rec.get("m", ()):
            msgs.append(MessageMeta(uid=int(m["uid"]), modseq=h, flags=frozenset(m.get("fl") or ()),
                                    internaldate=float(m.get("id", 0)), size=int(m["sz"]), blob_key=m["bl"],
                                    raw_size=int(m["rs"]), header_len=int(m["hl"]), light=True,
                                    email_id=m.get("e", ""), thread_id=m.get("th", ""), spam=verdict(m)))
    elif k == "flags":
        for g in rec.get("g", ()):
            fl = frozenset(g.get("f") or ())
            msgs.extend(MessageMeta(uid=int(u), modseq=h, flags=fl, light=True) for u in g["u"])
        msgs.sort(key=lambda m: m.uid)
    elif k == "expunge":
        msgs = [MessageMeta(uid=int(x["uid"]), modseq=h, expunged=True, email_id=x.get("e", ""),
                            thread_id=x.get("th", "")) for x in rec.get("x", ())]
    names: tuple = ()
    if k == "rename":
        names = tuple((mv["mb"], mv["o"], mv["n"]) for mv in rec.get("mv", ()))
        names += tuple((b["mb"], "", b["n"]) for b in rec.get("b", ()))
    elif k == "create":
        names = tuple((b["mb"], "", b["n"]) for b in rec.get("b", ()))
    elif k in ("destroy", "subscribe", "unsubscribe"):
        names = ((rec.get("mb", ""), rec["n"], ""),)
    return Change(modseq=h, kind=k, mailbox_id=rec.get("mb", ""), messages=tuple(msgs),
                  keywords=frozenset(rec.get("ka") or ()), names=names, at=float(rec.get("t", 0)))


def touches(rec: dict) -> set[str]:
    """Mailbox ids whose state a change writes."""
    if rec["k"] in MESSAGE_KINDS or rec["k"] in ("destroy", "count"):
        return {rec["mb"]}
    return {mv["mb"] for mv in rec.get("mv", ())} | {b["mb"] for b in rec.get("b", ())}
