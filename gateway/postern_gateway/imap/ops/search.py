"""SEARCH and UID SEARCH wiring (RFC 3501 §6.4.4; RFC 7162 MODSEQ; RFC 4731 ESEARCH).

Parsing and evaluation are imap-content's pure functions
(``imap/search.py``: ``parse_search``, ``needs``, ``evaluate``); this module
feeds them the session's view of each message and reads only what ``needs``
asks for: index fields always, the stored header block for "header", the
whole message for "body".
"""

from __future__ import annotations

from types import SimpleNamespace

from .. import responses as R
from ..errors import BadCommand, NoCommand
from ..seqset import compress
from ..tokens import Atom

ESEARCH_OPTS = {"MIN", "MAX", "COUNT", "ALL"}


def _mentions(tokens, word: str) -> bool:
    for t in tokens:
        if isinstance(t, list):
            if _mentions(t, word):
                return True
        elif isinstance(t, Atom) and t.upper() == word:
            return True
    return False


async def search(s, cmd):
    from .. import search as SS  # imap-content's module

    args = list(cmd.args)
    ret = None
    if len(args) >= 2 and isinstance(args[0], Atom) and args[0].upper() == "RETURN" and isinstance(args[1], list):
        ret = {str(a).upper() for a in args[1] if isinstance(a, str)}
        if not ret <= ESEARCH_OPTS:
            raise BadCommand("Unknown SEARCH RETURN option")
        ret = ret or {"ALL"}
        args = args[2:]
    if not args:
        raise BadCommand("SEARCH needs criteria")
    try:
        key = SS.parse_search(args)
    except SS.SearchSyntaxError as exc:
        code = getattr(exc, "code", None)
        if code:
            raise NoCommand(str(exc), code) from None
        raise BadCommand(f"SEARCH: {exc}") from None
    modseq_used = _mentions(args, "MODSEQ")
    if modseq_used:
        s.condstore = s.selected.condstore = True
    need = SS.needs(key)
    sel = s.selected
    mb = sel.watcher.mb
    uids = list(sel.uids)
    seq_max = len(uids)
    uid_max = uids[-1] if uids else 0
    full = await s.runtime.full_metas(mb, [sel.metas[u] for u in uids]) if need else {}
    hits: list[tuple[int, int]] = []
    for i, uid in enumerate(uids):
        view = sel.metas[uid]
        header = b""
        raw = None
        if need:
            fm = full.get(uid)
            if fm is None:
                continue  # expunged meanwhile
            header = fm.header
            if header is None or "body" in need:
                try:
                    raw = await s.backend.run(s.backend.store.read, fm, 0, None)
                except (KeyError, FileNotFoundError):
                    continue
                if header is None:
                    header = raw[: fm.header_len]
        msg = SimpleNamespace(seq=i + 1, uid=uid, flags=frozenset(sel.flags_of(uid)), modseq=view.modseq,
                              size=view.size, internaldate=view.internaldate, header=header, raw=raw,
                              seq_max=seq_max, uid_max=uid_max, recent=uid in sel.recent)
        if SS.evaluate(key, msg):
            hits.append((i + 1, uid))
    nums = [u if cmd.uid else q for q, u in hits]
    top_modseq = max((sel.metas[u].modseq for _, u in hits), default=0)
    if ret is not None:
        parts = [f'(TAG "{cmd.tag}")'] + (["UID"] if cmd.uid else [])
        if nums:
            if "MIN" in ret:
                parts.append(f"MIN {min(nums)}")
            if "MAX" in ret:
                parts.append(f"MAX {max(nums)}")
            if "ALL" in ret:
                parts.append(f"ALL {compress(sorted(nums))}")
        if "COUNT" in ret:
            parts.append(f"COUNT {len(nums)}")
        if modseq_used and nums:
            parts.append(f"MODSEQ {top_modseq}")
        s.send(R.untagged("ESEARCH " + " ".join(parts)))
    else:
        line = "SEARCH" + "".join(f" {n}" for n in nums)
        if modseq_used and nums:
            line += f" (MODSEQ {top_modseq})"  # RFC 7162 §3.1.5
        s.send(R.untagged(line))
    return f"{cmd.full_name} completed"
