"""RFC 5228 itself: control (if/elsif/else, stop), keep, discard, redirect, and the core tests.

Commands: ``if <test> {..} [elsif <test> {..}]* [else {..}]`` (§3.1), ``stop``
(§3.3), ``keep`` (§4.3), ``discard`` (§4.4), ``redirect <address>`` (§4.2;
``:copy`` with the copy extension, RFC 3894).
Tests: ``address`` (§5.1), ``allof``/``anyof`` (§5.2, §5.3, left to right,
stopping early), ``exists`` (§5.5), ``false``/``true``, ``header`` (§5.7;
values unfolded and RFC 2047-decoded by the shared header view), ``not``,
``size :over|:under <number>`` (§5.9). ``address`` and ``header`` take
``:index``/``:last`` with the index extension (RFC 5260 §6), ``address`` the
``:user``/``:detail`` parts with subaddress (RFC 5233).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ...address import parse_address
from ...errors import InvalidAddress
from ...mail.addresses import Mailbox
from .. import match
from ..actions import Discard, Keep, Redirect
from ..errors import SieveRuntimeError
from ..compiler import (ADDRESS_HEADERS, ADDRESS_PARTS, COMPARATOR, INDEX, MATCH_TYPES, NUMBER, STRING,
                        STRING_LIST, Definition, TagSpec)
from ..program import Cmd, Str, Stop, Tst
from .imap4flags import FLAGS_TAG, flags_of

CAPABILITIES: tuple[str, ...] = ()
COPY = TagSpec("copy", None, None, "copy")
_FIELD_NAME = re.compile(r"[\x21-\x39\x3b-\x7e]+\Z")  # RFC 5322 §3.6.8 ftext


# --- helpers shared with other extensions --------------------------------------------------------
def header_names(args, sl, cx) -> tuple[Str, ...]:
    out = cx.strings(sl)
    for s, node in zip(out, sl.items, strict=True):
        if s.constant and not _FIELD_NAME.match(s.text):
            raise args.error(f"invalid header name \"{s.text}\"", node)
    return out


def select_index(items: list, index: int | None, last: bool) -> list:
    """RFC 5260 §6: the index'th occurrence (1-based), counted from the end with :last."""
    if index is None:
        return items
    if index < 1 or index > len(items):
        return []
    return [items[-index] if last else items[index - 1]]


def _unquote_local(local: str) -> str:
    if len(local) >= 2 and local[0] == local[-1] == '"':
        return re.sub(r"\\(.)", r"\1", local[1:-1])
    return local


def address_part(local: str, domain: str | None, part: str) -> str | None:
    """The address part of ``local@domain`` (None: the part does not exist, RFC 5233 §4)."""
    if part == "all":
        return local if domain is None else f"{local}@{domain}"
    if part == "localpart":
        return local
    if part == "domain":
        return domain or ""
    user, sep, detail = local.partition("+")  # RFC 5233: the separator is "+"
    if part == "user":
        return user
    return detail if sep else None


def mailbox_parts(mb: Mailbox) -> tuple[str, str | None]:
    local = _unquote_local(mb.local.decode("utf-8", "replace"))
    domain = mb.domain.decode("utf-8", "replace") if mb.domain is not None else None
    return local, domain


def envelope_parts(address: str) -> tuple[str, str | None]:
    """An envelope address (already a plain local@domain) as (local, domain)."""
    if not address:
        return "", None
    local, at, domain = address.rpartition("@")
    return (local, domain) if at else (address, None)


# --- control -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class If(Cmd):
    branches: tuple  # ((test, block), ...)
    otherwise: tuple | None
    line: int = 0

    def run(self, rt) -> None:
        for test, block in self.branches:
            rt.step()
            if test.eval(rt):
                rt.run_block(block)
                return
        if self.otherwise is not None:
            rt.run_block(self.otherwise)


