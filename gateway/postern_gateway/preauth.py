"""Before authentication, commands are small: one byte budget per connection (issue 11).

In:   the number of bytes each protocol reads from a connection that has not logged in yet
      (IMAP, POP3, submission; ManageSieve when it comes), and the setting
      ``POSTERN_PREAUTH_MAX_BYTES`` (default 16 KiB).
Out:  :class:`PreauthBudget` per connection: ``spend(n)`` -> False once the connection has sent
      more than the budget in total before authenticating (every byte counts: command lines,
      literals, SASL responses, what came before STARTTLS); ``done()`` when the user has logged
      in (counting stops). Per-command limits before login are at most ``limit`` (IMAP refuses a
      literal announced larger than that before sending ``+``).
      :data:`EXCEEDED` is the text every protocol sends before it closes the connection:
      IMAP ``* BYE [LIMIT]``, POP3 ``-ERR``, SMTP ``421 4.7.0``.
Fails: never.

Why one rule: a login needs a few hundred bytes; before this, an IMAP command before login could
carry literals up to APPENDLIMIT and 12 unfinished LOGINs from one address held 382 MB. The MX
port has no login: its DATA is bounded by SIZE. Connection caps per client address stay per
gateway task (postern.limits); this budget is per connection, no I/O.
"""

from __future__ import annotations

EXCEEDED = "Too much data before login, closing connection"


class PreauthBudget:
    def __init__(self, limit: int):
        self.limit = max(0, int(limit))
        self.spent = 0
        self.active = self.limit > 0  # 0 disables the budget

    def spend(self, n: int) -> bool:
        """Count ``n`` bytes received before login; False once the total exceeds the limit."""
        if not self.active:
            return True
        self.spent += n
        return self.spent <= self.limit

    def done(self) -> None:
        """The connection has authenticated: its bytes no longer count."""
        self.active = False

