"""SEARCH criteria: parse and evaluate (RFC 3501 §6.4.4; RFC 7162 §3.4 MODSEQ; RFC 5032 WITHIN).

In:   the argument tokens of SEARCH / UID SEARCH (``tokens.py`` model: Atom,
      bytes for quoted strings and literals, lists for parentheses); and, per
      message, an object with ``seq, uid, flags, modseq, size, internaldate,
      header, raw, seq_max, uid_max`` and optionally ``recent`` (bool; when
      absent, ``\Recent`` among ``flags`` counts).
Out:  :func:`parse_search` -> a :class:`SearchKey` tree; :func:`needs` -> which
      message data beyond the index evaluation reads ({"header", "body"});
      :func:`evaluate` -> bool.
Fails: :class:`SearchSyntaxError` (a ValueError) from the parser, with
      ``.code`` set to ``BADCHARSET (UTF-8 US-ASCII)`` for an unsupported
      CHARSET (RFC 3501 §6.4.4: tagged NO [BADCHARSET]); otherwise a BAD.
      :func:`evaluate`: a message whose data cannot be read as asked simply
      does not match that key; running out of memory (the worker's RLIMIT_AS)
      or budget is not "no match" and propagates
      (``workers.EXHAUSTED``, answered ``NO [LIMIT]``).

What a message offers to the keys (decoded values, address texts, body texts,
dates) is read by :mod:`.searchview`; this module parses and decides.

Matching rules
--------------
* String keys match a case-insensitive substring (``str.casefold``) of the
  *decoded* text: header values read through :mod:`postern.mail.header`
  (RFC 2047 encoded-words decoded by its linear decoder, with its caps),
  bodies as the transfer- and
  charset-decoded text of their text/* parts (each part handed to
  ``BytesParser(policy=policy.default)`` and read with ``get_content()``).
  The MIME structure comes from :mod:`.message`, so large attachments are
  never decoded for a BODY search.
* HEADER/SUBJECT look at every field of that name; an empty string matches
  any message that has the field (RFC 3501 §6.4.4 HEADER).
* FROM/TO/CC/BCC match each address of those fields as the one address
  parser (:mod:`postern.mail.addresses`) reads it: the decoded display name,
  the addr-spec with comments and CFWS removed, and group names, each on
  its own (so ``user-from@domain.org`` finds ``<user-from (c)@ (c) domain.org>``).
* BEFORE/ON/SINCE compare the date of INTERNALDATE (as shown by FETCH, UTC),
  SENT* the date of the Date: header as written; times and zones are ignored
  (RFC 3501 §6.4.4). A message without a readable Date: counts as sent on
  1 Jan 1970 (what Dovecot and Cyrus do).
* TEXT looks at the top-level header, the decoded text parts and the MIME
  headers of the parts (as Dovecot does); BODY at the decoded text parts only.
* Flags and keywords compare case-insensitively.
"""

from __future__ import annotations

import datetime as _dt
import re
import time as _time
from dataclasses import dataclass

from postern.mail.dates import parse_imap_date

from ..workers import EXHAUSTED
from .searchview import View, internal_date, sent_date
from .seqset import SeqSet

__all__ = ["SearchKey", "SearchSyntaxError", "parse_search", "needs", "evaluate"]

MAX_DEPTH = 64  # nesting of parentheses / NOT / OR
MAX_NUMBER = 2**32 - 1
MAX_MODSEQ = 2**63 - 1  # RFC 7162 §7 mod-sequence-value


class SearchSyntaxError(ValueError):
    """Bad SEARCH arguments. ``code`` is a response code for a tagged NO (BADCHARSET), else None."""

    def __init__(self, text: str, code: str | None = None):
        super().__init__(text)
        self.code = code


# --- the key tree -----------------------------------------------------------


class SearchKey:
    """Base of the parsed criteria tree."""

    __slots__ = ()


@dataclass(frozen=True)
class All(SearchKey):
    pass


@dataclass(frozen=True)
class And(SearchKey):
    keys: tuple[SearchKey, ...]


@dataclass(frozen=True)
class Or(SearchKey):
    left: SearchKey
    right: SearchKey


@dataclass(frozen=True)
class Not(SearchKey):
    key: SearchKey


@dataclass(frozen=True)
class HasFlag(SearchKey):
    flag: str  # compared upper-cased


@dataclass(frozen=True)
class Recent(SearchKey):
    pass


@dataclass(frozen=True)
class SeqMatch(SearchKey):
    seqset: SeqSet
    uid: bool


