"""The SMTP listener factory: ``start_smtp(backend, host, port, role=..., ssl_context=..., implicit_tls=...)``.

In:   a Backend (settings, directory, spooler, executor), where to listen, the
      role (``"mx"``: port 25 / 2525 locally, ``"submission"``: 587 / 465 /
      1587 locally), an optional ``ssl.SSLContext`` and whether TLS starts at
      the first byte (465) or by STARTTLS (RFC 3207).
Out:  a started ``asyncio.Server`` whose ``sockets[0].getsockname()[1]`` is the
      bound port (port 0 works: aiosmtpd's Controller cannot bind it, so the
      server is created here with ``loop.create_server``). ``server.close()``
      also closes its live sessions; ``server.postern_sessions`` is the
      :class:`~postern_gateway.smtp.replies.SessionSet`.
Fails: ``OSError`` from binding; ``ValueError`` for an unknown role.

Each connection gets a :class:`~postern_gateway.smtp.replies.PosternSMTP` with
``hostname=settings.hostname`` (no per-connection DNS), SIZE from
``max_message_size``, SMTPUTF8 on, raw bytes (``decode_data=False``: 8BITMIME),
the idle timeout ``smtp_timeout`` and the session cap ``max_sessions``
(``421 4.3.2`` beyond it). Submission offers AUTH only under TLS unless
``allow_plaintext_auth``; with a TLS context and plaintext not allowed it
requires STARTTLS before anything else. The MX role offers no AUTH.

``checks`` (keyword) adds :class:`~postern_gateway.smtp.checks.Check` objects
(trust: SPF/DKIM/DMARC, limits); ``handler`` replaces the handler outright.
"""

from __future__ import annotations

import asyncio

from .handler import MXHandler
from .replies import PosternSMTP, SessionSet
from .submission import SubmissionHandler

ROLES = {"mx": MXHandler, "submission": SubmissionHandler}
IDENT = "ESMTP Postern"


async def start_smtp(backend, host: str, port: int, *, role: str = "mx", ssl_context=None,
                     implicit_tls: bool = False, checks=(), handler=None) -> asyncio.AbstractServer:
    if role not in ROLES:
        raise ValueError(f"unknown SMTP role {role!r} (expected one of {sorted(ROLES)})")
    if implicit_tls and ssl_context is None:
        raise ValueError("implicit_tls needs an ssl_context")
    settings = backend.settings
    handler = handler or ROLES[role](backend, checks=checks)
    sessions = SessionSet(settings.max_sessions)
    submission = role == "submission"
    starttls_context = None if implicit_tls else ssl_context
    plaintext_ok = settings.allow_plaintext_auth or implicit_tls
    loop = asyncio.get_running_loop()

    def factory() -> PosternSMTP:
        return PosternSMTP(
            handler,
            sessions=sessions,
            seats=getattr(backend, "sessions", None),
            protocol="submission" if submission else "smtp",
            implicit_tls=implicit_tls,
            offers_auth=submission,
            preauth_max_bytes=settings.preauth_max_bytes,
            hostname=settings.hostname,
            ident=IDENT,
            data_size_limit=settings.max_message_size,
            enable_SMTPUTF8=True,
            decode_data=False,
            tls_context=starttls_context,
            require_starttls=bool(submission and starttls_context is not None and not settings.allow_plaintext_auth),
            timeout=settings.smtp_timeout,
            auth_require_tls=not plaintext_ok,
            auth_exclude_mechanism=() if submission else ("PLAIN", "LOGIN"),
            loop=loop,
        )

    server = await loop.create_server(factory, host, port, ssl=ssl_context if implicit_tls else None)
    close = server.close

    def close_with_sessions() -> None:  # asyncio.Server.close() leaves accepted connections open (3.11)
        close()
        sessions.close_all()

    server.close = close_with_sessions
    server.postern_sessions = sessions
    return server
