"""A request's body as bytes, whatever the client sent.

In:   the API Gateway HTTP API event (payload 2.0): ``body`` and ``isBase64Encoded``.
Out:  :func:`body_bytes` -> the bytes the client sent (b"" when none).
Fails: never: Powertools' ``decoded_body`` decodes base64 bodies as UTF-8 and raises on anything
      else (a hostile or binary body then became a 500); here bytes stay bytes and each route
      decides what a body that is no UTF-8 means.
"""

from __future__ import annotations

import base64
import binascii


def body_bytes(event) -> bytes:
    raw = event.get("body") or ""
    if event.get("isBase64Encoded"):
        try:
            return base64.b64decode(raw)
        except (binascii.Error, ValueError):
            return b""
    return raw.encode("utf-8", "surrogateescape")
