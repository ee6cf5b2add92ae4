"""What every protocol server of the gateway needs, in one object, and its one way to the mail store.

In:   settings, a mail store, a directory, a spooler (SMTP only), and the
      bounded executor.
Out:  :class:`Backend`; :attr:`Backend.mail` is :class:`MailFacade`, the async
      face of the mail store and the mailbox rules (``postern.mailboxes``) that
      IMAP and POP3 use: ``await backend.mail.get_mailbox(user, name)``. Anything
      else blocking goes through ``await backend.run(fn, ...)`` (``run_bulk`` for
      the SMTP spool). Tests build a Backend over the in-memory store and
      directory; the gateway's ``__main__`` builds it over DynamoDB/S3.
Fails: the store's domain errors pass through unchanged (they carry their wire
      replies; StoreUnavailable's text, which may name AWS errors, is logged and
      never sent: ``PosternError.public_text``); anything else is a bug and reaches
      the protocol's catch-all (IMAP ``NO [UNAVAILABLE]``, POP3 closes), logged.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from postern import mailboxes as rules
from postern.config import Settings
from postern.directory import Directory
from postern.errors import PosternError
from postern.store.base import AppendResult, Change, MailboxInfo, MailStore, MessageMeta, StoreResult

from .blocking import Blocking
from .sessions import Sessions

log = logging.getLogger("postern.gateway.store")

# A user whose default mailboxes were checked here is not checked again for this long: a
# special-use mailbox the user deleted comes back at a login after that, as it always did.
ENSURED_TTL = 600.0
ENSURED_MAX = 100_000


class MailFacade:
    """Every store primitive and mailbox rule the protocols use, as coroutines on the executor."""

    def __init__(self, store: MailStore, blocking: Blocking):
        self.store = store
        self._blocking = blocking
        self._sweeps: set[asyncio.Task] = set()
        self._defaults_ensured: dict[str, float] = {}  # user -> monotonic time ensure_defaults last ran

    async def _run(self, fn, /, *args, **kwargs):
        return await self._blocking.run(fn, *args, **kwargs)

    def background(self):
        """``async with mail.background():`` work no client waits on (blocking.py's background lane)."""
        return self._blocking.background()

    # --- the mailbox rules ---------------------------------------------------------
    async def ensure_defaults(self, user: str) -> None:
        """The default mailboxes of ``user``, checked at most once per ENSURED_TTL in this process:
        a cached login then costs no store read (`make load`: the check queued behind the spool)."""
        now = time.monotonic()
        last = self._defaults_ensured.get(user)
        if last is not None and now - last < ENSURED_TTL:
            return
        await self._run(rules.ensure_defaults, self.store, user)
        if len(self._defaults_ensured) >= ENSURED_MAX:
            self._defaults_ensured.clear()
        self._defaults_ensured[user] = now

    async def create(self, user: str, name: str) -> MailboxInfo:
        return await self._run(rules.create, self.store, user, name)

    async def delete(self, user: str, name: str) -> None:
        self._defaults_ensured.pop(user, None)  # a default mailbox deleted comes back at the next login
        await self._run(rules.delete, self.store, user, name)
        self.sweep_later(user)

    async def rename(self, user: str, old: str, new: str) -> list[tuple[str, str]]:
        self._defaults_ensured.pop(user, None)
        return await self._run(rules.rename, self.store, user, old, new)

    async def subscribe(self, user: str, name: str) -> None:
        await self._run(rules.subscribe, self.store, user, name)

    async def unsubscribe(self, user: str, name: str) -> None:
        await self._run(rules.unsubscribe, self.store, user, name)

    async def listing(self, user: str, subscriptions: bool = False) -> rules.Listing:
        return await self._run(rules.listing, self.store, user, subscriptions)

    async def get_mailbox(self, user: str, name: str) -> MailboxInfo:
        """An existing mailbox by name; the name goes through the one validator first."""
        return await self._run(self._get_mailbox, user, name)

    def _get_mailbox(self, user: str, name: str) -> MailboxInfo:
        return self.store.get_mailbox(user, rules.validate_name(name))

    async def get_mailbox_by_id(self, user: str, mailbox_id: str) -> MailboxInfo:
        return await self._run(self.store.get_mailbox_by_id, user, mailbox_id)

    # --- messages ------------------------------------------------------------------
    async def append(self, user: str, mailbox: str, raw: bytes, **kw) -> AppendResult:
        return await self._run(self._append, user, mailbox, raw, kw)

    def _append(self, user: str, mailbox: str, raw: bytes, kw: dict) -> AppendResult:
        return self.store.append(user, rules.validate_name(mailbox), raw, **kw)

    async def list_messages(self, mb: MailboxInfo, since_uid: int = 0, light: bool = False) -> list[MessageMeta]:
        return await self._run(lambda: list(self.store.list_messages(mb, since_uid, light)))

    async def get_messages(self, mb: MailboxInfo, uids: Iterable[int]) -> list[MessageMeta]:
        return await self._run(self.store.get_messages, mb, list(uids))

    async def read(self, meta: MessageMeta, start: int = 0, end: int | None = None) -> bytes:
        return await self._run(self.store.read, meta, start, end)

    async def store_flags(self, mb: MailboxInfo, metas: Iterable[MessageMeta], flags: Iterable[str], mode: str,
                          unchanged_since: int | None = None) -> StoreResult:
        return await self._run(self.store.store_flags, mb, list(metas), list(flags), mode, unchanged_since)

    async def expunge(self, mb: MailboxInfo, metas: Iterable[MessageMeta]) -> list[int]:
        return await self._run(self.store.expunge, mb, list(metas))

    async def copy(self, mb: MailboxInfo, metas: Iterable[MessageMeta], dest: str,
                   quota: int = 0, by_user: bool = False) -> tuple[MailboxInfo, list[tuple[int, int]]]:
        return await self._run(self._copy, mb, list(metas), dest, quota, by_user)

    def _copy(self, mb, metas, dest, quota, by_user):
        return self.store.copy(mb, metas, rules.validate_name(dest), quota, by_user=by_user)

    async def claim_recent(self, mb: MailboxInfo, upto_uid: int) -> int:
        return await self._run(self.store.claim_recent, mb, upto_uid)

    async def follow(self, user: str, after: int, limit: int | None = None) -> list[Change]:
        return await self._run(self.store.follow, user, after, limit)

    async def usage(self, user: str) -> int:
        return await self._run(self.store.usage, user)

    # --- background ----------------------------------------------------------------
    def later(self, coro, name: str) -> asyncio.Task:
        """Run ``coro`` after the reply, beyond the session that asked (held here until done)."""
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._sweeps.add(task)
        task.add_done_callback(self._sweeps.discard)
        return task

    def sweep_later(self, user: str) -> None:
        """Release a deleted mailbox's messages after the reply (resumable; the daily housekeeping
        and ``postern sweep`` also do it)."""

        async def sweep():
            try:
                n = await self._run(self.store.sweep, user)
                if n:
                    log.info("released %d messages of deleted mailboxes of %s", n, user)
            except PosternError:
                log.warning("sweep of %s failed; the daily housekeeping finishes it", user, exc_info=True)

        self.later(sweep(), f"sweep-{user}")


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
    spam: object | None = None  # postern_gateway.spam.rspamd.Rspamd (the MX port's scan); None = filtering off
    learner: object | None = None  # postern_gateway.spam.learn.Learner (IMAP moves into/out of Junk); None = off
    lesson_reader: object | None = None  # postern_gateway.spam.relay.LessonReader: other tasks' lessons, taught here
    auth_cache: object | None = None  # postern.authcache.VerifiedCache, built on first login
    change_feed: object | None = None  # changefeed.ChangeFeed while this task has one (auth.feed_live)
    maildrop_locks: object | None = None  # postern_gateway.pop3.lock: POP3 maildrop locks, built by the listener
    sessions: Sessions = field(default_factory=Sessions)  # live sessions: counted, told to leave on SIGTERM

    @property
    def mail(self) -> MailFacade:
        facade = self.__dict__.get("_mail")
        if facade is None or facade.store is not self.store:
            facade = self.__dict__["_mail"] = MailFacade(self.store, self.blocking)
        return facade

    async def run(self, fn, /, *args, **kwargs):
        return await self.blocking.run(fn, *args, **kwargs)

    async def run_bulk(self, fn, /, *args, **kwargs):
        """For bulk work that may queue (spooling mail): leaves threads free for interactive calls."""
        return await self.blocking.run_bulk(fn, *args, **kwargs)
