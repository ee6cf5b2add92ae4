"""The Postern-managed script: what runs before the user's own, written from structured settings.

In:   the managed rules a user's tools set (the CLI ``postern user vacation``,
      JMAP's VacationResponse, the webmail's simple filters, allow/block lists)
      through :class:`Managed`, stored as JSON beside the user's scripts
      (:meth:`~.repository.ScriptRepository.put_managed_rules`).
Out:  :func:`render` -> Sieve text (deterministic: the same rules give the same
      script, so its compiled form is cached by digest), run first at every
      delivery, as Dovecot's ``sieve_before``. In order:
        1. a sender on the block list -> Junk, stop;
        2. DMARC p=quarantine failure -> Junk, stop;
        3. marked spam (spamtest >= 2: above the user's Junk threshold) and
           the From: address not on the allow list -> Junk, stop - left out
           when the user's own active script tests spamtest itself (the user
           decides then);
        4. the vacation reply, within its from/until window;
        5. the simple filters (from/to/subject -> folder, created when missing).
      "stop" here ends the whole delivery's scripts: the user's script does not
      run on mail sent to Junk. The managed script never replaces the user's.
Fails: :class:`ManagedRuleError` (a PosternError, permanent) for settings that
      cannot be rules: a bad folder name, an empty filter value, too many
      entries, an unreadable date.

Allow-list entries are addresses (``a@example.org``) or domains (``@example.org``)
matched against the From: address; they keep mail out of Junk for its spam
score only - DMARC quarantine and the block list still apply (a forged From:
must not talk its way in). Block-list entries match From: or the envelope sender.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
from dataclasses import asdict, dataclass
from email.message import EmailMessage
from email.policy import SMTP

from ..errors import MailboxInvalid, PosternError
from .extensions.mailbox import mailbox_name

MAX_FILTERS = 100
MAX_LIST = 1000
MAX_VALUE = 1024
MAX_TEXT = 60 * 1024
FIELDS = ("from", "to", "subject")
MATCHES = ("contains", "is")
JUNK = "Junk"


class ManagedRuleError(PosternError):
    permanent = True
    imap_kind = "BAD"


@dataclass(frozen=True)
class VacationSettings:
    enabled: bool = True
    subject: str | None = None
    text: str = ""
    html: str | None = None
    from_date: float | None = None  # epoch seconds (JMAP fromDate); None: now
    to_date: float | None = None  # epoch seconds (JMAP toDate, the CLI's --until); None: until turned off
    days: int = 7


@dataclass(frozen=True)
class Filter:
    field: str  # from | to | subject
    value: str
    folder: str
    match: str = "contains"  # contains | is
    id: str = ""  # stable across edits (JMAP Filter ids are immutable); "" for filters written before ids


@dataclass(frozen=True)
class ManagedRules:
    vacation: VacationSettings | None = None
    filters: tuple[Filter, ...] = ()
    allow: tuple[str, ...] = ()
    block: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        return {"vacation": asdict(self.vacation) if self.vacation else None,
                "filters": [asdict(f) for f in self.filters], "allow": list(self.allow), "block": list(self.block)}

    @classmethod
    def from_dict(cls, d: dict | None) -> ManagedRules:
        d = d or {}
        v = d.get("vacation")
        vacation = None
        if isinstance(v, dict):
            known = {k: v[k] for k in VacationSettings.__dataclass_fields__ if k in v}
            vacation = VacationSettings(**known)
        filters = tuple(Filter(**{k: f[k] for k in Filter.__dataclass_fields__ if k in f})
                        for f in d.get("filters") or () if isinstance(f, dict))
        return cls(vacation, filters, tuple(d.get("allow") or ()), tuple(d.get("block") or ()))


# --- rendering ------------------------------------------------------------------------------------
def quote(s: str) -> str:
    """A Sieve quoted string (RFC 5228 §2.4.2) holding ``s`` exactly."""
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _list(items) -> str:
    return "[" + ", ".join(quote(i) for i in items) + "]"


def iso(t: float) -> str:
    """The RFC 5260 iso8601 date part of ``t`` in UTC, as currentdate :zone "+0000" shows it."""
    d = _dt.datetime.fromtimestamp(t, _dt.timezone.utc)
    return d.strftime("%Y-%m-%dT%H:%M:%SZ")


def _senders(entries) -> tuple[list[str], list[str]]:
    addresses = [e for e in entries if not e.startswith("@")]
    domains = [e[1:] for e in entries if e.startswith("@")]
    return addresses, domains


def _from_test(entries, envelope: bool) -> str | None:
    addresses, domains = _senders(entries)
    tests = []
    if addresses:
        tests.append(f'address :is :all "from" {_list(addresses)}')
        if envelope:
            tests.append(f'envelope :is :all "from" {_list(addresses)}')
    if domains:
        tests.append(f'address :is :domain "from" {_list(domains)}')
        if envelope:
            tests.append(f'envelope :is :domain "from" {_list(domains)}')
    if not tests:
        return None
    return tests[0] if len(tests) == 1 else "anyof(" + ", ".join(tests) + ")"


def vacation_reason(v: VacationSettings) -> tuple[str, bool]:
    """(reason, is MIME): plain text, or a multipart/alternative entity when there is HTML."""
    if not v.html:
        return v.text, False
    part = EmailMessage(policy=SMTP)
    part.set_content(v.text or "", cte="quoted-printable")  # 7-bit: the reply needs no 8BITMIME
    part.add_alternative(v.html, subtype="html", cte="quoted-printable")
    # the same settings render the same script (its digest keys the compiled cache and the reply's handle)
    part.set_boundary("=_postern_" + hashlib.sha256(f"{v.text}\x00{v.html}".encode()).hexdigest()[:24])
    for p in [part, *part.iter_parts()]:
        del p["MIME-Version"]
    return part.as_bytes().decode("utf-8"), True


def render(rules: ManagedRules, user_tests_spam: bool = False) -> str:
    """The managed script for ``rules``. ``user_tests_spam``: the user's active script uses spamtest."""
    lines = ['require ["fileinto", "envelope", "environment", "spamtest", "relational",'
             ' "comparator-i;ascii-numeric", "vacation", "date", "mailbox"];']
    blocked = _from_test(rules.block, envelope=True)
    if blocked:
        lines.append(f"if {blocked} {{ fileinto {quote(JUNK)}; stop; }}")
    lines.append(f'if environment :is "vnd.postern.quarantine" "yes" {{ fileinto {quote(JUNK)}; stop; }}')
    if not user_tests_spam:
        spam = 'spamtest :value "ge" :comparator "i;ascii-numeric" "2"'
        allowed = _from_test(rules.allow, envelope=False)
        test = f"allof(not {allowed}, {spam})" if allowed else spam
        lines.append(f"if {test} {{ fileinto {quote(JUNK)}; stop; }}")
    v = rules.vacation
    if v is not None and v.enabled:
        reason, mime = vacation_reason(v)
        args = [f":days {max(1, int(v.days))}"]
        if v.subject:
            args.append(f":subject {quote(v.subject)}")
        if mime:
            args.append(":mime")
        action = f"vacation {' '.join(args)} {quote(reason)};"
        window = []
        if v.from_date is not None:
            window.append(f'currentdate :zone "+0000" :value "ge" "iso8601" {quote(iso(v.from_date))}')
        if v.to_date is not None:
            window.append(f'currentdate :zone "+0000" :value "le" "iso8601" {quote(iso(v.to_date))}')
        if window:
            cond = window[0] if len(window) == 1 else "allof(" + ", ".join(window) + ")"
            lines.append(f"if {cond} {{ {action} }}")
        else:
            lines.append(action)
    for f in rules.filters:
        if f.field == "subject":
            test = f'header :{f.match} "subject" {quote(f.value)}'
        elif f.field == "from":
            test = f'address :{f.match} :all "from" {quote(f.value)}'
        else:
            test = f'address :{f.match} :all ["to", "cc"] {quote(f.value)}'
        lines.append(f"if {test} {{ fileinto :create {quote(f.folder)}; }}")
    return "\r\n".join(lines) + "\r\n"


