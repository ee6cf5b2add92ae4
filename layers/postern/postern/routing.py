"""Routing: envelope recipients + directory -> where each copy goes (qmgr + trivial-rewrite).

In:   the envelope recipients only (never To:/Cc:, CVE-2023-27043) and a
      directory view offering ``get_domain``, ``get_user``, ``get_alias``.
Out:  :class:`RouteDecision`: one :class:`LocalDelivery` per final local
      mailbox (deduplicated: two aliases reaching alice give one copy),
      remote recipients grouped by domain (forwarding aliases, authenticated
      submission), and :class:`RouteFailure` for recipients that resolve nowhere.
Fails: never raises for a bad recipient; it becomes a RouteFailure (5.1.1 no such
      user, 5.4.6 alias loop, 5.7.1 relaying denied). Backend errors from the
      directory propagate (the caller lets SQS retry).

Resolution order for a recipient in a local domain (Postfix virtual(5)):
exact alias, exact user, plus-address base (``user+tag``) as alias or user,
the role accounts ``postmaster`` and ``abuse`` (any case, any local domain,
RFC 5321 §4.5.1, RFC 2142) to the directory's ``admin_address``
(``POSTERN_ADMIN_ADDRESS``) - here, not as per-domain items, so a domain added
later has them too, and an alias or user of that name overrides them - then
then ``reports`` (any case, any local domain): DMARC aggregate and TLS-RPT reports, which
``postern dns`` asks receivers to send there (``rua=mailto:reports@<domain>``), go to the reports
function as a :class:`ReportDelivery` (no mailbox: the summaries are the product, ``postern
report`` shows them; an alias or user named ``reports`` overrides it like postmaster's) - then
the domain's catch-all, else no such user. Alias targets are resolved
recursively up to ``MAX_DEPTH``. Before all that, given an ``srs``
(:class:`postern.srs.Srs`), an SRS address in a local domain (a bounce coming
back to a message we forwarded) resolves to the address it stands for, which
may be remote, as an alias target would: its hash and age are checked
(a forged or expired one fails 5.1.1), and it may exceed the 64-octet local
part limit, as SRS addresses often do.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .address import normalize_domain, parse_address
from .errors import InvalidAddress

MAX_DEPTH = 10
# RFC 5321 §4.5.1: every domain accepts "postmaster" (case-insensitive); RFC 2142 §2, §4: "abuse".
ROLE_ACCOUNTS = frozenset({"postmaster", "abuse"})
# Where postern dns sends DMARC (RFC 7489 §7.2) and TLS-RPT (RFC 8460 §3) reports: the reports function.
REPORT_ACCOUNTS = frozenset({"reports"})


@dataclass(frozen=True)
class LocalDelivery:
    user: str  # canonical mailbox owner
    original_recipient: str  # as given in RCPT TO
    quota: int = 0
    mailbox: str = "INBOX"


@dataclass(frozen=True)
class RemoteDelivery:
    recipient: str
    original_recipient: str


@dataclass(frozen=True)
class ReportDelivery:
    domain: str  # the local domain whose reports@ it was sent to
    original_recipient: str


@dataclass(frozen=True)
class RouteFailure:
    recipient: str
    status: str  # RFC 3463
    reason: str


@dataclass
class RouteDecision:
    local: list[LocalDelivery] = field(default_factory=list)
    remote: dict[str, list[RemoteDelivery]] = field(default_factory=dict)  # by domain
    failed: list[RouteFailure] = field(default_factory=list)
    reports: list[ReportDelivery] = field(default_factory=list)  # one per domain


def route(recipients, directory, allow_remote: bool = True, srs=None) -> RouteDecision:
    """Resolve every envelope recipient. ``allow_remote`` is True for authenticated
    submission and for aliases forwarding out; a direct remote RCPT on an
    unauthenticated message is a relay attempt and fails 5.7.1. ``srs``: reverse
    SRS addresses of our domains (None: they are looked up as any other)."""
    decision = RouteDecision()
    seen_local: set[str] = set()
    seen_remote: set[str] = set()
    for rcpt in recipients:
        _resolve(rcpt, rcpt, directory, decision, seen_local, seen_remote, 0, allow_remote, set(), srs)
    return decision


def _srs_domain(addr: str, srs, directory) -> str | None:
    """The local domain of an SRS address (None: not SRS, no srs, or not one of ours)."""
    if srs is None or not srs.is_srs(addr):
        return None
    try:
        domain = normalize_domain(addr.rpartition("@")[2])
    except InvalidAddress:
        return None
    return domain if directory.get_domain(domain) is not None else None


def _resolve(addr, original, directory, decision, seen_local, seen_remote, depth, allow_remote, chain, srs=None):
    if depth > MAX_DEPTH or addr in chain:
        decision.failed.append(RouteFailure(original, "5.4.6", f"alias loop or too deep at {addr}"))
        return
    if _srs_domain(addr, srs, directory) is not None:
        from .srs import SrsError

        try:
            target = srs.reverse(addr)
        except SrsError as exc:
            decision.failed.append(RouteFailure(original, "5.1.1", f"{exc.text}: {addr}"))
            return
        # A bounce to a message we forwarded: on to the sender it stands for, as an alias target.
        _resolve(target, original, directory, decision, seen_local, seen_remote, depth + 1, True,
                 chain | {addr.lower()}, srs)
        return
    try:
        a = parse_address(addr)
    except InvalidAddress:
        decision.failed.append(RouteFailure(original, "5.1.3", f"bad address {addr!r}"))
        return
    domain = directory.get_domain(a.domain)
    if domain is None:
        if not allow_remote:
            decision.failed.append(RouteFailure(original, "5.7.1", "relaying denied"))
            return
        if a.canonical not in seen_remote:
            seen_remote.add(a.canonical)
            decision.remote.setdefault(a.domain, []).append(RemoteDelivery(str(a), original))
        return
    chain = chain | {a.canonical}
    candidates = [a]
    base = a.without_tag()
    if base is not None:
        candidates.append(base)
    for cand in candidates:
        alias = directory.get_alias(cand)
        if alias is not None:
            for target in alias.targets:
                # Targets outside are forwarding: always allowed, the alias owner chose them.
                _resolve(target, original, directory, decision, seen_local, seen_remote, depth + 1, True, chain, srs)
            return
        user = directory.get_user(cand)
        if user is not None:
            if user.address not in seen_local:
                seen_local.add(user.address)
                decision.local.append(LocalDelivery(user.address, original, user.quota))
            return
    if any(c.local.lower() in REPORT_ACCOUNTS for c in candidates):
        if all(r.domain != a.domain for r in decision.reports):
            decision.reports.append(ReportDelivery(a.domain, original))
        return
    admin = getattr(directory, "admin_address", "")
    if admin and any(c.local.lower() in ROLE_ACCOUNTS for c in candidates):
        # The operator chose the admin address: it may be remote, as an alias's target may.
        _resolve(admin, original, directory, decision, seen_local, seen_remote, depth + 1, True, chain)
        return
    if domain.catchall and depth == 0:
        _resolve(domain.catchall, original, directory, decision, seen_local, seen_remote, depth + 1, True, chain,
                 srs)
        return
    decision.failed.append(RouteFailure(original, "5.1.1", f"no such user {a.canonical}"))


def accepts(rcpt: str, directory, srs=None) -> bool:
    """RCPT-time check for the MX role: would this recipient resolve to something?"""
    d = route([rcpt], directory, allow_remote=False, srs=srs)
    return not d.failed
