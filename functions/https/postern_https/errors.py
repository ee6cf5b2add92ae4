"""Every error the HTTPS front answers, as JSON, built here and nowhere else.

In:   an :class:`HttpError` raised anywhere in a route (or a domain error the app's exception
      handlers map onto one).
Out:  :func:`problem` -> a Powertools ``Response``: ``application/problem+json`` (RFC 7807) with
      ``type``, ``status``, ``title``, ``detail`` and any extra members. JMAP's request-level
      errors (RFC 8620 §3.6.1) are problems of this same shape with their ``urn:ietf:params:jmap:
      error:*`` types; other errors have ``about:blank`` (RFC 7807 §4.2) and a title.
Fails: never.

Named errors below (:func:`unauthorized`, :func:`locked`...) keep the status codes and headers
in one place: a 401 always says ``WWW-Authenticate: Bearer`` (RFC 6750 §3), never ``Basic``,
so a browser script that gets one does not make the browser pop a password dialog.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from aws_lambda_powertools.event_handler import Response

PROBLEM_JSON = "application/problem+json"
REALM = "postern"


@dataclass
class HttpError(Exception):
    status: int
    title: str
    detail: str = ""
    type: str = "about:blank"
    headers: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.status} {self.title}: {self.detail}"


def problem(err: HttpError) -> Response:
    body = {"type": err.type, "status": err.status, "title": err.title}
    if err.detail:
        body["detail"] = err.detail
    body.update(err.extra)
    headers = {"Cache-Control": "no-store", **err.headers}
    return Response(status_code=err.status, content_type=PROBLEM_JSON, body=json.dumps(body), headers=headers)


def unauthorized(detail: str = "Authentication required", error: str = "") -> HttpError:
    challenge = f'Bearer realm="{REALM}"' + (f', error="{error}"' if error else "")
    return HttpError(401, "Unauthorized", detail, headers={"WWW-Authenticate": challenge})


def plaintext_refused() -> HttpError:
    return HttpError(403, "TLS required", "Credentials are refused over plain HTTP: use https://")


def locked(text: str, retry_after: float) -> HttpError:
    return HttpError(429, "Too many failed logins", text, headers={"Retry-After": str(max(1, int(retry_after)))})


def forbidden(detail: str) -> HttpError:
    return HttpError(403, "Forbidden", detail)


def not_found(detail: str = "No such resource") -> HttpError:
    return HttpError(404, "Not found", detail)


def bad_request(detail: str) -> HttpError:
    return HttpError(400, "Bad request", detail)


def unavailable() -> HttpError:
    return HttpError(503, "Service unavailable", "Temporary failure, try again later", headers={"Retry-After": "5"})


def server_error(request_id: str) -> HttpError:
    return HttpError(500, "Internal server error", "Something went wrong on our side", extra={"requestId": request_id})
