"""JMAP errors, built in one place with the RFC 8620 type names.

In:   raised by the request layer (``api``) and every method handler.
Out:  :class:`RequestError` -> an RFC 7807 problem document and its HTTP status
      (RFC 8620 §3.6.1: the whole request is refused); :class:`MethodError` ->
      the ``["error", {...}, callId]`` method response (§3.6.2);
      :func:`set_error` -> one SetError object of a /set response (§5.3).
Fails: never.
"""

from __future__ import annotations

# RFC 8620 §3.6.1 request-level problem types
UNKNOWN_CAPABILITY = "urn:ietf:params:jmap:error:unknownCapability"
NOT_JSON = "urn:ietf:params:jmap:error:notJSON"
NOT_REQUEST = "urn:ietf:params:jmap:error:notRequest"
LIMIT = "urn:ietf:params:jmap:error:limit"


class RequestError(Exception):
    """The request as a whole is refused (HTTP 400, RFC 7807 problem details)."""

    def __init__(self, type_: str, detail: str, *, status: int = 400, limit: str | None = None):
        super().__init__(detail)
        self.type = type_
        self.detail = detail
        self.status = status
        self.limit = limit

    def problem(self) -> dict:
        out = {"type": self.type, "status": self.status, "detail": self.detail}
        if self.limit is not None:
            out["limit"] = self.limit  # RFC 8620 §3.6.1: the name of the limit exceeded
        return out


class MethodError(Exception):
    """One method call failed (RFC 8620 §3.6.2); the request goes on with the next call."""

    def __init__(self, type_: str, description: str | None = None, **extra):
        super().__init__(description or type_)
        self.type = type_
        self.description = description
        self.extra = extra

    def response(self) -> dict:
        out = {"type": self.type, **self.extra}
        if self.description:
            out["description"] = self.description
        return out


def invalid_arguments(description: str) -> MethodError:
    return MethodError("invalidArguments", description)


def set_error(type_: str, description: str | None = None, **extra) -> dict:
    """A SetError (RFC 8620 §5.3): ``notFound``, ``invalidProperties`` (with ``properties``), ..."""
    out = {"type": type_, **extra}
    if description:
        out["description"] = description
    return out
