"""The validator: a syntax tree -> a typed program, each command checked by its extension.

In:   the parser's tree (:mod:`.syntax`) and the registry of extensions
      (:mod:`.extensions`: one module per extension, each naming the commands,
      tests and tagged arguments it adds and how to build them).
Out:  :func:`compile_tree` -> :class:`~.program.Program`. Checks (RFC 5228):
      ``require`` first and only with known capabilities (§3.2); every command,
      test and tag known and its extension required (§2.10.5, §6); tagged
      arguments before positional ones, each at most once, at most one per
      group (match type, comparator, address part...; §2.6.2, §2.7); the
      positional arguments of the right kind and number; tests only where a
      test belongs, blocks only where a block belongs; ``elsif``/``else`` only
      after ``if``; literal values checked where they are constants (mailbox
      names, flags, comparators, relational operators, date parts...).
Fails: :class:`~postern.sieve.errors.SieveSyntaxError` at the first problem,
      with its line and column.

Strings: when ``encoded-character`` is required, ``${hex:..}`` and
``${unicode:..}`` are decoded here (RFC 5228 §2.4.2.4); when ``variables`` is
required, strings holding ``${name}`` / ``${N}`` become :class:`~.program.Str`
with parts to expand at run time (RFC 5229 §3).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from .errors import SieveSyntaxError
from .match import COMPARATORS, IMPLICIT_COMPARATORS, RELOPS, Matcher
from .program import MatchRef, Program, Str, VarRef
from .syntax import Argument, Command, Number, String, StringList, Tag, Test

# kinds of positional arguments and tag values
STRING = "string"
STRING_LIST = "string-list"
NUMBER = "number"


@dataclass(frozen=True)
class TagSpec:
    name: str  # without ":"
    value: str | None = None  # None: a flag; else STRING / STRING_LIST / NUMBER
    group: str | None = None  # at most one tag of a group (RFC 5228 §2.7)
    ext: str | None = None  # the capability that must be required to use it


# The tags that many tests share (RFC 5228 §2.7; relational RFC 5231; subaddress RFC 5233; index RFC 5260 §6).
COMPARATOR = TagSpec("comparator", STRING, "comparator")
MATCH_TYPES = (TagSpec("is", None, "match"), TagSpec("contains", None, "match"), TagSpec("matches", None, "match"),
               TagSpec("value", STRING, "match", "relational"), TagSpec("count", STRING, "match", "relational"))
ADDRESS_PARTS = (TagSpec("all", None, "address-part"), TagSpec("localpart", None, "address-part"),
                 TagSpec("domain", None, "address-part"), TagSpec("user", None, "address-part", "subaddress"),
                 TagSpec("detail", None, "address-part", "subaddress"))
INDEX = (TagSpec("index", NUMBER, None, "index"), TagSpec("last", None, None, "index"))

# Which header fields hold addresses (RFC 5228 §5.1: the address test is limited to these).
ADDRESS_HEADERS = frozenset({
    "from", "to", "cc", "bcc", "sender", "reply-to", "resent-from", "resent-to", "resent-cc", "resent-bcc",
    "resent-sender", "resent-reply-to", "return-path", "delivered-to", "errors-to", "disposition-notification-to",
    "original-recipient", "x-original-to", "envelope-to", "mail-followup-to", "mail-reply-to", "apparently-to",
})

_VARNAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_REF = re.compile(r"\$\{([^{}]*)\}")
_ENCODED = re.compile(r"\$\{(hex|unicode):([^{}]*)\}", re.I)


@dataclass(frozen=True)
class Definition:
    """How one command or test is built. ``build(node, args, cx)`` returns the typed node."""

    name: str
    ext: str | None  # None: core
    build: Callable
    block: bool = False  # takes a block (if, elsif, else)
    tests: str = "none"  # none | one | list  (what test arguments it takes)


class Args:
    """The arguments of one command or test, read in order: tags first, then positionals."""

    def __init__(self, node: Command | Test, cx: Compiler):
        self.node = node
        self.cx = cx
        self.items: list[Argument] = list(node.args)
        self.i = 0

    def error(self, message: str, at=None) -> SieveSyntaxError:
        a = at or self.node
        return SieveSyntaxError(message, a.line, a.column)

    def tags(self, *specs: TagSpec) -> dict[str, object]:
        by_name = {s.name: s for s in specs}
        got: dict[str, object] = {}
        groups: dict[str, str] = {}
        while self.i < len(self.items) and isinstance(self.items[self.i], Tag):
            tag = self.items[self.i]
            spec = by_name.get(tag.name)
            if spec is None:
                raise self.error(f"unknown tag ':{tag.name}' for {self.node.name}", tag)
            if spec.ext and not self.cx.has(spec.ext):
                raise self.error(f"tag ':{tag.name}' needs require \"{spec.ext}\"", tag)
            if tag.name in got:
                raise self.error(f"tag ':{tag.name}' given twice", tag)
            if spec.group:
                if spec.group in groups:
                    raise self.error(f"':{tag.name}' and ':{groups[spec.group]}' cannot be used together", tag)
                groups[spec.group] = tag.name
            self.i += 1
            got[tag.name] = self._value(spec, tag) if spec.value else True
        return got

    def _value(self, spec: TagSpec, tag: Tag):
        if self.i >= len(self.items):
            raise self.error(f"tag ':{tag.name}' needs a {spec.value} argument", tag)
        a = self.items[self.i]
        self.i += 1
        return self._kind(a, spec.value, f"':{tag.name}'")

    def _kind(self, a: Argument, kind: str, what: str):
        if kind == NUMBER:
            if not isinstance(a, Number):
                raise self.error(f"{what} needs a number", a)
            return a.value
        if kind == STRING:
            if not isinstance(a, String):
                raise self.error(f"{what} needs a string", a)
            return a
        if isinstance(a, String):
            return StringList((a,), a.line, a.column)
        if not isinstance(a, StringList):
            raise self.error(f"{what} needs a string list", a)
        return a

    def positional(self, *kinds: str, optional_first: str | None = None) -> list:
        """The remaining arguments, of these kinds. ``optional_first``: a leading argument of that
        kind that may be absent (imap4flags' variable name: told apart by the count)."""
        rest = self.items[self.i:]
        for a in rest:
            if isinstance(a, Tag):
                raise self.error(f"unknown or misplaced tag ':{a.name}' for {self.node.name}"
                                 " (tags come before the other arguments)", a)
        want = list(kinds)
        if optional_first and len(rest) == len(kinds) + 1:
            want = [optional_first] + want
        if len(rest) != len(want):
            n = len(kinds)
            raise self.error(f"{self.node.name} takes {n} argument{'s' if n != 1 else ''}"
                             f"{' (plus an optional one)' if optional_first else ''}, {len(rest)} given")
        out = [self._kind(a, k, f"{self.node.name}") for a, k in zip(rest, want, strict=True)]
        if optional_first and len(want) == len(kinds):
            out = [None] + out
        self.i = len(self.items)
        return out

    # --- shared pieces ----------------------------------------------------------------------------
    def matcher(self, tags: dict[str, object], default_comparator: str = "i;ascii-casemap") -> Matcher:
        """The match type, comparator and relational operator from parsed tags (RFC 5228 §2.7)."""
        comparator = default_comparator
        if "comparator" in tags:
            s: String = tags["comparator"]  # type: ignore[assignment]
            comparator = s.value.lower()
            if comparator not in COMPARATORS:
                raise self.error(f"unknown comparator \"{s.value}\"", s)
            if comparator not in IMPLICIT_COMPARATORS and not self.cx.has(f"comparator-{comparator}"):
                raise self.error(f"comparator \"{comparator}\" needs require \"comparator-{comparator}\"", s)
        kind, relop = "is", ""
        for k in ("is", "contains", "matches", "value", "count"):
            if k in tags:
                kind = k
        if kind in ("value", "count"):
            s = tags[kind]  # type: ignore[assignment]
            relop = s.value.lower()
            if relop not in RELOPS:
                raise self.error(f"unknown relational operator \"{s.value}\" (gt, ge, lt, le, eq, ne)", s)
        if comparator == "i;ascii-numeric" and kind in ("contains", "matches"):
            # RFC 4790 §9.1: i;ascii-numeric offers equality and ordering only
            raise self.error(f"comparator i;ascii-numeric does not support :{kind}")
        return Matcher(kind, comparator, relop)

    def address_part(self, tags: dict[str, object]) -> str:
        for k in ("localpart", "domain", "user", "detail"):
            if k in tags:
                return k
        return "all"


class Compiler:
    def __init__(self, registry):
        self.registry = registry  # postern.sieve.extensions
        self.required: set[str] = set()
        self.uses: set[str] = set()
        self.seen_command = False

    def has(self, ext: str) -> bool:
        return ext in self.required

    def error(self, node, message: str) -> SieveSyntaxError:
        return SieveSyntaxError(message, node.line, node.column)

    # --- strings ------------------------------------------------------------------------------
    def string(self, s: String) -> Str:
        text = s.value
        if self.has("encoded-character") and "${" in text:
            text = self._decode_encoded(s, text)
        if self.has("variables") and "${" in text:
            return self._parts(s, text)
        return Str(text)

    def strings(self, sl: StringList) -> tuple[Str, ...]:
        return tuple(self.string(s) for s in sl.items)

    def _decode_encoded(self, s: String, text: str) -> str:
        """RFC 5228 §2.4.2.4: ${hex: 41 42} and ${unicode: 263A}; a malformed one stays as written."""

        def one(m: re.Match) -> str:
            kind, body = m.group(1).lower(), m.group(2)
            words = body.split()
            if not words or any(not re.fullmatch(r"[0-9A-Fa-f]+", w) for w in words):
                return m.group(0)  # not an encoding: left alone (RFC 5228 §2.4.2.4)
            if kind == "hex":
                if any(len(w) > 2 for w in words):  # hex-pair = 1*2HEXDIG
                    return m.group(0)
                raw = bytes(int(w, 16) for w in words)
                try:
                    return raw.decode("utf-8")
                except UnicodeDecodeError:
                    raise self.error(s, "${hex:...} does not encode valid UTF-8") from None
            out = []
            for w in words:
                cp = int(w, 16) if len(w) <= 8 else 0x110000
                if cp > 0x10FFFF or 0xD800 <= cp <= 0xDFFF:
                    raise self.error(s, f"${{unicode:{w}}} is not a Unicode scalar value")  # RFC 5228 §2.4.2.4
                out.append(chr(cp))
            return "".join(out)

        return _ENCODED.sub(one, text)

    def _parts(self, s: String, text: str) -> Str:
        parts: list = []
        pos = 0
        found = False
        for m in _REF.finditer(text):
            name = m.group(1)
            ref = None
            if name.isdigit():
                ref = MatchRef(int(name)) if int(name) < 10 else ""  # RFC 5229 §3: we keep ${0}..${9}
            elif _VARNAME.match(name):
                ref = VarRef(name.lower())
            elif "." in name and all(_VARNAME.match(p) for p in name.split(".")):
                # RFC 5229 §3: a namespace nobody required is an error
                raise self.error(s, f"unknown variable namespace in ${{{name}}}")
            if ref is None:
                continue  # not a variable reference: stays as written
            found = True
            if m.start() > pos:
                parts.append(text[pos:m.start()])
            if ref != "":  # a match variable past ${9} expands to the empty string
                parts.append(ref)
            pos = m.end()
        if not found:
            return Str(text)
        if pos < len(text):
            parts.append(text[pos:])
        return Str(text, tuple(parts))

    # --- commands and tests -----------------------------------------------------------------------
    def program(self, commands: tuple[Command, ...], size: int) -> Program:
        i = 0
        while i < len(commands) and commands[i].name == "require":
            self._require(commands[i])
            i += 1
        out = self.block(commands[i:])
        return Program(tuple(out), frozenset(self.required), frozenset(self.uses), size)

    def _require(self, node: Command) -> None:
        # RFC 5228 §3.2: require <capabilities: string-list>; the strings are never expanded
        if node.tests or node.block is not None:
            raise self.error(node, "require takes only a string list")
        if len(node.args) != 1 or not isinstance(node.args[0], String | StringList):
            raise self.error(node, "require takes one string list")
        items = node.args[0].items if isinstance(node.args[0], StringList) else (node.args[0],)
        for s in items:
            cap = s.value.lower()
            if not self.registry.known(cap):
                raise SieveSyntaxError(f"unsupported extension \"{s.value}\"", s.line, s.column)
            self.required.add(cap)
            self.required.update(self.registry.implied(cap))

    def block(self, commands) -> list:
        out = []
        i = 0
        while i < len(commands):
            node = commands[i]
            if node.name == "require":
                raise self.error(node, "require must come before every other command")
            if node.name in ("elsif", "else"):
                raise self.error(node, f"{node.name} without a preceding if")
            if node.name == "if":
                chain = [node]
                while i + 1 < len(commands) and commands[i + 1].name in ("elsif", "else"):
                    i += 1
                    chain.append(commands[i])
                    if chain[-1].name == "else":
                        break
                out.append(self.registry.build_if(chain, self))
            else:
                out.append(self.command(node))
            i += 1
        return out

    def command(self, node: Command):
        d = self.registry.command(node.name)
        if d is None:
            raise self.error(node, f"unknown command '{node.name}'")
        self._check_shape(node, d, "command")
        self.uses.add(node.name)
        return d.build(node, Args(node, self), self)

    def test(self, node: Test):
        d = self.registry.test(node.name)
        if d is None:
            raise self.error(node, f"unknown test '{node.name}'")
        self._check_shape(node, d, "test")
        self.uses.add(node.name)
        return d.build(node, Args(node, self), self)

    def _check_shape(self, node, d: Definition, what: str) -> None:
        if d.ext and not self.has(d.ext):
            raise self.error(node, f"{what} '{node.name}' needs require \"{d.ext}\"")
        if d.tests == "none" and node.tests:
            raise self.error(node.tests[0], f"{what} '{node.name}' takes no test")
        if d.tests == "one" and (len(node.tests) != 1 or node.test_list):
            raise self.error(node, f"'{node.name}' takes exactly one test")
        if d.tests == "list" and not node.test_list:
            raise self.error(node, f"'{node.name}' takes a test list in parentheses")
        if isinstance(node, Command):
            if d.block and node.block is None:
                raise self.error(node, f"'{node.name}' needs a block")
            if not d.block and node.block is not None:
                raise self.error(node, f"'{node.name}' takes no block (end it with ';')")
