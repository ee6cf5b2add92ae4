"""GETQUOTAROOT, GETQUOTA, SETQUOTA (RFC 9208; RFC 2087 syntax).

One quota root ``""`` per user: STORAGE in KiB, used = ``store.usage(user)``,
limit = ``directory.quota_of(user)`` (0 = unlimited: no resource listed).
SETQUOTA is an administrator's job (``postern`` CLI): NO [NOPERM].
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .. import parser as P
from .. import responses as R
from ..errors import NoCommand
from ..parser import Command
from . import OpResult
from .mailboxes import get_existing

if TYPE_CHECKING:
    from ..session import Session


async def _quota_line(s: Session) -> bytes:
    used = await s.backend.mail.usage(s.user.address)
    limit = s.backend.directory.quota_of(s.user)
    res = f"STORAGE {(max(used, 0) + 1023) // 1024} {limit // 1024}" if limit else ""
    return R.untagged(f'QUOTA "" ({res})')


async def getquotaroot(s: Session, cmd: Command) -> OpResult:
    P.arity(cmd, 1)
    name = P.mailbox(cmd.args[0])
    mb = await get_existing(s, name)
    s.send(b"* QUOTAROOT " + R.mailbox_name(mb.name) + b' ""\r\n')
    s.send(await _quota_line(s))
    return "GETQUOTAROOT completed"


async def getquota(s: Session, cmd: Command) -> OpResult:
    P.arity(cmd, 1)
    if P.astring(cmd.args[0]) != b"":
        raise NoCommand("No such quota root", "NONEXISTENT")
    s.send(await _quota_line(s))
    return "GETQUOTA completed"


async def setquota(s: Session, cmd: Command) -> OpResult:
    raise NoCommand("Quota is set by the administrator", "NOPERM")
