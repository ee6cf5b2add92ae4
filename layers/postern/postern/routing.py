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
the domain's catch-all, else no such user. Alias targets are resolved
recursively up to ``MAX_DEPTH``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .address import parse_address
from .errors import InvalidAddress

MAX_DEPTH = 10


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
class RouteFailure:
    recipient: str
    status: str  # RFC 3463
    reason: str


@dataclass
class RouteDecision:
    local: list[LocalDelivery] = field(default_factory=list)
    remote: dict[str, list[RemoteDelivery]] = field(default_factory=dict)  # by domain
    failed: list[RouteFailure] = field(default_factory=list)


def route(recipients, directory, allow_remote: bool = True) -> RouteDecision:
    """Resolve every envelope recipient. ``allow_remote`` is True for authenticated
    submission and for aliases forwarding out; a direct remote RCPT on an
    unauthenticated message is a relay attempt and fails 5.7.1."""
    decision = RouteDecision()
    seen_local: set[str] = set()
    seen_remote: set[str] = set()
    for rcpt in recipients:
        _resolve(rcpt, rcpt, directory, decision, seen_local, seen_remote, 0, allow_remote, set())
    return decision


def _resolve(addr, original, directory, decision, seen_local, seen_remote, depth, allow_remote, chain):
    if depth > MAX_DEPTH or addr in chain:
        decision.failed.append(RouteFailure(original, "5.4.6", f"alias loop or too deep at {addr}"))
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
                _resolve(target, original, directory, decision, seen_local, seen_remote, depth + 1, True, chain)
            return
        user = directory.get_user(cand)
        if user is not None:
            if user.address not in seen_local:
                seen_local.add(user.address)
                decision.local.append(LocalDelivery(user.address, original, user.quota))
            return
    if domain.catchall and depth == 0:
        _resolve(domain.catchall, original, directory, decision, seen_local, seen_remote, depth + 1, True, chain)
        return
    decision.failed.append(RouteFailure(original, "5.1.1", f"no such user {a.canonical}"))


def accepts(rcpt: str, directory) -> bool:
    """RCPT-time check for the MX role: would this recipient resolve to something?"""
    d = route([rcpt], directory, allow_remote=False)
    return not d.failed