def build_if(chain, cx) -> If:
    branches = []
    otherwise = None
    for node in chain:
        if node.args:
            raise cx.error(node.args[0], f"'{node.name}' takes no arguments other than its test")
        if node.name == "else":
            if node.tests:
                raise cx.error(node.tests[0], "else takes no test")
            if node.block is None:
                raise cx.error(node, "'else' needs a block")
            otherwise = tuple(cx.block(node.block))
        else:
            if len(node.tests) != 1 or node.test_list:
                raise cx.error(node, f"'{node.name}' takes exactly one test")
            test = cx.test(node.tests[0])  # its errors first: "if header ... keep;" is about keep
            if node.block is None:
                raise cx.error(node, f"'{node.name}' needs a block")
            branches.append((test, tuple(cx.block(node.block))))
    cx.uses.add("if")
    return If(tuple(branches), otherwise, chain[0].line)


@dataclass(frozen=True)
class StopCmd(Cmd):
    line: int = 0

    def run(self, rt) -> None:
        raise Stop()


@dataclass(frozen=True)
class KeepCmd(Cmd):
    flags: tuple[Str, ...] | None
    line: int = 0

    def run(self, rt) -> None:
        rt.result.add(rt.origin, Keep(flags_of(rt, self.flags)))


@dataclass(frozen=True)
class DiscardCmd(Cmd):
    line: int = 0

    def run(self, rt) -> None:
        rt.result.add(rt.origin, Discard())


@dataclass(frozen=True)
class RedirectCmd(Cmd):
    address: Str
    copy: bool
    line: int = 0

    def run(self, rt) -> None:
        raw = self.address.value(rt)
        try:
            target = str(parse_address(raw))
        except InvalidAddress:
            raise SieveRuntimeError(f"redirect to an invalid address {raw[:100]!r}") from None
        rt.result.add(rt.origin, Redirect(target, self.copy))


def _stop(node, args, cx):
    args.positional()
    return StopCmd(node.line)


def _keep(node, args, cx):
    tags = args.tags(FLAGS_TAG)
    args.positional()
    return KeepCmd(cx.strings(tags["flags"]) if "flags" in tags else None, node.line)


def _discard(node, args, cx):
    args.positional()
    return DiscardCmd(node.line)


def _redirect(node, args, cx):
    tags = args.tags(COPY)
    (address,) = args.positional(STRING)
    s = cx.string(address)
    if s.constant:
        try:
            parse_address(s.text)  # RFC 5228 §4.2: must be a valid address (checked at upload when constant)
        except InvalidAddress:
            raise args.error(f"redirect: invalid address \"{s.text}\"", address) from None
    return RedirectCmd(s, "copy" in tags, node.line)


# --- tests ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Constant(Tst):
    value: bool
    line: int = 0

    def eval(self, rt) -> bool:
        return self.value


@dataclass(frozen=True)
class Not(Tst):
    test: Tst
    line: int = 0

    def eval(self, rt) -> bool:
        rt.step()
        return not self.test.eval(rt)


@dataclass(frozen=True)
class AllOf(Tst):
    tests: tuple
    any_: bool
    line: int = 0

    def eval(self, rt) -> bool:
        for t in self.tests:
            rt.step()
            if t.eval(rt) == self.any_:
                return self.any_
        return not self.any_


@dataclass(frozen=True)
class Exists(Tst):
    names: tuple[Str, ...]
    line: int = 0

    def eval(self, rt) -> bool:
        h = rt.ctx.message.header
        return all(h.count(n.value(rt).lower().encode("utf-8", "replace")) > 0 for n in self.names)


@dataclass(frozen=True)
class Size(Tst):
    over: bool
    limit: int
    line: int = 0

    def eval(self, rt) -> bool:
        size = rt.ctx.message.size
        return size > self.limit if self.over else size < self.limit


def header_values(rt, names: tuple[Str, ...], index: int | None = None, last: bool = False) -> list[str]:
    """Decoded, unfolded values of the named fields (RFC 5228 §5.7), through the shared header view."""
    view = rt.ctx.message
    out: list[str] = []
    for n in names:
        vals = view.texts(n.value(rt).lower().encode("utf-8", "replace"))
        rt.step(1 + len(vals))
        out.extend(select_index(vals, index, last))
    return out


