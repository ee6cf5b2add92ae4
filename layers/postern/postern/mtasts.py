"""MTA-STS (RFC 8461): our own inbound policy, and other domains' policies for the mx transport.

Inbound: :func:`inbound_policy` -> the policy Postern publishes at
``https://mta-sts.<domain>/.well-known/mta-sts.txt`` (the HTTPS function serves it) and
:func:`policy_txt`, the ``_mta-sts.<domain>`` TXT record whose id is a digest of the policy text,
so it changes exactly when the policy does (``postern dns`` prints it, ``postern doctor`` checks
that what is published and what is served agree). Rendered here and parsed by
:func:`parse_policy` below: one grammar for both directions.

Outbound (the mx transport): discover, fetch, cache, enforce.

In:   a resolver with ``txt(name)`` (``_mta-sts.<domain>`` TXT record) and a
      fetcher ``fetch(url) -> str`` for the HTTPS policy. The default fetcher
      uses urllib with certificate verification, no redirects (§3.3) and a
      size cap; tests inject a fake one (no HTTPS in tests).
Out:  :class:`MtaSts.policy_for(domain)` -> :class:`Policy` or None.
      ``Policy.enforced`` says whether the mx transport must (a) only use MX
      hosts matching the policy's ``mx`` patterns and (b) require STARTTLS
      with a certificate valid for the MX host name (§4, §5).
Fails: never raises for a missing or broken policy: RFC 8461 §5.1 says to
      deliver as if none was published when no valid policy is found (a
      still-valid cached one is used instead when the fetch fails, §5.1).
"""

from __future__ import annotations

import logging
import threading
import urllib.request
from dataclasses import dataclass

from . import clock

log = logging.getLogger(__name__)
MAX_POLICY_BYTES = 64 * 1024  # RFC 8461 §3.3: "SHOULD NOT be more than 64 KB"


@dataclass(frozen=True)
class Policy:
    mode: str  # enforce | testing | none
    mx: tuple[str, ...]
    max_age: int
    policy_id: str = ""

    @property
    def enforced(self) -> bool:
        return self.mode == "enforce"

    def matches(self, host: str) -> bool:
        """RFC 8461 §4.1: literal match, or ``*.`` matching exactly one leftmost label."""
        h = host.lower().rstrip(".")
        for pat in self.mx:
            p = pat.lower().rstrip(".")
            if p.startswith("*."):
                suffix = p[1:]
                if h.endswith(suffix) and "." not in h[: -len(suffix)] and len(h) > len(suffix):
                    return True
            elif h == p:
                return True
        return False


class PolicyError(ValueError):
    pass


MODES = ("enforce", "testing", "none")


def inbound_policy(mode: str, mx_hosts, max_age: int) -> str:
    """The policy file we serve (RFC 8461 §3.2): CRLF lines, one ``mx`` per gateway host name."""
    if mode not in MODES:
        raise PolicyError(f"bad mode {mode!r}: one of {', '.join(MODES)}")
    lines = ["version: STSv1", f"mode: {mode}"]
    lines += [f"mx: {h.lower().rstrip('.')}" for h in mx_hosts]
    lines.append(f"max_age: {max(0, min(int(max_age), 31557600))}")  # §3.2: at most 31557600
    text = "\r\n".join(lines) + "\r\n"
    parse_policy(text)  # what we serve is what our own parser (and any sender's) accepts
    return text


def policy_id(text: str) -> str:
    """The ``id`` of the TXT record (§3.1: 1 to 32 alphanumerics): a digest of the policy text."""
    import hashlib

    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:20]


def policy_txt(text: str) -> str:
    return f"v=STSv1; id={policy_id(text)}"


def tlsrpt_txt(domain: str) -> str:
    """The ``_smtp._tls.<domain>`` TXT record (RFC 8460 §3): reports to reports@<domain>."""
    return f"v=TLSRPTv1; rua=mailto:reports@{domain.lower().rstrip('.')}"


