"""IMAP response lines (RFC 3501 §7), built as bytes.

In:   values from the ops modules.
Out:  wire lines ending in CRLF: tagged/untagged status responses, FETCH
      lines, flag lists, mailbox names in modified UTF-7 (RFC 3501 §5.1.3).
Fails: never.
"""

from __future__ import annotations

from collections.abc import Iterable

from . import mutf7, wire

SYSTEM_FLAGS = ("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft")


def tagged(tag: str, status: str, text: str, code: str | None = None) -> bytes:
    c = f"[{code}] " if code else ""
    return f"{tag} {status} {c}{text}\r\n".encode("utf-8", "replace")


def untagged(text: str | bytes) -> bytes:
    if isinstance(text, str):
        text = text.encode("utf-8", "replace")
    return b"* " + text + b"\r\n"


def ok_code(code: str, text: str = "") -> bytes:
    return untagged(f"OK [{code}] {text}".rstrip())


def flag_list(flags: Iterable[str]) -> str:
    # System flags first in a stable order, then keywords sorted: deterministic output.
    fl = set(flags)
    ordered = [f for f in SYSTEM_FLAGS if f in fl] + sorted(f for f in fl if f not in SYSTEM_FLAGS)
    return "(" + " ".join(ordered) + ")"


_FLAG_CACHE: dict[frozenset, bytes] = {}


def flag_bytes(flags) -> bytes:
    """``flag_list`` as bytes, memoised per flag set (FETCH 1:* FLAGS repeats a handful of sets)."""
    key = flags if isinstance(flags, frozenset) else frozenset(flags)
    hit = _FLAG_CACHE.get(key)
    if hit is None:
        hit = flag_list(key).encode()
        if len(_FLAG_CACHE) < 4096:
            _FLAG_CACHE[key] = hit
    return hit


def mailbox_name(name: str) -> bytes:
    """A mailbox name for LIST/STATUS/QUOTAROOT: modified UTF-7, as an astring."""
    return wire.astring(mutf7.encode(name)) if name else b'""'


def fetch_line(seq: int, items: list[bytes]) -> bytes:
    return b"* %d FETCH (" % seq + b" ".join(items) + b")\r\n"
