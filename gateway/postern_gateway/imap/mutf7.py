"""Modified UTF-7 mailbox names (RFC 3501 §5.1.3), pure.

In:   a mailbox name as sent by a client (ASCII, ``&...-`` shifts) or a
      Unicode name from the store.
Out:  :func:`decode` -> Unicode text, :func:`encode` -> the wire form.
Fails: :class:`MUTF7Error` (a ValueError) for malformed input: a bad base64
      run, an unterminated shift, a shift that encodes only printable ASCII
      (RFC 3501 forbids it) or non-ASCII bytes.
"""

from __future__ import annotations

import base64
import binascii


class MUTF7Error(ValueError):
    pass


def _b64enc(text: str) -> str:
    raw = text.encode("utf-16-be")
    return base64.b64encode(raw).decode().rstrip("=").replace("/", ",")


def encode(name: str) -> str:
    out: list[str] = []
    run: list[str] = []

    def flush():
        if run:
            out.append("&" + _b64enc("".join(run)) + "-")
            run.clear()

    for ch in name:
        o = ord(ch)
        if 0x20 <= o <= 0x7E:
            flush()
            out.append("&-" if ch == "&" else ch)
        else:
            run.append(ch)
    flush()
    return "".join(out)


def decode(name: str) -> str:
    out: list[str] = []
    i, n = 0, len(name)
    while i < n:
        ch = name[i]
        if ord(ch) > 0x7E or ord(ch) < 0x20:
            raise MUTF7Error("non-ASCII character in mailbox name")
        if ch != "&":
            out.append(ch)
            i += 1
            continue
        j = name.find("-", i + 1)
        if j < 0:
            raise MUTF7Error("unterminated &-shift in mailbox name")
        chunk = name[i + 1 : j]
        if not chunk:
            out.append("&")
        else:
            b64 = chunk.replace(",", "/")
            b64 += "=" * (-len(b64) % 4)
            try:
                raw = base64.b64decode(b64, validate=True)
                text = raw.decode("utf-16-be")
            except (binascii.Error, ValueError, UnicodeDecodeError):
                raise MUTF7Error("bad modified base64 in mailbox name") from None
            if any(0x20 <= ord(c) <= 0x7E for c in text):
                raise MUTF7Error("printable ASCII must not be shifted")
            out.append(text)
        i = j + 1
    return "".join(out)
