"""Sieve grammar (RFC 5228 §8.2): tokens -> a syntax tree of commands.

In:   the script text.
Out:  :func:`parse` -> tuple of :class:`~.syntax.Command` (the script's top level).
Fails: :class:`~postern.sieve.errors.SieveSyntaxError` with the line and column
      of the first token that does not fit the grammar, and for scripts past the
      caps of :mod:`.limits` (nesting depth, number of commands and tests,
      string-list length).

The grammar, as the RFC writes it::

    commands  = *command
    command   = identifier arguments (";" / block)
    block     = "{" commands "}"
    arguments = *argument [ test / test-list ]
    argument  = string-list / number / tag
    string-list = "[" string *("," string) "]" / string
    test      = identifier arguments
    test-list = "(" test *("," test) ")"

Recursive descent with an explicit depth bound: never deeper than
``MAX_NESTING`` blocks or tests, so a hostile script cannot exhaust the stack.
"""

from __future__ import annotations

from . import limits
from .errors import SieveSyntaxError
from .lexer import Token, tokenize
from .syntax import Argument, Command, Number, String, StringList, Tag, Test


def _describe(tok: Token) -> str:
    if tok.kind == "eof":
        return "end of script"
    if tok.kind == "identifier":
        return f"identifier '{tok.value}'"
    if tok.kind == "tag":
        return f"tag ':{tok.value}'"
    if tok.kind == "string":
        return "string"
    if tok.kind == "number":
        return f"number {tok.value}"
    return f"'{tok.kind}'"


class _Parser:
    def __init__(self, tokens: list[Token]):
        self.toks = tokens
        self.i = 0
        self.nodes = 0

    @property
    def tok(self) -> Token:
        return self.toks[self.i]

    def error(self, message: str, tok: Token | None = None) -> SieveSyntaxError:
        t = tok or self.tok
        return SieveSyntaxError(message, t.line, t.column)

    def expect(self, kind: str, what: str) -> Token:
        t = self.tok
        if t.kind != kind:
            raise self.error(f"expected {what}, found {_describe(t)}")
        self.i += 1
        return t

    def count(self, tok: Token) -> None:
        self.nodes += 1
        if self.nodes > limits.MAX_NODES:
            raise self.error(f"too many commands and tests (at most {limits.MAX_NODES})", tok)

    def commands(self, depth: int, until: str) -> tuple[Command, ...]:
        out = []
        while self.tok.kind != until:
            out.append(self.command(depth))
        return tuple(out)

    def command(self, depth: int) -> Command:
        start = self.tok
        if start.kind == "}" and depth == 0:
            raise self.error("unexpected '}' (no block is open)")
        if start.kind != "identifier":
            raise self.error(f"expected a command, found {_describe(start)}")
        self.count(start)
        self.i += 1
        args = self.arguments()
        tests, is_list = self.tests_of(depth)
        t = self.tok
        if t.kind == ";":
            self.i += 1
            return Command(start.value, args, tests, None, start.line, start.column, is_list)
        if t.kind == "{":
            if depth + 1 > limits.MAX_NESTING:
                raise self.error(f"blocks nested too deeply (at most {limits.MAX_NESTING})")
            self.i += 1
            block = self.commands(depth + 1, "}")
            self.expect("}", "'}'")
            return Command(start.value, args, tests, block, start.line, start.column, is_list)
        if t.kind == "eof":
            raise self.error(f"missing ';' after command '{start.value}'")
        raise self.error(f"expected ';' or '{{' after command '{start.value}', found {_describe(t)}")

    def arguments(self) -> tuple[Argument, ...]:
        out: list[Argument] = []
        while True:
            t = self.tok
            if t.kind == "string":
                self.i += 1
                out.append(String(t.value, t.line, t.column, t.multiline))
            elif t.kind == "number":
                self.i += 1
                out.append(Number(t.value, t.line, t.column))
            elif t.kind == "tag":
                self.i += 1
                out.append(Tag(t.value, t.line, t.column))
            elif t.kind == "[":
                out.append(self.string_list())
            else:
                return tuple(out)

    def string_list(self) -> StringList:
        start = self.expect("[", "'['")
        items = []
        while True:
            t = self.tok
            if t.kind != "string":
                raise self.error(f"expected a string in the list, found {_describe(t)}")
            self.i += 1
            items.append(String(t.value, t.line, t.column, t.multiline))
            if len(items) > limits.MAX_LIST_ITEMS:
                raise self.error(f"string list too long (at most {limits.MAX_LIST_ITEMS} items)", t)
            t = self.tok
            if t.kind == ",":
                self.i += 1
                continue
            if t.kind == "]":
                self.i += 1
                return StringList(tuple(items), start.line, start.column)
            raise self.error(f"expected ',' or ']' in the string list, found {_describe(t)}")

    def tests_of(self, depth: int) -> tuple[tuple[Test, ...], bool]:
        t = self.tok
        if t.kind == "identifier":
            return (self.test(depth + 1),), False
        if t.kind == "(":
            return self.test_list(depth + 1), True
        return (), False

    def test(self, depth: int) -> Test:
        start = self.tok
        if start.kind != "identifier":
            raise self.error(f"expected a test, found {_describe(start)}")
        if depth > limits.MAX_NESTING:
            raise self.error(f"tests nested too deeply (at most {limits.MAX_NESTING})")
        self.count(start)
        self.i += 1
        args = self.arguments()
        tests, is_list = self.tests_of(depth)
        return Test(start.value, args, tests, start.line, start.column, is_list)

    def test_list(self, depth: int) -> tuple[Test, ...]:
        self.expect("(", "'('")
        out = [self.test(depth)]
        while self.tok.kind == ",":
            self.i += 1
            out.append(self.test(depth))
        self.expect(")", "',' or ')' in the test list")
        return tuple(out)


def parse(text: str) -> tuple[Command, ...]:
    p = _Parser(tokenize(text))
    return p.commands(0, "eof")

