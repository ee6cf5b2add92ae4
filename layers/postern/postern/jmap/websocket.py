"""JMAP over WebSocket (RFC 8887): reading what a client sends on the socket.

In:   one WebSocket message's payload (text: ``str``; a binary frame: ``bytes``), as API Gateway's
      ``$default`` route hands it to the push function (or the local front does).
Out:  :func:`parse` -> :class:`PushEnable` (``WebSocketPushEnable``, §4.3.5.2: the ``dataTypes``
      asked for, None for all) or :class:`PushDisable` (``WebSocketPushDisable``, §4.3.5.3); the
      server answers neither (the RFC defines no reply). :func:`capability` -> the session's
      ``urn:ietf:params:jmap:websocket`` capability.
Fails: :class:`RequestError` (§4.3.4: an RFC 7807 problem with ``@type: RequestError`` and the
      ``requestId`` when the client gave one), whose :meth:`RequestError.reply` is the message to
      send back: ``notJSON`` for a binary frame, bad UTF-8 or non-JSON text; ``limit``
      (``maxSizeRequest``) for a message over :data:`MAX_MESSAGE`; ``notRequest`` for JSON that
      is not one of the messages above or whose arguments are wrong. A ``Request`` (§4.3.1) is
      answered ``notRequest`` too: this socket carries push only (``supportsPush``), and method
      calls go to the session's ``apiUrl``.

Work is bounded: the size is checked before the JSON is read, and json.loads of 16 KiB cannot
nest deeper than Python's recursion limit allows (RecursionError is a ``notJSON``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

WEBSOCKET = "urn:ietf:params:jmap:websocket"
SUBPROTOCOL = "jmap"  # RFC 8887 §4.1: the WebSocket subprotocol a client asks for
MAX_MESSAGE = 16 * 1024  # a push message is tiny; API Gateway itself takes at most 128 KB
MAX_TYPES = 32
MAX_TYPE_NAME = 64
_ERR = "urn:ietf:params:jmap:error:"


def capability(url: str) -> dict:
    """RFC 8887 §4.2: where the socket is; push yes, method calls over it no (see the module docstring)."""
    return {"url": url, "supportsPush": True}


@dataclass(frozen=True)
class PushEnable:
    types: tuple[str, ...] | None  # None: every type


@dataclass(frozen=True)
class PushDisable:
    pass


class RequestError(Exception):
    def __init__(self, kind: str, detail: str, request_id: str | None = None, limit: str | None = None):
        super().__init__(detail)
        self.kind = kind
        self.detail = detail
        self.request_id = request_id
        self.limit = limit

    def reply(self) -> dict:
        out = {"@type": "RequestError", "type": _ERR + self.kind, "status": 400, "detail": self.detail}
        if self.request_id is not None:
            out["requestId"] = self.request_id
        if self.limit:
            out["limit"] = self.limit
        return out


def parse(payload: str | bytes) -> PushEnable | PushDisable:
    if isinstance(payload, bytes | bytearray):
        raise RequestError("notJSON", "JMAP messages are text frames (RFC 8887 §4.3)")
    if len(payload) > MAX_MESSAGE:
        raise RequestError("limit", f"A message is at most {MAX_MESSAGE} bytes", limit="maxSizeRequest")
    try:
        doc = json.loads(payload)
    except (ValueError, RecursionError):
        raise RequestError("notJSON", "The message is not JSON") from None
    if not isinstance(doc, dict):
        raise RequestError("notRequest", "A JMAP message is a JSON object with an @type")
    rid = doc.get("id") if isinstance(doc.get("id"), str) and len(doc["id"]) <= 256 else None
    kind = doc.get("@type")
    if kind == "WebSocketPushEnable":
        if not isinstance(doc.get("pushState"), str | None):
            raise RequestError("notRequest", "pushState is a string", rid)
        return PushEnable(_data_types(doc, rid))
    if kind == "WebSocketPushDisable":
        return PushDisable()
    if kind == "Request":
        raise RequestError("notRequest", "This socket carries push only (supportsPush); send method calls to the "
                           "session's apiUrl", rid)
    raise RequestError("notRequest", "Expected @type WebSocketPushEnable or WebSocketPushDisable", rid)


def _data_types(doc: dict, rid: str | None) -> tuple[str, ...] | None:
    types = doc.get("dataTypes")
    if types is None:
        return None
    if (not isinstance(types, list) or len(types) > MAX_TYPES
            or not all(isinstance(t, str) and 0 < len(t) <= MAX_TYPE_NAME for t in types)):
        raise RequestError("notRequest", f"dataTypes is null or a list of at most {MAX_TYPES} type names", rid)
    return tuple(dict.fromkeys(types))
