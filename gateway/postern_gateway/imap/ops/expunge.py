"""EXPUNGE and UID EXPUNGE (RFC 3501 §6.4.3; RFC 4315 §2.1 UIDPLUS).

Removes the ``\\Deleted`` messages (of the UID set, for UID EXPUNGE) through
``store.expunge`` (index entries go, blobs are refcounted by the store) and
announces each with an untagged EXPUNGE, renumbering as it goes (RFC 3501
§7.4.1). Expunges by other sessions pending for this one are announced too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .. import parser as P
from ..errors import NoCommand
from ..parser import Command
from ..seqset import compress
from . import OpResult

if TYPE_CHECKING:
    from ..session import Session


async def do_expunge(s: Session, metas) -> list[int]:
    sel = s.selected
    mb = sel.watcher.mb
    done = await s.backend.mail.expunge(mb, metas) if metas else []
    gone = []
    for uid in sorted(done):
        seq = sel.expunged_now(uid)
        if seq is not None:
            gone.append(uid)
            if not sel.qresync:
                s.send(f"* {seq} EXPUNGE\r\n".encode())
    if gone and sel.qresync:
        s.send(f"* VANISHED {compress(gone)}\r\n".encode())  # RFC 7162 §3.2.10
    if done:
        await s.runtime.notify(mb.user, mb.mailbox_id)
    return done


async def expunge(s: Session, cmd: Command) -> OpResult:
    sel = s.selected
    if cmd.uid:
        P.arity(cmd, 1)
        ss = P.seqset(cmd.args[0])
    else:
        P.arity(cmd, 0)
        ss = None
    if sel.readonly:
        raise NoCommand("Mailbox is read-only", "READ-ONLY")
    await sel.watcher.refresh(force=True)  # act on current \Deleted flags
    pairs = sel.resolve(ss, True) if ss is not None else [(0, u) for u in sel.uids]
    doomed = [sel.metas[u] for _, u in pairs if sel.live(u) and "\\Deleted" in sel.metas[u].flags]
    await do_expunge(s, doomed)
    return f"{cmd.full_name} completed"
