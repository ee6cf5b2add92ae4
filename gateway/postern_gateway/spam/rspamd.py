"""An asyncio client of rspamd's HTTP protocol: ``/checkv2`` (scan) and ``/learnspam``/``/learnham``.

In:   the worker's URL (``POSTERN_RSPAMD_URL``, e.g. ``http://127.0.0.1:11333``), the
      controller's (``POSTERN_RSPAMD_CONTROLLER_URL``, learning), a timeout
      (``POSTERN_RSPAMD_TIMEOUT``); per scan the message bytes (our trace prefix, then the
      received bytes, sent as they are) and the envelope facts (:class:`ScanFacts`: client IP,
      HELO, MAIL FROM, recipients, TLS, authenticated user, queue id).
Out:  :meth:`Rspamd.check` -> :class:`postern.spam.ScanResult`; :meth:`Rspamd.learn` -> None.
      One HTTP/1.0 request per connection (rspamd closes it), on the event loop: nothing blocks.
Fails: :class:`FilterUnavailable` for anything that is not a timely, well-formed answer
      (refused connection, timeout, HTTP error, an answer over 1 MiB or not rspamd's JSON):
      the caller accepts the message ``unchecked`` (never refused because the filter is ill).

Protocol: https://rspamd.com/doc/developers/protocol.html (headers ``IP``, ``Helo``, ``From``,
``Rcpt`` once per recipient, ``User``, ``Queue-Id``, ``MTA-Name``, ``TLS-Version``,
``TLS-Cipher``). Values that come from the SMTP client (HELO, addresses) are stripped of
anything that could end an HTTP header line.
"""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from postern.spam import ScanResult

MAX_REPLY = 1024 * 1024
_UNSAFE = re.compile(r"[\x00-\x1f\x7f]")


class FilterUnavailable(Exception):
    """rspamd did not answer in time or not as rspamd (the message goes on ``unchecked``).
    ``reason``: ``timeout`` or ``unavailable`` (the log line and the per-process counter)."""

    def __init__(self, text: str, reason: str = "unavailable"):
        super().__init__(text)
        self.reason = reason


@dataclass(frozen=True)
class ScanFacts:
    client_ip: str
    helo: str = ""
    mail_from: str = ""
    recipients: tuple[str, ...] = ()
    queue_id: str = ""
    user: str = ""  # the authenticated submitter, if any
    tls_version: str = ""
    tls_cipher: str = ""

    def headers(self, hostname: str) -> list[tuple[str, str]]:
        out = [("IP", self.client_ip), ("Helo", self.helo), ("From", self.mail_from or "<>"),
               ("Queue-Id", self.queue_id), ("MTA-Name", hostname)]
        out += [("Rcpt", r) for r in self.recipients]
        if self.user:
            out.append(("User", self.user))
        if self.tls_version:
            out += [("TLS-Version", self.tls_version), ("TLS-Cipher", self.tls_cipher)]
        if len(self.recipients) == 1:
            out.append(("Deliver-To", self.recipients[0]))
        return [(k, _clean(v)) for k, v in out if v]


def _clean(value: str) -> str:
    return _UNSAFE.sub("", value)[:998]


def _endpoint(url: str) -> tuple[str, int, str]:
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(f"rspamd URL must be http://host:port, not {url!r}")
    return parts.hostname, parts.port or 80, parts.path.rstrip("/")


class Rspamd:
    def __init__(self, url: str, controller_url: str = "", timeout: float = 15.0, hostname: str = "localhost"):
        self.host, self.port, self.base = _endpoint(url)
        self.controller = _endpoint(controller_url) if controller_url else None
        self.timeout = timeout
        self.hostname = hostname

    async def check(self, prefix: bytes, raw: bytes, facts: ScanFacts) -> ScanResult:
        """Scan ``prefix + raw`` (never joined: a 25 MiB message is not copied)."""
        status, body = await self._post((self.host, self.port, self.base), "/checkv2", facts.headers(self.hostname),
                                        (prefix, raw))
        if status != 200:
            raise FilterUnavailable(f"rspamd answered HTTP {status}")
        try:
            return ScanResult.from_rspamd(json.loads(body))
        except (ValueError, TypeError) as exc:
            raise FilterUnavailable(f"rspamd's answer is unreadable: {exc}") from None

    async def learn(self, spam: bool, message: bytes) -> str:
        """Teach Bayes (controller ``/learnspam`` or ``/learnham``) -> "learned", or why rspamd
        did not and never will (HTTP 208 already learned, 204 too few tokens): done either way."""
        if self.controller is None:
            raise FilterUnavailable("no rspamd controller configured")
        status, body = await self._post(self.controller, "/learnspam" if spam else "/learnham", [], (message,))
        if status == 200:
            return "learned"
        if status in (204, 208):
            try:
                return str(json.loads(body).get("error", "not learned"))[:200]
            except (ValueError, AttributeError):
                return "not learned"
        raise FilterUnavailable(f"rspamd learn answered HTTP {status}: {body[:200]!r}")

    async def _post(self, endpoint, path: str, headers: list[tuple[str, str]], parts: tuple[bytes, ...]):
        try:
            return await asyncio.wait_for(self._exchange(endpoint, path, headers, parts), self.timeout)
        except asyncio.TimeoutError:
            raise FilterUnavailable(f"rspamd did not answer within {self.timeout:g} s", "timeout") from None
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            raise FilterUnavailable(f"rspamd unreachable: {exc}") from None

    @staticmethod
    async def _exchange(endpoint, path: str, headers, parts) -> tuple[int, bytes]:
        host, port, base = endpoint
        reader, writer = await asyncio.open_connection(host, port, limit=64 * 1024)
        try:
            length = sum(len(p) for p in parts)
            head = [f"POST {base}{path} HTTP/1.0", f"Host: {host}", f"Content-Length: {length}"]
            head += [f"{k}: {v}" for k, v in headers]
            writer.write(("\r\n".join(head) + "\r\n\r\n").encode("utf-8", "replace"))
            for p in parts:
                writer.write(p)
            await writer.drain()
            status_line = await reader.readline()
            m = re.match(rb"HTTP/1\.[01] (\d{3})", status_line)
            if not m:
                raise ValueError("not an HTTP response")
            size = None
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b"\n", b""):
                    break
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    size = int(value.strip())
            if size is not None:
                if size > MAX_REPLY:
                    raise ValueError("answer too large")
                body = await reader.readexactly(size)
            else:  # HTTP/1.0 without a length: the body ends with the connection
                chunks, total = [], 0
                while chunk := await reader.read(65536):
                    total += len(chunk)
                    if total > MAX_REPLY:
                        raise ValueError("answer too large")
                    chunks.append(chunk)
                body = b"".join(chunks)
            return int(m.group(1)), body
        finally:
            writer.close()
