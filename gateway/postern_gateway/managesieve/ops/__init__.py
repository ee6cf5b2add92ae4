"""ManageSieve commands, one module per family: ``session`` (CAPABILITY, NOOP, LOGOUT, STARTTLS,
AUTHENTICATE, UNAUTHENTICATE) and ``scripts`` (the script commands).

An op is ``async def op(s: Session, args: tuple[Token, ...]) -> bytes | None``: it returns the
final response line (``wire.ok(...)``), or None when it has sent it itself (STARTTLS), and raises
an error that knows its response (``wire.SieveProtocolError``, the repository's, postern.errors')."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from ..reader import Num, Str
from ..wire import Bad

Op = Callable[[Any, tuple], Awaitable[bytes | None]]


def arity(args: tuple, low: int, high: int | None = None) -> None:
    high = low if high is None else high
    if not low <= len(args) <= high:
        want = str(low) if low == high else f"{low} to {high}"
        raise Bad(f"Expected {want} argument{'s' if high != 1 else ''}")


def text(arg) -> str:
    """A string argument as text (§4: UTF-8)."""
    if not isinstance(arg, Str):
        raise Bad("Expected a string")
    try:
        return arg.value.decode("utf-8")
    except UnicodeDecodeError:
        raise Bad("String is not UTF-8") from None


def raw(arg) -> bytes:
    if not isinstance(arg, Str):
        raise Bad("Expected a string")
    return arg.value


def number(arg) -> int:
    if not isinstance(arg, Num):
        raise Bad("Expected a number")
    return arg.value