@dataclass(frozen=True)
class HeaderTest(Tst):
    matcher: match.Matcher
    names: tuple[Str, ...]
    keys: tuple[Str, ...]
    index: int | None = None
    last: bool = False
    line: int = 0

    def eval(self, rt) -> bool:
        values = header_values(rt, self.names, self.index, self.last)
        return rt.matches(self.matcher, values, [k.value(rt) for k in self.keys])


@dataclass(frozen=True)
class AddressTest(Tst):
    matcher: match.Matcher
    part: str
    names: tuple[Str, ...]
    keys: tuple[Str, ...]
    index: int | None = None
    last: bool = False
    line: int = 0

    def eval(self, rt) -> bool:
        view = rt.ctx.message
        values: list[str] = []
        for n in self.names:
            name = n.value(rt).lower()
            if name not in ADDRESS_HEADERS:
                continue  # a variable naming a non-address header: no addresses (RFC 5228 §5.1)
            fields = view.address_fields(name.encode("ascii", "replace"))
            rt.step(1 + len(fields))
            for boxes in select_index(fields, self.index, self.last):
                for mb in boxes:
                    local, domain = mailbox_parts(mb)
                    v = address_part(local, domain, self.part)
                    if v is not None:
                        values.append(v)
        return rt.matches(self.matcher, values, [k.value(rt) for k in self.keys])


def _bool(value):
    def build(node, args, cx):
        args.positional()
        return Constant(value, node.line)

    return build


def _not(node, args, cx):
    args.positional()
    return Not(cx.test(node.tests[0]), node.line)


def _allof(any_: bool):
    def build(node, args, cx):
        args.positional()
        return AllOf(tuple(cx.test(t) for t in node.tests), any_, node.line)

    return build


def _exists(node, args, cx):
    (names,) = args.positional(STRING_LIST)
    return Exists(header_names(args, names, cx), node.line)


def _size(node, args, cx):
    tags = args.tags(TagSpec("over", None, "size"), TagSpec("under", None, "size"))
    if not tags:
        raise args.error("size needs :over or :under")
    (limit,) = args.positional(NUMBER)
    return Size("over" in tags, limit, node.line)


def _header(node, args, cx):
    tags = args.tags(COMPARATOR, *MATCH_TYPES, *INDEX)
    names, keys = args.positional(STRING_LIST, STRING_LIST)
    index, last = index_of(args, tags)
    return HeaderTest(args.matcher(tags), header_names(args, names, cx), cx.strings(keys), index, last, node.line)


def index_of(args, tags) -> tuple[int | None, bool]:
    if "last" in tags and "index" not in tags:
        raise args.error(":last needs :index")  # RFC 5260 §6
    index = tags.get("index")
    if index is not None and index < 1:
        raise args.error(":index must be at least 1")
    return index, "last" in tags


def _address(node, args, cx):
    tags = args.tags(COMPARATOR, *MATCH_TYPES, *ADDRESS_PARTS, *INDEX)
    names, keys = args.positional(STRING_LIST, STRING_LIST)
    compiled = header_names(args, names, cx)
    for s, item in zip(compiled, names.items, strict=True):
        if s.constant and s.text.lower() not in ADDRESS_HEADERS:
            raise args.error(f"address: \"{s.text}\" is not a header holding addresses", item)  # RFC 5228 §5.1
    index, last = index_of(args, tags)
    return AddressTest(args.matcher(tags), args.address_part(tags), compiled, cx.strings(keys), index, last,
                       node.line)


COMMANDS = (
    Definition("stop", None, _stop),
    Definition("keep", None, _keep),
    Definition("discard", None, _discard),
    Definition("redirect", None, _redirect),
)
TESTS = (
    Definition("true", None, _bool(True)),
    Definition("false", None, _bool(False)),
    Definition("not", None, _not, tests="one"),
    Definition("allof", None, _allof(False), tests="list"),
    Definition("anyof", None, _allof(True), tests="list"),
    Definition("exists", None, _exists),
    Definition("size", None, _size),
    Definition("header", None, _header),
    Definition("address", None, _address),
)
