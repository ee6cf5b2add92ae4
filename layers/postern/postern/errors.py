"""Domain errors that know their wire replies.

In:   raised by the directory, the mail store and the pipeline.
Out:  each error carries its SMTP :class:`~postern.status.Reply`, its IMAP
      response code/text and its POP3 text, so every protocol turns the same
      failure into the right reply without a table of its own (pymap
      ``exceptions.py``, mox ``smtpserver/error.go``).

``permanent`` says whether a queue consumer should give up (bounce) or let
SQS retry the message.
"""

from __future__ import annotations

from . import status
from .status import Reply


class PosternError(Exception):
    """Base class. Subclasses set the class attributes below."""

    smtp: Reply = status.TEMP_BACKEND
    imap_code: str | None = None  # e.g. "TRYCREATE" -> "NO [TRYCREATE] ..."
    imap_kind: str = "NO"  # NO or BAD
    pop3_code: str | None = None  # e.g. "SYS/TEMP" -> "-ERR [SYS/TEMP] ..." (RFC 2449 §8, RFC 3206)
    managesieve_code: str | None = None  # e.g. "TRYLATER" -> 'NO (TRYLATER) "..."' (RFC 5804 §1.3)
    permanent: bool = False

    def __init__(self, message: str | None = None):
        super().__init__(message or self.default_message())

    @classmethod
    def default_message(cls) -> str:
        return cls.smtp.text

    @property
    def text(self) -> str:
        """The message as raised: for logs and the operator's CLI (may carry backend detail)."""
        return str(self.args[0]) if self.args else self.default_message()

    @property
    def public_text(self) -> str:
        """What a client is told: the message as raised, unless the class keeps its detail
        private (:class:`StoreUnavailable`: backend errors never reach the client verbatim)."""
        return self.text

    def imap_response(self, tag: str) -> bytes:
        code = f"[{self.imap_code}] " if self.imap_code else ""
        return f"{tag} {self.imap_kind} {code}{self.public_text}\r\n".encode()

    def pop3_response(self) -> bytes:
        code = f"[{self.pop3_code}] " if self.pop3_code else ""
        return f"-ERR {code}{self.public_text}\r\n".encode()

    def smtp_reply(self) -> str:
        return f"{self.smtp.code} {self.smtp.enhanced} {self.public_text}"


class StoreUnavailable(PosternError):
    """A backend (S3, SQS, DynamoDB) call failed; try again later."""

    smtp = status.TEMP_BACKEND
    imap_code = "UNAVAILABLE"  # RFC 5530 §3
    pop3_code = "SYS/TEMP"  # RFC 3206 §4
    managesieve_code = "TRYLATER"  # RFC 5804 §1.3

    @classmethod
    def default_message(cls) -> str:
        return "Temporary failure of the mail store, try again later"

    @property
    def public_text(self) -> str:
        return self.default_message()  # the AWS error text (issue 11: a ValidationException) is for the log


class BlobMissing(StoreUnavailable):
    """The bytes of a message are gone from S3 (the index still names them).

    One error for it from every store and every read path; a protocol reports it
    as "message unavailable", never as an expunge, and a rendering bug is never
    mistaken for it (it is raised by the blob layer only)."""

    imap_code = "UNAVAILABLE"
    pop3_code = "SYS/PERM"  # RFC 3206 §4: a permanent failure (the bytes will not come back): do not retry
    permanent = True

    @classmethod
    def default_message(cls) -> str:
        return "Message content unavailable"


class KeywordLimit(PosternError):
    """A STORE or APPEND would give the mailbox more than its keyword cap (issue: bounded keywords)."""

    imap_code = "LIMIT"  # RFC 5530 §3
    permanent = True

    @classmethod
    def default_message(cls) -> str:
        return "Too many keywords in this mailbox"


