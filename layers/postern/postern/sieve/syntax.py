"""The Sieve syntax tree (RFC 5228 §8.2), before any command has a meaning.

In:   built by :mod:`.parser` from tokens.
Out:  :class:`Command` and :class:`Test` nodes holding their arguments
      (:class:`String`, :class:`StringList`, :class:`Number`, :class:`Tag`),
      tests and block, each with the line and column where it starts. The
      compiler (:mod:`.compiler`) turns this tree into typed commands, checking
      each against the extension that defines it.
Fails: n/a (data only).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class String:
    value: str
    line: int
    column: int
    multiline: bool = False


@dataclass(frozen=True, slots=True)
class StringList:
    items: tuple[String, ...]
    line: int
    column: int


@dataclass(frozen=True, slots=True)
class Number:
    value: int
    line: int
    column: int


@dataclass(frozen=True, slots=True)
class Tag:
    name: str  # lower case, without ":"
    line: int
    column: int


Argument = String | StringList | Number | Tag


@dataclass(frozen=True, slots=True)
class Test:
    name: str  # lower case
    args: tuple[Argument, ...]
    tests: tuple[Test, ...]
    line: int
    column: int
    test_list: bool = False  # the tests were given as "( t, t )"


@dataclass(frozen=True, slots=True)
class Command:
    name: str
    args: tuple[Argument, ...]
    tests: tuple[Test, ...]
    block: tuple[Command, ...] | None  # None: the command ended with ";"
    line: int
    column: int
    test_list: bool = False
