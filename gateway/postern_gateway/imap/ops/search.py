"""SEARCH, SORT and THREAD wiring (RFC 3501 §6.4.4; RFC 7162 MODSEQ; RFC 4731 ESEARCH; RFC 5256).

Parsing and evaluation are imap-content's pure functions
(``imap/search.py``: ``parse_search``, ``needs``, ``evaluate``; ``imap/sortthread.py``
for SORT/THREAD); this module
feeds them the session's view of each message and reads only what ``needs``
asks for: index fields always, the stored header block for "header", the
whole message for "body". The evaluation, sorting and threading run under the
command's work budget (``imap/work.py``): inline when small, else in worker
processes; past the budget the command answers ``NO [LIMIT]``.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import TYPE_CHECKING

from postern.errors import BlobMissing

from .. import responses as R
from ..errors import BadCommand, NoCommand
from ..parser import Command
from ..seqset import compress
from ..tokens import Atom
from ..work import CHUNK_MESSAGES, Budget, SearchBatch
from . import OpResult

if TYPE_CHECKING:
    from ..session import Session

ESEARCH_OPTS = {"MIN", "MAX", "COUNT", "ALL"}


def _mentions(tokens, word: str) -> bool:
    for t in tokens:
        if isinstance(t, list):
            if _mentions(t, word):
                return True
        elif isinstance(t, Atom) and t.upper() == word:
            return True
    return False


def _prefilter(SS, key) -> bytes | None:
    """For a lone header key (SUBJECT x, HEADER name x) with an ASCII needle without white space: the needle.

    In an all-ASCII header block with no encoded-words, a decoded field value contains the needle
    only if the raw bytes do (casefold is lower for ASCII; unfolding only removes CRLF before white
    space, which the needle lacks), so messages without it are skipped without evaluation. Not for
    FROM/TO/CC/BCC: an addr-spec is matched with its comments and CFWS removed.
    """
    if (isinstance(key, SS.HeaderKey) and key.needle and not key.address and key.needle.isascii()
            and not any(c.isspace() for c in key.needle)):
        return key.needle.lower().encode("ascii")
    return None


async def _matching(s: Session, cmd: Command, args: list, budget: Budget, extra_need: set[str] = frozenset(),
                    then=None) -> list:
    """Messages of the session's view matching the SEARCH criteria ``args``, in mailbox order
    (or what ``then`` makes of each chunk of them: :class:`~..work.SearchBatch`)."""
    from .. import search as SS  # imap-content's module

    try:
        key = SS.parse_search(args)
    except SS.SearchSyntaxError as exc:
        code = getattr(exc, "code", None)
        if code:
            raise NoCommand(str(exc), code) from None
        raise BadCommand(f"{cmd.name}: {exc}") from None
    if _mentions(args, "MODSEQ"):
        s.enable_condstore()
    need = SS.needs(key) | set(extra_need)
    quick = _prefilter(SS, key)
    sel = s.selected
    mb = sel.watcher.mb
    uids = list(sel.uids)
    seq_max = len(uids)
    uid_max = uids[-1] if uids else 0
    full: dict = {}
    batch = SearchBatch(budget, key, then)  # evaluated inline or in a worker (imap/work.py)
    for i, uid in enumerate(uids):
        await budget.tick()
        if need and i % CHUNK_MESSAGES == 0:  # header blocks a slice at a time, not the whole mailbox's
            full = await s.runtime.full_metas(mb, [sel.metas[u] for u in uids[i : i + CHUNK_MESSAGES]])
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
                    raw = await s.backend.mail.read(fm, 0, None)
                except BlobMissing:
                    if sel.live(uid):
                        raise  # the bytes are gone: NO [UNAVAILABLE], never a silent miss
                    continue
                if header is None:
                    header = raw[: fm.header_len]
        if quick is not None and header and quick not in header.lower() and header.isascii() \
                and b"=?" not in header:
            continue  # cannot match: see _prefilter
        msg = SimpleNamespace(seq=i + 1, uid=uid, flags=frozenset(sel.flags_of(uid)), modseq=view.modseq,
                              email_id=view.email_id, thread_id=view.thread_id,
                              size=view.size, internaldate=view.internaldate, header=header, raw=raw,
                              seq_max=seq_max, uid_max=uid_max, recent=uid in sel.recent)
        await batch.add(msg)
    return await batch.hits()


def _returned_modseq(hits: list, ret: set[str]) -> int:
    """ESEARCH ``MODSEQ``: the highest mod-sequence of the messages the result returns
    (RFC 7162 §3.1.5, RFC 4731 §3.2): for ``RETURN (MIN)`` only MIN's, for ``(MAX)`` MAX's, for
    ``(MIN MAX)`` the higher of those two; ALL and COUNT cover every match. ``hits`` are in
    mailbox order, so MIN is the first and MAX the last (as sequence numbers or as UIDs)."""
    if not hits:
        return 0
    if ret & {"ALL", "COUNT"}:
        return max(m.modseq for m in hits)
    picked = ([hits[0]] if "MIN" in ret else []) + ([hits[-1]] if "MAX" in ret else [])
    return max(m.modseq for m in picked)


async def search(s: Session, cmd: Command) -> OpResult:
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
    hits = await _matching(s, cmd, args, Budget(s.settings, s.user.address))
    modseq_used = _mentions(args, "MODSEQ")
    nums = [m.uid if cmd.uid else m.seq for m in hits]
    top_modseq = max((m.modseq for m in hits), default=0)
    if ret is not None:
        top_modseq = _returned_modseq(hits, ret)
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


def _charset_args(cmd, rest: list) -> list:
    """SORT/THREAD carry a mandatory charset before the criteria (RFC 5256 §3)."""
    if not rest:
        raise BadCommand(f"{cmd.name} needs a charset and search criteria")
    return [Atom("CHARSET"), rest[0]] + list(rest[1:])


async def sort(s: Session, cmd: Command) -> OpResult:
    """SORT / UID SORT (RFC 5256; SORT=DISPLAY, RFC 5957)."""
    from .. import search as SS
    from .. import sortthread as ST

    if len(cmd.args) < 3:
        raise BadCommand("SORT needs criteria, a charset and search criteria")
    try:
        criteria = ST.parse_sort_criteria(cmd.args[0])
    except SS.SearchSyntaxError as exc:
        raise BadCommand(f"SORT: {exc}") from None
    budget = Budget(s.settings, s.user.address)
    keyed = await _matching(s, cmd, _charset_args(cmd, cmd.args[1:]), budget, {"header"},
                            lambda ms: budget.sort_keys(criteria, ms))
    ordered = await budget.sort(criteria, keyed)
    s.send(R.untagged("SORT" + "".join(f" {uid if cmd.uid else seq}" for seq, uid in ordered)))
    return f"{cmd.full_name} completed"


async def thread(s: Session, cmd: Command) -> OpResult:
    """THREAD / UID THREAD with ORDEREDSUBJECT or REFERENCES (RFC 5256)."""
    from .. import sortthread as ST

    if len(cmd.args) < 3 or not isinstance(cmd.args[0], Atom):
        raise BadCommand("THREAD needs an algorithm, a charset and search criteria")
    algorithm = cmd.args[0].upper()
    if algorithm not in ST.ALGORITHMS:
        raise BadCommand("Unknown threading algorithm")
    budget = Budget(s.settings, s.user.address)
    all_facts = await _matching(s, cmd, _charset_args(cmd, cmd.args[1:]), budget, {"header"}, budget.thread_facts)
    text = await budget.thread(algorithm, all_facts, cmd.uid)
    s.send(R.untagged(("THREAD " + text).rstrip()))
    return f"{cmd.full_name} completed"
