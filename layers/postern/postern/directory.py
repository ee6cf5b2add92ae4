"""The directory: local domains, users, aliases, catch-alls.

In:   admin operations (the ``postern`` CLI) and look-ups from the gateway
      (RCPT checks, AUTH), the router (resolution) and the store (quota).
Out:  :class:`Directory` over an item layer (:mod:`postern.items`), so the
      same code runs on DynamoDB and in memory. Look-ups are GetItem by key;
      listings are Query on one partition (never Scan).
Fails: :class:`~postern.errors.NoSuchDomain`, :class:`~postern.errors.NoSuchUser`,
      :class:`~postern.errors.AlreadyExists`, :class:`~postern.errors.InvalidAddress`
      for admin mistakes; :class:`~postern.errors.StoreUnavailable` for backend faults.

Addresses are keyed by their canonical form (domain and local part lower-case).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

from . import keys
from .address import Address, normalize_domain, parse_address
from .errors import AlreadyExists, InvalidAddress, NoSuchDomain, NoSuchUser


def _passwords():
    """postern.passwords, imported on first use: argon2 is native code that only the gateway and
    the CLI run (they hash and check passwords); the Lambda functions read the directory and
    their layer does not ship it."""
    from . import passwords

    return passwords


@dataclass(frozen=True)
class Domain:
    name: str
    catchall: str | None = None  # canonical target address for unknown local parts
    created: float = 0.0
    spam_junk: float | None = None  # default move-to-Junk score of its users (None: postern.spam's default)
    spam_reject: float | None = None  # default reject score of its users


@dataclass(frozen=True)
class User:
    address: str  # canonical
    password_hash: str = field(repr=False, default="")
    quota: int = 0  # bytes; 0 = default quota
    created: float = 0.0
    spam_junk: float | None = None  # move-to-Junk score (None: the domain's)
    spam_reject: float | None = None  # reject score (None: the domain's)
    admin: bool = False  # may read every domain's reports over HTTPS (`postern user admin`)
    # Changes with every password change (never with a rehash of the same password): bearer tokens
    # (postern.tokens) carry the generation they were issued under, so a new password revokes them.
    generation: str = field(repr=False, default="")


@dataclass(frozen=True)
class Alias:
    address: str  # canonical
    targets: tuple[str, ...] = ()  # canonical local or remote addresses


def _score(value) -> float | None:
    return None if value is None else float(value)


def account_name(login: str) -> str | None:
    """The account a login name refers to, normalised as the directory keys it, or None when
    it names no address (nobody can log in as it). ``<Carol@EXAMPLE.test>``, ``carol@ｅxample．test``
    (fullwidth letters and dots, NFKC by IDNA) and ``carol@xn--...`` spellings all give one name:
    lockout, throttling, sessions and logs key on this, never on what the client typed."""
    try:
        return parse_address(login).canonical
    except InvalidAddress:
        return None


_LOG_KEY = secrets.token_bytes(16)  # per process: hashes in logs correlate attempts, reveal nothing


def log_name(login: str) -> str:
    """How a login name appears in the logs: its canonical account, or ``#`` and a keyed hash
    when it is no address (typically a password typed into the user-name field)."""
    account = account_name(login[:320])
    if account is not None:
        return account
    return "#" + hmac.new(_LOG_KEY, login.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()[:12]


def _new_generation() -> str:
    return secrets.token_hex(8)


class Directory:
    def __init__(self, items, default_quota: int = 0, admin_address: str = ""):
        self.items = items
        self.default_quota = default_quota
        # Where postmaster@ and abuse@ of every local domain go unless an alias or user of that
        # name exists (routing.ROLE_ACCOUNTS; POSTERN_ADMIN_ADDRESS); "" = nowhere.
        self.admin_address = admin_address.strip()

    # --- domains ----------------------------------------------------------
    def add_domain(self, domain: str) -> Domain:
        name = normalize_domain(domain)
        item = {**keys.domain_key(name), "kind": "domain", "name": name, "created": time.time()}
        self.items.put(item, if_absent=True)
        return Domain(name, None, item["created"])

    def get_domain(self, domain: str) -> Domain | None:
        try:
            name = normalize_domain(domain)
        except InvalidAddress:
            return None
        item = self.items.get(keys.domain_key(name))
        if not item:
            return None
        return self._domain(item)

    @staticmethod
    def _domain(item: dict) -> Domain:
        return Domain(item["name"], item.get("catchall"), item.get("created", 0.0),
                      _score(item.get("spam_junk")), _score(item.get("spam_reject")))

    def is_local_domain(self, domain: str) -> bool:
        return self.get_domain(domain) is not None

    def list_domains(self) -> list[Domain]:
        return [self._domain(i) for i in self.items.query(keys.domains_pk())]

    def remove_domain(self, domain: str, force: bool = False) -> None:
        name = normalize_domain(domain)
        if not self.is_local_domain(name):
            raise NoSuchDomain(f"No such domain {name}")
        members = list(self.items.query(keys.domain_members_pk(name)))
        if members and not force:
            raise AlreadyExists(f"Domain {name} still has {len(members)} users/aliases (use --force)")
        for m in members:
            self.items.delete({"pk": m["pk"], "sk": m["sk"]})
        self.items.delete(keys.domain_key(name))

    def set_catchall(self, domain: str, target: str | None) -> None:
        d = self._require_domain(normalize_domain(domain))
        item = self.items.get(keys.domain_key(d.name))
        item.pop("catchall", None)
        if target:
            item["catchall"] = parse_address(target).canonical
        self.items.put(item)

    def _require_domain(self, domain: str) -> Domain:
        d = self.get_domain(domain)
        if d is None:
            raise NoSuchDomain(f"No such domain {domain}; add it first with 'postern domain add {domain}'")
        return d

    # --- users ------------------------------------------------------------
    def add_user(self, address: str, password: str, quota: int = 0) -> User:
        a = parse_address(address)
        self._require_domain(a.domain)
        if self.items.get(keys.alias_key(a.local, a.domain)):
            raise AlreadyExists(f"{a.canonical} is an alias")
        item = {
            **keys.user_key(a.local, a.domain),
            "kind": "user",
            "address": a.canonical,
            "password": _passwords().hash_password(password),
            "generation": _new_generation(),
            "quota": int(quota),
            "created": time.time(),
        }
        try:
            self.items.put(item, if_absent=True)
        except AlreadyExists:
            raise AlreadyExists(f"User {a.canonical} already exists") from None
        return self._user(item)

    @staticmethod
    def _user(item: dict) -> User:
        return User(item["address"], item.get("password", ""), int(item.get("quota", 0)), item.get("created", 0.0),
                    _score(item.get("spam_junk")), _score(item.get("spam_reject")),
                    bool(item.get("admin", False)), str(item.get("generation", "")))

    def get_user(self, address: str | Address) -> User | None:
        try:
            a = address if isinstance(address, Address) else parse_address(address)
        except InvalidAddress:
            return None
        item = self.items.get(keys.user_key(a.local, a.domain))
        return self._user(item) if item else None

    def require_user(self, address: str) -> User:
        u = self.get_user(address)
        if u is None:
            raise NoSuchUser(f"No such user {address}")
        return u

    def set_password(self, address: str, password: str) -> None:
        """A new password: a new credential generation too, which revokes every bearer token."""
        self._store_hash(address, _passwords().hash_password(password), new_generation=True)

    def _store_hash(self, address: str, encoded: str, new_generation: bool) -> None:
        u = self.require_user(address)
        a = parse_address(u.address)
        item = self.items.get(keys.user_key(a.local, a.domain))
        item["password"] = encoded
        if new_generation or not item.get("generation"):
            item["generation"] = _new_generation()
        self.items.put(item)

    def set_admin(self, address: str, admin: bool) -> None:
        """Give (or take back) the admin role: reading every domain's DMARC/TLS reports over HTTPS."""
        u = self.require_user(address)
        a = parse_address(u.address)
        item = self.items.get(keys.user_key(a.local, a.domain))
        if admin:
            item["admin"] = True
        else:
            item.pop("admin", None)
        self.items.put(item)

    def set_quota(self, address: str, quota: int) -> None:
        u = self.require_user(address)
        a = parse_address(u.address)
        item = self.items.get(keys.user_key(a.local, a.domain))
        item["quota"] = int(quota)
        self.items.put(item)

    def quota_of(self, user: User) -> int:
        return user.quota or self.default_quota

    # --- spam thresholds (postern.spam) ---------------------------------------------------------
    def set_spam_thresholds(self, target: str, junk: float | None = None, reject: float | None = None,
                            *, clear: bool = False) -> None:
        """The move-to-Junk and reject scores of a user (``alice@example.org``) or the default of a
        domain (``example.org``); ``clear`` removes them (back to the domain's / the defaults)."""
        if "@" in target:
            a = parse_address(self.require_user(target).address)
            key = keys.user_key(a.local, a.domain)
        else:
            key = keys.domain_key(self._require_domain(normalize_domain(target)).name)
        item = self.items.get(key)
        for name, value in (("spam_junk", junk), ("spam_reject", reject)):
            if clear:
                item.pop(name, None)
            elif value is not None:
                item[name] = float(value)
        self.items.put(item)

    def spam_thresholds(self, address: str):
        """:class:`postern.spam.Thresholds` for mail to ``address``: the user's own scores, else its
        domain's defaults, else postern.spam's (``user+tag``: the user's; an alias or unknown address:
        the domain's; the MX session resolves aliases first, :func:`postern_gateway.spam.check`)."""
        from .spam import Thresholds

        base = Thresholds()
        try:
            a = parse_address(address)
        except InvalidAddress:
            return base
        d = self.get_domain(a.domain)
        junk = d.spam_junk if d and d.spam_junk is not None else base.junk
        reject = d.spam_reject if d and d.spam_reject is not None else base.reject
        base_address = a.without_tag()
        u = self.get_user(a) or (self.get_user(base_address) if base_address is not None else None)
        if u is not None:
            junk = u.spam_junk if u.spam_junk is not None else junk
            reject = u.spam_reject if u.spam_reject is not None else reject
        return Thresholds(junk, reject)

    def remove_user(self, address: str) -> None:
        a = parse_address(address)
        if not self.items.delete(keys.user_key(a.local, a.domain)):
            raise NoSuchUser(f"No such user {a.canonical}")

    def list_users(self, domain: str | None = None) -> list[User]:
        domains = [normalize_domain(domain)] if domain else [d.name for d in self.list_domains()]
        out: list[User] = []
        for d in domains:
            out.extend(self._user(i) for i in self.items.query(keys.domain_members_pk(d), keys.USER_PREFIX))
        return out

    def authenticate(self, address: str, password: str) -> User | None:
        """The user if the password matches, else None (timing-safe for unknown users)."""
        u = self.get_user(address)
        passwords = _passwords()
        if not passwords.verify_password(u.password_hash if u else None, password):
            return None
        if u and passwords.needs_rehash(u.password_hash):
            # The same password under new parameters: tokens stay valid (no new generation).
            self._store_hash(u.address, passwords.hash_password(password), new_generation=False)
        return u

    # --- aliases ----------------------------------------------------------
    def add_alias(self, address: str, targets: list[str] | tuple[str, ...]) -> Alias:
        a = parse_address(address)
        self._require_domain(a.domain)
        if not targets:
            raise InvalidAddress("An alias needs at least one target")
        canon = tuple(parse_address(t).canonical for t in targets)
        if self.items.get(keys.user_key(a.local, a.domain)):
            raise AlreadyExists(f"{a.canonical} is a user")
        item = {**keys.alias_key(a.local, a.domain), "kind": "alias", "address": a.canonical, "targets": list(canon)}
        try:
            self.items.put(item, if_absent=True)
        except AlreadyExists:
            raise AlreadyExists(f"Alias {a.canonical} already exists (remove it first)") from None
        return Alias(a.canonical, canon)

    def get_alias(self, address: str | Address) -> Alias | None:
        try:
            a = address if isinstance(address, Address) else parse_address(address)
        except InvalidAddress:
            return None
        item = self.items.get(keys.alias_key(a.local, a.domain))
        return Alias(item["address"], tuple(item.get("targets", ()))) if item else None

    def remove_alias(self, address: str) -> None:
        a = parse_address(address)
        if not self.items.delete(keys.alias_key(a.local, a.domain)):
            raise NoSuchUser(f"No such alias {a.canonical}")

    def list_aliases(self, domain: str | None = None) -> list[Alias]:
        domains = [normalize_domain(domain)] if domain else [d.name for d in self.list_domains()]
        out: list[Alias] = []
        for d in domains:
            out.extend(
                Alias(i["address"], tuple(i.get("targets", ())))
                for i in self.items.query(keys.domain_members_pk(d), keys.ALIAS_PREFIX)
            )
        return out

    def addresses_of(self, user: str) -> set[str]:
        """Every address that delivers to ``user`` within its domain: the user and
        aliases naming it (the senders an authenticated user may use)."""
        u = parse_address(user)
        own = {u.canonical}
        for alias in self.list_aliases(u.domain):
            if u.canonical in alias.targets:
                own.add(alias.address)
        return own

    @staticmethod
    def owns(owned: set[str], address: str) -> bool:
        """The submission sender rule, written once (SMTP submission and JMAP EmailSubmission): ``address``,
        or its untagged form (``user+tag@``), is one of ``owned`` (:meth:`addresses_of`)."""
        try:
            a = parse_address(address)
        except InvalidAddress:
            return False
        base = a.without_tag()
        return a.canonical in owned or (base is not None and base.canonical in owned)

    # --- batched look-ups (router) ----------------------------------------
    def prefetched(self, addresses, levels: int = 3, shared: ItemCache | None = None,
                   fresh: bool = False) -> Directory:
        """A read view that has fetched, in one BatchGetItem, every item that
        resolving ``addresses`` needs first: the domain, the alias and the user
        of each address, and of its plus-address base. Aliases and catch-alls
        found in a round have their targets fetched the same way in the next
        round (at most ``levels`` rounds); anything deeper falls back to GetItem
        and is cached. Same methods and answers as this directory; writes go
        straight through. ``shared``: an :class:`ItemCache` kept between views
        (a warm router's), answered from while fresh and filled with what is
        read; ``fresh``: read everything again, still filling ``shared``."""
        view = PrefetchedItems(self.items, shared=shared, fresh=fresh)
        pending = list(addresses)
        seen: set[str] = set()
        for _ in range(levels):
            wanted: list[dict] = []
            batch: list[tuple[Address, list[dict]]] = []
            for raw in pending:
                try:
                    a = parse_address(raw)
                except InvalidAddress:
                    continue
                if a.canonical in seen:
                    continue
                seen.add(a.canonical)
                mine = [keys.domain_key(a.domain)]
                for cand in (a, a.without_tag()):
                    if cand is not None:
                        mine += [keys.alias_key(cand.local, cand.domain), keys.user_key(cand.local, cand.domain)]
                wanted += mine
                batch.append((a, mine))
            if not wanted:
                break
            view.prefetch(wanted)
            pending = []
            for a, mine in batch:
                domain, *names = (view.cached(k) for k in mine)
                hits = [i for i in names if i is not None]
                for item in hits:
                    if item.get("kind") == "alias":
                        pending.extend(item.get("targets", ()))
                if not hits and domain is not None and domain.get("catchall"):
                    pending.append(domain["catchall"])  # routing.py: catch-all only when nothing matched
        return Directory(view, default_quota=self.default_quota, admin_address=self.admin_address)


