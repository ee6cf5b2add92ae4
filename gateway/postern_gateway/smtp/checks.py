"""Seams for policy checks that are not the MX/submission core (the trust issue plugs in here).

In:   one :class:`Check` object per concern (TLS/abuse limits, DNSBL, SPF,
      DKIM, DMARC...), given to the handler as ``checks=[...]``.
Out:  the handler awaits each check, in list order, at four points of the
      SMTP session; a check returns None to carry on or a
      :class:`~postern.status.Reply` to refuse (the first refusal wins and is
      sent as is, so it should carry its enhanced code). ``on_disconnect``
      (synchronous) runs once per connection when it closes, to release
      whatever ``on_connect`` took. At DATA a check may
      also add trace header lines (``Authentication-Results:``...) or mark the
      message as junk or record the spam verdict through the :class:`DataContext`.
Fails: an exception escaping a check becomes ``451 4.3.0`` (the handler's
      ``handle_exception``): a broken check defers mail, it never accepts it
      unchecked.

Checks run on the event loop: anything blocking (DNS through a sync library,
boto3) goes through ``await backend.run(...)`` inside the check.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from postern.status import Reply


@dataclass
class DataContext:
    """What DATA-time checks see and may change."""

    raw: bytes  # the message as received (submission: after Message-ID/Date completion)
    queue_id: str
    sender: str  # envelope sender, "" for <>
    recipients: tuple[str, ...]
    client_ip: str
    helo: str
    auth_user: str | None = None
    trace: list[str] = field(default_factory=list)  # extra header fields, each CRLF-terminated, above Received
    junk: bool = False  # deliver to Junk (e.g. DMARC p=quarantine)
    auth: dict = field(default_factory=dict)  # postern.verdicts.AuthFacts the checks found (Sieve's backscatter rules)
    spam: dict = field(default_factory=dict)  # the spam filter's verdict (postern.spam.envelope_spam); {} = unchecked


class Check:
    """Base class: every hook passes. Override the ones a concern needs."""

    async def on_connect(self, server, session) -> Reply | None:
        """Before the greeting (a refusal replaces the 220 and closes: use 554 or 421)."""
        return None

    async def on_mail(self, server, session, envelope, sender: str) -> Reply | None:
        """After Postern's own MAIL policy accepted ``sender`` ("" for <>)."""
        return None

    async def on_rcpt(self, server, session, envelope, recipient: str) -> Reply | None:
        """After Postern's own RCPT policy accepted ``recipient``."""
        return None

    async def on_data(self, server, session, envelope, ctx: DataContext) -> Reply | None:
        """After the message is complete and Postern's own DATA policy passed, before spooling."""
        return None

    def on_disconnect(self, server) -> None:
        """When the connection is gone (also after a refusal at connect); synchronous, must not raise."""
