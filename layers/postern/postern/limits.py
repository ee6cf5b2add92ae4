"""Abuse limits shared by every gateway task: connections, failed logins, sessions, sending rate.

In:   Settings (every limit is a ``POSTERN_*`` setting with a safe default), a counter
      store (:class:`DynamoCounters` on the state table, or :class:`MemoryCounters`, its
      in-memory twin for tests and single-process runs), the client IP and the account. The
      account is always the directory's canonical address
      (:func:`postern.directory.account_name`): ``<Carol@EXAMPLE.test>`` and the IDNA/NFKC
      spellings of its domain are one account with one counter.
Out:  :class:`Limits`:
        ``connect(ip)`` -> a :class:`Ticket` or None (over ``max_conn_per_ip``); ``Ticket.release()``.
        ``open_session(account)`` -> a Ticket or None (over ``max_sessions_per_user`` logged-in
            sessions of one account: IMAP, POP3, submission together); ``idle(account)`` the
            same for IMAP IDLE (``max_idle_per_user``).
            Concurrency is counted **per gateway process** (an in-memory counter, no I/O): a
            DynamoDB counter of open connections would leak on every crashed task. Behind the
            NLB each task enforces the cap for the connections it holds.
        ``auth_allowed(ip, account)`` -> :class:`Refusal` or None: a temporary lockout once an IP
            or an account has ``auth_fail_*_limit`` failures in the current window
            (``auth_fail_window`` seconds); the lockout ends with the window. The account lockout
            does not apply to a *known client*: an address (``client_key``) that logged this
            account in successfully within :data:`KNOWN_CLIENT_TTL` (30 days), so an attacker
            who locks an account out does not lock its owner out.
        ``auth_failed(ip, account)`` -> seconds the caller sleeps before answering: a delay growing
            with the failures counted for that IP/account (``login_fail_delay`` x 2^(n-1),
            capped at ``auth_fail_max_delay``), shared across tasks. A known client's failures
            count for its IP only, never towards the account's lockout.
        ``auth_succeeded(ip, account)``: remembers the known client (one UpdateItem, at most
            once per :data:`KNOWN_CLIENT_REFRESH` per account and address in this process).
        ``allowed_age(ip, account)`` / ``known_client_fresh(ip, account)``: no I/O; how long ago
            ``auth_allowed`` said yes (None: never, or a failure was counted here since) / whether
            ``auth_succeeded`` would write nothing: a cached login skips both while the first is
            under :data:`ALLOWED_MEMO` seconds.
        ``send_allowed(user, recipients)`` -> :class:`Refusal` or None: per-user recipients per
            ``send_rate_window`` on submission (``send_rate_limit``).
      The shared counters are fixed windows: one item per (limit, key, window), key
      ``keys.limit_key``, incremented with UpdateItem ``ADD n :k`` and given ``expires``
      (the table's TTL) a window past its end, so nothing needs cleaning up. A known client is
      one item too (limit ``authknown``, key ``account|client_key``), its ``expires`` pushed
      30 days ahead by each success; it is read in the same BatchGetItem as the counters.
Fails: a state-table fault never locks anyone out and never lets a session crash: counters
      that cannot be read or written count as zero, and the fault is logged (fail open —
      availability of mail over strictness of a rate limit). Blocking: gateway code calls the
      shared-counter methods through ``backend.run``.

Every refusal is logged with the client IP (and the account, never a password).
"""

from __future__ import annotations

import ipaddress
import logging
import threading
import time
from dataclasses import dataclass

from . import keys

log = logging.getLogger("postern.limits")


@dataclass(frozen=True)
class Refusal:
    """Why a limit refused; protocol code picks its reply (454/535/-ERR/NO) and may show ``text``."""

    limit: str  # conn | auth_ip | auth_user | send
    text: str
    retry_after: float = 0.0  # seconds until the window ends


