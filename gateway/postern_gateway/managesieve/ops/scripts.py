"""The script commands (RFC 5804 §2.5-§2.12): HAVESPACE, PUTSCRIPT, CHECKSCRIPT, LISTSCRIPTS,
SETACTIVE, GETSCRIPT, DELETESCRIPT, RENAMESCRIPT.

In:   the authenticated user's canonical address and the arguments.
Out:  the response line; GETSCRIPT and LISTSCRIPTS send their data first.
Fails: the repository's errors carry their response code (``QUOTA/MAXSIZE``,
      ``QUOTA/MAXSCRIPTS``, ``NONEXISTENT``, ``ALREADYEXISTS``, ``ACTIVE``); a script
      that does not compile is ``NO "line:column: message"`` (postern.sieve's parser,
      §2.6: nothing is stored); a DynamoDB fault is ``NO (TRYLATER)``.

Every call to the repository (DynamoDB, and compiling a script: CPU) runs on the
gateway's bounded executor, never on the event loop. The limits (64 KiB a script,
10 scripts) are the repository's: one rule, shared with the CLI and JMAP.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .. import wire
from . import arity, number, raw, text

if TYPE_CHECKING:
    from ..session import Session


async def havespace(s: Session, args: tuple) -> bytes:
    arity(args, 2)
    await s.run(s.scripts.havespace, s.account, text(args[0]), number(args[1]))
    return wire.ok("Putscript would succeed")


async def putscript(s: Session, args: tuple) -> bytes:
    arity(args, 2)
    await s.run(s.scripts.put, s.account, text(args[0]), raw(args[1]))
    return wire.ok("Script stored")


async def checkscript(s: Session, args: tuple) -> bytes:
    arity(args, 1)
    await s.run(s.scripts.check, raw(args[0]))
    return wire.ok("Script is valid")


async def listscripts(s: Session, args: tuple) -> bytes:
    arity(args, 0)
    infos = await s.run(s.scripts.list, s.account)
    for info in sorted(infos, key=lambda i: i.name):
        s.send(wire.string(info.name) + (b" ACTIVE" if info.active else b"") + wire.CRLF)
    return wire.ok("Listscripts completed")


async def setactive(s: Session, args: tuple) -> bytes:
    arity(args, 1)
    name = text(args[0])
    await s.run(s.scripts.activate, s.account, name)  # "" deactivates (§2.8)
    return wire.ok("Script deactivated" if name == "" else "Script activated")


async def getscript(s: Session, args: tuple) -> bytes:
    arity(args, 1)
    script = await s.run(s.scripts.get, s.account, text(args[0]))
    body = script.text.encode("utf-8")
    s.send(b"{%d}\r\n" % len(body) + body + wire.CRLF)  # §2.9: the script as a literal
    return wire.ok("Getscript completed")


async def deletescript(s: Session, args: tuple) -> bytes:
    arity(args, 1)
    await s.run(s.scripts.delete, s.account, text(args[0]))
    return wire.ok("Script deleted")


async def renamescript(s: Session, args: tuple) -> bytes:
    arity(args, 2)
    await s.run(s.scripts.rename, s.account, text(args[0]), text(args[1]))
    return wire.ok("Script renamed")