@dataclass(frozen=True)
class Size(SearchKey):
    larger: bool
    n: int


@dataclass(frozen=True)
class DateKey(SearchKey):
    sent: bool  # Date: header (SENT*) rather than INTERNALDATE
    op: str  # "before" | "on" | "since"
    date: _dt.date


@dataclass(frozen=True)
class HeaderKey(SearchKey):
    name: str  # lower-case field name
    needle: str  # casefolded
    address: bool = False  # FROM/TO/CC/BCC: match the parsed addresses, not the field's text


@dataclass(frozen=True)
class BodyKey(SearchKey):
    needle: str
    text: bool  # TEXT (header + body) rather than BODY


@dataclass(frozen=True)
class ModSeq(SearchKey):
    modseq: int


@dataclass(frozen=True)
class ObjectId(SearchKey):
    """RFC 8474 §6 EMAILID / THREADID: the message's stable id equals ``value``."""

    attr: str  # "email_id" | "thread_id"
    value: str


@dataclass(frozen=True)
class Within(SearchKey):
    """RFC 5032 OLDER / YOUNGER: INTERNALDATE against ``cutoff`` (now - interval, fixed at parse time)."""

    older: bool
    cutoff: float


# --- parsing ------------------------------------------------------------------

_FLAG_KEYS = {
    "ANSWERED": ("\\ANSWERED", True),
    "DELETED": ("\\DELETED", True),
    "DRAFT": ("\\DRAFT", True),
    "FLAGGED": ("\\FLAGGED", True),
    "SEEN": ("\\SEEN", True),
    "UNANSWERED": ("\\ANSWERED", False),
    "UNDELETED": ("\\DELETED", False),
    "UNDRAFT": ("\\DRAFT", False),
    "UNFLAGGED": ("\\FLAGGED", False),
    "UNSEEN": ("\\SEEN", False),
}
_HEADER_KEYS = {"FROM": "from", "TO": "to", "CC": "cc", "BCC": "bcc", "SUBJECT": "subject"}
_ADDRESS_KEYS = {"FROM", "TO", "CC", "BCC"}
_DATE_KEYS = {
    "BEFORE": (False, "before"),
    "ON": (False, "on"),
    "SINCE": (False, "since"),
    "SENTBEFORE": (True, "before"),
    "SENTON": (True, "on"),
    "SENTSINCE": (True, "since"),
}
_SEQSET_RE = re.compile(r"[0-9*:,]+")
_NUMBER_RE = re.compile(r"[0-9]+")
_ENTRY_TYPES = {"PRIV", "SHARED", "ALL"}


