"""Header fields in the parsed forms of RFC 8621 §4.1.2, through the shared header view.

In:   a :class:`postern.mail.header.Header` over the Email's header section,
      and property names (``from``, ``subject``..., ``header:Name:asForm:all``).
Out:  :func:`convenience` (the Email properties that are header fields),
      :func:`header_property` (any ``header:`` property), :func:`parse_property`
      (a property name checked: invalidArguments otherwise).
Fails: never for a message's content: what cannot be read in a form is null
      (RFC 8621 §4.1.2: "If the parsed form cannot be created, null").

Every value goes through ``postern.mail`` (splitter, address parser, strict
date parser, RFC 2047 decoder) and its caps: no second reading of a header.
"""

from __future__ import annotations

import re
import unicodedata

from ..mail.addresses import Group, Mailbox, parse_address_list
from ..mail.dates import parse_rfc5322_date
from ..mail.encoded import decode_words
from ..mail.header import Field, Header, unfold
from ..mail.limits import structured
from .errors import invalid_arguments

FORMS = ("Raw", "Text", "Addresses", "GroupedAddresses", "MessageIds", "Date", "URLs")
_NAME = re.compile(r"[\x21-\x39\x3b-\x7e]{1,200}")  # RFC 5322 §3.6.8 ftext
# RFC 8621 §4.1.2.{1-7}: which forms a known field may be read in (others: Raw and Text only ... or any)
_ADDRESS_FIELDS = {"from", "sender", "reply-to", "to", "cc", "bcc", "resent-from", "resent-sender",
                   "resent-reply-to", "resent-to", "resent-cc", "resent-bcc"}
_ID_FIELDS = {"message-id", "in-reply-to", "references", "resent-message-id"}
_DATE_FIELDS = {"date", "resent-date"}
_TEXT_FIELDS = {"subject", "comments", "keywords", "list-id"}
_URL_FIELDS = {"list-help", "list-unsubscribe", "list-subscribe", "list-post", "list-owner", "list-archive"}


def parse_property(prop: str) -> tuple[str, str, bool] | None:
    """``header:Name[:asForm][:all]`` -> (lower-case name, form, all), None if not a header property."""
    if not prop.startswith("header:"):
        return None
    parts = prop.split(":")[1:]
    all_ = bool(parts) and parts[-1] == "all"
    if all_:
        parts = parts[:-1]
    form = "Raw"
    if len(parts) == 2 and parts[1].startswith("as") and parts[1][2:] in FORMS:
        form = parts[1][2:]
        parts = parts[:1]
    if len(parts) != 1 or not _NAME.fullmatch(parts[0]):
        raise invalid_arguments(f"bad header property {prop[:80]!r}")
    name = parts[0].lower()
    if not _allowed(name, form):
        raise invalid_arguments(f"{name} cannot be read as {form}")  # RFC 8621 §4.1.2
    return name, form, all_


def _allowed(name: str, form: str) -> bool:
    """RFC 8621 §4.1.2.1-7: a field RFC 5322 or RFC 2369 defines is read only in its own forms; others in any."""
    if form == "Raw":
        return True
    family = {"Text": _TEXT_FIELDS, "Addresses": _ADDRESS_FIELDS, "GroupedAddresses": _ADDRESS_FIELDS,
              "MessageIds": _ID_FIELDS, "Date": _DATE_FIELDS, "URLs": _URL_FIELDS}[form]
    known = _TEXT_FIELDS | _ADDRESS_FIELDS | _ID_FIELDS | _DATE_FIELDS | _URL_FIELDS | {"received", "return-path"}
    return name not in known or name in family


def _raw(h: Header, span) -> str:
    s, v, e = span
    return h.buf[v:e].decode("utf-8", "replace").rstrip("\r\n")


def _text(value: bytes) -> str:
    return unicodedata.normalize("NFC", decode_words(value).strip())


def _address(m: Mailbox) -> dict:
    name = _text(m.name) if m.name else None
    return {"name": name or None, "email": m.addr_spec}


def addresses(value: bytes) -> list[dict]:
    out: list[dict] = []
    for a in parse_address_list(structured(value)):
        out.extend(_address(m) for m in (a.members if isinstance(a, Group) else [a]))
    return out


def grouped(value: bytes) -> list[dict]:
    out: list[dict] = []
    for a in parse_address_list(structured(value)):
        if isinstance(a, Group):
            out.append({"name": _text(a.name) or None, "addresses": [_address(m) for m in a.members]})
        elif out and out[-1]["name"] is None:
            out[-1]["addresses"].append(_address(a))
        else:
            out.append({"name": None, "addresses": [_address(a)]})
    return out


_MSGID = re.compile(rb"<([^<>]*)>")


def message_ids(value: bytes) -> list[str] | None:
    ids = [b"".join(m.group(1).split()).decode("utf-8", "replace") for m in _MSGID.finditer(structured(value))]
    ids = [i for i in ids if "@" in i]
    return ids or None


def date(value: bytes) -> str | None:
    d = parse_rfc5322_date(structured(value))
    return None if d is None else d.isoformat()


def urls(value: bytes) -> list[str] | None:
    out = [m.group(1).strip().decode("utf-8", "replace") for m in _MSGID.finditer(structured(value))]
    return out or None


_PARSERS = {
    "Raw": None,
    "Text": _text,
    "Addresses": addresses,
    "GroupedAddresses": grouped,
    "MessageIds": message_ids,
    "Date": date,
    "URLs": urls,
}


def header_property(h: Header, name: str, form: str, all_: bool):
    spans = h.spans(name.encode("ascii"))[:100]
    values = []
    for span in spans:
        if form == "Raw":
            values.append(_raw(h, span))
        else:
            values.append(_PARSERS[form](unfold(h.buf, Field(name.encode(), *span))))
    if all_:
        return values
    return values[-1] if values else None  # RFC 8621 §4.1.3: the last instance of the field


def convenience(h: Header, prop: str):
    """The Email properties that are header fields in a fixed form (RFC 8621 §4.1.2, §4.1.3)."""
    if prop in ("messageId", "inReplyTo", "references"):
        name = {"messageId": "message-id", "inReplyTo": "in-reply-to", "references": "references"}[prop]
        return header_property(h, name, "MessageIds", False)
    if prop in ("sender", "from", "to", "cc", "bcc", "replyTo"):
        return header_property(h, "reply-to" if prop == "replyTo" else prop, "Addresses", False)
    if prop == "subject":
        return header_property(h, "subject", "Text", False)
    if prop == "sentAt":
        return header_property(h, "date", "Date", False)
    if prop == "headers":
        return [{"name": h.buf[f.start:f.value_start - 1].decode("ascii", "replace").rstrip(" \t"),
                 "value": h.buf[f.value_start:f.end].decode(
            "utf-8", "replace").rstrip("\r\n")} for f in h.fields if f.name is not None]
    raise KeyError(prop)
