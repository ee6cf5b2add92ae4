"""Sieve at delivery: run the managed script and the user's, store as they say, then the side effects.

In:   one StoreJob, its header section (inline or from the spool), the mail
      store, the pipeline's ``append(mailbox, flags)`` (the one ingest path with
      the dedup key), the script repository, the directory (the user's
      addresses, for vacation only), the outlet and state (:mod:`.effects`).
Out:  :meth:`SieveDelivery.deliver` -> :class:`Filed`: the append results, the
      decision (:class:`~.actions.Outcome`) and what happened, for the log:
        1. the managed script (:mod:`.managed`, rendered from the user's rules,
           without its spam rule when the user's script tests spamtest), then
           the user's active script unless the managed one stopped;
        2. the message is stored into each mailbox of the decision (with its
           flags; ``:create`` creates a missing mailbox; without it a mailbox
           that does not exist means INBOX), or nowhere when discarded;
        3. then redirect, vacation, reject (:mod:`.effects`), each once.
Fails: a script that fails at run time (budget, conflicting actions, a limit)
      has its actions dropped and the message kept (RFC 5228 §2.10.6): it is
      stored, the failure logged. Any other error while deciding (a bug, a
      stored script that no longer compiles) falls back to the router's
      mailbox: mail is never lost to Sieve. QuotaExceeded and StoreUnavailable
      from the store or the side effects propagate (bounce / SQS retry).

No backscatter: a ``reject`` is carried out only for a verified sender (SPF
pass or aligned DKIM) of a message not marked spam; otherwise the message is
kept and the skipped reject logged. Redirect loops: a message whose trace
already holds ``Delivered-To: <this user>`` (it came back) is not redirected
again, and no copy goes to a target already named in a ``Delivered-To``.
"""

from __future__ import annotations

import contextlib

import datetime as _dt
import logging
import time
from dataclasses import dataclass, field

from .. import mailboxes
from ..address import parse_address
from ..errors import InvalidAddress, MailboxExists, MailboxLimit, MailboxNotFound, StoreUnavailable
from ..mail.header import Header
from ..spam import strip_forged
from ..verdicts import AuthFacts, SpamVerdict
from . import autoreply, managed
from .actions import MANAGED, USER, Delivery, Outcome, Result
from .errors import SieveError, SieveRuntimeError
from .interpreter import run
from .limits import Limits
from .message import Context, Envelope, MessageView
from .repository import program

log = logging.getLogger(__name__)
INBOX = "INBOX"


@dataclass
class Filed:
    outcome: Outcome
    results: list = field(default_factory=list)  # AppendResult per stored copy
    stored: list[str] = field(default_factory=list)  # the mailboxes it went into
    notes: list[str] = field(default_factory=list)  # what happened, for the log
    error: str = ""  # a script failed at run time (the message was kept)


def environment(hostname: str) -> dict[str, str]:
    """RFC 5183 §4.1 items."""
    labels = hostname.lower().rstrip(".").split(".")
    return {"domain": ".".join(labels[1:]) if len(labels) > 2 else hostname.lower(), "host": hostname.lower(),
            "location": "MDA", "phase": "during", "name": "Postern", "version": "1"}


