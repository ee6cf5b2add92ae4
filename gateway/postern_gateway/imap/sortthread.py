"""SORT and THREAD (RFC 5256; DISPLAYFROM/DISPLAYTO from RFC 5957), pure.

In:   SORT criteria tokens (``tokens.py`` model) and the messages that matched
      the search criteria, as objects with ``seq, internaldate (epoch),
      size, header (bytes)`` like :mod:`.search` evaluates (``uid`` for UID
      SORT / UID THREAD is read by the caller's ``number`` function).
Out:  :func:`parse_sort_criteria` -> [(key, reverse)]; :func:`sort_messages`
      -> the messages in order; :func:`thread` -> a list of :class:`Node`
      trees; :func:`format_threads` -> the text after ``* THREAD``.
Fails: :class:`~.search.SearchSyntaxError` for bad criteria or an unknown
      algorithm (a tagged BAD); sorting and threading never raise.

Collation: strings compare by :func:`collate`, i;unicode-casemap (RFC 5051),
which RFC 5256 §1 requires of SORT and THREAD (I18NLEVEL=1, RFC 5255): each
character's titlecase, canonically decomposed, compared as UTF-8 octets. For
ASCII that is upper case, so ``_`` (0x5F) and ``[`` (0x5B) sort after the
letters. Ties keep mailbox order (sequence numbers), RFC 5256 §3. The sent date is the Date:
header in UTC, or INTERNALDATE when that is missing or unreadable (§2.2).
"""

from __future__ import annotations

import functools
import re
import unicodedata
from dataclasses import dataclass, field

from postern.mail.encoded import decode_words
from postern.mail.header import Header

from . import message as _message
from .search import SearchSyntaxError

__all__ = [
    "SORT_KEYS",
    "ALGORITHMS",
    "parse_sort_criteria",
    "sort_messages",
    "base_subject",
    "Facts",
    "Node",
    "facts",
    "sort_key",
    "sort_order",
    "thread",
    "thread_facts",
    "format_threads",
]

SORT_KEYS = ("ARRIVAL", "CC", "DATE", "FROM", "SIZE", "SUBJECT", "TO", "DISPLAYFROM", "DISPLAYTO")
ALGORITHMS = ("ORDEREDSUBJECT", "REFERENCES")


def collate(text: str | bytes) -> bytes:
    """The i;unicode-casemap comparison key (RFC 5051 §2): every character mapped to its
    titlecase (RFC 5051 §2 step 1), the result canonically decomposed (step 2, NFD), as UTF-8
    octets (compared octet by octet, step 3). Bytes that are not UTF-8 count as Latin-1.

    ASCII (the common case) is just ``upper()``; titlecase differs from upper case only for a
    few characters (``ǆ`` -> ``ǅ``), and a character whose titlecase is several characters
    (``ß`` -> ``Ss``, a full mapping) keeps its simple mapping: itself.
    """
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            text = text.decode("latin-1")
    if text.isascii():
        return text.upper().encode("ascii")
    titled = "".join(_titlecase(c) for c in text)
    return unicodedata.normalize("NFD", titled).encode("utf-8", "surrogatepass")


@functools.lru_cache(maxsize=4096)
def _titlecase(c: str) -> str:
    t = c.title()
    return t if len(t) == 1 else c


# --- base subject (RFC 5256 §2.1) ---------------------------------------------

_WSP_RUN = re.compile(r"[ \t\r\n]+")
# subj-trailer = "(fwd)" / WSP
_TRAILER = re.compile(r"(?:\(fwd\)|[ \t])$", re.IGNORECASE)
# subj-blob = "[" *BLOBCHAR "]" *WSP ; BLOBCHAR = any CHAR except "[" and "]"
_BLOB = r"\[[^\[\]]*\][ \t]*"
# subj-refwd = ("re" / ("fw" ["d"])) *WSP [subj-blob] ":"
_REFWD = r"(?:re|fwd?)[ \t]*(?:" + _BLOB + r")?:"
# subj-leader = (*subj-blob subj-refwd) / WSP
_LEADER = re.compile(r"(?:(?:" + _BLOB + r")*" + _REFWD + r"|[ \t])", re.IGNORECASE)
_BLOB_PREFIX = re.compile(_BLOB)
_FWD_HDR = "[fwd:"


