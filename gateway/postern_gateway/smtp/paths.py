"""SMTP path syntax, strictly (RFC 5321 §4.1.2, RFC 6531 §3.3): pure, no I/O.

In:   the argument of ``MAIL`` after ``FROM:`` or of ``RCPT`` after ``TO:``,
      as aiosmtpd decoded it (UTF-8 with surrogateescape).
Out:  :func:`parse_path` -> ``(mailbox, params)``: the mailbox without angle
      brackets and without any source route ("" for the null reverse-path
      ``<>``), and the ESMTP parameter string that follows (aiosmtpd parses
      parameters itself).
Fails: :class:`PathError` with a short reason, which the protocol answers
      with ``501 5.1.7`` (MAIL) or ``501 5.1.3`` (RCPT).

Why not aiosmtpd's parser: it uses the email package's lenient header
parser, which turns ``<unterminated`` into the address ``unterminated`` and
accepts spaces and stray brackets. A path either matches the RFC 5321
grammar here or the command is refused before aiosmtpd sees it.

Leniency kept on purpose (as Postfix with ``strict_rfc821_envelopes = no``):
a space after the colon, and a bare mailbox without angle brackets.
"""

from __future__ import annotations

import re

MAX_PATH = 256  # RFC 5321 §4.5.3.1.3 (octets, including the brackets)

# RFC 5322 atext plus RFC 6531 UTF8-non-ascii; surrogates (undecodable bytes) excluded.
_U = "\u0080-\ud7ff\ue000-\U0010ffff"
_ATEXT = rf"[A-Za-z0-9!#$%&'*+/=?^_`{{|}}~\-{_U}]"
_DOT_STRING = rf"{_ATEXT}+(?:\.{_ATEXT}+)*"
_QSTRING = rf'"(?:[\x20\x21\x23-\x5b\x5d-\x7e{_U}]|\\[\x20-\x7e])*"'  # RFC 5321 Quoted-string
_LABEL = rf"[A-Za-z0-9{_U}](?:[A-Za-z0-9\-{_U}]*[A-Za-z0-9{_U}])?"
_DOMAIN = rf"{_LABEL}(?:\.{_LABEL})*"
_ADDR_LIT = r"\[(?:[0-9]{1,3}(?:\.[0-9]{1,3}){3}|IPv6:[0-9A-Fa-f:.]+|[A-Za-z0-9-]*[A-Za-z0-9]:[\x21-\x5a\x5e-\x7e]+)\]"
_MAILBOX = rf"(?:{_DOT_STRING}|{_QSTRING})@(?:{_DOMAIN}|{_ADDR_LIT})"
_ADL = rf"@{_DOMAIN}(?:,@{_DOMAIN})*"  # source route: accepted and ignored, RFC 5321 §4.1.2 / §C
_PATH = re.compile(rf"<(?:{_ADL}:)?(?P<mailbox>{_MAILBOX})>")
_BARE = re.compile(rf"(?P<mailbox>{_MAILBOX})")
_POSTMASTER = re.compile(r"<postmaster>", re.IGNORECASE)  # RFC 5321 §4.1.1.3: RCPT TO:<Postmaster>


class PathError(ValueError):
    """A MAIL or RCPT path that does not follow RFC 5321 §4.1.2."""


def parse_path(arg: str | None, *, reverse: bool) -> tuple[str, str]:
    """``reverse=True`` for MAIL FROM (the null path ``<>`` allowed), False for RCPT TO."""
    if arg is None:
        raise PathError("missing address")
    s = arg.lstrip(" ")
    if reverse and s.startswith("<>"):
        end = 2
        mailbox = ""
    elif not reverse and _POSTMASTER.match(s):
        end = len("<postmaster>")
        mailbox = "postmaster"
    else:
        m = _PATH.match(s) if s.startswith("<") else _BARE.match(s)
        if m is None:
            if s.startswith("<") and ">" not in s:
                raise PathError("unterminated path, missing '>'")
            raise PathError("malformed address")
        end = m.end()
        mailbox = m.group("mailbox")
    if end > MAX_PATH:
        raise PathError("path too long")
    rest = s[end:]
    if rest and not rest.startswith(" "):
        raise PathError("unexpected characters after the address")
    return mailbox, rest.strip(" ")
