"""COPY, UID COPY, MOVE, UID MOVE (RFC 3501 §6.4.7; RFC 4315 COPYUID; RFC 6851 MOVE).

COPY shares the blobs (``store.copy``) and answers ``OK [COPYUID v src dst]``;
a missing target is ``NO [TRYCREATE]`` (MailboxNotFound's code). MOVE is
copy + expunge of the source messages: ``* OK [COPYUID ...]`` untagged, then
the EXPUNGE responses, then the tagged OK (RFC 6851 §4.3). Quota is the
user's directory quota. A copy into or out of Junk is the user's: the store
sets ``$Junk`` or ``$NotJunk`` on the copies (``postern.junk``) and it is a lesson
for rspamd (``postern_gateway.spam.learn``, scheduled, never awaited here).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from postern.store.base import MailboxInfo

from .. import parser as P
from .. import responses as R
from ..errors import NoCommand
from ..parser import Command
from ..seqset import compress
from . import OpResult
from .expunge import do_expunge

if TYPE_CHECKING:
    from ..session import Session


async def _copy(s: Session, cmd: Command) -> tuple[MailboxInfo | None, list[tuple[int, int]]]:
    P.arity(cmd, 2)
    ss = P.seqset(cmd.args[0])
    dest = P.mailbox(cmd.args[1])
    sel = s.selected
    pairs = [(q, u) for q, u in sel.resolve(ss, cmd.uid) if sel.live(u)]
    metas = [sel.metas[u] for _, u in pairs]
    quota = s.backend.directory.quota_of(s.user)
    if not metas:
        # still validate the target (RFC 3501: TRYCREATE for a missing mailbox)
        await s.backend.mail.get_mailbox(s.user.address, dest)
        return None, []
    dmb, mapping = await s.backend.mail.copy(sel.watcher.mb, metas, dest, quota, by_user=True)  # $Junk/$NotJunk
    await s.runtime.notify(dmb.user, dmb.mailbox_id)
    if s.backend.learner is not None:  # into / out of Junk teaches rspamd, off this command's path
        s.backend.learner.after_copy(sel.watcher.mb, dmb, mapping)
    return dmb, mapping


def _copyuid(dmb, mapping) -> str | None:
    if not mapping:
        return None
    src = compress([a for a, _ in mapping])
    dst = compress([b for _, b in mapping])
    return f"COPYUID {dmb.uidvalidity} {src} {dst}"


async def copy(s: Session, cmd: Command) -> OpResult:
    dmb, mapping = await _copy(s, cmd)
    code = _copyuid(dmb, mapping)
    return ("OK", code, f"{cmd.full_name} completed") if code else f"{cmd.full_name} completed"


async def move(s: Session, cmd: Command) -> OpResult:
    sel = s.selected
    if sel.readonly:
        raise NoCommand("Mailbox is read-only", "READ-ONLY")
    dmb, mapping = await _copy(s, cmd)
    code = _copyuid(dmb, mapping)
    if code:
        s.send(R.ok_code(code, "Moved"))
    moved = {a for a, _ in mapping}
    await do_expunge(s, [sel.metas[u] for u in sorted(moved) if u in sel.metas])
    return f"{cmd.full_name} completed"