def base_subject(subject: str) -> tuple[str, bool]:
    """(base subject, is reply or forward) of a decoded Subject (RFC 5256 §2.1 steps 1-7).

    The flag is set when a ``re:``/``fw:``/``fwd:`` leader, a ``(fwd)`` trailer
    or a ``[fwd: ...]`` wrapper was removed (RFC 5256 §2.1, used by THREAD).
    """
    s = _WSP_RUN.sub(" ", subject)  # (1) tabs, continuations, runs of spaces -> one space
    refwd = False
    while True:
        # (2) trailers
        while True:
            m = _TRAILER.search(s)
            if not m:
                break
            if m.group(0) != " " and m.group(0) != "\t":
                refwd = True
            s = s[: m.start()]
        # (3)-(5) leaders and blobs
        while True:
            changed = False
            m = _LEADER.match(s)
            while m and m.end() > 0:
                if m.group(0) not in (" ", "\t"):
                    refwd = True
                s = s[m.end() :]
                changed = True
                m = _LEADER.match(s)
            m = _BLOB_PREFIX.match(s)
            if m and s[m.end() :]:
                # (4) only when something non-empty remains as the base
                s = s[m.end() :]
                changed = True
            if not changed:
                break
        # (6) "[fwd:" ... "]"
        if s[:5].lower() == _FWD_HDR and s.endswith("]"):
            s = s[5:-1]
            refwd = True
            continue
        return s, refwd


# --- per-message data -------------------------------------------------------------


@dataclass
class _Info:
    msg: object
    seq: int
    arrival: float
    sent: float
    size: int
    header: Header  # postern.mail.header: the one view, with its caps
    _subject: tuple[str, bool] | None = None

    def field(self, name: bytes) -> bytes | None:
        return self.header.get(name)

    def subject(self) -> tuple[str, bool]:
        if self._subject is None:
            text = self.header.text(b"subject")
            self._subject = base_subject(text) if text else ("", False)
        return self._subject

    def first_address(self, name: bytes):
        for a in _message.addresses(self.header.get(name)):
            if a[2] is not None:  # a mailbox, or a group's start marker (its name), as Dovecot sorts
                return a
        return None

    def mailbox(self, name: bytes) -> bytes:
        """RFC 5256 §3 FROM/TO/CC: the addr-mailbox (local part) of the first address, collated."""
        a = self.first_address(name)
        return b"" if a is None else collate(a[2])

    def display(self, name: bytes) -> bytes:
        # RFC 5957 §3: the decoded display name, else the addr-spec; a group: its name
        a = self.first_address(name)
        if a is None:
            return b""
        if a[0]:
            return collate(decode_words(a[0]).strip())
        if a[3] is None:
            return collate(a[2])
        return collate(a[2] + b"@" + a[3])


def _info(msg) -> _Info:
    header = Header(getattr(msg, "header", None) or b"")
    try:
        arrival = float(getattr(msg, "internaldate", 0.0) or 0.0)
    except (TypeError, ValueError):
        arrival = 0.0
    info = _Info(msg, int(getattr(msg, "seq", 0) or 0), arrival, arrival, int(getattr(msg, "size", 0) or 0), header)
    sent = header.date()  # RFC 5322 §3.3, strict; unreadable: INTERNALDATE (RFC 5256 §2.2)
    if sent is not None:
        try:
            info.sent = sent.timestamp()
        except (ValueError, OverflowError):
            pass
    return info


# --- SORT ---------------------------------------------------------------------