class _Parser:
    def __init__(self, tokens: list, charset: str, now: float):
        self.tokens = tokens
        self.pos = 0
        self.charset = charset
        self.now = now

    def _next(self, what: str):
        if self.pos >= len(self.tokens):
            raise SearchSyntaxError(f"missing {what}")
        tok = self.tokens[self.pos]
        self.pos += 1
        return tok

    def string(self, what: str) -> str:
        tok = self._next(what)
        if isinstance(tok, (bytes, bytearray)):
            return bytes(tok).decode("utf-8" if self.charset != "US-ASCII" else "ascii", "replace")
        if isinstance(tok, str):
            return str(tok)  # an atom used as an astring
        raise SearchSyntaxError(f"expected a string for {what}")

    def atom(self, what: str) -> str:
        tok = self._next(what)
        if not isinstance(tok, str):
            raise SearchSyntaxError(f"expected {what}")
        return str(tok)

    def number(self, what: str, limit: int = MAX_NUMBER) -> int:
        text = self.atom(what)
        if not _NUMBER_RE.fullmatch(text) or len(text) > 20 or int(text) > limit:
            raise SearchSyntaxError(f"invalid number for {what}")
        return int(text)

    def date(self, what: str) -> _dt.date:
        tok = self._next(what)
        if isinstance(tok, list):
            raise SearchSyntaxError(f"expected a date for {what}")
        try:
            return parse_imap_date(tok)
        except ValueError:
            raise SearchSyntaxError(f"invalid date for {what}") from None

    def keys_until_end(self, depth: int) -> list[SearchKey]:
        keys = []
        while self.pos < len(self.tokens):
            keys.append(self.key(depth))
        return keys

    def key(self, depth: int) -> SearchKey:
        if depth > MAX_DEPTH:
            raise SearchSyntaxError("search criteria nested too deeply")
        tok = self._next("search key")
        if isinstance(tok, list):
            sub = _Parser(tok, self.charset, self.now)
            keys = sub.keys_until_end(depth + 1)
            if not keys:
                raise SearchSyntaxError("empty parenthesised search key")
            return keys[0] if len(keys) == 1 else And(tuple(keys))
        if not isinstance(tok, str):
            raise SearchSyntaxError("expected a search key")
        name = str(tok).upper()
        if name == "ALL":
            return All()
        if name in _FLAG_KEYS:
            flag, present = _FLAG_KEYS[name]
            k: SearchKey = HasFlag(flag)
            return k if present else Not(k)
        if name == "KEYWORD" or name == "UNKEYWORD":
            flag = self.atom("keyword")
            k = HasFlag(flag.upper())
            return k if name == "KEYWORD" else Not(k)
        if name == "RECENT":
            return Recent()
        if name == "NEW":  # RFC 3501: RECENT UNSEEN
            return And((Recent(), Not(HasFlag("\\SEEN"))))
        if name == "OLD":
            return Not(Recent())
        if name in _HEADER_KEYS:
            return HeaderKey(_HEADER_KEYS[name], self.string(name).casefold(), name in _ADDRESS_KEYS)
        if name == "HEADER":
            field_name = self.string("header field name").strip().lower()
            if not field_name:
                raise SearchSyntaxError("empty header field name")
            return HeaderKey(field_name, self.string("header value").casefold())
        if name == "BODY" or name == "TEXT":
            return BodyKey(self.string(name).casefold(), name == "TEXT")
        if name in _DATE_KEYS:
            sent, op = _DATE_KEYS[name]
            return DateKey(sent, op, self.date(name))
        if name == "LARGER" or name == "SMALLER":
            return Size(name == "LARGER", self.number(name, MAX_MODSEQ))  # RFC 9051 number64
        if name == "UID":
            return SeqMatch(self._seqset(self.atom("UID set")), True)
        if name == "NOT":
            return Not(self.key(depth + 1))
        if name == "OR":
            left = self.key(depth + 1)
            right = self.key(depth + 1)
            return Or(left, right)
        if name == "MODSEQ":
            return self._modseq()
        if name == "EMAILID" or name == "THREADID":  # RFC 8474 §6
            return ObjectId("email_id" if name == "EMAILID" else "thread_id", self.atom("object id"))
        if name == "OLDER" or name == "YOUNGER":  # RFC 5032 WITHIN
            seconds = self.number(name)
            if seconds == 0:
                raise SearchSyntaxError(f"{name} needs a non-zero interval")
            return Within(name == "OLDER", self.now - seconds)
        if _SEQSET_RE.fullmatch(name):
            return SeqMatch(self._seqset(name), False)
        raise SearchSyntaxError(f"unknown search key {name[:40]}")

    def _seqset(self, text: str) -> SeqSet:
        try:
            return SeqSet.parse(text)
        except ValueError as exc:
            raise SearchSyntaxError(f"invalid sequence set: {exc}") from None

    def _modseq(self) -> SearchKey:
        # RFC 7162 §3.4: "MODSEQ" [SP entry-name SP entry-type-req] SP mod-sequence-valzer
        if self.pos < len(self.tokens):
            tok = self.tokens[self.pos]
            if isinstance(tok, (bytes, bytearray)) or (isinstance(tok, str) and not _NUMBER_RE.fullmatch(str(tok))):
                self.pos += 1  # entry-name: ignored, our modseq is per message
                kind = self.atom("MODSEQ entry type").upper()
                if kind not in _ENTRY_TYPES:
                    raise SearchSyntaxError("invalid MODSEQ entry type")
        return ModSeq(self.number("MODSEQ value", MAX_MODSEQ))


def parse_search(args: list, charset_ok=("UTF-8", "US-ASCII"), now: float | None = None) -> SearchKey:
    """Parse SEARCH criteria (after any RETURN options) into a :class:`SearchKey`.

    ``[CHARSET name] key *(SP key)``; several keys are an implicit AND.
    ``now`` (epoch seconds, default: the clock) anchors RFC 5032 OLDER/YOUNGER.
    """
    if now is None:
        now = _time.time()
    tokens = list(args)
    charset = "UTF-8"
    if tokens and isinstance(tokens[0], str) and not isinstance(tokens[0], list) and str(tokens[0]).upper() == "CHARSET":
        if len(tokens) < 2 or isinstance(tokens[1], list):
            raise SearchSyntaxError("CHARSET needs a name")
        name = tokens[1]
        name = (bytes(name).decode("ascii", "replace") if isinstance(name, (bytes, bytearray)) else str(name)).upper()
        allowed = [c.upper() for c in charset_ok]
        if name not in allowed:
            raise SearchSyntaxError(
                f"unsupported charset {name[:40]}", code="BADCHARSET (" + " ".join(charset_ok) + ")"
            )
        charset = name
        tokens = tokens[2:]
    parser = _Parser(tokens, charset, now)
    keys = parser.keys_until_end(0)
    if not keys:
        raise SearchSyntaxError("missing search criteria")
    return keys[0] if len(keys) == 1 else And(tuple(keys))


