"""CREATE, DELETE, RENAME, SUBSCRIBE, UNSUBSCRIBE, LIST, LSUB, STATUS, NAMESPACE.

RFC 3501 §6.3, RFC 3348 (CHILDREN), RFC 6154 (SPECIAL-USE), RFC 2342
(NAMESPACE), RFC 8438 (STATUS SIZE), RFC 7162 (STATUS HIGHESTMODSEQ).
Hierarchy delimiter ``/``; names travel in modified UTF-7; INBOX is
case-insensitive. Store errors (MailboxNotFound, MailboxExists, MailboxInvalid)
carry their NO codes (TRYCREATE / ALREADYEXISTS / CANNOT).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from postern.errors import MailboxNotFound
from postern.store.base import DELIMITER

from .. import parser as P
from .. import responses as R
from ..errors import BadCommand, NoCommand
from ..listpattern import compile_pattern
from ..work import Budget
from ..parser import Command
from ..tokens import Atom
from . import OpResult

if TYPE_CHECKING:
    from ..session import Session

STATUS_ITEMS = ("MESSAGES", "RECENT", "UIDNEXT", "UIDVALIDITY", "UNSEEN", "HIGHESTMODSEQ", "SIZE", "MAILBOXID")


def _user(s: Session) -> str:
    return s.user.address


async def get_existing(s: Session, name: str):
    """get_mailbox for commands on an existing mailbox: a missing one is NO [NONEXISTENT] (RFC 5530 §3)."""
    try:
        return await s.backend.mail.get_mailbox(_user(s), name)
    except MailboxNotFound:
        raise NoCommand("No such mailbox", "NONEXISTENT") from None


# The rules (INBOX, superiors, inferiors, validation) are postern.mailboxes'; these only map replies.
async def create(s: Session, cmd: Command) -> OpResult:
    P.arity(cmd, 1, 2)
    mb = await s.backend.mail.create(_user(s), P.mailbox(cmd.args[0]))
    return ("OK", f"MAILBOXID ({mb.mailbox_id})", "CREATE completed")  # RFC 8474 §4.1


async def delete(s: Session, cmd: Command) -> OpResult:
    P.arity(cmd, 1)
    name = P.mailbox(cmd.args[0])
    if s.selected is not None and s.selected.mb.name == name:
        s.deselect()
    try:
        await s.backend.mail.delete(_user(s), name)
    except MailboxNotFound:
        raise NoCommand("No such mailbox", "NONEXISTENT") from None
    return "DELETE completed"


async def rename(s: Session, cmd: Command) -> OpResult:
    P.arity(cmd, 2)
    try:
        await s.backend.mail.rename(_user(s), P.mailbox(cmd.args[0]), P.mailbox(cmd.args[1]))
    except MailboxNotFound:
        raise NoCommand("No such mailbox", "NONEXISTENT") from None
    return "RENAME completed"


async def subscribe(s: Session, cmd: Command) -> OpResult:
    P.arity(cmd, 1)
    await s.backend.mail.subscribe(_user(s), P.mailbox(cmd.args[0]))
    return "SUBSCRIBE completed"


async def unsubscribe(s: Session, cmd: Command) -> OpResult:
    P.arity(cmd, 1)
    await s.backend.mail.unsubscribe(_user(s), P.mailbox(cmd.args[0]))
    return "UNSUBSCRIBE completed"


def _canonical(ref: str, pat: str) -> str:
    if not ref:
        return pat
    if pat.startswith(DELIMITER):
        return pat if not ref.endswith(DELIMITER) else ref + pat[1:]
    return ref + pat


async def _list(s: Session, cmd: Command, lsub: bool) -> OpResult:
    args = list(cmd.args)
    sel_opts: set[str] = set()
    ret_opts: set[str] = set()
    if not lsub and args and isinstance(args[0], list):  # RFC 5258 selection options
        sel_opts = {str(a).upper() for a in args[0] if isinstance(a, str)}
        args = args[1:]
    if len(args) >= 4 and isinstance(args[2], Atom) and args[2].upper() == "RETURN" and isinstance(args[3], list):
        ret_opts = {str(a).upper() for a in args[3] if isinstance(a, str)}
        args = args[:2]
    if len(args) != 2:
        raise BadCommand(f"{cmd.name} needs a reference and a pattern")
    ref = P.pattern(args[0])
    pats = args[1] if isinstance(args[1], list) else [args[1]]
    patterns = [P.pattern(p) for p in pats]
    verb = "LSUB" if lsub else "LIST"
    if not lsub and patterns == [""]:  # RFC 3501 §6.3.8: delimiter and root
        s.send(R.untagged('LIST (\\Noselect) "/" ""'))
        return "LIST completed"
    want_subs = lsub or "SUBSCRIBED" in sel_opts or "SUBSCRIBED" in ret_opts
    listing = await s.backend.mail.listing(_user(s), subscriptions=want_subs)
    mbs, subs, implied, has_children = listing.boxes, listing.subscribed, listing.implied, listing.children
    names = set(mbs)
    lsub_parents: set[str] = set()
    if lsub and any("%" in p for p in patterns):
        # RFC 3501 §6.3.9: "%" must return an unsubscribed parent of a subscribed name, \Noselect
        for n in subs:
            parts = n.split(DELIMITER)
            lsub_parents.update(DELIMITER.join(parts[:i]) for i in range(1, len(parts)))
        lsub_parents -= subs
    universe = (subs | lsub_parents if lsub else names | implied)
    globs = [compile_pattern(_canonical(ref, p)) for p in patterns]  # linear matchers, length-capped
    out = []
    budget = Budget(s.settings, s.user.address)
    for name in sorted(universe, key=lambda n: (n != "INBOX", n)):
        await budget.tick()  # thousands of mailboxes: other sessions run in between
        if not any(g.matches(name) for g in globs):
            continue
        attrs = []
        mb = mbs.get(name)
        if "SUBSCRIBED" in sel_opts and name not in subs:
            continue
        if "SPECIAL-USE" in sel_opts and (mb is None or not mb.special_use):
            continue
        if mb is None or name in lsub_parents:
            attrs.append("\\Noselect")  # an implied parent, or (LSUB) a subscription whose mailbox is gone
        attrs.append("\\HasChildren" if name in has_children else "\\HasNoChildren")
        if mb is not None and mb.special_use:
            attrs.append(mb.special_use)
        if not lsub and ("SUBSCRIBED" in ret_opts or "SUBSCRIBED" in sel_opts) and name in subs:
            attrs.append("\\Subscribed")
        out.append(b"* " + f"{verb} ({' '.join(attrs)}) \"/\" ".encode() + R.mailbox_name(name) + b"\r\n")
    for line in out:
        s.send(line)
    return f"{verb} completed"


async def list_(s: Session, cmd: Command) -> OpResult:
    return await _list(s, cmd, lsub=False)


async def lsub(s: Session, cmd: Command) -> OpResult:
    return await _list(s, cmd, lsub=True)


async def status(s: Session, cmd: Command) -> OpResult:
    P.arity(cmd, 2)
    name = P.mailbox(cmd.args[0])
    items = cmd.args[1]
    if not isinstance(items, list) or not items:
        raise BadCommand("STATUS needs a list of items")
    want = []
    for it in items:
        u = str(it).upper() if isinstance(it, str) else ""
        if u not in STATUS_ITEMS:
            raise BadCommand(f"Unknown STATUS item {u[:20]}")
        want.append(u)
    mb = await get_existing(s, name)
    if "HIGHESTMODSEQ" in want:
        s.enable_condstore()
    # \Recent as the store arbitrates it: UIDs nobody has been told of yet (an estimate when gaps exist)
    recent = max(0, min(mb.exists, mb.uidnext - 1 - mb.recent_uid))
    idx = s.runtime.indexes.get((mb.user, mb.mailbox_id, mb.uidvalidity))
    if idx is not None and idx.pos >= mb.pos:
        recent = sum(1 for u in idx.metas if u > max(mb.recent_uid, idx.recent_uid))
    values = {"MESSAGES": mb.exists, "RECENT": recent, "UIDNEXT": mb.uidnext, "UIDVALIDITY": mb.uidvalidity,
              "UNSEEN": mb.unseen, "HIGHESTMODSEQ": mb.highestmodseq, "SIZE": mb.size,
              "MAILBOXID": f"({mb.mailbox_id})"}  # RFC 8474 §4.3
    body = " ".join(f"{k} {values[k]}" for k in want)
    s.send(b"* STATUS " + R.mailbox_name(mb.name) + f" ({body})\r\n".encode())
    return "STATUS completed"


async def namespace(s: Session, cmd: Command) -> OpResult:
    P.arity(cmd, 0)
    s.send(R.untagged('NAMESPACE (("" "/")) NIL NIL'))
    return "NAMESPACE completed"
