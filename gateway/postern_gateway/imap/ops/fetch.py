"""FETCH and UID FETCH (RFC 3501 §6.4.5, §7.4.2; RFC 7162 CHANGEDSINCE/MODSEQ).

Storage rule: FLAGS, UID, RFC822.SIZE, INTERNALDATE and MODSEQ come from the
index; ENVELOPE, HEADER, HEADER.FIELDS(.NOT) and RFC822.HEADER from the
stored header block (``MessageMeta.header``, no S3 read); BODY[]/TEXT and
partials are ranged reads (``store.read(meta, start, end)``); nested parts,
MIME and BODYSTRUCTURE read the whole message once per FETCH (structures
are cached per process by blob). Non-PEEK body fetches set ``\\Seen`` first
so the FETCH response carries the new FLAGS (RFC 3501 §6.4.5).
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from postern.errors import BlobMissing, StoreUnavailable

from .. import message as M  # imap-content's pure MIME functions
from .. import parser as P
from .. import responses as R
from .. import wire
from ..errors import BadCommand, NoCommand
from ..parser import Command, FetchAtt, Section
from ..seqset import compress
from ..work import INLINE_BYTES, Budget
from . import OpResult

if TYPE_CHECKING:
    from ..session import Session

CHUNK = 500
MAX_BODY_ITEMS = 32  # body sections, RFC822* items and BODY/BODYSTRUCTURE in one FETCH
LINE_SLACK = 1024 * 1024  # one message's FETCH line holds at most 2 x its size + this
FULL_ATTS = {"ENVELOPE", "RFC822.HEADER", "RFC822", "RFC822.TEXT", "BODY", "BODYSTRUCTURE"}


class _Msg:
    """One message being fetched: its view meta, full meta and lazily read bytes."""

    def __init__(self, s, mb, view, full, budget: Budget):
        self.s, self.mb, self.view, self.full = s, mb, view, full or view
        self.budget = budget  # the FETCH's work budget: MIME structure of big messages in a worker
        self._raw = None
        self._header = None

    async def read(self, start=0, end=None) -> bytes:
        if self._raw is not None:
            return self._raw[start:end]
        return await self.s.backend.mail.read(self.full, start, end)

    async def raw(self) -> bytes:
        if self._raw is None:
            self._raw = await self.s.backend.mail.read(self.full, 0, None)
        return self._raw

    async def header(self) -> bytes:
        if self._header is None:
            h = self.full.header
            if h is None:
                h = await self.read(0, self.full.header_len)
            self._header = h
        return self._header


def _partial(data: bytes, partial) -> bytes:
    if partial is None:
        return data
    o, n = partial
    return data[o : o + n]


async def section_bytes(m: _Msg, sec: Section, partial) -> bytes:
    meta = m.full
    if not sec.part:
        if sec.text is None:
            if partial is not None:
                o, n = partial
                return await m.read(o, min(o + n, meta.size)) if o < meta.size else b""
            return await m.read(0, meta.size)
        if sec.text == "HEADER":
            return _partial(await m.header(), partial)
        if sec.text in ("HEADER.FIELDS", "HEADER.FIELDS.NOT"):
            return _partial(M.header_fields(await m.header(), sec.fields, sec.text.endswith(".NOT")), partial)
        if sec.text == "TEXT":
            start = meta.header_len
            end = meta.size
            if partial is not None:
                o, n = partial
                start, end = start + o, min(start + o + n, end)
            return await m.read(start, end) if start < end else b""
    data = await m.budget.section(await m.raw(), sec.part, sec.text, sec.fields)
    return _partial(data, partial)


async def bodystructure(s: Session, m: _Msg, extended: bool) -> bytes:
    key = (m.full.blob_key, len(m.full.prefix), extended)
    hit = s.runtime.structure_get(key) if m.full.blob_key else None
    if hit is None:
        hit = await m.budget.bodystructure(await m.raw(), extended)
        if m.full.blob_key:
            s.runtime.structure_put(key, hit)
    return hit


INDEX_ATTS = {"FLAGS", "UID", "INTERNALDATE", "RFC822.SIZE", "MODSEQ", "EMAILID", "THREADID"}


def render_index(sel, uid: int, name: str, view) -> bytes:
    """The attributes answered from the index alone (no await, no store call)."""
    if name == "FLAGS":
        return b"FLAGS " + R.flag_bytes(sel.flags_of(uid))
    if name == "UID":
        return b"UID %d" % uid
    if name == "RFC822.SIZE":
        return b"RFC822.SIZE %d" % view.size
    if name == "MODSEQ":
        return b"MODSEQ (%d)" % view.modseq
    if name == "EMAILID":  # RFC 8474 §5.1: survives COPY and MOVE
        return b"EMAILID (%s)" % view.email_id.encode()
    if name == "THREADID":  # RFC 8474 §5.2
        return b"THREADID (%s)" % view.thread_id.encode() if view.thread_id else b"THREADID NIL"
    return b"INTERNALDATE " + wire.format_internaldate(view.internaldate)


def header_only(atts) -> bool:
    """Every attribute is answered by the index or the stored header block (no store read)."""
    for a in atts:
        if a.name in INDEX_ATTS or a.name in ("ENVELOPE", "RFC822.HEADER"):
            continue
        if a.is_body_section and not a.section.part and a.section.text in ("HEADER", "HEADER.FIELDS",
                                                                             "HEADER.FIELDS.NOT"):
            continue
        return False
    return True


def render_header(sel, uid: int, att: FetchAtt, view, header: bytes) -> bytes:
    """Synchronous rendering of :func:`header_only` attributes (the common client header sweep)."""
    name = att.name
    if name in INDEX_ATTS:
        return render_index(sel, uid, name, view)
    if name == "ENVELOPE":
        return b"ENVELOPE " + M.envelope(header)
    if name == "RFC822.HEADER":
        return b"RFC822.HEADER " + wire.literal(header)
    sec = att.section
    if sec.text == "HEADER":
        data = header
    else:
        data = M.header_fields(header, sec.fields, sec.text.endswith(".NOT"))
    return att.label().encode() + b" " + wire.literal(_partial(data, att.partial))


async def render(s: Session, sel, seq, uid, att: FetchAtt, m: _Msg) -> bytes:
    name = att.name
    view = m.view
    if name in INDEX_ATTS:
        return render_index(sel, uid, name, view)
    if name == "ENVELOPE":
        return b"ENVELOPE " + await m.budget.envelope(await m.header())
    if name == "BODYSTRUCTURE":
        return b"BODYSTRUCTURE " + await bodystructure(s, m, True)
    if name == "BODY":
        return b"BODY " + await bodystructure(s, m, False)
    if name == "RFC822.HEADER":
        return b"RFC822.HEADER " + wire.literal(await m.header())
    if name == "RFC822":
        return b"RFC822 " + wire.literal(await m.read(0, m.full.size))
    if name == "RFC822.TEXT":
        return b"RFC822.TEXT " + wire.literal(await section_bytes(m, Section((), "TEXT"), None))
    data = await section_bytes(m, att.section, att.partial)
    return att.label().encode() + b" " + wire.literal(data)


async def render_all(s, sel, seq, uid, atts, m: _Msg) -> list[bytes]:
    """Every attribute of one message; the line stops growing past 2 x the message's size
    (``BODY[]<0.n>`` ranges and repeated sections cannot make one response unbounded)."""
    cap = 2 * m.full.size + LINE_SLACK
    items, total = [], 0
    for a in atts:
        item = await render(s, sel, seq, uid, a, m)
        total += len(item)
        if total > cap:
            raise NoCommand("FETCH response too large for one message; fetch fewer sections", "LIMIT")
        items.append(item)
    return items


async def fetch(s: Session, cmd: Command) -> OpResult:
    if len(cmd.args) < 2:
        raise BadCommand("FETCH needs a message set and attributes")
    ss = P.seqset(cmd.args[0])
    req = P.fetch_items(cmd.args[1:])
    sel = s.selected
    atts = list(req.atts)
    if sum(1 for a in atts if a.name in FULL_ATTS or a.is_body_section) > MAX_BODY_ITEMS:
        raise NoCommand(f"At most {MAX_BODY_ITEMS} body items in one FETCH", "LIMIT")  # RFC 5530 §3
    names = {a.name for a in atts}
    if req.changedsince is not None or "MODSEQ" in names:
        s.enable_condstore()  # RFC 7162 §3.1: a CONDSTORE-enabling command
    if sel.condstore and "MODSEQ" not in names and req.changedsince is not None:
        atts.append(FetchAtt("MODSEQ"))
    if cmd.uid and "UID" not in names:
        atts.insert(0, FetchAtt("UID"))  # RFC 3501 §6.4.8
    if req.vanished and (not cmd.uid or req.changedsince is None or "QRESYNC" not in s.enabled):
        raise BadCommand("VANISHED needs UID FETCH, CHANGEDSINCE and ENABLE QRESYNC")  # RFC 7162 §3.2.6
    targets = sel.resolve(ss, cmd.uid)
    if req.vanished:
        uidnext = max(sel.watcher.mb.uidnext, (sel.uids[-1] + 1) if sel.uids else 1)
        gone = sel.missing_uids(ss, uidnext)
        if gone:
            s.send(R.untagged(f"VANISHED (EARLIER) {compress(gone)}"))
    if req.changedsince is not None:
        targets = [(q, u) for q, u in targets if sel.metas[u].modseq > req.changedsince]
    need_full = any(a.name in FULL_ATTS or a.is_body_section for a in atts)
    index_only = all(a.name in INDEX_ATTS for a in atts)
    headers_only = header_only(atts)
    sets_seen = not sel.readonly and any(a.sets_seen for a in atts)
    mb = sel.watcher.mb
    budget = Budget(s.settings, s.user.address)
    missing = False
    broken = False
    wrote = False
    for i in range(0, len(targets), CHUNK):
        chunk = targets[i : i + CHUNK]
        flagged_now: set[int] = set()
        if sets_seen:
            unseen = [sel.metas[u] for _, u in chunk if "\\Seen" not in sel.metas[u].flags and sel.live(u)]
            if unseen:
                res = await s.backend.mail.store_flags(mb, unseen, ["\\Seen"], "add")
                # the store answers with the flags as they are now, maybe with a keyword another
                # session added that this client has not heard of: FLAGS first (RFC 3501 §7.2.6)
                for line in sel.announce(f for ch in res.changed for f in ch.flags):
                    s.send(line)
                for ch in res.changed:
                    old = sel.metas.get(ch.uid)
                    if old is not None:
                        sel.told_flags(ch.uid, replace(old, flags=ch.flags, modseq=ch.modseq))
                        flagged_now.add(ch.uid)
                wrote = wrote or bool(res.changed)
        full = await s.runtime.full_metas(mb, [sel.metas[u] for _, u in chunk]) if need_full else {}
        for seq, uid in chunk:
            await budget.tick()
            view = sel.metas[uid]
            m = None if index_only else _Msg(s, mb, view, full.get(uid), budget)
            if need_full and uid not in full:
                missing = True  # expunged by someone else, not yet announced (RFC 2180 §4.1.2)
                continue
            try:
                if index_only:
                    items = [render_index(sel, uid, a.name, view) for a in atts]
                elif headers_only and full[uid].header is not None and (
                        "ENVELOPE" not in names or len(full[uid].header) <= INLINE_BYTES):
                    hdr = full[uid].header
                    items = [render_header(sel, uid, a, view, hdr) for a in atts]
                else:
                    items = await render_all(s, sel, seq, uid, atts, m)
            except BlobMissing:
                if sel.live(uid):
                    broken = True  # the bytes are gone: said after the others are sent, never "expunged"
                else:
                    missing = True
                continue
            except StoreUnavailable:
                if sel.live(uid):
                    raise
                missing = True
                continue
            if uid in flagged_now and "FLAGS" not in names:
                items.append(b"FLAGS " + R.flag_bytes(sel.flags_of(uid)))
            if uid in flagged_now and sel.condstore and "UID" not in {a.name for a in atts}:
                items.append(b"UID %d" % uid)  # RFC 7162 §3.1: implicit \Seen changes carry UID and MODSEQ
            if uid in flagged_now and sel.condstore and "MODSEQ" not in {a.name for a in atts}:
                items.append(b"MODSEQ (%d)" % sel.metas[uid].modseq)
            s.send(R.fetch_line(seq, items))
            await s.maybe_flush()
    if wrote:
        await s.runtime.notify(mb.user, mb.mailbox_id)
    if broken:
        raise BlobMissing()
    if missing:
        return ("NO", "EXPUNGEISSUED", "Some messages were expunged")  # RFC 5530 §3
    return f"{cmd.full_name} completed"
