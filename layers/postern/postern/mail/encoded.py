"""RFC 2047 encoded-words decoded in one linear pass, with a cap on how many.

In:   a header value (bytes as it arrived, unfolded, or text).
Out:  :func:`decode_words` -> text: 8-bit bytes read as UTF-8 (else Latin-1,
      so every byte stays readable), each ``=?charset?B|Q?text?=`` replaced by
      its decoded text, whitespace between two adjacent encoded-words dropped
      (RFC 2047 §6.2) and adjacent words in one charset decoded together (a
      character split across two words survives). Only the first
      ``max_words`` (MAX_ENCODED_WORDS) words are decoded; the rest, and any
      word in an unknown charset or that does not decode, stay as written.
Fails: never.

Why not the stdlib: ``policy.default``'s header parser builds a token tree
whose memory grows with the square of the number of encoded-words (issue 11,
the header bomb). Here the scan is one regular-expression pass whose every
step is bounded by the distance to the next ``?``, and each word is decoded
by ``binascii`` (C speed), so time and memory are linear in the value.
"""

from __future__ import annotations

import binascii
import codecs
import re

from .limits import MAX_ENCODED_WORDS

__all__ = ["decode_words", "as_text"]

# RFC 2047 §2: encoded-word = "=?" charset "?" encoding "?" encoded-text "?=", no SP inside;
# RFC 2231 §5 allows "charset*language".
_WORD = re.compile(r"=\?([^?\s*]{1,64})(?:\*[^?\s]{0,64})?\?([bBqQ])\?([^?\s]*)\?=")
_BETWEEN_WORDS = re.compile(r"[ \t\r\n]*")
# codecs that are not character sets (or cost more than linear time on hostile input)
_NOT_CHARSETS = {"idna", "punycode", "raw_unicode_escape", "unicode_escape", "undefined"}


def as_text(value: bytes | str) -> str:
    """Header bytes as text: UTF-8 when they are, else Latin-1 (every byte kept readable)."""
    if isinstance(value, str):
        return value
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return value.decode("latin-1")


def _codec(charset: str) -> str | None:
    try:
        info = codecs.lookup(charset)
    except (LookupError, ValueError):
        return None
    if not getattr(info, "_is_text_encoding", True) or info.name in _NOT_CHARSETS:
        return None
    return info.name


def _payload(kind: str, text: str) -> bytes | None:
    data = text.encode("ascii", "replace")
    try:
        if kind in "qQ":
            return binascii.a2b_qp(data, header=True)  # RFC 2047 §4.2: "_" is SP, =XX a byte
        data = data.rstrip(b"=")
        if len(data) % 4 == 1:
            data = data[:-1]  # a lone trailing sextet cannot be a byte
        return binascii.a2b_base64(data + b"=" * (-len(data) % 4))
    except (binascii.Error, ValueError):
        return None


def decode_words(value: bytes | str, max_words: int = MAX_ENCODED_WORDS) -> str:
    """``value`` with its first ``max_words`` encoded-words decoded (see the module docstring)."""
    text = as_text(value)
    if "=?" not in text:
        return text
    out: list[str] = []
    pos = 0  # text[pos:] not yet copied
    pending: tuple[str, bytearray] | None = None  # adjacent words of one charset, not yet decoded
    pending_end = 0
    words = 0

    def flush() -> None:
        nonlocal pending
        if pending is not None:
            out.append(bytes(pending[1]).decode(pending[0], "replace"))
            pending = None

    for m in _WORD.finditer(text):
        if words >= max_words:
            break
        codec = _codec(m.group(1))
        data = _payload(m.group(2), m.group(3)) if codec is not None else None
        if data is None:
            continue  # left as written
        words += 1
        gap = text[pos : m.start()]
        adjacent = pending is not None and pending_end == pos and _BETWEEN_WORDS.fullmatch(gap) is not None
        if adjacent and pending[0] == codec:
            pending[1].extend(data)
        else:
            flush()
            if not adjacent:
                out.append(gap)
            pending = (codec, bytearray(data))
        pos = pending_end = m.end()
    flush()
    out.append(text[pos:])
    return "".join(out)