# --- validation ------------------------------------------------------------------------------------
def _check_sender(entry: str) -> str:
    e = entry.strip().lower()
    if not e or len(e) > 254 or any(c in e for c in ' \t\r\n"\\,<>') or e.count("@") != 1 or e.endswith("@"):
        raise ManagedRuleError(f"not an address or @domain: {entry!r}")
    return e


def check_filter(f: Filter) -> Filter:
    if f.field not in FIELDS:
        raise ManagedRuleError(f"filter field must be one of {', '.join(FIELDS)}")
    if f.match not in MATCHES:
        raise ManagedRuleError(f"filter match must be one of {', '.join(MATCHES)}")
    if not f.value or len(f.value) > MAX_VALUE or "\x00" in f.value:
        raise ManagedRuleError(f"filter value must have 1 to {MAX_VALUE} characters")
    try:
        folder = mailbox_name(f.folder)
    except MailboxInvalid:
        raise ManagedRuleError(f"invalid folder name {f.folder!r}") from None
    return Filter(f.field, f.value, folder, f.match, f.id)


def check_vacation(v: VacationSettings) -> VacationSettings:
    if len(v.text or "") > MAX_TEXT or len(v.html or "") > MAX_TEXT:
        raise ManagedRuleError(f"the vacation text is limited to {MAX_TEXT} characters")
    if v.subject is not None and (len(v.subject) > 998 or any(c in v.subject for c in "\r\n")):
        raise ManagedRuleError("the vacation subject must be one line")
    if not v.text and not v.html:
        raise ManagedRuleError("the vacation reply needs a text")
    if not 1 <= int(v.days) <= 30:
        raise ManagedRuleError("days must be between 1 and 30")
    if v.from_date is not None and v.to_date is not None and v.to_date < v.from_date:
        raise ManagedRuleError("the vacation ends before it starts")
    return v