def parse_sort_criteria(tokens) -> list[tuple[str, bool]]:
    """``(sort-criterion *(SP sort-criterion))`` -> [(key, reverse)], RFC 5256 §4."""
    if not isinstance(tokens, list) or not tokens:
        raise SearchSyntaxError("SORT needs a parenthesised list of sort criteria")
    out = []
    reverse = False
    for tok in tokens:
        if not isinstance(tok, str):
            raise SearchSyntaxError("invalid sort criterion")
        word = str(tok).upper()
        if word == "REVERSE":
            if reverse:
                raise SearchSyntaxError("REVERSE twice")
            reverse = True
            continue
        if word not in SORT_KEYS:
            raise SearchSyntaxError(f"unknown sort key {word[:30]}")
        out.append((word, reverse))
        reverse = False
    if reverse or not out:
        raise SearchSyntaxError("REVERSE needs a sort key")
    return out


def _key_value(info: _Info, key: str):
    if key == "ARRIVAL":
        return info.arrival
    if key == "DATE":
        return info.sent
    if key == "SIZE":
        return info.size
    if key == "SUBJECT":
        return collate(info.subject()[0])
    if key in ("FROM", "TO", "CC"):
        return info.mailbox(key.lower().encode())
    if key == "DISPLAYFROM":
        return info.display(b"from")
    if key == "DISPLAYTO":
        return info.display(b"to")
    return 0


def sort_key(criteria: list[tuple[str, bool]], msg) -> tuple:
    """The values ``msg`` sorts by, one per criterion, then its sequence number (picklable)."""
    info = _info(msg)
    return (*(_key_value(info, key) for key, _ in criteria), info.seq)


def sort_order(criteria: list[tuple[str, bool]], keys: list[tuple]) -> list[int]:
    """Indexes of ``keys`` (from :func:`sort_key`) in SORT order (RFC 5256 §3); ties in sequence order."""
    order = sorted(range(len(keys)), key=lambda i: keys[i][-1])  # the final tie-break
    # stable sorts from the least significant key to the most significant one
    for pos in reversed(range(len(criteria))):
        order.sort(key=lambda i: keys[i][pos], reverse=criteria[pos][1])  # stable also when reversed
    return order


def sort_messages(criteria: list[tuple[str, bool]], msgs) -> list:
    """The messages ordered by ``criteria`` (RFC 5256 §3); ties in sequence order."""
    msgs = list(msgs)
    return [msgs[i] for i in sort_order(criteria, [sort_key(criteria, m) for m in msgs])]


# --- THREAD -------------------------------------------------------------------------


@dataclass(frozen=True)
class Facts:
    """What THREAD reads of one message (picklable: computed in chunks, by a worker for big mailboxes)."""

    seq: int
    uid: int
    sent: float  # RFC 5256 §2.2
    subject: bytes  # the base subject (§2.1), collated
    refwd: bool  # the base-subject extraction removed a reply/forward marker
    msgid: str | None  # the first valid Message-ID
    refs: tuple[str, ...]  # References, or else the first id of In-Reply-To (REFERENCES step (1))


def facts(msg) -> Facts:
    info = _info(msg)
    subject, refwd = info.subject()
    h = info.header  # postern.mail.header: References keeps its first id and last 100 (limits)
    ids = _ids(h.message_ids(b"message-id"))
    refs = _ids(h.references()) or _ids(h.message_ids(b"in-reply-to"))[:1]
    return Facts(info.seq, int(getattr(msg, "uid", 0) or 0), info.sent, collate(subject), refwd,
                 ids[0] if ids else None, tuple(refs))


@dataclass(eq=False)
class Node:
    """A thread tree node: ``msg`` (the message's :class:`Facts`) is None for a dummy
    (a message referred to but not present)."""

    msg: Facts | None = None
    children: list[Node] = field(default_factory=list)
    parent: Node | None = None

    def add(self, child: Node) -> None:
        if child.parent is not None:
            child.parent.children.remove(child)
        child.parent = self
        self.children.append(child)

    def is_ancestor_of(self, other: Node) -> bool:
        if other is self:
            return True
        if not self.children:
            return False  # the common case, O(1): a leaf is nobody's ancestor
        n = other
        while n is not None:
            if n is self:
                return True
            n = n.parent
        return False


