"""Vacation replies (RFC 5230) as RFC 3834 wants them: whom never to answer, and the reply's bytes.

In:   the delivery's Sieve context (envelope with the MX's authentication
      facts and spam verdict, the header view), the vacation action, the
      user's own addresses (the mailbox, its aliases, the recipient it came to).
Out:  :func:`refusal` -> None when a reply may be sent, else why not (logged);
      :func:`build` -> the reply as bytes (CRLF, ``policy.SMTP``), to be sent
      from the null reverse-path ``<>`` (RFC 5230 §5.8, RFC 3834 §3.3).
Fails: never raises for a message it cannot answer: the refusal says why.

No reply (RFC 5230 §4.5-4.6, RFC 3834 §2-3, and no backscatter):
  * to the null sender, or to a sender that neither passed SPF nor has an
    aligned DKIM signature (it may be forged: the reply would be backscatter);
  * to a message marked spam or quarantined by DMARC;
  * to automatic mail: ``Auto-Submitted`` other than ``no``, ``Precedence:
    bulk|list|junk``, mailing lists (``List-Id``, ``List-Post``,
    ``List-Unsubscribe``, ``List-Help``), senders named like robots
    (``MAILER-DAEMON``, ``LISTSERV``, ``majordomo``, ``owner-*``, ``*-request``,
    ``*-bounces``, ``noreply``/``no-reply``/``do-not-reply``);
  * to the user's own addresses;
  * when none of the user's addresses (or ``:addresses``) is in To, Cc, Bcc,
    Resent-To, Resent-Cc or Resent-Bcc (a Bcc'd copy or a list copy).
The once-per-sender-per-period rule is the caller's (a state item with a TTL).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import SMTP
from email.utils import format_datetime

from ..mail.addresses import mailboxes, parse_address_list
from ..mail.header import Header
from .actions import Vacation
from .message import Context

RECIPIENT_FIELDS = (b"to", b"cc", b"bcc", b"resent-to", b"resent-cc", b"resent-bcc")
LIST_FIELDS = (b"list-id", b"list-post", b"list-unsubscribe", b"list-help")
ROBOT_LOCALS = frozenset({"mailer-daemon", "listserv", "majordomo", "noreply", "no-reply", "do-not-reply",
                          "donotreply", "postmaster"})
MAX_SUBJECT = 200


def _addr(mb) -> str:
    local = mb.local.decode("utf-8", "replace").strip('"')
    return (local + "@" + mb.domain.decode("utf-8", "replace")).lower() if mb.domain else local.lower()


def _robot(sender: str) -> bool:
    local = sender.rpartition("@")[0].lower()
    return (local in ROBOT_LOCALS or local.startswith("owner-") or local.endswith("-request")
            or local.endswith("-bounces") or local.endswith("-bounce"))


def backscatter(env) -> str | None:
    """The one no-backscatter rule (reject and vacation): why this sender may not be answered, or None.
    Only a sender that passed SPF or has an aligned DKIM signature, of a message not marked spam."""
    if not env.mail_from:
        return "null sender"
    if not env.auth.sender_verified:
        return "sender not verified (no SPF pass, no aligned DKIM)"
    if env.spam.is_spam:
        return "message marked spam"
    if env.auth.quarantine:
        return "message quarantined by DMARC"
    return None


def refusal(ctx: Context, action: Vacation, own: set[str]) -> str | None:
    """Why no reply may be sent (None: it may). ``own``: the user's addresses, lower case."""
    env = ctx.envelope
    sender = env.mail_from.lower()
    h: Header = ctx.message.header
    why = backscatter(env)
    if why:
        return why
    auto = h.get(b"auto-submitted")
    if auto is not None and auto.split(b";", 1)[0].strip().lower() != b"no":
        return "Auto-Submitted message"  # RFC 3834 §2
    precedence = (h.get(b"precedence") or b"").strip().lower()
    if precedence in (b"bulk", b"list", b"junk"):
        return f"Precedence: {precedence.decode('ascii', 'replace')}"
    for name in LIST_FIELDS:
        if h.count(name):
            return f"mailing list ({name.decode()})"
    if _robot(sender):
        return "sender is an automatic address"
    if sender in own:
        return "sender is the user"
    wanted = own | {a.lower() for a in action.addresses}
    for name in RECIPIENT_FIELDS:
        for mb in mailboxes(h.addresses(name)):
            if _addr(mb) in wanted:
                return None
    return "user not named in To/Cc/Bcc"  # RFC 5230 §4.5


def _subject(ctx: Context, action: Vacation) -> str:
    if action.subject:
        return action.subject.replace("\r", " ").replace("\n", " ")[:998]
    original = ctx.message.header.text(b"subject")
    text = " ".join((original or "").split())[:MAX_SUBJECT]
    return f"Auto: {text}" if text else "Auto: (no subject)"  # RFC 5230 §4.3


def _from(action: Vacation, user: str, own: set[str]) -> str:
    """The reply's From: the vacation's :from when it is one of the user's addresses, else the user."""
    if action.from_:
        boxes = mailboxes(parse_address_list(action.from_.encode("utf-8")))
        if len(boxes) == 1 and _addr(boxes[0]) in own:
            return action.from_.replace("\r", " ").replace("\n", " ")
    return user


def message_id(queue_id: str, user: str, hostname: str) -> str:
    return f"vacation-{hashlib.sha256(f'{queue_id}#{user}'.encode()).hexdigest()[:20]}@{hostname}"


def build(ctx: Context, action: Vacation, user: str, own: set[str], queue_id: str, hostname: str,
          now: float) -> bytes:
    """The reply (RFC 5230 §5, RFC 3834 §3.1): deterministic for one delivery (retries build the same bytes)."""
    h = ctx.message.header
    msg = EmailMessage(policy=SMTP)
    msg["From"] = _from(action, user, own)
    msg["To"] = ctx.envelope.mail_from
    msg["Subject"] = _subject(ctx, action)
    msg["Date"] = format_datetime(_dt.datetime.fromtimestamp(now, _dt.timezone.utc))
    msg["Message-ID"] = f"<{message_id(queue_id, user, hostname)}>"
    ids = h.message_ids(b"message-id")
    if ids:
        original = "<" + ids[0].decode("ascii", "replace") + ">"
        msg["In-Reply-To"] = original  # RFC 3834 §3.1.5
        refs = [f"<{r.decode('ascii', 'replace')}>" for r in h.references()][-20:]
        msg["References"] = " ".join(refs + [original])
    msg["Auto-Submitted"] = "auto-replied (vacation)"  # RFC 3834 §5, RFC 5230 §5.7
    if action.mime:
        entity = BytesParser(policy=SMTP).parsebytes(action.reason.encode("utf-8"))
        for name in ("Content-Type", "Content-Transfer-Encoding"):
            if entity[name] is not None:
                msg[name] = str(entity[name])
        msg["MIME-Version"] = "1.0"
        msg.set_payload(entity.get_payload())  # the parts (multipart) or the encoded body, as written
        if msg.get_content_type().startswith("multipart/") and not msg.get_boundary():
            msg.set_boundary("=_postern_" + hashlib.sha256(action.reason.encode()).hexdigest()[:24])
    else:
        msg.set_content(action.reason, cte="quoted-printable")  # 7-bit whatever the text
    return msg.as_bytes()

