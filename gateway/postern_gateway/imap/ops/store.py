"""STORE and UID STORE (RFC 3501 §6.4.6; RFC 7162 §3.1.3 UNCHANGEDSINCE / MODIFIED).

In:   ``seqset [(UNCHANGEDSINCE n)] (+|-)FLAGS[.SILENT] flags``.
Out:  untagged FETCH FLAGS for every message in the set (unless .SILENT; with
      CONDSTORE active the FETCH (UID, MODSEQ) is sent even with .SILENT for
      changed messages), ``OK [MODIFIED set]`` when UNCHANGEDSINCE failed.
Fails: NO [READ-ONLY] on an EXAMINEd mailbox; store errors carry their codes.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from .. import parser as P
from .. import responses as R
from ..errors import BadCommand, NoCommand
from ..parser import Command
from ..seqset import compress
from . import OpResult

if TYPE_CHECKING:
    from ..session import Session


async def store(s: Session, cmd: Command) -> OpResult:
    if len(cmd.args) < 3:
        raise BadCommand("STORE needs a message set, an item and flags")
    ss = P.seqset(cmd.args[0])
    req = P.store_items(cmd.args[1:])
    sel = s.selected
    if sel.readonly:
        raise NoCommand("Mailbox is read-only", "READ-ONLY")
    if req.unchangedsince is not None:
        s.enable_condstore()
    targets = sel.resolve(ss, cmd.uid)
    live = [(q, u) for q, u in targets if sel.live(u)]
    mb = sel.watcher.mb
    res = None
    if live:
        res = await s.backend.mail.store_flags(mb, [sel.metas[u] for _, u in live], req.flags, req.mode,
                                               req.unchangedsince)
        for line in sel.announce(f for c in res.changed for f in c.flags):  # RFC 3501 §7.2.6: FLAGS first
            s.send(line)
    changed = {c.uid: c for c in (res.changed if res else [])}
    failed = set(res.failed if res else [])
    for uid, c in changed.items():
        sel.told_flags(uid, replace(sel.metas[uid], flags=c.flags, modseq=c.modseq))
    for seq, uid in targets:
        if uid in failed:
            continue
        if req.silent and not (sel.condstore and uid in changed):
            continue
        if uid not in sel.metas:
            continue
        items = [b"FLAGS " + R.flag_bytes(sel.flags_of(uid))]
        if cmd.uid or sel.condstore:
            items.append(b"UID %d" % uid)
        if sel.condstore:
            items.append(b"MODSEQ (%d)" % sel.metas[uid].modseq)
        s.send(R.fetch_line(seq, items))
    if changed:
        await s.runtime.notify(mb.user, mb.mailbox_id)
    if failed:
        # RFC 7162 §3.1.3: MODIFIED lists UIDs for UID STORE, sequence numbers for STORE.
        nums = sorted(failed) if cmd.uid else sorted(q for q, u in targets if u in failed)
        return ("OK", f"MODIFIED {compress(nums)}", "Conditional STORE failed")
    return f"{cmd.full_name} completed"
