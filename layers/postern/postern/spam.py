"""Spam filtering decisions: rspamd's answer read once, judged against each recipient's thresholds.

In:   rspamd's ``/checkv2`` JSON reply (:meth:`ScanResult.from_rspamd`), the recipients'
      :class:`Thresholds` (the user's move-to-Junk and reject scores, else the domain's, else
      the defaults: :meth:`postern.directory.Directory.spam_thresholds`).
Out:  :func:`session_decision` - what the SMTP session answers at the end of DATA (one reply
      serves every recipient): :data:`REJECT` (``550 5.7.1``) only when the score reaches every
      recipient's reject threshold (or a module forced the reject: a virus,
      :attr:`ScanResult.virus`), :data:`TEMPFAIL`
      (``451 4.7.1``) for rspamd's ``soft reject`` and ``greylist``, else :data:`ACCEPT`;
      :func:`envelope_spam` - the verdict the envelope carries (action, score, symbols; the
      thresholds are filled per recipient by :func:`for_recipient`, into the
      :class:`postern.verdicts.SpamVerdict` delivery and Sieve's spamtest read);
      :func:`header_block` - the ``X-Spam-*`` fields prepended to the stored message for
      clients; :func:`strip_forged` - a message's header section without any ``X-Spam-*``
      field of its own (what our parsers read: a sender can forge those).
Fails: :meth:`ScanResult.from_rspamd` raises ValueError for a reply that is not rspamd's
      (the caller treats it as the filter being unavailable: the message is accepted,
      ``unchecked``).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from enum import Enum

from .verdicts import DEFAULT_JUNK_SCORE, DEFAULT_REJECT_SCORE, UNCHECKED, SpamVerdict

ACTIONS = frozenset({"no action", "greylist", "add header", "rewrite subject", "soft reject", "reject"})
TEMPFAIL_ACTIONS = frozenset({"soft reject", "greylist"})
VIRUS_SYMBOL = "CLAM_VIRUS"  # rspamd's antivirus rule for clamd (rspamd/configure.sh: RSPAMD_CLAMD)
MAX_SYMBOLS = 200
_SYMBOL = re.compile(r"[A-Za-z0-9_.\-]{1,64}\Z")


@dataclass(frozen=True)
class Thresholds:
    """One recipient's scores: above ``junk`` the message goes to Junk (Sieve's spamtest is 2 or
    more there: the managed rule), at or above ``reject`` it may be refused in the session."""

    junk: float = DEFAULT_JUNK_SCORE
    reject: float = DEFAULT_REJECT_SCORE


def valid_score(value) -> float:
    """A threshold as the CLI and the directory accept it: a finite number, 0..1000."""
    f = float(value)
    if not math.isfinite(f) or not -1000 <= f <= 1000:
        raise ValueError(f"a spam score is a number between -1000 and 1000, not {value!r}")
    return f


@dataclass(frozen=True)
class ScanResult:
    action: str
    score: float
    required: float  # rspamd's own reject threshold (``required_score``)
    symbols: tuple[tuple[str, float], ...] = ()  # (name, score), highest first
    message: str = ""  # rspamd's ``messages.smtp_message`` (e.g. "Gtube pattern")

    @classmethod
    def from_rspamd(cls, reply: dict) -> ScanResult:
        if not isinstance(reply, dict) or reply.get("action") not in ACTIONS:
            raise ValueError("not an rspamd reply")
        score, required = float(reply.get("score", 0.0)), float(reply.get("required_score", DEFAULT_REJECT_SCORE))
        if not (math.isfinite(score) and math.isfinite(required)):
            raise ValueError("rspamd score is not a number")
        symbols = []
        for name, sym in (reply.get("symbols") or {}).items():
            if isinstance(name, str) and _SYMBOL.match(name) and isinstance(sym, dict):
                s = sym.get("score", 0.0)
                symbols.append((name, float(s) if isinstance(s, int | float) and math.isfinite(s) else 0.0))
        symbols.sort(key=lambda x: (-abs(x[1]), x[0]))
        messages = reply.get("messages") or {}
        message = messages.get("smtp_message", "") if isinstance(messages, dict) else ""
        return cls(reply["action"], score, required, tuple(symbols[:MAX_SYMBOLS]),
                   message if isinstance(message, str) else "")

    @property
    def virus(self) -> bool:
        """clamd found a virus (the antivirus module's symbol; ``CLAM_VIRUS_FAIL``: clamd was not asked)."""
        return any(name == VIRUS_SYMBOL for name, _ in self.symbols)

    @property
    def forced_reject(self) -> bool:
        """rspamd said reject below its own reject score: a module forced it (antivirus, a
        force_actions rule), whatever any recipient's threshold."""
        return self.action == "reject" and self.score < self.required


class Decision(Enum):
    ACCEPT = "accept"
    TEMPFAIL = "tempfail"
    REJECT = "reject"


ACCEPT, TEMPFAIL, REJECT = Decision.ACCEPT, Decision.TEMPFAIL, Decision.REJECT


def session_decision(result: ScanResult, recipients: list[Thresholds] | tuple[Thresholds, ...]) -> Decision:
    """One DATA reply for all recipients: refuse only when every one of them would (no recipient
    loses a message its own threshold keeps); a temporary refusal is rspamd's to ask for."""
    if result.action in TEMPFAIL_ACTIONS:
        return TEMPFAIL
    if recipients and (result.forced_reject or all(result.score >= t.reject for t in recipients)):
        return REJECT
    return ACCEPT


def envelope_spam(result: ScanResult | None) -> dict:
    """What the envelope carries: the filter's verdict (no thresholds: those are per recipient).
    ``None`` (rspamd down or slow) is the ``unchecked`` verdict."""
    if result is None:
        return {"action": UNCHECKED}
    return {"action": result.action, "score": result.score, "symbols": [n for n, _ in result.symbols],
            "forced": result.forced_reject}


def for_recipient(spam: dict | None, thresholds: Thresholds) -> dict:
    """The envelope's verdict with one recipient's thresholds (a StoreJob's ``spam``): the
    :class:`~postern.verdicts.SpamVerdict` that delivery, the managed Junk rule and spamtest read.
    A forced reject the session let through (a recipient's threshold kept it) counts as spam."""
    spam = dict(spam or {})
    if not spam or spam.get("action", UNCHECKED) == UNCHECKED:
        return {"action": UNCHECKED}
    score = float(spam.get("score", 0.0))
    if spam.get("forced"):
        score = max(score, thresholds.reject)
    return SpamVerdict(action=spam["action"], score=score, junk_score=thresholds.junk,
                       reject_score=thresholds.reject,
                       symbols=tuple(spam.get("symbols") or ())).to_dict()


SPAM_FIELDS = ("X-Spam-Action", "X-Spam-Score", "X-Spam-Flag", "X-Spam-Symbols")


def header_block(result: ScanResult) -> str:
    """The ``X-Spam-*`` fields for clients (CRLF-terminated, folded under 78 characters)."""
    flag = "YES" if result.action in ("add header", "rewrite subject", "reject") else "NO"
    lines = [f"X-Spam-Action: {result.action}\r\n", f"X-Spam-Score: {result.score:.2f} / {result.required:.2f}\r\n",
             f"X-Spam-Flag: {flag}\r\n"]
    names = [n for n, _ in result.symbols[:50]]
    if names:
        out, line = [], "X-Spam-Symbols:"
        for i, name in enumerate(names):
            piece = " " + name + ("," if i < len(names) - 1 else "")
            if len(line) + len(piece) > 76 and line != "X-Spam-Symbols:":
                out.append(line)
                line = ""
            line += piece
        out.append(line)
        lines.append("\r\n".join(out) + "\r\n")
    return "".join(lines)


_FORGED = re.compile(rb"(?im)^X-Spam-[^:\r\n]*:[^\r\n]*\r?\n(?:[ \t][^\r\n]*\r?\n)*")


def strip_forged(header: bytes) -> bytes:
    """``header`` (a received message's header section) without its ``X-Spam-*`` fields: the
    view our parsers read (Sieve's header tests), so only the block we prepended is seen. The
    stored bytes keep them (received mail is never rewritten)."""
    return _FORGED.sub(b"", header)
