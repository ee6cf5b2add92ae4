"""SELECT, EXAMINE, CLOSE, UNSELECT, CHECK, NOOP, IDLE.

RFC 3501 §6.3.1-2, §6.4.1-2, §6.1.2; RFC 2177 (IDLE); RFC 3691 (UNSELECT);
RFC 7162 §3.1.2.1 (SELECT (CONDSTORE), HIGHESTMODSEQ), §3.2.5 (SELECT (QRESYNC ...):
VANISHED (EARLIER) and the FETCH of changed flags), §3.2.11 ([CLOSED]).
SELECT opens the process-wide watcher (O(changes) when this process has
seen the mailbox before) and builds the session's :class:`~..selected.Selected`.
IDLE waits on both the client (DONE) and the watcher's change event, sending
untagged updates as they come; the RFC 3501 §5.4 autologout timer still applies.
An account may have ``max_idle_per_user`` IDLEs at once per gateway process (``NO [LIMIT]`` past it).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from ...auth import claim_idle
from .. import parser as P
from .. import responses as R
from ..errors import BadCommand, ByeError
from ..parser import Command
from ..selected import Selected
from ..seqset import compress
from . import OpResult
from .mailboxes import get_existing

if TYPE_CHECKING:
    from ..session import Session

IDLE_KEEPALIVE = 120.0  # seconds between "* OK Still here" during a quiet IDLE


def parse_qresync(arg):
    """``(uidvalidity modseq [known-uids [(seq-set uid-set)]])`` (RFC 7162 §3.2.5); the seq-match hint is unused."""
    if not isinstance(arg, list) or not 2 <= len(arg) <= 4:
        raise BadCommand("Invalid QRESYNC parameter")
    uidvalidity = P.number(arg[0], nonzero=True)
    modseq = P.number(arg[1], bits=63)
    known = P.seqset(arg[2]) if len(arg) >= 3 and not isinstance(arg[2], list) else None
    return uidvalidity, modseq, known


async def select(s: Session, cmd: Command) -> OpResult:
    P.arity(cmd, 1, 2)
    readonly = cmd.name == "EXAMINE"
    name = P.mailbox(cmd.args[0])
    condstore = False
    qr = None
    if len(cmd.args) == 2:
        params = cmd.args[1]
        if not isinstance(params, list):
            raise BadCommand("Invalid SELECT parameters")
        i = 0
        while i < len(params):
            p = params[i]
            if isinstance(p, str) and p.upper() == "CONDSTORE":
                condstore = True
                i += 1
            elif isinstance(p, str) and p.upper() == "QRESYNC" and i + 1 < len(params):
                if "QRESYNC" not in s.enabled:
                    raise BadCommand("QRESYNC parameter requires ENABLE QRESYNC")  # RFC 7162 §3.2.5
                qr = parse_qresync(params[i + 1])
                i += 2
            else:
                raise BadCommand("Unknown SELECT parameter")
    if s.selected is not None and "QRESYNC" in s.enabled:
        s.send(R.ok_code("CLOSED", "Previous mailbox closed"))  # RFC 7162 §3.2.11
    s.deselect()  # RFC 3501 §6.3.1: even if this SELECT fails, nothing stays selected
    if condstore:
        s.enable_condstore()
    mb = await get_existing(s, name)
    watcher = await s.runtime.open(mb)
    sel = Selected(watcher, watcher.mb, readonly, condstore=s.condstore, qresync="QRESYNC" in s.enabled)
    top = sel.uids[-1] if sel.uids else 0
    if readonly:  # EXAMINE shows \Recent and claims nothing (RFC 3501 §6.3.2)
        sel.recent = {u for u in sel.uids if u > watcher.index.recent_uid}
    else:
        sel.recent = await s.runtime.claim_recent(watcher, top)
    watcher.subscribe(sel)
    s.enter_selected(sel)
    mb = watcher.mb
    for line in sel.flag_lines():
        s.send(line)
    s.send(R.untagged(f"{sel.exists} EXISTS"))
    s.send(R.untagged(f"{len(sel.recent)} RECENT"))
    unseen = sel.first_unseen()
    if unseen is not None:
        s.send(R.ok_code(f"UNSEEN {unseen}", "First unseen"))
    s.send(R.ok_code(f"UIDVALIDITY {mb.uidvalidity}", "UIDs valid"))
    s.send(R.ok_code(f"MAILBOXID ({mb.mailbox_id})", "Ok"))  # RFC 8474 §4.2: survives RENAME
    uidnext = max(mb.uidnext, (sel.uids[-1] + 1) if sel.uids else 1)
    s.send(R.ok_code(f"UIDNEXT {uidnext}", "Predicted next UID"))
    s.send(R.ok_code(f"HIGHESTMODSEQ {sel.highestmodseq()}", "Highest"))
    if qr is not None and qr[0] == mb.uidvalidity:
        _, since, known = qr
        vanished = sel.missing_uids(known, uidnext)
        if vanished:
            s.send(R.untagged(f"VANISHED (EARLIER) {compress(vanished)}"))
        for seq, uid in enumerate(sel.uids, 1):
            m = sel.metas[uid]
            if m.modseq > since and (known is None or known.contains(uid, sel.uids[-1])):
                s.send(R.fetch_line(seq, [b"UID %d" % uid, b"FLAGS " + R.flag_bytes(sel.flags_of(uid)),
                                          b"MODSEQ (%d)" % m.modseq]))
    return ("OK", "READ-ONLY" if readonly else "READ-WRITE", f"{cmd.name} completed")


async def _refresh(s: Session) -> None:
    """NOOP/CHECK: what the watcher knows (a backend read only without a live change feed)."""
    if s.selected is not None:
        await s.selected.watcher.refresh()


async def noop(s: Session, cmd: Command) -> OpResult:
    P.arity(cmd, 0)
    await _refresh(s)
    return "NOOP completed"


async def check(s: Session, cmd: Command) -> OpResult:
    P.arity(cmd, 0)
    await _refresh(s)
    return "CHECK completed"


async def close(s: Session, cmd: Command) -> OpResult:
    P.arity(cmd, 0)
    sel = s.selected
    if not sel.readonly:
        # RFC 3501 §6.4.2: silently remove \Deleted messages, no untagged EXPUNGE.
        await sel.watcher.refresh(force=True)
        doomed = [m for u, m in sel.metas.items() if "\\Deleted" in m.flags and u not in sel.pending_expunge]
        if doomed:
            await s.backend.mail.expunge(sel.watcher.mb, doomed)
            await s.runtime.notify(sel.mb.user, sel.mb.mailbox_id)
    s.deselect()
    return "CLOSE completed"


async def unselect(s: Session, cmd: Command) -> OpResult:
    P.arity(cmd, 0)
    s.deselect()
    return "UNSELECT completed"


async def idle(s: Session, cmd: Command) -> OpResult:
    P.arity(cmd, 0)
    ticket = claim_idle(s.backend, s.user.address, s.client_ip)  # NO [LIMIT] past max_idle_per_user
    try:
        return await _idle(s)
    finally:
        ticket.release()


async def _idle(s):
    sel = s.selected
    s.send(b"+ idling\r\n")
    await s.flush()  # the continuation first: a read of the log, if any, is news sent after it
    if sel is not None:
        await sel.watcher.refresh()
        for line in sel.flush(allow_expunge=True):
            s.send(line)
        await s.flush()
    read = asyncio.ensure_future(s.next_request())
    try:
        while True:
            waiters = {read}
            ev = None
            if sel is not None:
                ev = asyncio.ensure_future(sel.changed.wait())
                waiters.add(ev)
            done, _ = await asyncio.wait(waiters, timeout=IDLE_KEEPALIVE, return_when=asyncio.FIRST_COMPLETED)
            if ev is not None and ev not in done:
                ev.cancel()
            if not done:
                # keep NATs and the NLB (350 s TCP idle timeout) from dropping a quiet IDLE (RFC 2177 §3)
                s.send(R.untagged("OK Still here"))
                await s.flush()
                continue
            if sel is not None and (sel.changed.is_set() or sel.gone):
                if sel.gone:
                    raise ByeError("Selected mailbox was deleted or renamed")
                for line in sel.flush(allow_expunge=True):
                    s.send(line)
                await s.flush()
            if read in done:
                line = read.result()
                if line.strip().upper() != b"DONE":
                    raise BadCommand("Expected DONE")
                return "IDLE terminated"
    finally:
        if not read.done():
            read.cancel()