class ItemCache:
    """Directory items (and their absence) remembered between envelopes for ``ttl`` seconds.

    A warm router keeps one (``functions/router``): a busy domain's domain, user
    and alias items are then read about once per TTL instead of once per message
    (one BatchGetItem and its read units less per message). What may be stale, for
    at most the TTL: a user or alias removed or changed a moment ago (the gateway's
    RCPT cache accepts for as long, RCPT_CACHE_TTL), a quota or spam threshold.
    What must never be stale is a refusal: the router routes a message that would
    bounce again from fresh reads (:func:`postern.pipeline.router.plan`), so a user
    added a moment ago is never bounced from a cached absence. Bounded: cleared
    when it reaches ``size`` entries. The gateway's RCPT cache is one too, keyed by
    the recipient and holding only LOCAL answers (postern_gateway.smtp.handler)."""

    def __init__(self, ttl: float = 30.0, size: int = 10_000, clock=time.monotonic):
        self.ttl = ttl
        self.size = size
        self.clock = clock
        self._items: dict[Hashable, tuple[float, Any]] = {}

    def lookup(self, key: Hashable) -> tuple[bool, Any]:
        """(known and fresh, the item or None for a known absence)."""
        hit = self._items.get(key)
        if hit is None or hit[0] <= self.clock():
            return False, None
        return True, hit[1]

    def store(self, key: Hashable, item: Any) -> None:
        if len(self._items) >= self.size:
            self._items.clear()
        self._items[key] = (self.clock() + self.ttl, item)

    def forget(self, key: Hashable) -> None:
        self._items.pop(key, None)


