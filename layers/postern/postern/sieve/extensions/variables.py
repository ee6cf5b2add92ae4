"""variables (RFC 5229): ``set``, the ``string`` test, ``${name}`` and match variables.

``set [:lower|:upper] [:lowerfirst|:upperfirst] [:quotewildcard] [:length]
<name> <value>``: modifiers apply from the highest precedence down (§4.1:
lower/upper 40, lowerfirst/upperfirst 30, quotewildcard 20, length 10); two of
one precedence are an error. Names are identifiers, case-insensitive, and must
be constant (checked at upload). ``string [MATCH-TYPE] [COMPARATOR] <source>
<keys>`` tests expanded strings (``:count`` counts the non-empty ones, §5).

Expansion (the compiler splits strings into parts, the runtime joins them):
``${name}`` is the variable (empty when unset), ``${0}``..``${9}`` what the
last successful ``:matches`` matched (§3.2). A value longer than 4 KiB is
truncated (§4: implementations may limit sizes); at most 255 variables.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .. import match
from ..compiler import COMPARATOR, MATCH_TYPES, STRING, STRING_LIST, Definition, TagSpec
from ..program import Cmd, Str, Tst

CAPABILITIES = ("variables",)
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
MODIFIERS = (TagSpec("lower", None, "case"), TagSpec("upper", None, "case"),
             TagSpec("lowerfirst", None, "first"), TagSpec("upperfirst", None, "first"),
             TagSpec("quotewildcard", None, "quote"), TagSpec("length", None, "length"))
_ORDER = ("lower", "upper", "lowerfirst", "upperfirst", "quotewildcard", "length")  # precedence 40, 30, 20, 10


def _modify(value: str, modifiers: tuple[str, ...]) -> str:
    for m in modifiers:
        if m == "lower":
            value = value.lower()
        elif m == "upper":
            value = value.upper()
        elif m == "lowerfirst":
            value = value[:1].lower() + value[1:]
        elif m == "upperfirst":
            value = value[:1].upper() + value[1:]
        elif m == "quotewildcard":
            value = re.sub(r"([*?\\])", r"\\\1", value)
        elif m == "length":
            value = str(len(value))
    return value


@dataclass(frozen=True)
class SetCmd(Cmd):
    name: str
    value: Str
    modifiers: tuple[str, ...]
    line: int = 0

    def run(self, rt) -> None:
        rt.set_variable(self.name, _modify(self.value.value(rt), self.modifiers))


@dataclass(frozen=True)
class StringTest(Tst):
    matcher: match.Matcher
    sources: tuple[Str, ...]
    keys: tuple[Str, ...]
    line: int = 0

    def eval(self, rt) -> bool:
        values = [s.value(rt) for s in self.sources]
        if self.matcher.kind == "count":
            values = [v for v in values if v]  # RFC 5229 §5: empty strings are not counted
        return rt.matches(self.matcher, values, [k.value(rt) for k in self.keys])


def _set(node, args, cx):
    tags = args.tags(*MODIFIERS)
    name, value = args.positional(STRING, STRING)
    if not _NAME.match(name.value):
        raise args.error(f"set: invalid variable name \"{name.value}\"", name)
    return SetCmd(name.value.lower(), cx.string(value), tuple(m for m in _ORDER if m in tags), node.line)


def _string(node, args, cx):
    tags = args.tags(COMPARATOR, *MATCH_TYPES)
    sources, keys = args.positional(STRING_LIST, STRING_LIST)
    return StringTest(args.matcher(tags), cx.strings(sources), cx.strings(keys), node.line)


COMMANDS = (Definition("set", "variables", _set),)
TESTS = (Definition("string", "variables", _string),)
