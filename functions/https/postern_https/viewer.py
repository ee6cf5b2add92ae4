"""Who is asking: the client's address, the host name it asked for, and whether it used TLS.

In:   the API Gateway HTTP API event (payload 2.0) and the origin secret
      (:meth:`postern_https.services.Services.origin_secret`).
Out:  :func:`viewer_of` -> :class:`Viewer`. With an origin secret configured, every request must
      carry it in :data:`postern.edge.ORIGIN_HEADER` (CloudFront adds it; a client going to the
      execute-api URL directly, around CloudFront and its WAF, does not have it), and then the
      edge headers are trusted: the viewer's IP (CloudFront Function, ``event.viewer.ip``), the
      Host it asked for, and the protocol (``https`` unless the local adapter says ``http``).
      Without a secret (a function invoked directly) only the event's own ``sourceIp`` and
      ``Host`` are used, and the protocol is HTTPS (API Gateway serves nothing else).
Fails: :class:`~postern_https.errors.HttpError` 403 when the secret is configured and missing or wrong.
"""

from __future__ import annotations

import hmac
import re
from dataclasses import dataclass

from postern.edge import ORIGIN_HEADER, VIEWER_HOST, VIEWER_IP, VIEWER_PROTO

from .errors import forbidden


_AUTHORITY = re.compile(r"^(?:[a-z0-9-]+(?:\.[a-z0-9-]+)*|\[[0-9a-f:.]+\])(?::[0-9]{1,5})?$")


@dataclass(frozen=True)
class Viewer:
    ip: str
    authority: str  # host[:port] as the client asked for it, lower case; "" when absent or not a host name
    proto: str  # https | http

    @property
    def secure(self) -> bool:
        return self.proto == "https"

    @property
    def host(self) -> str:
        a = self.authority
        if a.startswith("["):
            return a.split("]", 1)[0] + "]"
        return a.rsplit(":", 1)[0] if ":" in a else a

    @property
    def base_url(self) -> str:
        """Where the client reached us: absolute URLs we hand out (the JMAP session's) start with it."""
        return f"{self.proto}://{self.authority or 'localhost'}"

    def domain_under(self, label: str) -> str | None:
        """``example.com`` when the host is ``<label>.example.com``."""
        prefix = label + "."
        if self.host.startswith(prefix) and len(self.host) > len(prefix):
            return self.host[len(prefix):]
        return None


def _authority(value: str) -> str:
    value = (value or "").strip().lower().rstrip(".")
    return value if _AUTHORITY.match(value) else ""


def viewer_of(event, origin_secret: str) -> Viewer:
    headers = event.headers or {}
    source_ip = event.request_context.http.source_ip or ""
    if not origin_secret:
        return Viewer(source_ip, _authority(headers.get("host", "")), "https")
    given = headers.get(ORIGIN_HEADER, "")
    if not hmac.compare_digest(given.encode(), origin_secret.encode()):
        raise forbidden("Requests reach Postern through its CloudFront distribution only")
    proto = "http" if headers.get(VIEWER_PROTO, "").lower() == "http" else "https"
    return Viewer(headers.get(VIEWER_IP, "") or source_ip, _authority(headers.get(VIEWER_HOST, "")), proto)