def _ids(ids: list[bytes]) -> list[str]:
    return [i.decode("utf-8", "replace") for i in ids]


def _date_key(node: Node):
    """Sent date (RFC 5256 §2.2) and sequence number of a node (a dummy uses its first child,
    REFERENCES step (4))."""
    n = node
    while n.msg is None and n.children:
        n = n.children[0]
    if n.msg is None:
        return (0.0, 0)
    return (n.msg.sent, n.msg.seq)


def _sort_siblings(nodes: list[Node]) -> None:
    nodes.sort(key=_date_key)


def _sort_tree(nodes: list[Node]) -> None:
    # RFC 5256 §3 REFERENCES step (6): youngest sets of siblings first
    stack = [(n, False) for n in nodes]
    while stack:
        n, done = stack.pop()
        if done:
            _sort_siblings(n.children)
        else:
            stack.append((n, True))
            stack.extend((c, False) for c in n.children)
    _sort_siblings(nodes)


def _ordered_subject(all_facts: list[Facts]) -> list[Node]:
    # RFC 5256 §3 ORDEREDSUBJECT: sort by base subject then sent date; one thread per
    # subject; the first message is the parent, the rest its children (no grandchildren).
    threads: list[Node] = []
    current: Node | None = None
    subject = None
    for f in sorted(all_facts, key=lambda f: (f.subject, f.sent, f.seq)):
        if current is None or f.subject != subject:
            current = Node(f)
            threads.append(current)
            subject = f.subject
        else:
            current.add(Node(f))
    threads.sort(key=_date_key)
    return threads


def _references(all_facts: list[Facts]) -> list[Node]:
    table: dict[str, Node] = {}
    unique = 0
    # (1) link by Message-ID / References / In-Reply-To
    for f in sorted(all_facts, key=lambda x: x.seq):
        mid = f.msgid
        if mid is None or (mid in table and table[mid].msg is not None):
            unique += 1
            mid = f"\x00unique-{unique}"  # missing or duplicate Message-ID: a unique one
        node = table.get(mid)
        if node is None:
            node = table[mid] = Node()
        node.msg = f
        refs = f.refs
        # (1)(A) chain the references, never changing an existing parent, never making a loop
        prev: Node | None = None
        for ref in refs:
            r = table.get(ref)
            if r is None:
                r = table[ref] = Node()
            if prev is not None and r.parent is None and r is not prev and not r.is_ancestor_of(prev):
                prev.add(r)
            prev = r
        # (1)(B) the last reference (or NIL) becomes the parent: break the current parent link
        # first (a References-derived one may be wrong: truncated References), then link unless
        # that would make a loop, in which case the message stays without a parent
        if node.parent is not None:
            node.parent.children.remove(node)
            node.parent = None
        if prev is not None and not node.is_ancestor_of(prev):
            prev.add(node)
    # (2) the root set
    roots = [n for n in table.values() if n.parent is None]
    # (3) prune dummies
    roots = _prune(roots)
    # (4) sort the root set by sent date (dummies by their first child, children sorted first)
    for r in roots:
        if r.msg is None:
            _sort_siblings(r.children)
    _sort_siblings(roots)
    # (5) gather threads by base subject
    roots = _gather_subjects(roots)
    # (6) sort every set of siblings
    _sort_tree(roots)
    return roots


def _postorder(nodes: list[Node]) -> list[Node]:
    """Every node below ``nodes`` (and they themselves), children before parents; iterative."""
    order: list[Node] = []
    stack = list(nodes)
    while stack:
        n = stack.pop()
        order.append(n)
        stack.extend(n.children)
    order.reverse()
    return order