class PrefetchedItems:
    """Item layer wrapper: answers ``get`` from a batch-fetched cache (absent
    items are cached as absent), delegates everything else. Short-lived: one
    per routed envelope, so it never serves stale data for long; with a
    ``shared`` :class:`ItemCache` it also answers from that while fresh
    (``fresh``: not, but fills it)."""

    def __init__(self, items, shared: ItemCache | None = None, fresh: bool = False):
        self._items = items
        self._cache: dict[tuple[str, str], dict | None] = {}
        self._shared = shared
        self._fresh = fresh

    def _from_shared(self, t: tuple[str, str]) -> bool:
        if self._shared is None or self._fresh:
            return False
        known, item = self._shared.lookup(t)
        if known:
            self._cache[t] = item
        return known

    def _remember(self, t: tuple[str, str], item: dict | None) -> None:
        self._cache[t] = item
        if self._shared is not None:
            self._shared.store(t, item)

    def prefetch(self, wanted: list[dict]) -> list[dict]:
        """Fetch the keys not cached yet in one batch; returns the items that fetch found."""
        missing = list({(k["pk"], k["sk"]): k for k in wanted
                        if (k["pk"], k["sk"]) not in self._cache and not self._from_shared((k["pk"], k["sk"]))}.values())
        if not missing:
            return []
        found = self._items.batch_get(missing)
        for k in missing:
            self._remember((k["pk"], k["sk"]), found.get((k["pk"], k["sk"])))
        return list(found.values())

    def cached(self, key: dict) -> dict | None:
        """What the cache holds for ``key`` (None when absent or not fetched); no request."""
        return self._cache.get((key["pk"], key["sk"]))

    def get(self, key: dict, consistent: bool = True) -> dict | None:
        t = (key["pk"], key["sk"])
        if t not in self._cache and not self._from_shared(t):
            self._remember(t, self._items.get(key, consistent))
        item = self._cache[t]
        return dict(item) if item is not None else None

    def batch_get(self, wanted: list[dict], consistent: bool = True) -> dict[tuple[str, str], dict]:
        self.prefetch(wanted)
        return {t: dict(v) for t in ((k["pk"], k["sk"]) for k in wanted) if (v := self._cache.get(t)) is not None}

    def _forget(self, t: tuple[str, str]) -> None:
        self._cache.pop(t, None)
        if self._shared is not None:
            self._shared.forget(t)

    def put(self, item: dict, if_absent: bool = False) -> None:
        self._forget((item["pk"], item["sk"]))
        self._items.put(item, if_absent=if_absent)

    def delete(self, key: dict) -> bool:
        self._forget((key["pk"], key["sk"]))
        return self._items.delete(key)

    def query(self, pk: str, sk_prefix: str = ""):
        return self._items.query(pk, sk_prefix)


def dynamo_directory(settings=None, clients=None) -> Directory:
    """The directory on the DynamoDB table named by settings."""
    from .aws import get_clients
    from .config import get_settings
    from .items import DynamoItems

    s = settings or get_settings()
    c = clients or get_clients()
    return Directory(DynamoItems(lambda: c.dynamodb, s.directory_table), default_quota=s.default_quota,
                     admin_address=s.admin_address)


def memory_directory(default_quota: int = 0, admin_address: str = "") -> Directory:
    from .items import MemoryItems

    return Directory(MemoryItems(), default_quota=default_quota, admin_address=admin_address)
