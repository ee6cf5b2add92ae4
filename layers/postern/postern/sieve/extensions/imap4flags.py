"""imap4flags (RFC 5232): the flags a stored message gets.

Commands: ``setflag``/``addflag``/``removeflag [<variable>] <flags>`` change the
internal flag variable (or, with ``variables``, a named one); ``:flags <flags>``
on ``fileinto`` and ``keep`` gives the flags of that copy; without it a copy
(the implicit keep too) gets the internal variable's value at that moment.
Test: ``hasflag [MATCH-TYPE] [COMPARATOR] [<variables>] <flags>``.

A flag list is a list of strings each holding flags separated by spaces;
flags are case-insensitive and kept once (§3). When stored, only valid IMAP
flags remain: the system flags ``\\Seen \\Answered \\Flagged \\Deleted
\\Draft`` (in their canonical spelling) and keywords made of atom characters
(RFC 3501 §9); anything else (``\\Recent``, ``\\Unknown``, ``a(b``) is dropped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .. import match
from ..compiler import COMPARATOR, MATCH_TYPES, STRING, STRING_LIST, Definition, TagSpec
from ..program import Cmd, Str, Tst

CAPABILITIES = ("imap4flags",)
FLAGS_TAG = TagSpec("flags", STRING_LIST, None, "imap4flags")
SYSTEM_FLAGS = {f.lower(): f for f in ("\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft")}
_KEYWORD = re.compile(r"[^\x00-\x20\x7f-\U0010ffff(){%*\"\\\]]+\Z")  # RFC 3501 §9 atom
MAX_FLAG = 128


def split(texts) -> list[str]:
    """Flags from flag-list strings: split on spaces, case-insensitively unique, in order."""
    out, seen = [], set()
    for t in texts:
        for f in t.split():
            if f.lower() not in seen:
                seen.add(f.lower())
                out.append(f)
    return out


def valid(flags) -> frozenset[str]:
    """The IMAP flags among ``flags`` (system flags in canonical case, keyword atoms)."""
    out = set()
    for f in flags:
        if f.startswith("\\"):
            sys_flag = SYSTEM_FLAGS.get(f.lower())
            if sys_flag:
                out.add(sys_flag)
        elif len(f) <= MAX_FLAG and _KEYWORD.match(f):
            out.add(f)
    return frozenset(out)


def flags_of(rt, given: tuple[Str, ...] | None) -> frozenset[str] | None:
    """The flags of one stored copy: ``:flags`` when given, else the internal variable (None
    when imap4flags is not in use, so a copy without a script's say gets no flags)."""
    if given is not None:
        return valid(split(s.value(rt) for s in given))
    if "imap4flags" in rt.requires:
        return valid(split([rt.internal_flags]))
    return None


def _get(rt, var: Str | None) -> str:
    return rt.internal_flags if var is None else rt.variables.get(var.value(rt).lower(), "")


def _put(rt, var: Str | None, flags: list[str]) -> None:
    text = " ".join(flags)
    if var is None:
        rt.internal_flags = text[: rt.limits.max_variable_size]
    else:
        rt.set_variable(var.value(rt).lower(), text)


@dataclass(frozen=True)
class FlagCmd(Cmd):
    mode: str  # set | add | remove
    variable: Str | None
    flags: tuple[Str, ...]
    line: int = 0

    def run(self, rt) -> None:
        given = split(s.value(rt) for s in self.flags)
        if self.mode == "set":
            _put(rt, self.variable, given)
            return
        current = split([_get(rt, self.variable)])
        if self.mode == "add":
            _put(rt, self.variable, split([" ".join(current + given)]))
        else:
            drop = {f.lower() for f in given}
            _put(rt, self.variable, [f for f in current if f.lower() not in drop])


@dataclass(frozen=True)
class HasFlag(Tst):
    matcher: match.Matcher
    variables: tuple[Str, ...] | None
    keys: tuple[Str, ...]
    line: int = 0

    def eval(self, rt) -> bool:
        if self.variables is None:
            values = split([rt.internal_flags])
        else:
            values = split(rt.variables.get(v.value(rt).lower(), "") for v in self.variables)
        keys = split(k.value(rt) for k in self.keys) if self.matcher.kind != "count" else \
            [k.value(rt) for k in self.keys]
        return rt.matches(self.matcher, values, keys)


def _flag_cmd(mode: str):
    def build(node, args, cx):
        variable, flags = args.positional(STRING_LIST, optional_first=STRING)
        if variable is not None:
            if not cx.has("variables"):
                raise args.error(f"{node.name} with a variable name needs require \"variables\"", variable)
            variable = cx.string(variable)
        return FlagCmd(mode, variable, cx.strings(flags), node.line)

    return build


def _hasflag(node, args, cx):
    tags = args.tags(COMPARATOR, *MATCH_TYPES)
    variables, flags = args.positional(STRING_LIST, optional_first=STRING_LIST)
    if variables is not None:
        if not cx.has("variables"):
            raise args.error("hasflag with variable names needs require \"variables\"", variables)
        variables = cx.strings(variables)
    return HasFlag(args.matcher(tags), variables, cx.strings(flags), node.line)


COMMANDS = (
    Definition("setflag", "imap4flags", _flag_cmd("set")),
    Definition("addflag", "imap4flags", _flag_cmd("add")),
    Definition("removeflag", "imap4flags", _flag_cmd("remove")),
)
TESTS = (Definition("hasflag", "imap4flags", _hasflag),)