def _pruned(children: list[Node], at_root: bool) -> list[Node]:
    out: list[Node] = []
    for c in children:
        if c.msg is not None:
            out.append(c)
        elif not c.children:
            continue  # a dummy without children goes
        elif at_root and len(c.children) > 1:
            out.append(c)  # promoting would make several children of the root: keep the dummy
        else:
            out.extend(c.children)  # splice the children in with the dummy's siblings
    return out


def _prune(roots: list[Node]) -> list[Node]:
    """RFC 5256 §3 REFERENCES step (3), bottom-up so that nested dummies are resolved first."""
    for n in _postorder(roots):
        n.children = _pruned(n.children, at_root=False)
        for c in n.children:
            c.parent = n
    roots = _pruned(roots, at_root=True)
    for r in roots:
        r.parent = None
    return roots


def _thread_subject(node: Node) -> tuple[bytes, bool]:
    n = node if node.msg is not None else (node.children[0] if node.children else None)
    if n is None or n.msg is None:
        return b"", False
    return n.msg.subject, n.msg.refwd


def _gather_subjects(roots: list[Node]) -> list[Node]:
    table: dict[str, Node] = {}
    for r in roots:  # (5B)
        subj, _ = _thread_subject(r)
        if not subj:
            continue
        have = table.get(subj)
        if have is None:
            table[subj] = r
        elif have.msg is not None and (r.msg is None or (_thread_subject(have)[1] and not _thread_subject(r)[1])):
            table[subj] = r
    out: list[Node] = []
    for r in roots:  # (5C)
        subj, refwd = _thread_subject(r)
        have = table.get(subj) if subj else None
        if have is None or have is r:
            out.append(r)
            continue
        if have.msg is None and r.msg is None:
            for c in list(r.children):
                have.add(c)
        elif have.msg is None:
            have.add(r)
        elif refwd and not _thread_subject(have)[1]:
            have.add(r)
        else:
            dummy = Node()
            index = out.index(have) if have in out else None
            dummy.add(have)
            dummy.add(r)
            table[subj] = dummy
            if index is not None:
                out[index] = dummy
            else:
                roots[roots.index(have)] = dummy  # not yet reached: it will be visited as the dummy
    seen: set[int] = set()
    final = []
    for n in out:
        if n.parent is None and id(n) not in seen:
            seen.add(id(n))
            final.append(n)
    return final


def thread(algorithm: str, msgs) -> list[Node]:
    """Threads of ``msgs`` by ``ORDEREDSUBJECT`` or ``REFERENCES`` (RFC 5256 §3)."""
    return thread_facts(algorithm, [facts(m) for m in msgs])


def thread_facts(algorithm: str, all_facts: list[Facts]) -> list[Node]:
    """:func:`thread` over already computed :class:`Facts`; node ``msg`` attributes are the Facts."""
    algorithm = algorithm.upper()
    if algorithm not in ALGORITHMS:
        raise SearchSyntaxError(f"unknown threading algorithm {algorithm[:30]}")
    if algorithm == "ORDEREDSUBJECT":
        return _ordered_subject(all_facts)
    return _references(all_facts)


def format_threads(threads: list[Node], number=lambda m: m.seq) -> str:
    """The ``thread-list``s of RFC 5256 §4: ``(2)(3 6 (4 23)(44 7 96))``.

    A chain of single children is a run of numbers; where a node has several
    children each becomes its own parenthesised list (``thread-nested``).
    Iterative, so very deep threads cannot exhaust the stack.
    """
    out: list[str] = []
    # work items: a node to open as a thread-list, or a literal ")" to close one
    stack: list[Node | str] = [")"] * 0
    for t in reversed(threads):
        stack.append(")")
        stack.append(t)
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            out.append(item)
            continue
        out.append("(")
        nums = []
        cur = item
        while True:
            if cur.msg is not None:
                nums.append(str(number(cur.msg)))
            if len(cur.children) == 1:
                cur = cur.children[0]
                continue
            break
        out.append(" ".join(nums))
        if len(cur.children) > 1:
            if nums:
                out.append(" ")
            for c in reversed(cur.children):
                stack.append(")")
                stack.append(c)
    return "".join(out)
