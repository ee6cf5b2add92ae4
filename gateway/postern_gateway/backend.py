"""What every protocol server of the gateway needs, in one object.

In:   settings, a mail store, a directory, a spooler (SMTP only), and the
      bounded executor.
Out:  :class:`Backend`; protocol code calls ``await backend.run(fn, ...)``
      for anything blocking (``run_bulk`` for the SMTP spool). Tests build one over the in-memory store and
      directory; the gateway's ``__main__`` builds it over DynamoDB/S3.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from postern.config import Settings
from postern.directory import Directory
from postern.store.base import MailStore

from .blocking import Blocking


@dataclass
class Backend:
    settings: Settings
    store: MailStore
    directory: Directory
    blocking: Blocking = field(default_factory=Blocking)
    spooler: object | None = None  # postern_gateway.smtp.spool.Spooler (S3 + SQS), SMTP only
    clients: object | None = None  # postern.aws.Clients when on AWS/moto
    limits: object | None = None  # postern.limits.Limits (abuse limits); None = no limits
    trust: object | None = None  # postern_gateway.trust.gate.Trust (DNS checks on the MX port); None = off
    auth_cache: object | None = None  # postern_gateway.authcache.VerifiedCache, built on first login
    maildrop_locks: object | None = None  # postern_gateway.pop3.lock: POP3 maildrop locks, built by the listener

    async def run(self, fn, /, *args, **kwargs):
        return await self.blocking.run(fn, *args, **kwargs)

    async def run_bulk(self, fn, /, *args, **kwargs):
        """For bulk work that may queue (spooling mail): leaves threads free for interactive calls."""
        return await self.blocking.run_bulk(fn, *args, **kwargs)
