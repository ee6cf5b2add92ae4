"""``postern user spam`` and ``postern domain spam``: the spam thresholds (postern.spam).

In:   a user address or a domain, ``--junk SCORE`` (the move-to-Junk score), ``--reject SCORE``
      (the score at which the MX refuses the message, when every recipient's is reached),
      ``--clear``; neither: show the thresholds in force and where they come from.
Out:  the directory item updated (:meth:`postern.directory.Directory.set_spam_thresholds`);
      one line: ``alice@example.org  junk 6.0  reject 15.0`` (with ``(domain)`` / ``(default)``
      for inherited values).
Fails: no such user or domain (exit 1), a score that is not a number or a junk score above the
      reject score (exit 2).
"""

from __future__ import annotations

from .cli import CliError
from .spam import Thresholds, valid_score


def _score(text: str) -> float:
    try:
        return valid_score(text)
    except ValueError as exc:
        raise CliError(str(exc)) from None


def _add(sub, what: str, help_target: str) -> None:
    p = sub.add_parser("spam", help=f"show or set the spam thresholds of {help_target}")
    p.add_argument(what)
    p.add_argument("--junk", type=str, metavar="SCORE", help="move to Junk above this rspamd score "
                   f"(default {Thresholds().junk})")
    p.add_argument("--reject", type=str, metavar="SCORE", help="refuse in the SMTP session at or above this score, "
                   f"when every recipient's is reached (default {Thresholds().reject})")
    p.add_argument("--clear", action="store_true", help="remove the values set here (inherit again)")
    p.set_defaults(func=_run, spam_target=what)


def register_user(sub) -> None:
    _add(sub, "address", "a user (default: the domain's)")


def register_domain(sub) -> None:
    _add(sub, "domain", "a domain: its users' defaults")


def _run(args, ctx) -> None:
    target = getattr(args, args.spam_target)
    junk = _score(args.junk) if args.junk is not None else None
    reject = _score(args.reject) if args.reject is not None else None
    d = ctx.directory
    if junk is not None or reject is not None or args.clear:
        current = d.spam_thresholds(target if "@" in target else f"postmaster@{target}")
        j = junk if junk is not None else current.junk
        r = reject if reject is not None else current.reject
        if not args.clear and j > r:
            raise CliError(f"the junk score ({j}) cannot be above the reject score ({r})")
        d.set_spam_thresholds(target, junk, reject, clear=args.clear)
    own = d.require_user(target) if "@" in target else d.get_domain(target)
    if own is None:
        from .errors import NoSuchDomain

        raise NoSuchDomain(f"No such domain {target}")
    t = d.spam_thresholds(target if "@" in target else f"postmaster@{target}")
    inherited = "(domain)" if "@" in target else "(default)"
    junk_note = "" if own.spam_junk is not None else f" {inherited}"
    reject_note = "" if own.spam_reject is not None else f" {inherited}"
    ctx.emit(f"{target}\tjunk {t.junk}{junk_note}\treject {t.reject}{reject_note}")
