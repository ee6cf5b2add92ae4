"""What a Sieve run decided: its actions, the implicit keep, and the conflicts between them.

In:   the interpreter adds actions as commands run (:meth:`Result.add`,
      :meth:`Result.cancel_keep`); a delivery may run two scripts (the
      Postern-managed one, then the user's) into one result.
Out:  :meth:`Result.outcome` -> :class:`Outcome`: the mailboxes to store into
      (with flags), the addresses to redirect to, at most one vacation reply,
      at most one reject, whether the message was discarded. RFC 5228 §4.2:
      the implicit keep stands unless a ``fileinto``, ``redirect`` (without
      ``:copy``), ``discard``, ``reject`` or an explicit ``keep`` cancelled it;
      a message stored twice into one mailbox is stored once (§2.10.3).
Fails: :class:`~postern.sieve.errors.SieveRuntimeError` for actions that cannot
      go together (RFC 5429 §2.1: ``reject`` with ``keep``/``fileinto``/
      ``redirect``/``vacation`` or a second ``reject``; RFC 5230 §4.7: two
      ``vacation`` in one script), more redirects than the per-script limit,
      more actions than the per-run limit.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..store.base import normalize_mailbox_name
from .errors import SieveRuntimeError
from .limits import Limits

MANAGED = "managed"  # the Postern-managed script (postern.sieve.managed)
USER = "user"  # the user's active script


@dataclass(frozen=True)
class Keep:
    flags: frozenset[str] | None = None  # None: the message's flags are not set by the script


@dataclass(frozen=True)
class FileInto:
    mailbox: str
    flags: frozenset[str] | None = None
    create: bool = False  # RFC 5490 :create
    copy: bool = False  # RFC 3894 :copy


@dataclass(frozen=True)
class Redirect:
    address: str
    copy: bool = False


@dataclass(frozen=True)
class Discard:
    pass


@dataclass(frozen=True)
class Reject:
    reason: str
    extended: bool = False  # ereject (RFC 5429 §2.1): after the 250 it is the same report


@dataclass(frozen=True)
class Vacation:
    reason: str
    period: int  # seconds: at most one reply per sender per period (RFC 5230 :days, RFC 6131 :seconds)
    subject: str | None = None
    from_: str | None = None
    addresses: tuple[str, ...] = ()
    mime: bool = False
    handle: str = ""  # RFC 5230 §4.2: the explicit :handle, or one derived from the arguments


Action = Keep | FileInto | Redirect | Discard | Reject | Vacation


@dataclass(frozen=True)
class Delivery:
    """Store the message into ``mailbox`` with ``flags``."""

    mailbox: str
    flags: frozenset[str] = frozenset()
    create: bool = False


@dataclass
class Outcome:
    deliveries: list[Delivery] = field(default_factory=list)
    redirects: list[str] = field(default_factory=list)
    vacation: Vacation | None = None
    reject: Reject | None = None
    discarded: bool = False  # the implicit keep was cancelled and nothing is stored
    implicit_keep: bool = True  # the message is stored because no action cancelled the keep


class Result:
    """The actions of one delivery, across the scripts that ran."""

    def __init__(self, limits: Limits | None = None, inbox: str = "INBOX"):
        self.limits = limits or Limits()
        self.inbox = inbox
        self.actions: list[tuple[str, Action]] = []
        self.implicit_keep = True
        self.keep_flags: frozenset[str] | None = None  # the internal flag variable when the last script ended
        self.redirects: dict[str, int] = {}  # per script origin

    def _conflict(self, origin: str, action: Action) -> None:
        kinds = [(o, a) for o, a in self.actions]
        if isinstance(action, Reject):
            for o, a in kinds:
                if isinstance(a, Reject):
                    raise SieveRuntimeError("more than one reject")  # RFC 5429 §2.1
                if isinstance(a, Keep | FileInto | Redirect):
                    raise SieveRuntimeError(f"reject conflicts with an earlier {type(a).__name__.lower()}")
                if isinstance(a, Vacation) and o == origin:
                    raise SieveRuntimeError("reject conflicts with vacation")
        elif isinstance(action, Keep | FileInto | Redirect):
            if any(isinstance(a, Reject) for _, a in kinds):
                raise SieveRuntimeError(f"{type(action).__name__.lower()} conflicts with an earlier reject")
        elif isinstance(action, Vacation):
            for o, a in kinds:
                if isinstance(a, Vacation) and o == origin:
                    raise SieveRuntimeError("more than one vacation")  # RFC 5230 §4.7
                if isinstance(a, Reject):
                    raise SieveRuntimeError("vacation conflicts with reject")

    def add(self, origin: str, action: Action) -> None:
        self._conflict(origin, action)
        if len(self.actions) >= self.limits.max_actions:
            raise SieveRuntimeError(f"more than {self.limits.max_actions} actions")
        if isinstance(action, Redirect):
            n = self.redirects.get(origin, 0) + 1
            if n > self.limits.max_redirects:
                raise SieveRuntimeError(f"more than {self.limits.max_redirects} redirects")
            self.redirects[origin] = n
        if isinstance(action, Reject | Vacation):
            # The user's own reject or vacation replaces the managed vacation: one answer per message.
            self.actions = [(o, a) for o, a in self.actions if not (o == MANAGED and o != origin
                                                                    and isinstance(a, Vacation))]
        self.actions.append((origin, action))
        if isinstance(action, Keep | Discard | Reject) or (isinstance(action, FileInto | Redirect) and not action.copy):
            self.implicit_keep = False  # RFC 5228 §4.2, RFC 3894 §3

    def drop(self, origin: str) -> None:
        """Forget what ``origin`` did (its script failed at run time) and restore the implicit keep
        unless another script cancelled it."""
        self.actions = [(o, a) for o, a in self.actions if o != origin]
        self.redirects.pop(origin, None)
        self.implicit_keep = not any(
            isinstance(a, Keep | Discard | Reject) or (isinstance(a, FileInto | Redirect) and not a.copy)
            for _, a in self.actions)

    def outcome(self) -> Outcome:
        out = Outcome(implicit_keep=self.implicit_keep)
        stored: dict[str, int] = {}

        def deliver(mailbox: str, flags: frozenset[str] | None, create: bool) -> None:
            key = normalize_mailbox_name(mailbox)  # the one INBOX rule: "inbox/x" is "INBOX/x"
            if key in stored:  # RFC 5228 §2.10.3: one copy per mailbox
                return
            stored[key] = len(out.deliveries)
            out.deliveries.append(Delivery(key, flags or frozenset(), create))

        seen_redirects: set[str] = set()
        for _, a in self.actions:
            if isinstance(a, Keep):
                deliver(self.inbox, a.flags, False)
            elif isinstance(a, FileInto):
                deliver(a.mailbox, a.flags, a.create)
            elif isinstance(a, Redirect):
                if a.address.lower() not in seen_redirects:
                    seen_redirects.add(a.address.lower())
                    out.redirects.append(a.address)
            elif isinstance(a, Vacation):
                out.vacation = a
            elif isinstance(a, Reject):
                out.reject = a
        if self.implicit_keep:
            deliver(self.inbox, self.keep_flags, False)
        out.discarded = not out.deliveries
        return out