# --- the structured API ------------------------------------------------------------------------------
@dataclass
class Managed:
    """Read and change one user's managed rules (CLI, JMAP VacationResponse, webmail filters)."""

    repo: object  # ScriptRepository

    def rules(self, user: str) -> ManagedRules:
        return ManagedRules.from_dict(self.repo.managed_rules(user))

    def _save(self, user: str, rules: ManagedRules) -> ManagedRules:
        self.repo.put_managed_rules(user, rules.to_dict())
        return rules

    def set_vacation(self, user: str, settings: VacationSettings) -> ManagedRules:
        r = self.rules(user)
        return self._save(user, ManagedRules(check_vacation(settings), r.filters, r.allow, r.block))

    def disable_vacation(self, user: str) -> ManagedRules:
        r = self.rules(user)
        v = r.vacation
        off = VacationSettings(False, v.subject, v.text, v.html, v.from_date, v.to_date, v.days) if v else None
        return self._save(user, ManagedRules(off, r.filters, r.allow, r.block))

    def set_filters(self, user: str, filters) -> ManagedRules:
        checked = tuple(check_filter(f) for f in filters)
        if len(checked) > MAX_FILTERS:
            raise ManagedRuleError(f"at most {MAX_FILTERS} filters")
        r = self.rules(user)
        return self._save(user, ManagedRules(r.vacation, checked, r.allow, r.block))

    def _lists(self, user: str, allow=None, block=None) -> ManagedRules:
        r = self.rules(user)
        allow = tuple(dict.fromkeys(allow if allow is not None else r.allow))
        block = tuple(dict.fromkeys(block if block is not None else r.block))
        if len(allow) > MAX_LIST or len(block) > MAX_LIST:
            raise ManagedRuleError(f"at most {MAX_LIST} entries per list")
        return self._save(user, ManagedRules(r.vacation, r.filters, allow, block))

    def allow(self, user: str, sender: str) -> ManagedRules:
        e = _check_sender(sender)
        r = self.rules(user)
        return self._lists(user, allow=r.allow + (e,), block=tuple(b for b in r.block if b != e))

    def block(self, user: str, sender: str) -> ManagedRules:
        e = _check_sender(sender)
        r = self.rules(user)
        return self._lists(user, block=r.block + (e,), allow=tuple(a for a in r.allow if a != e))

    def unlist(self, user: str, sender: str) -> ManagedRules:
        e = _check_sender(sender)
        r = self.rules(user)
        return self._lists(user, allow=tuple(a for a in r.allow if a != e), block=tuple(b for b in r.block if b != e))
