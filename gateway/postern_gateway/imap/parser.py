"""Pure IMAP command parsing (RFC 3501 §9 grammar), on bytes, no I/O.

In:   one complete command as :class:`~.receiver.Complete` delivers it: the
      command line(s) with every literal's bytes inline after its ``{n}``.
Out:  :func:`parse_command` -> :class:`Command` (tag, upper-case name, ``uid``
      for the ``UID`` prefix, argument tokens in the :mod:`.tokens` model).
      Typed argument readers for the ops modules: :func:`astring`,
      :func:`mailbox`, :func:`number`, :func:`seqset`, :func:`flag_list`,
      :func:`date_time`, :func:`fetch_items` (FETCH attributes with
      sections and partials, macros ALL/FAST/FULL, CHANGEDSINCE),
      :func:`store_items` (STORE with UNCHANGEDSINCE).
Fails: :class:`~.errors.ParseError` / :class:`~.errors.BadCommand` (tagged BAD).

Token rules: atoms stop at SP, ``(``, ``)`` and CRLF; ``[`` and ``]`` are
ordinary atom characters (RFC 3501 §9: ``[`` is an ATOM-CHAR, ``]`` an
ASTRING-CHAR), so ``x[y}z`` and ``[Gmail]/Sent`` are each one :class:`Atom`.
Only in FETCH does ``BODY[`` open a section spec that may contain spaces,
parentheses and quoted strings up to its ``]``
(``BODY.PEEK[HEADER.FIELDS (A B)]<0.100>`` is one Atom, read by
:func:`fetch_items`). Quoted strings and literals become ``bytes``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from postern.mail.dates import parse_imap_date_time
from postern.store.base import normalize_mailbox_name

from . import mutf7
from .errors import BadCommand, ParseError
from .seqset import MAX_NUMBER, SeqSet, SeqSetError
from .tokens import Atom

MAX_DEPTH = 16
MAX_TOKENS = 20_000
SYSTEM_FLAGS = {"\\SEEN": "\\Seen", "\\ANSWERED": "\\Answered", "\\FLAGGED": "\\Flagged",
                "\\DELETED": "\\Deleted", "\\DRAFT": "\\Draft", "\\RECENT": "\\Recent"}
_ATOM_STOP = b" ()\r\n"
_TAG_BAD = set(b" (){%*\"\\+\r\n") | set(range(0, 32)) | {127}
_LIT_RE = re.compile(rb"\{(\d{1,20})\+?\}\r?\n")
_SECTION_ATTS = {b"BODY", b"BODY.PEEK", b"BINARY", b"BINARY.PEEK", b"BINARY.SIZE"}


class Literal(bytes):
    """A string that arrived as a literal (APPEND needs to tell the message from a quoted date)."""

    __slots__ = ()


@dataclass
class Command:
    tag: str
    name: str
    args: list = field(default_factory=list)
    uid: bool = False

    @property
    def full_name(self) -> str:
        return f"UID {self.name}" if self.uid else self.name


class _Reader:
    def __init__(self, data: bytes):
        self.d = data
        self.fetch = False  # FETCH / UID FETCH: section specs in brackets (fetch_att_atom)
        self.i = 0
        self.count = 0
        self.tag = "*"

    def error(self, msg: str) -> ParseError:
        return ParseError(msg, self.tag)

    def peek(self) -> int:
        return self.d[self.i] if self.i < len(self.d) else -1

    def at_eol(self) -> bool:
        return self.d[self.i : self.i + 2] == b"\r\n" or self.d[self.i : self.i + 1] == b"\n" or self.i >= len(self.d)

    def sp(self) -> None:
        if self.peek() != 0x20:
            raise self.error("Expected a space")
        while self.peek() == 0x20:
            self.i += 1

    def tag_token(self) -> str:
        j = self.i
        while j < len(self.d) and self.d[j] not in _TAG_BAD:
            j += 1
        if j == self.i or j - self.i > 64:
            raise self.error("Missing or invalid tag")
        self.tag = self.d[self.i : j].decode("latin-1")
        self.i = j
        return self.tag

    def atom(self) -> Atom:
        """An atom, read leniently: any CHAR but SP, ``(``, ``)``, ``"``, CTL and 8-bit.

        That is RFC 3501 §9's ASTRING-CHAR plus the list wildcards, ``{`` and ``\\`` (flags,
        sequence sets, LIST patterns); ``[`` and ``]`` are ordinary characters here, so
        ``x[y}z`` and ``[Gmail]/Sent`` are single atoms. Only FETCH reads a bracketed section
        spec (:meth:`fetch_att_atom`).
        """
        j, n = self.i, len(self.d)
        d = self.d
        while j < n and d[j] not in _ATOM_STOP:
            c = d[j]
            if c < 0x20 or c == 0x7F or c == 0x22 or c > 0x7E:
                raise self.error("Invalid character in atom")
            j += 1
        if j == self.i:
            raise self.error("Expected an atom")
        text = d[self.i : j].decode("ascii")
        self.i = j
        return Atom(text)

    def fetch_att_atom(self) -> Atom:
        """A FETCH attribute (RFC 3501 §9 ``fetch-att``): an atom, and for ``BODY[``/``BODY.PEEK[``
        (and BINARY, refused later) its section spec up to ``]`` -- which may hold spaces,
        parentheses and quoted strings, ``BODY[HEADER.FIELDS (A "B")]`` -- and a ``<n.m>`` partial.
        One :class:`Atom`; :func:`fetch_att` reads it."""
        start = self.i
        d, n = self.d, len(self.d)
        j = start
        while j < n and d[j] not in _ATOM_STOP and d[j] != 0x5B:
            j += 1
        if j >= n or d[j] != 0x5B or d[start:j].upper() not in _SECTION_ATTS:
            return self.atom()
        j += 1
        while j < n and d[j] != 0x5D:  # the section spec
            c = d[j]
            if c in (0x0D, 0x0A):
                break
            if c == 0x22:  # a quoted header-field name inside the brackets
                j += 1
                while j < n and d[j] != 0x22 and d[j] not in (0x0D, 0x0A):
                    j += 2 if d[j] == 0x5C else 1
                if j >= n or d[j] != 0x22:
                    raise self.error("Unterminated quoted string in section")
            j += 1
        if j >= n or d[j] != 0x5D:
            raise self.error("Unterminated [ in FETCH attribute")
        j += 1
        while j < n and d[j] not in _ATOM_STOP:  # "<0.100>": the partial, read by fetch_att
            j += 1
        raw = d[start:j]
        if any(c < 0x20 or c == 0x7F or c > 0x7E for c in raw):
            raise self.error("Invalid character in FETCH attribute")
        self.i = j
        return Atom(raw.decode("ascii"))

    def quoted(self) -> bytes:
        self.i += 1
        out = bytearray()
        d, n = self.d, len(self.d)
        while True:
            if self.i >= n:
                raise self.error("Unterminated quoted string")
            c = d[self.i]
            if c == 0x22:
                self.i += 1
                return bytes(out)
            if c in (0x0D, 0x0A):
                raise self.error("Newline in quoted string")
            if c == 0x5C:
                nxt = d[self.i + 1] if self.i + 1 < n else -1
                if nxt not in (0x22, 0x5C):
                    raise self.error("Invalid escape in quoted string")
                out.append(nxt)
                self.i += 2
                continue
            out.append(c)
            self.i += 1

    def literal(self) -> bytes:
        m = _LIT_RE.match(self.d, self.i)
        if not m:
            raise self.error("Invalid literal")
        size = int(m.group(1))
        start = m.end()
        if start + size > len(self.d):
            raise self.error("Literal shorter than announced")
        self.i = start + size
        return Literal(self.d[start : start + size])

    def token(self, depth: int = 0):
        """One argument; in a FETCH command atoms are read as FETCH attributes."""
        self.count += 1
        if self.count > MAX_TOKENS:
            raise self.error("Too many arguments")
        c = self.peek()
        if c == 0x28:  # (
            if depth >= MAX_DEPTH:
                raise self.error("Lists nested too deeply")
            self.i += 1
            items = []
            while True:
                while self.peek() == 0x20:
                    self.i += 1
                if self.peek() == 0x29:
                    self.i += 1
                    return items
                if self.at_eol():
                    raise self.error("Unterminated list")
                items.append(self.token(depth + 1))
                if self.peek() not in (0x20, 0x29):
                    raise self.error("Expected a space or )")
        if c == 0x22:
            return self.quoted()
        if c == 0x7B:
            return self.literal()
        if c == 0x29:
            raise self.error("Unexpected )")
        return self.fetch_att_atom() if self.fetch else self.atom()

    def rest(self) -> list:
        args = []
        while not self.at_eol():
            self.sp()
            if self.at_eol():
                break  # tolerate a trailing space
            args.append(self.token())
            if not self.at_eol() and self.peek() != 0x20:
                raise self.error("Expected a space")
        tail = self.d[self.i :]
        if tail not in (b"\r\n", b"\n", b""):
            raise self.error("Junk after command")
        return args


def parse_command(data: bytes) -> Command:
    r = _Reader(data)
    tag = r.tag_token()
    r.sp()
    try:
        name = r.atom().upper()
    except ParseError:
        raise r.error("Missing command") from None
    uid = False
    if name == "UID":
        r.sp()
        name = r.atom().upper()
        uid = True
        if name not in ("FETCH", "STORE", "SEARCH", "COPY", "MOVE", "EXPUNGE", "SORT", "THREAD"):
            raise r.error(f"UID {name[:20]} is not a command")
    r.fetch = name == "FETCH"
    return Command(tag=tag, name=name, args=r.rest(), uid=uid)


def parse_line(data: bytes) -> list:
    """Tokens of a bare line (no tag/command): used for argument tests."""
    r = _Reader(b"x " + data)
    r.i = 1
    return r.rest()


# --- typed argument readers -------------------------------------------------


def arity(cmd: Command, lo: int, hi: int | None = None) -> list:
    hi = lo if hi is None else hi
    if not lo <= len(cmd.args) <= hi:
        raise BadCommand(f"{cmd.full_name}: wrong number of arguments")
    return cmd.args


def astring(tok) -> bytes:
    if isinstance(tok, bytes):
        return tok
    if isinstance(tok, Atom):
        return tok.encode("ascii")
    raise BadCommand("Expected a string")


def text(tok) -> str:
    try:
        return astring(tok).decode("utf-8")
    except UnicodeDecodeError:
        raise BadCommand("String is not UTF-8") from None


def nstring(tok) -> bytes | None:
    if isinstance(tok, Atom) and tok.is_nil:
        return None
    if isinstance(tok, bytes):
        return tok
    raise BadCommand("Expected a string or NIL")


def mailbox(tok) -> str:
    """A mailbox argument: modified UTF-7 (RFC 3501 §5.1.3) decoded to text; INBOX case-folded."""
    raw = astring(tok)
    try:
        s = raw.decode("ascii")
        name = mutf7.decode(s)
    except UnicodeDecodeError:
        try:
            name = raw.decode("utf-8")  # lenient: some clients send raw UTF-8
        except UnicodeDecodeError:
            raise BadCommand("Mailbox name is not valid") from None
    except mutf7.MUTF7Error as exc:
        raise BadCommand(f"Mailbox name: {exc}") from None
    return normalize_mailbox_name(name)  # the one INBOX rule (RFC 3501 §5.1)


def pattern(tok) -> str:
    """A LIST pattern (list-mailbox: may contain % and *), decoded like a mailbox."""
    raw = astring(tok)
    try:
        return mutf7.decode(raw.decode("ascii"))
    except (UnicodeDecodeError, mutf7.MUTF7Error):
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise BadCommand("Invalid pattern") from None


def number(tok, *, nonzero: bool = False, bits: int = 32) -> int:
    if not isinstance(tok, Atom) or not tok.isdigit() or len(tok) > 20:
        raise BadCommand("Expected a number")
    n = int(tok)
    if n >= 2**bits or (nonzero and n == 0):
        raise BadCommand("Number out of range")
    return n


def seqset(tok) -> SeqSet:
    if not isinstance(tok, Atom):
        raise BadCommand("Expected a sequence set")
    try:
        return SeqSet.parse(str(tok))
    except SeqSetError as exc:
        raise BadCommand(f"Invalid sequence set: {exc}") from None


def flag(tok, *, allow_recent: bool = False) -> str:
    if not isinstance(tok, Atom):
        raise BadCommand("Expected a flag")
    s = str(tok)
    if s.startswith("\\"):
        canon = SYSTEM_FLAGS.get(s.upper())
        if canon is None or (canon == "\\Recent" and not allow_recent):
            raise BadCommand(f"Invalid system flag {s[:30]}")
        return canon
    if not s or any(c in s for c in "]%*\\") or len(s) > 128:
        raise BadCommand(f"Invalid keyword {s[:30]}")
    return s


def flag_list(tok) -> list[str]:
    items = tok if isinstance(tok, list) else [tok]
    return [flag(t, allow_recent=True) for t in items]


def date_time(tok) -> float:
    """RFC 3501 date-time ``"dd-Mon-yyyy hh:mm:ss +zzzz"`` -> epoch seconds, by the one strict
    parser (:func:`postern.mail.dates.parse_imap_date_time`): ``31-Feb`` is refused, never rolled over."""
    if not isinstance(tok, bytes):
        raise BadCommand("Expected a quoted date-time")
    try:
        return parse_imap_date_time(tok).timestamp()
    except (ValueError, OverflowError):
        raise BadCommand("Invalid date-time") from None


# --- FETCH ------------------------------------------------------------------


@dataclass(frozen=True)
class Section:
    part: tuple[int, ...] = ()
    text: str | None = None  # HEADER | HEADER.FIELDS | HEADER.FIELDS.NOT | TEXT | MIME
    fields: tuple[str, ...] = ()

    def label(self) -> str:
        s = ".".join(map(str, self.part))
        if self.text:
            s = f"{s}.{self.text}" if s else self.text
        if self.fields:
            s += " (" + " ".join(self.fields) + ")"
        return s


@dataclass(frozen=True)
class FetchAtt:
    name: str  # FLAGS UID INTERNALDATE RFC822.SIZE ENVELOPE BODYSTRUCTURE BODY MODSEQ RFC822 RFC822.HEADER RFC822.TEXT BODY[]
    section: Section | None = None
    partial: tuple[int, int] | None = None
    peek: bool = False

    @property
    def is_body_section(self) -> bool:
        return self.name == "BODY[]"

    @property
    def sets_seen(self) -> bool:
        return (self.is_body_section and not self.peek) or self.name in ("RFC822", "RFC822.TEXT")

    def label(self) -> str:
        if self.is_body_section:
            s = f"BODY[{self.section.label()}]"
            if self.partial:
                s += f"<{self.partial[0]}>"
            return s
        return self.name


@dataclass
class FetchRequest:
    atts: list[FetchAtt]
    changedsince: int | None = None
    vanished: bool = False


SIMPLE_ATTS = {"FLAGS", "UID", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODYSTRUCTURE", "BODY", "MODSEQ",
               "RFC822", "RFC822.HEADER", "RFC822.TEXT", "EMAILID", "THREADID"}  # RFC 8474 §5
MACROS = {
    "ALL": ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE"),
    "FAST": ("FLAGS", "INTERNALDATE", "RFC822.SIZE"),
    "FULL": ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY"),
}
_ATT_RE = re.compile(r"^(BODY|BODY\.PEEK|BINARY|BINARY\.PEEK)\[(.*)\](?:<(\d{1,10})\.(\d{1,10})>)?$", re.S | re.I)
_MSGTEXT = ("HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT", "TEXT")


def parse_section(spec: str) -> Section:
    """section-spec of RFC 3501 §9, e.g. ``1.2.HEADER.FIELDS (A B)`` or ``3.MIME``."""
    spec = spec.strip()
    if not spec:
        return Section()
    head, _, rest = spec.partition(" ")
    parts: list[int] = []
    words = head.split(".")
    i = 0
    while i < len(words) and words[i].isascii() and words[i].isdigit():  # "²".isdigit() is True
        n = int(words[i])
        if n == 0 or len(words[i]) > 6:
            raise BadCommand("Invalid section part number")
        parts.append(n)
        i += 1
    if len(parts) > 32:
        raise BadCommand("Section nested too deeply")
    txt = ".".join(words[i:]).upper() or None
    if txt is not None and txt not in _MSGTEXT + ("MIME",):
        raise BadCommand(f"Invalid section {txt[:30]}")
    if txt == "MIME" and not parts:
        raise BadCommand("MIME needs a part number")
    fields: tuple[str, ...] = ()
    if txt in ("HEADER.FIELDS", "HEADER.FIELDS.NOT"):
        toks = parse_line(rest.encode("utf-8", "replace"))
        if len(toks) != 1 or not isinstance(toks[0], list) or not toks[0]:
            raise BadCommand("HEADER.FIELDS needs a list of field names")
        names = []
        for t in toks[0]:
            n = astring(t).decode("ascii", "replace")
            if not n or any(c in n for c in ": \t") or len(n) > 200:
                raise BadCommand("Invalid header field name")
            names.append(n.upper())
        fields = tuple(names)
    elif rest.strip():
        raise BadCommand("Junk in section")
    return Section(tuple(parts), txt, fields)


def fetch_att(tok) -> list[FetchAtt]:
    if not isinstance(tok, Atom):
        raise BadCommand("Invalid FETCH attribute")
    up = tok.upper()
    if up in SIMPLE_ATTS:
        return [FetchAtt(up)]
    m = _ATT_RE.match(str(tok))
    if not m:
        raise BadCommand(f"Invalid FETCH attribute {str(tok)[:40]}")
    kind = m.group(1).upper()
    if kind.startswith("BINARY"):
        raise BadCommand("BINARY is not supported")
    partial = None
    if m.group(3) is not None:
        o, n = int(m.group(3)), int(m.group(4))
        if n == 0:
            raise BadCommand("Partial length must be non-zero")
        if o > MAX_NUMBER or n > MAX_NUMBER:  # RFC 3501 §9: number and nz-number are 32-bit unsigned
            raise BadCommand("Partial out of range")
        partial = (o, n)
    return [FetchAtt("BODY[]", parse_section(m.group(2)), partial, peek=kind == "BODY.PEEK")]


def fetch_items(args: list) -> FetchRequest:
    """The arguments after the sequence set: attributes and optional modifiers (RFC 7162 §3.1.4)."""
    if not args:
        raise BadCommand("FETCH needs attributes")
    first = args[0]
    atts: list[FetchAtt] = []
    if isinstance(first, Atom) and first.upper() in MACROS:
        atts = [FetchAtt(n) for n in MACROS[first.upper()]]
    elif isinstance(first, list):
        if not first:
            raise BadCommand("Empty FETCH attribute list")
        for t in first:
            atts.extend(fetch_att(t))
    else:
        atts = fetch_att(first)
    req = FetchRequest(atts)
    if len(args) > 2:
        raise BadCommand("Too many FETCH arguments")
    if len(args) == 2:
        mods = args[1]
        if not isinstance(mods, list):
            raise BadCommand("Invalid FETCH modifiers")
        i = 0
        while i < len(mods):
            m = mods[i]
            mname = m.upper() if isinstance(m, Atom) else ""
            if mname == "CHANGEDSINCE" and i + 1 < len(mods):
                req.changedsince = number(mods[i + 1], bits=63)
                i += 2
            elif mname == "VANISHED":
                req.vanished = True
                i += 1
            else:
                raise BadCommand("Unknown FETCH modifier")
    return req


# --- STORE ------------------------------------------------------------------


@dataclass
class StoreRequest:
    mode: str  # add | remove | replace
    silent: bool
    flags: list[str]
    unchangedsince: int | None = None


def store_items(args: list) -> StoreRequest:
    """``[ (UNCHANGEDSINCE n) ] (+|-)FLAGS[.SILENT] flags`` (RFC 3501 §6.4.6, RFC 7162 §3.1.3)."""
    unchanged = None
    if args and isinstance(args[0], list):
        mods = args[0]
        if len(mods) != 2 or not isinstance(mods[0], Atom) or mods[0].upper() != "UNCHANGEDSINCE":
            raise BadCommand("Unknown STORE modifier")
        unchanged = number(mods[1], bits=63)
        args = args[1:]
    if len(args) < 2 or not isinstance(args[0], Atom):
        raise BadCommand("STORE needs an item and flags")
    item = args[0].upper()
    m = re.match(r"^([+-]?)FLAGS(\.SILENT)?$", item)
    if not m:
        raise BadCommand("Invalid STORE item")
    mode = {"+": "add", "-": "remove", "": "replace"}[m.group(1)]
    flags: list[str] = []
    rest = args[1:]
    if len(rest) == 1 and isinstance(rest[0], list):
        rest = rest[0]
    for t in rest:
        flags.append(flag(t, allow_recent=True))
    flags = [f for f in flags if f != "\\Recent"]  # \Recent cannot be stored (RFC 3501 §2.3.2)
    return StoreRequest(mode, bool(m.group(2)), flags, unchanged)
