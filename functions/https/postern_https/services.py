"""What every request of one execution environment shares: settings, clients, directory, limits, tokens.

In:   the process settings and clients (:mod:`postern.config`, :mod:`postern.aws`); the origin
      secret from ``POSTERN_HTTPS_ORIGIN_SECRET`` or, deployed, the Secrets Manager secret
      ``POSTERN_HTTPS_ORIGIN_SECRET_ID`` (read once per execution environment).
Out:  :func:`services` -> :class:`Services`, built on first use and again when the process
      settings or clients were rebuilt (the local stack does that when it restarts). The
      verified-password cache (:class:`postern.authcache.VerifiedCache`, ``POSTERN_AUTH_CACHE_TTL``)
      lives as long as the execution environment: a client sending HTTP Basic on every request
      pays one argon2id check per cache period, not one per request.
Fails: the origin secret cannot be read -> StoreUnavailable (503: the function never serves
      requests it cannot tell came through CloudFront).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from botocore.exceptions import BotoCoreError, ClientError

from postern.authcache import VerifiedCache
from postern.aws import get_clients
from postern.config import get_settings
from postern.directory import Directory, dynamo_directory
from postern.errors import StoreUnavailable
from postern.limits import Limits, limits_for
from postern.tokens import Tokens, tokens_for


@dataclass
class Services:
    settings: object
    clients: object
    directory: Directory
    limits: Limits
    tokens: Tokens
    cache: VerifiedCache
    _origin_secret: str | None = field(default=None, repr=False)
    _store: object | None = field(default=None, repr=False)
    _dns: object | None = field(default=None, repr=False)

    def _resolver(self):
        """postern.dns's resolver (dns_timeout, POSTERN_DNS_NAMESERVERS), one per execution environment."""
        if self._dns is None:
            from postern.dns import Resolver

            self._dns = Resolver(self.settings)
        return self._dns

    def jmap_account(self, user, viewer=None):
        """The JMAP account of an authenticated user: the mail store (one per execution environment:
        it remembers mailbox ids), the directory's sender rule, and EmailSubmission through the spool
        (postern.spool: the same path as SMTP submission on port 587); the Sieve scripts and the
        managed rules (postern.sieve.repository: ManageSieve's items and limits), the stored
        identities, the user's own password change (postern.credentials, the lockout keyed on the
        viewer's address), one-click unsubscribe (postern.unsubscribe: the server POSTs, RFC 8058),
        the spam lessons of moves into / out of Junk (postern.junk, the learn queue) and, for admins,
        the DMARC/TLS report summaries."""
        from postern.credentials import change_password
        from postern.identities import IdentityStore
        from postern.jmap.account import Account
        from postern.jmap.outbound import submitter
        from postern.reports.summaries import as_json, report_store, summary_for
        from postern.sieve.managed import Managed
        from postern.sieve.repository import repository
        from postern.spool import Spooler
        from postern.store import dynamo_store
        from postern.unsubscribe import unsubscribe
        from postern.uploads import Presigner, Uploads

        if self._store is None:
            self._store = dynamo_store(self.settings, self.clients)
        uploads = Uploads(self.settings, self.clients)
        scripts = repository(self.settings, self.clients)
        address = user.address
        ip = viewer.ip if viewer is not None else ""

        def password(old: str, new: str) -> None:
            change_password(self.directory, address, old, new, limits=self.limits, ip=ip, protocol="https")
            self.cache.forget(address)  # this environment's verified-password cache: the old one is gone

        def reports(kind: str, domain: str | None, days: int) -> dict:
            return as_json(summary_for(self.directory, report_store(self.settings, self.clients), kind, domain, days))

        return Account.for_user(user, self._store, self.directory,
                                submit=submitter(Spooler(self.settings, self.clients), self.settings.hostname),
                                uploads=lambda blob_id: uploads.get(address, blob_id),
                                upload_key=lambda blob_id: uploads.key_of(address, blob_id),
                                presign_upload=Presigner(uploads, address),
                                rules=Managed(scripts), scripts=scripts,
                                sieve_redirects=self.settings.sieve_max_redirects,
                                max_size=self.settings.max_message_size,
                                identity_store=IdentityStore(scripts.items), change_password=password,
                                # user is the directory's item as it is now (auth.require: a cached login is
                                # confirmed against it, a token reads it), so the admin role is current
                                reports=reports if user.admin else None,
                                unsubscribe=lambda raw: unsubscribe(raw, self._resolver()),
                                learn=self._lessons())

    def _lessons(self):
        """Where a user's moves into / out of Junk teach the filter: the learn queue (POSTERN_LEARN_QUEUE_URL,
        set when the stack runs rspamd; a gateway task with it reads them), else nowhere."""
        from postern.junk import LessonQueue

        url = self.settings.learn_queue_url
        return LessonQueue(self.clients.sqs, url).send if url else None

    def origin_secret(self) -> str:
        """The value CloudFront's origin header must carry; "" when none is configured
        (the function then trusts no edge header: a request reached API Gateway directly)."""
        if self._origin_secret is None:
            s = self.settings
            if s.https_origin_secret:
                self._origin_secret = s.https_origin_secret
            elif s.https_origin_secret_id:
                try:
                    raw = self.clients.secrets.get_secret_value(SecretId=s.https_origin_secret_id)["SecretString"]
                except (ClientError, BotoCoreError) as exc:
                    raise StoreUnavailable(f"origin secret unreadable: {exc.__class__.__name__}") from exc
                try:
                    self._origin_secret = str(json.loads(raw)["value"])
                except (ValueError, KeyError, TypeError):
                    self._origin_secret = raw.strip()
            else:
                self._origin_secret = ""
        return self._origin_secret


_services: Services | None = None


def services() -> Services:
    global _services
    settings, clients = get_settings(), get_clients()
    if _services is None or _services.settings is not settings or _services.clients is not clients:
        directory = dynamo_directory(settings, clients)
        _services = Services(settings, clients, directory, limits_for(settings, clients),
                             tokens_for(settings, clients, directory), VerifiedCache(settings.auth_cache_ttl))
    return _services
