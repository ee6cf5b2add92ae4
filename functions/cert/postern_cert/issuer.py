"""Obtain a certificate from an ACME server (RFC 8555) with DNS-01 challenges, using certbot's ``acme``.

In:   the directory URL, an account document (``{"accounts": {directory url: {"key": JWK,
      "uri": account url}}}``, read and written through ``load_account``/``save_account``),
      a :class:`~postern_cert.route53.DnsChallenges`, the names, a private key (PEM) and a
      deadline on the monotonic clock.
Out:  :meth:`AcmeIssuer.issue` -> the full chain in PEM (leaf first), for that key.
      :meth:`AcmeIssuer.suggested_renewal` -> the CA's renewal time for a certificate (ACME
      Renewal Information, RFC 9773) or None when the CA offers none.
      The account key is created on first use and kept in its secret; an existing key is
      looked up with newAccount (RFC 8555 §7.3.1: the same key returns the same account).
Fails: :class:`IssueError` with the CA's own words (rate limit, CAA, "no TXT record found"),
      the deadline, or an unreachable server. The challenge records are removed in every case.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time

import josepy as jose
import requests
from acme import challenges, client, crypto_util, errors, messages
from cryptography.hazmat.primitives.asymmetric import rsa

log = logging.getLogger("postern.cert.acme")

USER_AGENT = "postern-cert (acme-python)"
NETWORK_TIMEOUT = 30  # seconds per HTTP request to the CA


class IssueError(RuntimeError):
    """The CA did not issue the certificate."""


def _problem(err: messages.Error) -> str:
    return f"{err.code or err.typ}: {err.detail or err.title or ''}".rstrip(": ")


def _failed_authorizations(exc: errors.ValidationError) -> str:
    out = []
    for authzr in exc.failed_authzrs:
        for chall in authzr.body.challenges:
            if chall.error is not None:
                out.append(f"{authzr.body.identifier.value}: {_problem(chall.error)}")
    return "; ".join(out) or "validation failed"


class AcmeIssuer:
    def __init__(self, directory_url: str, dns, load_account, save_account, *, clock=time.monotonic):
        self.directory_url = directory_url
        self.dns = dns
        self._load_account = load_account
        self._save_account = save_account
        self._clock = clock
        self._client: client.ClientV2 | None = None
        self._key: jose.JWKRSA | None = None
        self._doc: dict = {}  # the account document as read
        self._new = False  # the key was made here and is not saved yet

    # --- account ------------------------------------------------------------------
    def _account_key(self) -> tuple[jose.JWKRSA, dict, bool]:
        doc = self._load_account() or {}
        entry = doc.get("accounts", {}).get(self.directory_url)
        if entry and entry.get("key"):
            return jose.JWKRSA.json_loads(json.dumps(entry["key"])), doc, False
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return jose.JWKRSA(key=key), doc, True

    def _directory_client(self) -> client.ClientV2:
        """Directory only (no account): enough for renewal information."""
        if self._client is None:
            self._key, self._doc, self._new = self._account_key()
            net = client.ClientNetwork(self._key, user_agent=USER_AGENT, timeout=NETWORK_TIMEOUT)
            try:
                directory = client.ClientV2.get_directory(self.directory_url, net)
            except requests.RequestException as exc:
                raise IssueError(f"cannot reach the ACME server {self.directory_url} "
                                 f"({exc.__class__.__name__}: {exc})") from None
            except (errors.Error, messages.Error, ValueError) as exc:
                raise IssueError(f"{self.directory_url} is not an ACME directory ({exc})") from None
            self._client = client.ClientV2(directory, net)
        return self._client

    def _register(self) -> client.ClientV2:
        acme = self._directory_client()
        if acme.net.account is not None:
            return acme
        if acme.external_account_required():
            raise IssueError(f"{self.directory_url} requires external account binding, which Postern "
                             "does not support: use Let's Encrypt")
        try:
            regr = acme.new_account(messages.NewRegistration.from_data(terms_of_service_agreed=True))
        except errors.ConflictError as exc:  # the key already has an account: RFC 8555 §7.3.1
            regr = messages.RegistrationResource(uri=exc.location, body=messages.Registration())
            acme.net.account = regr
        except messages.Error as exc:
            raise IssueError(f"the ACME server refused the account ({_problem(exc)})") from None
        entry = {"key": json.loads(self._key.json_dumps()), "uri": regr.uri}
        if self._new or self._doc.get("accounts", {}).get(self.directory_url) != entry:
            self._doc.setdefault("accounts", {})[self.directory_url] = entry
            self._save_account(self._doc)
            log.info("ACME account %s at %s saved", regr.uri, self.directory_url)
        return acme

    # --- renewal information -------------------------------------------------------
    def suggested_renewal(self, cert_pem: bytes) -> dt.datetime | None:
        acme = self._directory_client()
        try:
            when, _ = acme.renewal_time(cert_pem)  # (None, ...) when the directory has no renewalInfo
        except errors.ARIError as exc:
            log.warning("no renewal information: %s", exc)
            return None
        if when is None:
            return None
        return when if when.tzinfo else when.replace(tzinfo=dt.timezone.utc)

    # --- issuance ------------------------------------------------------------------
    def issue(self, names: tuple[str, ...], key_pem: bytes, deadline: float) -> bytes:
        self.dns.check_zone(names)
        acme = self._register()
        csr = crypto_util.make_csr(key_pem, list(names))
        records: dict[str, list[str]] = {}
        try:
            order = acme.new_order(csr)
            pending = []
            for authzr in order.authorizations:
                if authzr.body.status == messages.STATUS_VALID:
                    continue  # an authorization the CA still holds from an earlier order
                domain = authzr.body.identifier.value
                dns01 = [c for c in authzr.body.challenges if isinstance(c.chall, challenges.DNS01)]
                if not dns01:
                    raise IssueError(f"{domain}: the CA offers no dns-01 challenge")
                chall = dns01[0]
                records.setdefault(chall.chall.validation_domain_name(domain), []).append(
                    chall.chall.validation(self._key))
                pending.append(chall)
            if records:
                self.dns.publish(records, deadline)
            for chall in pending:
                acme.answer_challenge(chall, chall.chall.response(self._key))
            left = max(1.0, deadline - self._clock())
            order = acme.poll_and_finalize(order, deadline=dt.datetime.now() + dt.timedelta(seconds=left))
            return order.fullchain_pem.encode()
        except errors.ValidationError as exc:
            raise IssueError(f"the CA could not validate the DNS-01 challenge: {_failed_authorizations(exc)}") \
                from None
        except errors.TimeoutError:
            raise IssueError("the CA did not finish validating before the deadline") from None
        except errors.IssuanceError as exc:
            raise IssueError(f"the CA did not issue the certificate ({_problem(exc.error)})") from None
        except messages.Error as exc:
            raise IssueError(f"the ACME server refused the order ({_problem(exc)})") from None
        except requests.RequestException as exc:
            raise IssueError(f"lost the ACME server {self.directory_url} ({exc.__class__.__name__})") from None
        finally:
            self.dns.remove(records)

