"""APPEND, with MULTIAPPEND (RFC 3501 §6.3.11; RFC 3502; RFC 4315 APPENDUID; RFC 7889 APPENDLIMIT).

Every message goes through ``store.append`` - the same ingest path as SMTP
delivery - with the user's quota. MULTIAPPEND is all-or-nothing: if a later
message fails, the ones already appended by this command are expunged again;
an APPEND whose session is stopped mid-command (the client never hears OK) is
undone the same way once the append in flight has ended.
Fails: missing mailbox -> NO [TRYCREATE]; over quota -> NO [OVERQUOTA];
bigger than APPENDLIMIT -> NO [TOOBIG] (the receiver refuses the literal
before it is sent when it is synchronising).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from postern.errors import PosternError
from postern.store.base import AppendResult, MessageMeta

from .. import parser as P
from ..errors import BadCommand, NoCommand
from ..parser import Command, Literal
from ..seqset import compress
from . import OpResult

if TYPE_CHECKING:
    from ..session import Session

log = logging.getLogger("postern.imap")


async def _undo(mail, user: str, done: list[AppendResult], inflight: asyncio.Future | None) -> None:
    """Expunge what this APPEND added (after the append still in flight, if any, has ended)."""
    if inflight is not None:
        try:
            done.append(await inflight)
        except Exception:  # noqa: BLE001 - it failed: nothing of it to undo
            pass
    if not done:
        return
    try:
        mb = await mail.get_mailbox_by_id(user, done[0].mailbox_id)
        await mail.expunge(mb, [MessageMeta(uid=r.uid, modseq=0) for r in done])
    except PosternError:
        log.warning("APPEND rollback failed", exc_info=True)


def parse_append(args: list) -> tuple[str, list[tuple[list[str], float | None, bytes]]]:
    if len(args) < 2:
        raise BadCommand("APPEND needs a mailbox and a message literal")
    name = P.mailbox(args[0])
    msgs = []
    i = 1
    while i < len(args):
        flags: list[str] = []
        date = None
        if isinstance(args[i], list):
            flags = [f for f in P.flag_list(args[i]) if f != "\\Recent"]
            i += 1
        if i < len(args) and isinstance(args[i], bytes) and not isinstance(args[i], Literal):
            date = P.date_time(args[i])
            i += 1
        if i >= len(args) or not isinstance(args[i], Literal):
            raise BadCommand("APPEND message must be a literal")
        msgs.append((flags, date, bytes(args[i])))
        i += 1
    return name, msgs


async def append(s: Session, cmd: Command) -> OpResult:
    name, msgs = parse_append(cmd.args)
    limit = s.settings.max_message_size
    for _, _, raw in msgs:
        if len(raw) > limit:
            raise NoCommand("Message exceeds APPENDLIMIT", "TOOBIG")
    quota = s.backend.directory.quota_of(s.user)
    mail = s.backend.mail
    user = s.user.address
    done: list[AppendResult] = []
    inflight: asyncio.Future | None = None
    try:
        for flags, date, raw in msgs:
            inflight = asyncio.ensure_future(mail.append(user, name, raw, flags=flags, internaldate=date, quota=quota))
            done.append(await asyncio.shield(inflight))  # a cancelled session still learns how it ended
            inflight = None
    except asyncio.CancelledError:
        # The session was stopped mid-command (the gateway going away): its client never hears OK, so
        # nothing of the command stays. The append in flight finishes on its thread; then all is undone.
        mail.later(_undo(mail, user, done, inflight), name=f"append-undo-{user}")
        raise
    except Exception:
        await _undo(mail, user, done, None)  # MULTIAPPEND: undo the part that succeeded (RFC 3502 §6.3.11)
        raise
    last = done[-1]
    await s.runtime.notify(s.user.address.lower(), last.mailbox_id)
    uids = compress([r.uid for r in done])
    return ("OK", f"APPENDUID {last.uidvalidity} {uids}", "APPEND completed")