def client_key(ip: str) -> str:
    """The unit a per-IP limit counts: the address for IPv4, its /64 for IPv6 (one end site's
    allocation, so an attacker cannot rotate through a subnet to dodge the limits)."""
    try:
        a = ipaddress.ip_address(ip)
    except ValueError:
        return ip or "-"
    if a.version == 6:
        if a.ipv4_mapped is not None:
            return str(a.ipv4_mapped)
        return str(ipaddress.ip_network(f"{a}/64", strict=False))
    return str(a)


# --- counter stores ---------------------------------------------------------------
class MemoryCounters:
    """Fixed-window counters in a dict (same semantics as DynamoCounters, expiry included)."""

    def __init__(self, clock=time.time):
        self._d: dict[tuple[str, str], tuple[int, float]] = {}
        self._lock = threading.Lock()
        self._clock = clock

    def add(self, key: dict, n: int, expires: float) -> int:
        k = (key["pk"], key["sk"])
        with self._lock:
            now = self._clock()
            cur, exp = self._d.get(k, (0, 0.0))
            if exp and exp <= now:
                cur = 0
            cur += n
            self._d[k] = (cur, expires)
            return cur

    def get(self, key: dict) -> int:
        k = (key["pk"], key["sk"])
        with self._lock:
            cur, exp = self._d.get(k, (0, 0.0))
            return 0 if exp and exp <= self._clock() else cur

    def get_many(self, key_list: list[dict]) -> list[int]:
        return [self.get(k) for k in key_list]


class DynamoCounters:
    """The state table: UpdateItem ADD for increments, BatchGetItem for reads."""

    def __init__(self, clients, table: str, clock=time.time):
        self.clients = clients
        self.table = table
        self._clock = clock

    def add(self, key: dict, n: int, expires: float) -> int:
        r = self.clients.dynamodb.update_item(
            TableName=self.table,
            Key={"pk": {"S": key["pk"]}, "sk": {"S": key["sk"]}},
            UpdateExpression="ADD n :n SET expires = :e",
            ExpressionAttributeValues={":n": {"N": str(n)}, ":e": {"N": str(int(expires))}},
            ReturnValues="UPDATED_NEW",
        )
        return int(r["Attributes"]["n"]["N"])

    def get(self, key: dict) -> int:
        return self.get_many([key])[0]

    def get_many(self, key_list: list[dict]) -> list[int]:
        req = [{"pk": {"S": k["pk"]}, "sk": {"S": k["sk"]}} for k in key_list]
        r = self.clients.dynamodb.batch_get_item(
            RequestItems={self.table: {"Keys": req, "ConsistentRead": True,
                                       "ProjectionExpression": "pk, sk, n, expires"}})
        found = {}
        now = self._clock()
        for item in r.get("Responses", {}).get(self.table, []):
            exp = float(item.get("expires", {}).get("N", "0"))
            if exp and exp <= now:  # TTL deletion lags; an expired item counts as absent
                continue
            found[(item["pk"]["S"], item["sk"]["S"])] = int(item.get("n", {}).get("N", "0"))
        return [found.get((k["pk"], k["sk"]), 0) for k in key_list]


# --- the limits ------------------------------------------------------------------------
KNOWN_CLIENT_TTL = 30 * 86400  # seconds a successful login makes its address a known client
KNOWN_CLIENT_REFRESH = 3600  # a process rewrites a known client at most this often
# Seconds a "not locked out" answer is reused for a recently verified password (the gateway renews
# it in the background past half that age): a lockout reached through other gateway tasks applies to
# such a login within this time; a failure counted in this process ends every reuse at once.
ALLOWED_MEMO = 60.0


class Gauge:
    """Concurrent holders per key in this process, each behind a capped :class:`Ticket`."""

    def __init__(self, name: str):
        self.name = name
        self._held: dict[str, int] = {}
        self._lock = threading.Lock()

    def acquire(self, key: str, cap: int) -> Ticket | None:
        with self._lock:
            n = self._held.get(key, 0)
            if cap > 0 and n >= cap:
                return None
            self._held[key] = n + 1
        return Ticket(self, key)

    def release(self, key: str) -> None:
        with self._lock:
            n = self._held.get(key, 0) - 1
            if n > 0:
                self._held[key] = n
            else:
                self._held.pop(key, None)

    def count(self, key: str) -> int:
        with self._lock:
            return self._held.get(key, 0)