def settings_policy(settings, mode: str | None = None, hostname: str | None = None) -> str:
    """Our policy as a deployment's settings (or a stack's parameters, given explicitly) describe it."""
    return inbound_policy(mode or settings.mta_sts_mode, [hostname or settings.hostname], settings.mta_sts_max_age)


def parse_policy(text: str, policy_id: str = "") -> Policy:
    """RFC 8461 §3.2 policy file: ``key: value`` lines, CRLF or LF."""
    fields: dict[str, list[str]] = {}
    for line in text.replace("\r\n", "\n").split("\n"):
        if not line.strip():
            continue
        key, sep, value = line.partition(":")
        if not sep:
            raise PolicyError(f"bad policy line {line!r}")
        fields.setdefault(key.strip().lower(), []).append(value.strip())
    if fields.get("version") != ["STSv1"]:
        raise PolicyError("version must be STSv1")
    mode = (fields.get("mode") or [""])[0]
    if mode not in ("enforce", "testing", "none"):
        raise PolicyError(f"bad mode {mode!r}")
    try:
        max_age = int((fields.get("max_age") or [""])[0])
    except ValueError:
        raise PolicyError("bad max_age") from None
    mx = tuple(fields.get("mx", []))
    if mode != "none" and not mx:
        raise PolicyError("mx required unless mode is none")
    return Policy(mode=mode, mx=mx, max_age=min(max_age, 31557600), policy_id=policy_id)


def parse_txt(records: list[str]) -> str | None:
    """The policy id from ``v=STSv1; id=...`` (RFC 8461 §3.1); None if absent or ambiguous."""
    found = []
    for rec in records:
        parts = dict(
            (k.strip(), v.strip()) for k, _, v in (p.partition("=") for p in rec.split(";") if p.strip())
        )
        if parts.get("v") == "STSv1" and parts.get("id"):
            found.append(parts["id"])
    return found[0] if len(found) == 1 else None


def https_fetch(url: str, timeout: float = 10.0) -> str:
    """Fetch a policy over verified HTTPS, refusing redirects (RFC 8461 §3.3)."""

    class _NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    opener = urllib.request.build_opener(_NoRedirect())
    with opener.open(url, timeout=timeout) as resp:
        if resp.status != 200:
            raise PolicyError(f"HTTP {resp.status}")
        ctype = resp.headers.get_content_type()
        if ctype != "text/plain":
            raise PolicyError(f"content type {ctype}")
        body = resp.read(MAX_POLICY_BYTES + 1)
    if len(body) > MAX_POLICY_BYTES:
        raise PolicyError("policy too large")
    return body.decode("utf-8")


class MtaSts:
    def __init__(self, resolver, fetcher=None, timeout: float = 10.0):
        self.resolver = resolver
        self.fetcher = fetcher or (lambda url: https_fetch(url, timeout))
        self._cache: dict[str, tuple[Policy, float]] = {}
        self._lock = threading.Lock()

    def policy_for(self, domain: str) -> Policy | None:
        d = domain.lower().rstrip(".")
        now = clock.now()
        with self._lock:
            cached = self._cache.get(d)
        if cached and cached[1] <= now:
            cached = None
        try:
            policy_id = parse_txt(self.resolver.txt(f"_mta-sts.{d}"))
        except Exception as exc:  # DNS trouble: keep using a valid cached policy
            log.info("mta-sts txt lookup for %s failed: %s", d, exc)
            return cached[0] if cached else None
        if policy_id is None:
            return cached[0] if cached else None  # §5.1: cached policy still applies
        if cached and cached[0].policy_id == policy_id:
            return cached[0]
        try:
            policy = parse_policy(self.fetcher(f"https://mta-sts.{d}/.well-known/mta-sts.txt"), policy_id)
        except Exception as exc:
            log.warning("mta-sts policy fetch for %s failed: %s", d, exc)
            return cached[0] if cached else None
        with self._lock:
            self._cache[d] = (policy, now + policy.max_age)
        return policy