def needs(key: SearchKey) -> set[str]:
    """What evaluating ``key`` reads beyond index fields: a subset of {"header", "body"}."""
    out: set[str] = set()
    stack = [key]
    while stack:
        k = stack.pop()
        if isinstance(k, And):
            stack.extend(k.keys)
        elif isinstance(k, Or):
            stack += [k.left, k.right]
        elif isinstance(k, Not):
            stack.append(k.key)
        elif isinstance(k, HeaderKey) or (isinstance(k, DateKey) and k.sent):
            out.add("header")
        elif isinstance(k, BodyKey):
            out.add("body")
            if k.text:
                out.add("header")
    return out


# --- evaluation --------------------------------------------------------------


def _compare(op: str, have: _dt.date | None, want: _dt.date) -> bool:
    if have is None:
        return False
    if op == "before":
        return have < want
    if op == "on":
        return have == want
    return have >= want  # since: on or after


def _flags_upper(msg) -> frozenset[str]:
    return frozenset(str(f).upper() for f in (getattr(msg, "flags", None) or ()))


def _eval(key: SearchKey, msg, view: View, flags: frozenset[str]) -> bool:
    if isinstance(key, And):
        return all(_eval(k, msg, view, flags) for k in key.keys)
    if isinstance(key, Not):
        return not _eval(key.key, msg, view, flags)
    if isinstance(key, Or):
        return _eval(key.left, msg, view, flags) or _eval(key.right, msg, view, flags)
    if isinstance(key, All):
        return True
    if isinstance(key, HasFlag):
        return key.flag in flags
    if isinstance(key, Recent):
        recent = getattr(msg, "recent", None)
        if recent is None:  # a session that lists \Recent among the flags instead
            return "\\RECENT" in flags
        return bool(recent)
    if isinstance(key, SeqMatch):
        if key.uid:
            return key.seqset.contains(msg.uid, msg.uid_max)
        return key.seqset.contains(msg.seq, msg.seq_max)
    if isinstance(key, Size):
        return msg.size > key.n if key.larger else msg.size < key.n
    if isinstance(key, Within):
        try:
            when = float(msg.internaldate)
        except (TypeError, ValueError):
            return False
        # RFC 5032 §3: OLDER n = INTERNALDATE at least n seconds ago; YOUNGER n = within the last n
        return when <= key.cutoff if key.older else when > key.cutoff
    if isinstance(key, ModSeq):
        return (getattr(msg, "modseq", 0) or 0) >= key.modseq
    if isinstance(key, ObjectId):
        return bool(key.value) and getattr(msg, key.attr, "") == key.value
    try:
        if isinstance(key, DateKey):
            have: _dt.date | None = sent_date(view) if key.sent else internal_date(msg)
            return _compare(key.op, have, key.date)
        if isinstance(key, HeaderKey):
            if key.address and key.needle:
                return any(key.needle in v for v in view.address_texts(key.name))
            values = view.values(key.name)
            if not values:
                return False
            return any(key.needle in v for v in values)
        if isinstance(key, BodyKey):
            if not key.needle:
                return True
            if key.text and key.needle in view.header_text():
                return True
            if any(key.needle in t for t in view.body_texts()):
                return True
            return key.text and key.needle in view.part_headers_text()
    except EXHAUSTED:  # out of memory is not "no match": the client gets NO [LIMIT]
        raise
    except Exception:  # unreadable message data: this key does not match
        return False
    return False


def evaluate(key: SearchKey, msg) -> bool:
    """Does ``msg`` match ``key``? Unreadable data does not match; raises only
    :data:`~postern_gateway.workers.EXHAUSTED` (memory or work budget: ``NO [LIMIT]``)."""
    try:
        return _eval(key, msg, View(msg), _flags_upper(msg))
    except EXHAUSTED:
        raise
    except Exception:
        return False