class Ticket:
    def __init__(self, gauge: Gauge, key: str):
        self._gauge = gauge
        self.key = key
        self._released = False

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._gauge.release(self.key)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()


class _Unlimited:
    """The ticket when no limits are configured (tests, tools): nothing to release."""

    def release(self) -> None:
        pass


UNLIMITED = _Unlimited()


class Limits:
    def __init__(self, settings, counters, clock=time.time):
        self.settings = settings
        self.counters = counters
        self._clock = clock
        self._conns = Gauge("conn")
        self._sessions = Gauge("sessions")
        self._idle = Gauge("idle")
        self._known_written: dict[tuple[str, str], float] = {}
        self._known_lock = threading.Lock()
        self._allowed: dict[tuple[str, str], float] = {}  # (client key, account) -> when auth_allowed said yes

    # --- concurrency (per process) --------------------------------------------------
    def connect(self, ip: str, protocol: str = "") -> Ticket | None:
        cap = self.settings.max_conn_per_ip
        key = client_key(ip)
        ticket = self._conns.acquire(key, cap)
        if ticket is None:
            log.warning("limit refused limit=conn protocol=%s ip=%s open=%d max=%d", protocol, key,
                        self._conns.count(key), cap)
        return ticket

    def open_connections(self, ip: str) -> int:
        return self._conns.count(client_key(ip))

    def open_session(self, account: str, ip: str = "", protocol: str = "") -> Ticket | None:
        """A logged-in session of ``account`` (canonical address), or None over ``max_sessions_per_user``."""
        cap = self.settings.max_sessions_per_user
        ticket = self._sessions.acquire(account, cap)
        if ticket is None:
            log.warning("limit refused limit=sessions protocol=%s ip=%s user=%s max=%d", protocol, ip, account, cap)
        return ticket

    def idle(self, account: str, ip: str = "") -> Ticket | None:
        """An IMAP IDLE of ``account``, or None over ``max_idle_per_user``."""
        cap = self.settings.max_idle_per_user
        ticket = self._idle.acquire(account, cap)
        if ticket is None:
            log.warning("limit refused limit=idle ip=%s user=%s max=%d", ip, account, cap)
        return ticket

    # --- windows ---------------------------------------------------------------------------
    def _window(self, seconds: int) -> tuple[int, float]:
        seconds = max(1, int(seconds))
        w = int(self._clock() // seconds)
        return w, (w + 1) * seconds  # window number, end of window

    def _safe(self, fn, *args, default):
        try:
            return fn(*args)
        except Exception as exc:  # fail open, loudly (see module docstring)
            log.error("limits backend error %s: counting as zero", exc.__class__.__name__)
            return default

    # --- authentication failures -----------------------------------------------------
    def _auth_keys(self, ip: str, account: str | None):
        """[ip counter, account counter, known client] keys (the last two only with an account)."""
        w, end = self._window(self.settings.auth_fail_window)
        k = [keys.limit_key("authip", client_key(ip), w)]
        if account:
            k.append(keys.limit_key("authuser", account[:256], w))
            k.append(self._known_key(ip, account))
        return k, end

    @staticmethod
    def _known_key(ip: str, account: str) -> dict:
        return keys.limit_key("authknown", f"{account[:256]}|{client_key(ip)}", 0)

    def allowed_age(self, ip: str, account: str) -> float | None:
        """Seconds since ``auth_allowed`` last said yes for this address and account, None when it
        has not, or a failure was counted in this process since (no I/O). The gateway skips the
        counter read for a login whose credentials it verified recently (a cached login) while
        this is under :data:`ALLOWED_MEMO`: a lockout reached through other tasks then applies
        here within ALLOWED_MEMO seconds, and a password that fails here always reads the counters."""
        when = self._allowed.get((client_key(ip), account))
        if when is None:
            return None
        age = self._clock() - when
        return age if age >= 0 else None

    def auth_allowed(self, ip: str, account: str | None = None, protocol: str = "") -> Refusal | None:
        refusal = self._auth_allowed(ip, account, protocol)
        if refusal is None and account:
            if len(self._allowed) >= 100_000:
                self._allowed.clear()
            self._allowed[(client_key(ip), account)] = self._clock()
        return refusal

    def _auth_allowed(self, ip: str, account: str | None, protocol: str) -> Refusal | None:
        ks, end = self._auth_keys(ip, account)
        counts = self._safe(self.counters.get_many, ks, default=[0] * len(ks))
        retry = max(0.0, end - self._clock())
        s = self.settings
        if s.auth_fail_ip_limit > 0 and counts[0] >= s.auth_fail_ip_limit:
            log.warning("limit refused limit=auth_ip protocol=%s ip=%s failures=%d", protocol, ip, counts[0])
            return Refusal("auth_ip", "Too many failed logins from your address, try again later", retry)
        if account and s.auth_fail_user_limit > 0 and counts[1] >= s.auth_fail_user_limit:
            if counts[2] > 0:
                return None  # a known client of this account: the account lockout is not for it
            log.warning("limit refused limit=auth_user protocol=%s ip=%s user=%s failures=%d", protocol, ip,
                        account, counts[1])
            return Refusal("auth_user", "Account temporarily locked after failed logins, try again later", retry)
        return None

    def auth_failed(self, ip: str, account: str | None = None) -> float:
        """Count one failure for the IP and (unless ``ip`` is a known client) the account;
        return the delay before answering."""
        self._allowed.clear()  # any failure: every login here reads the counters again for a while
        ks, end = self._auth_keys(ip, account)
        if account and self._safe(self.counters.get_many, ks[2:], default=[0])[0] > 0:
            ks = ks[:1]  # a known client's typo does not count towards the account lockout
        expires = end + self.settings.auth_fail_window
        n = 1
        for k in ks[:2]:
            n = max(n, self._safe(self.counters.add, k, 1, expires, default=1))
        base = self.settings.login_fail_delay
        if base <= 0:
            return 0.0
        return min(self.settings.auth_fail_max_delay, base * (2 ** min(n - 1, 16)))

    def known_client_fresh(self, ip: str, account: str) -> bool:
        """``auth_succeeded`` would write nothing now (no I/O): the caller may skip it."""
        last = self._known_written.get((account, client_key(ip)))
        return last is not None and self._clock() - last < KNOWN_CLIENT_REFRESH

    def auth_succeeded(self, ip: str, account: str) -> None:
        """Remember ``ip`` as a known client of ``account`` for KNOWN_CLIENT_TTL."""
        now = self._clock()
        memo = (account, client_key(ip))
        with self._known_lock:
            last = self._known_written.get(memo)
            if last is not None and now - last < KNOWN_CLIENT_REFRESH:
                return
            self._known_written[memo] = now
            if len(self._known_written) > 100_000:
                self._known_written.clear()
        self._safe(self.counters.add, self._known_key(ip, account), 1, now + KNOWN_CLIENT_TTL, default=0)

    # --- submission rate ---------------------------------------------------------------
    def send_allowed(self, user: str, recipients: int = 1, ip: str = "") -> Refusal | None:
        """Count ``recipients`` against the user's window; refuse once over the limit."""
        s = self.settings
        if s.send_rate_limit <= 0:
            return None
        w, end = self._window(s.send_rate_window)
        k = keys.limit_key("send", user, w)
        n = self._safe(self.counters.add, k, max(1, recipients), end + s.send_rate_window, default=0)
        if n > s.send_rate_limit:
            log.warning("limit refused limit=send ip=%s user=%s count=%d max=%d", ip, user, n, s.send_rate_limit)
            return Refusal("send", "Sending rate limit exceeded, try again later", max(0.0, end - self._clock()))
        return None


def limits_for(settings, clients=None) -> Limits:
    """DynamoDB-backed limits when AWS clients are at hand (``POSTERN_LIMITS_BACKEND=dynamo``), else memory."""
    if settings.limits_backend == "dynamo" and clients is not None:
        return Limits(settings, DynamoCounters(clients, settings.state_table))
    return Limits(settings, MemoryCounters())