class MailboxLimit(PosternError):
    """A CREATE or RENAME past what one account or one store change may hold (too many mailboxes,
    or a RENAME moving more names than one change record can carry)."""

    imap_code = "LIMIT"  # RFC 5530 §3
    permanent = True

    @classmethod
    def default_message(cls) -> str:
        return "Too many mailboxes"


class MailboxNotFound(PosternError):
    smtp = status.NO_SUCH_USER
    imap_code = "TRYCREATE"  # RFC 3501 §6.3.11 / §6.4.7
    permanent = True

    @classmethod
    def default_message(cls) -> str:
        return "No such mailbox"


class MailboxExists(PosternError):
    imap_code = "ALREADYEXISTS"  # RFC 5530 §3
    permanent = True

    @classmethod
    def default_message(cls) -> str:
        return "Mailbox already exists"


class MailboxInvalid(PosternError):
    imap_code = "CANNOT"  # RFC 5530 §3
    permanent = True

    @classmethod
    def default_message(cls) -> str:
        return "Operation not permitted on this mailbox"


class QuotaExceeded(PosternError):
    smtp = status.MAILBOX_FULL
    imap_code = "OVERQUOTA"  # RFC 9208 §4.3
    managesieve_code = "QUOTA"  # RFC 5804 §1.3
    permanent = True

    @classmethod
    def default_message(cls) -> str:
        return "Mailbox full: over quota"


class MessageTooBig(PosternError):
    smtp = status.MESSAGE_TOO_BIG
    imap_code = "TOOBIG"  # RFC 7889
    permanent = True


class NoSuchUser(PosternError):
    smtp = status.NO_SUCH_USER
    imap_code = "NONEXISTENT"
    permanent = True


class NoSuchDomain(PosternError):
    smtp = status.RELAY_DENIED
    imap_code = "NONEXISTENT"
    permanent = True

    @classmethod
    def default_message(cls) -> str:
        return "No such domain"


class AlreadyExists(PosternError):
    imap_code = "ALREADYEXISTS"
    permanent = True

    @classmethod
    def default_message(cls) -> str:
        return "Already exists"


class InvalidAddress(PosternError):
    smtp = status.BAD_RCPT_SYNTAX
    imap_kind = "BAD"
    permanent = True


class AuthFailed(PosternError):
    smtp = status.AUTH_FAILED
    imap_code = "AUTHENTICATIONFAILED"  # RFC 5530 §3
    pop3_code = "AUTH"  # RFC 3206 §4
    permanent = True


class AuthLocked(PosternError):
    """Too many failed logins from this IP or for this account (postern.limits): try again later."""

    smtp = status.AUTH_TEMP  # 454 4.7.0 (RFC 4954 §6: temporary authentication failure)
    imap_code = "UNAVAILABLE"  # RFC 5530 §3: temporary; the client may retry later
    pop3_code = "SYS/TEMP"  # RFC 3206 §4
    managesieve_code = "TRYLATER"  # RFC 5804 §1.3
    permanent = False

    @classmethod
    def default_message(cls) -> str:
        return "Too many failed logins, try again later"


class AuthBusy(AuthLocked):
    """Too many password checks already waiting on this gateway task (a login storm): the login
    is refused for now with the same temporary reply as a lockout, not left to time out."""

    @classmethod
    def default_message(cls) -> str:
        return "Server busy checking passwords, try again shortly"


class TooManySessions(PosternError):
    """The account already has as many sessions (or IDLE commands) open as postern.limits allows."""

    smtp = status.AUTH_TEMP  # 454 4.7.0 at AUTH (RFC 4954 §6)
    imap_code = "LIMIT"  # RFC 5530 §3: an operational limit
    pop3_code = "SYS/TEMP"  # RFC 3206 §4
    managesieve_code = "TRYLATER"  # RFC 5804 §1.3 (it has no code for a limit)
    permanent = False

    @classmethod
    def default_message(cls) -> str:
        return "Too many sessions for this account, try again later"
