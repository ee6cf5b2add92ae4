"""Named SMTP replies and the permanent/transient failure taxonomy.

In:   nothing; constants only.
Out:  :class:`Reply` values (code, RFC 3463 enhanced status, text) that the
      gateway puts on the wire and the DSN builder writes into reports, and
      :func:`is_permanent` / :func:`is_transient` for remote replies.

Reply codes are never written as bare numbers elsewhere (mox ``smtp/codes.go``).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Reply:
    code: int
    enhanced: str
    text: str

    def __str__(self) -> str:  # the wire form, without CRLF
        return f"{self.code} {self.enhanced} {self.text}"

    def with_text(self, text: str) -> Reply:
        return Reply(self.code, self.enhanced, text)

    @property
    def permanent(self) -> bool:
        return 500 <= self.code < 600

    @property
    def transient(self) -> bool:
        return 400 <= self.code < 500


# --- success --------------------------------------------------------------
OK = Reply(250, "2.0.0", "OK")
SENDER_OK = Reply(250, "2.1.0", "Sender OK")
RCPT_OK = Reply(250, "2.1.5", "Recipient OK")
QUEUED = Reply(250, "2.0.0", "queued")
AUTH_OK = Reply(235, "2.7.0", "Authentication successful")
BYE = Reply(221, "2.0.0", "Bye")

# --- transient (4xx) ------------------------------------------------------
TEMP_BACKEND = Reply(451, "4.3.0", "Temporary failure, please try again later")
TOO_MANY_RECIPIENTS = Reply(452, "4.5.3", "Too many recipients")
MAILBOX_FULL_TEMP = Reply(452, "4.2.2", "Mailbox full")
TOO_BUSY = Reply(421, "4.3.2", "Too many connections, try again later")
# MAIL while the spool lane is too far behind (POSTERN_SPOOL_MAX_WAIT): RFC 5321 §4.2.5, the
# sender keeps the message and retries; RFC 3463 X.3.2 "system not accepting network messages".
SPOOL_BUSY = Reply(451, "4.3.2", "System busy, try again later")
TIMEOUT = Reply(421, "4.4.2", "Timeout, closing connection")
RATE_LIMITED = Reply(451, "4.7.1", "Rate limit exceeded, try again later")
SPAM_TEMPFAIL = Reply(451, "4.7.1", "Try again later")  # rspamd: greylist / soft reject
AUTH_TEMP = Reply(454, "4.7.0", "Temporary authentication failure")
TLS_NOT_AVAILABLE = Reply(454, "4.7.0", "TLS not available")
DNS_TEMP = Reply(451, "4.4.3", "Temporary DNS failure")

# --- permanent (5xx) ------------------------------------------------------
RELAY_DENIED = Reply(550, "5.7.1", "Relaying denied")
NO_SUCH_USER = Reply(550, "5.1.1", "No such user here")
BAD_SENDER_SYNTAX = Reply(501, "5.1.7", "Bad sender address syntax")
BAD_RCPT_SYNTAX = Reply(501, "5.1.3", "Bad recipient address syntax")
SYNTAX_ERROR = Reply(501, "5.5.4", "Syntax error in parameters or arguments")
COMMAND_UNRECOGNIZED = Reply(500, "5.5.1", "Command unrecognized")
BAD_SEQUENCE = Reply(503, "5.5.1", "Bad sequence of commands")
MESSAGE_TOO_BIG = Reply(552, "5.3.4", "Message size exceeds fixed maximum message size")
MAILBOX_FULL = Reply(552, "5.2.2", "Mailbox full")
AUTH_REQUIRED = Reply(530, "5.7.0", "Authentication required")
AUTH_FAILED = Reply(535, "5.7.8", "Authentication credentials invalid")
ENCRYPTION_REQUIRED = Reply(538, "5.7.11", "Encryption required for requested authentication mechanism")
SENDER_NOT_OWNED = Reply(553, "5.7.1", "Sender address not owned by authenticated user")
DMARC_REJECT = Reply(550, "5.7.1", "Rejected by DMARC policy")
# A header section the one parser (postern.mail) cannot read one way only: at submission a line that
# is not a field, a leading continuation line, anything but one From:; on the MX port more than one
# From: or an unreadable one (RFC 7489 §6.6.1). One code for all, the reason in the text.
HEADER_REFUSED = Reply(550, "5.7.1", "Message header refused")
SPAM_REJECTED = Reply(550, "5.7.1", "Message refused as spam")  # rspamd, every recipient's reject score
VIRUS_REJECTED = Reply(550, "5.7.1", "Message refused: it carries a virus")  # rspamd's antivirus module (clamd)
NULL_MX = Reply(556, "5.1.10", "Recipient domain does not accept mail (null MX)")
NO_SUCH_DOMAIN = Reply(550, "5.1.2", "Recipient domain not found")
# RFC 5321 §2.3.8: CR only as part of CRLF. Refused as Postfix's smtpd_forbid_bare_newline refuses bare LF
# (a bare LF is accepted, stored as received and canonicalised on output: postern.canonical).
BARE_CR = Reply(554, "5.6.0", "Message refused: bare CR in DATA (lines must end with CRLF, RFC 5321 2.3.8)")


def is_permanent(code: int) -> bool:
    """A remote reply that no retry will change (RFC 5321 §4.2.1)."""
    return 500 <= code < 600


def is_transient(code: int) -> bool:
    return 400 <= code < 500