class SieveDelivery:
    def __init__(self, repo, effects, directory=None, limits: Limits | None = None, hostname: str = "",
                 body_reader=None, clock=time.time):
        self.repo = repo
        self.effects = effects
        self.directory = directory
        self.limits = limits or Limits()
        self.hostname = hostname or "localhost"
        self.body_reader = body_reader  # (spool key, limit) -> bytes
        self.clock = clock

    # --- deciding (pure apart from reading the scripts) -----------------------------------------------
    def context(self, job, header: bytes, raw: bytes | None, prefix: bytes, store, now: float) -> Context:
        # Our X-Spam-* block is in the prefix; the sender's own copies (forgeable) are not read.
        view = Header(prefix + strip_forged(header))
        limit = self.limits.body_bytes
        if raw is not None:
            loader = (lambda: raw[:limit])
        elif self.body_reader is not None:
            loader = (lambda: self.body_reader(job.s3_key, limit))
        else:
            loader = None
        size = len(prefix) + (job.size if raw is None else len(raw))
        boxes: dict[str, bool] = {}

        def exists(name: str) -> bool:
            if not boxes:
                boxes.update({mb.name: True for mb in store.list_mailboxes(job.user)})
                boxes.setdefault("INBOX", True)
            return name in boxes

        env = Envelope(job.mail_from, job.original_recipient or job.user, job.user,
                       AuthFacts.from_dict(job.auth), SpamVerdict.from_dict(job.spam))
        return Context(env, MessageView(view, size, loader), _dt.datetime.fromtimestamp(now, _dt.timezone.utc),
                       exists, environment(self.hostname))

    def batch(self, users):
        """Read the Sieve items of a store batch's recipients at once (``ScriptRepository.batch``)."""
        batch = getattr(self.repo, "batch", None)
        return batch(users) if batch is not None else contextlib.nullcontext()

    def decide(self, job, ctx: Context) -> tuple[Outcome, list[str], str]:
        """(outcome, notes, error). Runs the managed script, then the user's."""
        notes: list[str] = []
        active, rules = self.repo.for_delivery(job.user)
        user_prog = None
        if active is not None:
            try:
                user_prog = program(active.text, active.digest)
            except SieveError as exc:  # stored under other rules: never at delivery (keep, and say so)
                notes.append(f"active script {active.info.name!r} does not compile: {exc}")
        tests_spam = user_prog is not None and bool({"spamtest"} & user_prog.uses)
        managed_prog = program(managed.render(managed.ManagedRules.from_dict(rules), tests_spam))
        result = Result(self.limits, INBOX)
        error = ""
        try:
            rt = run(managed_prog, ctx, result, MANAGED, self.limits)
            stopped = rt.stopped
        except SieveRuntimeError as exc:
            result.drop(MANAGED)
            error = f"managed script: {exc}"
            stopped = False
        if user_prog is not None and not stopped:
            try:
                run(user_prog, ctx, result, USER, self.limits)
            except SieveRuntimeError as exc:
                result.drop(USER)
                error = f"script {active.info.name!r}: {exc}"
        outcome = result.outcome()
        if outcome.reject is not None:
            why = autoreply.backscatter(ctx.envelope)
            if why:
                notes.append(f"reject not sent ({why}): message kept")
                outcome.reject = None
                if not outcome.deliveries:
                    outcome.deliveries.append(Delivery(INBOX))
                    outcome.discarded = False
        return outcome, notes, error

    # --- carrying out ---------------------------------------------------------------------------------
    def deliver(self, job, header: bytes, raw: bytes | None, prefix: bytes, store, append) -> Filed:
        now = self.clock()
        try:
            ctx = self.context(job, header, raw, prefix, store, now)
            outcome, notes, error = self.decide(job, ctx)
        except StoreUnavailable:
            raise
        except Exception as exc:  # a bug in Sieve must not lose mail: the router's mailbox, as without Sieve
            log.exception("sieve failed for %s (%s); delivering to %s", job.queue_id, job.user, job.mailbox)
            outcome, notes, error, ctx = Outcome([Delivery(job.mailbox)]), [], f"internal error: {exc!r}", None
        filed = Filed(outcome, notes=notes, error=error)
        for d in outcome.deliveries:
            self._store(job, store, append, d, filed)
        if ctx is not None:
            self._effects(job, ctx, outcome, filed, now)
        return filed

    def _store(self, job, store, append, d: Delivery, filed: Filed) -> None:
        mailbox = d.mailbox
        if d.create and mailbox != INBOX:
            try:
                mailboxes.create(store, job.user, mailbox)  # the mailbox rules: superiors too
                filed.notes.append(f"created mailbox {mailbox!r}")
            except MailboxExists:
                pass
            except MailboxLimit:
                filed.notes.append(f"mailbox {mailbox!r} not created: the account has too many")  # -> INBOX
        try:
            filed.results.append(append(mailbox, d.flags))
        except MailboxNotFound:
            if mailbox == INBOX or INBOX in filed.stored:
                raise
            filed.notes.append(f"no mailbox {mailbox!r}: kept in INBOX")  # RFC 5490 §3.2: no :create
            mailbox = INBOX
            filed.results.append(append(INBOX, d.flags))
        filed.stored.append(mailbox)

    def _effects(self, job, ctx: Context, outcome: Outcome, filed: Filed, now: float) -> None:
        delivered_to = [v.strip().lower() for v in ctx.message.header.texts(b"delivered-to")]
        looped = delivered_to.count(job.user.lower()) > 1
        for target in outcome.redirects:
            if looped:
                filed.notes.append(f"redirect to {target} skipped: the message came back (Delivered-To loop)")
            elif target.lower() in delivered_to:
                filed.notes.append(f"redirect to {target} skipped: it was delivered there already")
            elif self.effects.redirect(job, target, now, job.auth, job.spam):
                filed.notes.append(f"redirected to {target}")
        if outcome.vacation is not None:
            own = self._own_addresses(job)
            why = autoreply.refusal(ctx, outcome.vacation, own)
            if why:
                filed.notes.append(f"vacation reply not sent: {why}")
            else:
                raw = autoreply.build(ctx, outcome.vacation, job.user, own, job.queue_id, self.hostname, now)
                what = self.effects.vacation(job, raw, job.mail_from, outcome.vacation.handle,
                                             outcome.vacation.period, now)
                filed.notes.append(f"vacation reply to {job.mail_from}: {what}")
        if outcome.reject is not None:
            self.effects.reject(job, outcome.reject.reason, now)
            filed.notes.append(f"rejected: report to {job.mail_from}")

    def _own_addresses(self, job) -> set[str]:
        own = {job.user.lower()}
        try:
            to = parse_address(job.original_recipient)
            own.add(to.canonical)
            if to.without_tag() is not None:
                own.add(to.without_tag().canonical)
        except InvalidAddress:
            pass
        if self.directory is not None:
            own |= {a.lower() for a in self.directory.addresses_of(job.user)}
        return own


def from_settings(settings, clients) -> SieveDelivery | None:
    """The store function's Sieve (None when POSTERN_SIEVE is off)."""
    if not settings.sieve:
        return None
    from ..directory import dynamo_directory
    from .effects import AwsOutlet, DynamoState, Effects
    from .repository import repository

    outlet = AwsOutlet(settings, clients)
    return SieveDelivery(repository(settings, clients),
                         Effects(outlet, DynamoState(clients, settings.state_table), settings.spool_prefix),
                         directory=dynamo_directory(settings, clients),
                         limits=Limits(max_redirects=settings.sieve_max_redirects, body_bytes=settings.sieve_body_max),
                         hostname=settings.hostname, body_reader=outlet.read_spool)
