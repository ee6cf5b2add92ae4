"""Who a JMAP request acts for, and what one request shares between its method calls.

In:   the authenticated user (the HTTPS front resolves credentials; this layer
      never sees a password), the mail store, the user's quota and the sender
      addresses the directory allows (``Directory.addresses_of``).
Out:  :class:`Account` (immutable, one per authenticated request) and
      :class:`Call` (per request: the creation ids of RFC 8620 §3.3 and the
      account view, rebuilt after any method that changed the store).
Fails: never.

The JMAP accountId is derived from the user address (JMAP ids are limited to
``[A-Za-z0-9_-]``, RFC 8620 §1.2), stably, so that a client may cache it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field

from ..store.base import MailStore


def account_id(user: str) -> str:
    return "a" + hashlib.sha256(user.lower().encode("utf-8")).hexdigest()[:20]


@dataclass(frozen=True)
class Account:
    user: str  # the address, lower case: the store's account key
    store: MailStore
    quota: int = 0  # bytes; 0 = unlimited (Directory.quota_of)
    senders: frozenset[str] = frozenset()  # addresses the user may send as (submission sender rule)
    name: str = ""  # display name for the session and the default identity
    # EmailSubmission's way out (the outbound path): (user, mail_from, rcpts, raw bytes) -> submission id
    submit: Callable[[str, str, list[str], bytes], str] | None = None
    rules: object | None = None  # postern.sieve.managed.Managed: VacationResponse (None: not offered)
    uploads: Callable[[str], bytes | None] | None = None  # the front's uploaded blobs by blobId (RFC 8620 §6.1)
    upload_key: Callable[[str], str | None] | None = None  # an upload's S3 key, if it exists (downloads)
    # the Postern upload capability (postern.jmap.upload): postern.uploads.Presigner (None: not offered)
    presign_upload: object | None = None
    # other accounts this login may read (RFC 8620 §5.4 fromAccountId): account id -> Account. None in
    # Postern today (a login holds one account); Email/copy then answers fromAccountNotFound
    peers: Callable[[str], Account | None] | None = None
    scripts: object | None = None  # sieve.repository.ScriptRepository: SieveScript, RFC 9661 (None: not offered)
    sieve_redirects: int = 4  # POSTERN_SIEVE_MAX_REDIRECTS, for the sieve capability's maxNumberRedirects
    identity_store: object | None = None  # postern.identities.IdentityStore: Identity/set (None: read-only identities)
    # Password/change (the Postern capability): (old, new) -> None, raising postern.credentials' errors
    change_password: Callable[[str, str], None] | None = None
    # Report/get for admins only: (kind, domain or None, days) -> postern.reports.summaries.as_json(...)
    reports: Callable[[str, str | None, int], dict] | None = None
    # the largest message JMAP stores or sends (Email/set create, Email/import, EmailSubmission): the SMTP
    # size limit, POSTERN_MAX_MESSAGE_SIZE (the front passes Settings.max_message_size; this default is its)
    max_size: int = 25 * 1024 * 1024
    # List/unsubscribe (the Postern capability): a stored message's bytes -> the HTTP status of the RFC 8058
    # one-click POST (postern.unsubscribe.unsubscribe), raising postern.unsubscribe's errors (None: not offered)
    unsubscribe: Callable[[bytes], int] | None = None
    # a user's moves into / out of Junk: their lessons for the spam filter (postern.junk.LessonQueue.send, the
    # learn queue a gateway task with rspamd reads); None: no filter learns here (Email/set still retags)
    learn: Callable[[list], int] | None = None

    @property
    def id(self) -> str:
        return account_id(self.user)

    @classmethod
    def for_user(cls, user, store: MailStore, directory, submit=None, rules=None, uploads=None, upload_key=None,
                 presign_upload=None, **more) -> Account:
        """The account of an authenticated directory :class:`~postern.directory.User`: its quota and
        the sender addresses the submission rule allows (``Directory.addresses_of``); ``more``: the
        optional services above (scripts, identity_store, change_password, reports...)."""
        return cls(user=user.address.lower(), store=store, quota=directory.quota_of(user),
                   senders=frozenset(directory.addresses_of(user.address)), submit=submit, rules=rules, uploads=uploads,
                   upload_key=upload_key, presign_upload=presign_upload, **more)


@dataclass
class Call:
    """State one request's method calls share."""

    account: Account
    created_ids: dict[str, str] = field(default_factory=dict)  # creation id -> server id (RFC 8620 §3.3)
    _view: object | None = None

    def view(self):
        """The account's mailboxes and emails as of now (built at most once between writes)."""
        from .index import AccountView

        if self._view is None:
            self._view = AccountView.build(self.account)
        return self._view

    def changed(self) -> None:
        self._view = None

    def resolve_id(self, value: str) -> str | None:
        """An id argument, or ``#creationId`` of an object created earlier in this request."""
        if isinstance(value, str) and value.startswith("#"):
            return self.created_ids.get(value[1:])
        return value
