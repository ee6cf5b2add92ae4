"""What the MX learned about a message, carried on the queues for delivery-time decisions.

In:   filled by the gateway at DATA time: :class:`AuthFacts` from the inbound
      authentication checks (SPF, DKIM, DMARC: ``trust/authres.py``), and
      :class:`SpamVerdict` from the spam filter (rspamd ``/checkv2``; until it
      runs, every message is ``unchecked``). Read by the store function (Sieve:
      ``spamtest``, the managed Junk rule, the backscatter rules of ``reject``
      and ``vacation``), which saves it in the message's store entry
      (:attr:`postern.store.base.MessageMeta.spam`) with the ``$Junk``
      keyword when marked spam: what IMAP and JMAP (``$junk``) show.
Out:  two small frozen objects with ``to_dict()`` / ``from_dict()``; on the
      queues they travel as plain JSON objects (``Envelope.auth``,
      ``Envelope.spam``, copied into every ``StoreJob``). An empty or missing
      object reads as "nothing known": auth not passed, spam ``unchecked``.
Fails: never: unknown keys are ignored and malformed values read as the
      defaults (the queue body was written by us, but a newer writer may add
      fields).

The spam scales (RFC 5235): :meth:`SpamVerdict.spamtest` maps the score onto
0..10 and :meth:`SpamVerdict.percent` onto 0..100, both from the thresholds
the verdict was judged with (the user's Junk and reject scores), so the same
numbers mean the same thing to the Junk rule, to ``spamtest`` and to a user.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# rspamd's actions (https://rspamd.com/doc/faq.html#what-are-rspamd-actions), plus "unchecked":
# the filter did not run or did not answer (mail is never refused because the filter is ill).
UNCHECKED = "unchecked"
JUNK_ACTIONS = frozenset({"add header", "rewrite subject"})
REJECT_ACTIONS = frozenset({"reject"})
DEFAULT_JUNK_SCORE = 6.0  # rspamd's default "add header" threshold
DEFAULT_REJECT_SCORE = 15.0  # rspamd's default "reject" threshold
JUNK_KEYWORD = "$Junk"  # RFC 9051 §2.3.2: set by the delivery agent on a message it judged spam (JMAP: $junk)
STORED_SYMBOLS = 50  # symbols kept in the store's message entry (the X-Spam-Symbols field lists as many)


def _float(v, default: float) -> float:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return default
    return f if math.isfinite(f) else default


@dataclass(frozen=True)
class SpamVerdict:
    """The spam filter's answer for one message (and recipient's thresholds)."""

    action: str = UNCHECKED  # unchecked | no action | greylist | add header | rewrite subject | soft reject | reject
    score: float = 0.0
    junk_score: float = DEFAULT_JUNK_SCORE  # the recipient's move-to-Junk threshold
    reject_score: float = DEFAULT_REJECT_SCORE  # the recipient's reject threshold
    symbols: tuple[str, ...] = ()

    @property
    def checked(self) -> bool:
        return self.action != UNCHECKED

    @property
    def is_spam(self) -> bool:
        """Marked spam: the filter said Junk or reject, or the score reached the Junk threshold."""
        if not self.checked:
            return False
        return self.action in JUNK_ACTIONS or self.action in REJECT_ACTIONS or self.score >= self.junk_score

    def spamtest(self) -> int:
        """RFC 5235 §3.2: 0 not tested; 1 tested and clean, up to and including the Junk
        threshold; 2..9 linear between the Junk and the reject threshold; 10 at or above reject."""
        if not self.checked:
            return 0
        junk, reject = self.junk_score, max(self.reject_score, self.junk_score)
        if self.score <= junk:
            return 1
        if self.score >= reject:
            return 10
        return min(9, max(2, 1 + math.ceil(9 * (self.score - junk) / (reject - junk))))

    def percent(self) -> int | None:
        """RFC 5235 §3.2.2 (spamtestplus): 0 = clean .. 100 = certainly spam, the score as a share of
        the reject threshold (negative scores are 0); None when the message was not tested."""
        if not self.checked:
            return None
        if self.reject_score <= 0:
            return 100 if self.score > 0 else 0
        return max(0, min(100, round(100 * self.score / self.reject_score)))

    def keywords(self) -> tuple[str, ...]:
        """The IMAP keywords a delivery of this verdict carries: ``$Junk`` when marked spam."""
        return (JUNK_KEYWORD,) if self.is_spam else ()

    def to_dict(self, max_symbols: int | None = None) -> dict:
        """The JSON object (queues) and, with ``max_symbols``, the store's message entry (``sv``)."""
        if not self.checked:
            return {"action": UNCHECKED}
        return {"action": self.action, "score": self.score, "junk_score": self.junk_score,
                "reject_score": self.reject_score, "symbols": list(self.symbols[:max_symbols])}

    @classmethod
    def from_dict(cls, d: dict | None) -> SpamVerdict:
        if not isinstance(d, dict) or not d:
            return cls()
        action = d.get("action")
        symbols = d.get("symbols") or ()
        return cls(
            action=action if isinstance(action, str) and action else UNCHECKED,
            score=_float(d.get("score"), 0.0),
            junk_score=_float(d.get("junk_score"), DEFAULT_JUNK_SCORE),
            reject_score=_float(d.get("reject_score"), DEFAULT_REJECT_SCORE),
            symbols=tuple(str(s) for s in symbols if isinstance(s, str))[:200] if isinstance(symbols, list | tuple) else (),
        )


@dataclass(frozen=True)
class AuthFacts:
    """The inbound authentication results our MX computed (never read from the message)."""

    spf: str = "none"  # pass | fail | softfail | neutral | none | temperror | permerror (MAIL FROM identity)
    dkim_aligned: bool = False  # a valid DKIM signature aligned with the From: domain (RFC 7489 §3.1.1)
    dmarc: str = "none"  # pass | fail | none | temperror | permerror
    quarantine: bool = False  # DMARC p=quarantine failure: deliver to Junk
    submitted: bool = False  # sent by one of our users over authenticated submission (the login vouches)

    @property
    def sender_verified(self) -> bool:
        """May we answer this sender (vacation, reject)? SPF passed for MAIL FROM, DKIM aligned, or
        one of our own users submitted it (submission only accepts their own sender addresses)."""
        return self.spf == "pass" or self.dkim_aligned or self.submitted

    def to_dict(self) -> dict:
        return {"spf": self.spf, "dkim_aligned": self.dkim_aligned, "dmarc": self.dmarc,
                "quarantine": self.quarantine, "submitted": self.submitted}

    @classmethod
    def from_dict(cls, d: dict | None) -> AuthFacts:
        if not isinstance(d, dict) or not d:
            return cls()
        return cls(spf=str(d.get("spf") or "none"), dkim_aligned=d.get("dkim_aligned") is True,
                   dmarc=str(d.get("dmarc") or "none"), quarantine=d.get("quarantine") is True,
                   submitted=d.get("submitted") is True)
