"""``postern user vacation|sieve|sender`` and ``postern junk expire``: Sieve from the command line.

In:   the CLI context (settings, clients, directory, store); script files (UTF-8)
      or ``-`` for standard input; vacation texts from files.
Out:  ``postern user vacation ADDRESS --subject S --message-file F [--html-file H]
      [--from DATE] [--until DATE] [--days N]`` writes the managed script's
      vacation part (``--off`` turns it off; no option shows it);
      ``postern user sieve put|get|list|activate|deactivate|delete|rename|check``
      manage the user's own scripts (the same repository ManageSieve and JMAP
      use); ``postern user sender allow|block|remove|list`` the allow and block
      lists; ``postern junk expire [--days N] [ADDRESS...]`` removes old Junk now
      (what the daily JunkExpiryFunction does).
Fails: exit 1 with ``postern: <line>:<column>: <message>`` for a script that
      does not compile (nothing is stored), and for refused operations (no such
      user or script, over the limits, a bad date); 2 for usage errors; 75 when
      AWS is unreachable.

Dates: ``YYYY-MM-DD`` (``--from``: the start of that day, ``--until``: its end,
UTC) or an ISO 8601 date-time with a zone.
"""

from __future__ import annotations

import datetime as _dt

from .cli import CliError, Context
from .errors import PosternError


class DateError(PosternError):
    permanent = True


def parse_date(text: str, end_of_day: bool) -> float:
    """``2026-12-24`` (UTC; the end of that day with ``end_of_day``) or a date-time with a zone -> epoch."""
    t = text.strip()
    try:
        if len(t) == 10:
            d = _dt.datetime.strptime(t, "%Y-%m-%d").replace(tzinfo=_dt.timezone.utc)
            return (d + _dt.timedelta(days=1, seconds=-1) if end_of_day else d).timestamp()
        d = _dt.datetime.fromisoformat(t.replace("Z", "+00:00"))
    except ValueError:
        raise DateError(f"not a date: {text!r} (YYYY-MM-DD or an ISO 8601 date-time)") from None
    if d.tzinfo is None:
        raise DateError(f"give the time zone of {text!r} (e.g. {text}Z)")
    return d.timestamp()


def _read(path: str, ctx: Context) -> str:
    if path == "-":
        return ctx.stdin.read()
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise CliError(f"{path} is not UTF-8") from None


def _repo(ctx: Context):
    from .sieve.repository import repository

    return repository(ctx.settings, ctx.clients)


def _user(ctx: Context, address: str) -> str:
    return ctx.directory.require_user(address).address


def _iso(t: float | None) -> str:
    return "-" if t is None else _dt.datetime.fromtimestamp(t, _dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")


# --- vacation -----------------------------------------------------------------------------------------
def _vacation(args, ctx: Context):
    from .sieve.managed import Managed, VacationSettings

    user = _user(ctx, args.address)
    m = Managed(_repo(ctx))
    if args.off:
        if args.subject or args.message_file or args.until or args.start:
            raise CliError("--off takes no other option")
        m.disable_vacation(user)
        ctx.say(f"vacation of {user}: off")
        return
    if not args.message_file and not args.html_file:
        if args.subject or args.until or args.start:
            raise CliError("give the reply's text with --message-file")
        v = m.rules(user).vacation
        if v is None or not v.enabled:
            ctx.emit("off")
            return
        ctx.emit(f"on\tfrom {_iso(v.from_date)}\tuntil {_iso(v.to_date)}\tevery {v.days} days\tsubject "
                 f"{v.subject or '(Auto: original subject)'}")
        ctx.emit(v.text)
        return
    text = _read(args.message_file, ctx) if args.message_file else ""
    html = _read(args.html_file, ctx) if args.html_file else None
    m.set_vacation(user, VacationSettings(
        enabled=True, subject=args.subject, text=text, html=html,
        from_date=parse_date(args.start, False) if args.start else None,
        to_date=parse_date(args.until, True) if args.until else None, days=args.days))
    ctx.say(f"vacation of {user}: on" + (f" until {_iso(parse_date(args.until, True))}" if args.until else ""))


# --- scripts ------------------------------------------------------------------------------------------
def _put(args, ctx: Context):
    user = _user(ctx, args.address)
    repo = _repo(ctx)
    info = repo.put(user, args.name, _read(args.file, ctx))
    if args.activate:
        repo.activate(user, args.name)
    ctx.say(f"stored script {info.name} of {user} ({info.size} bytes)" + (", active" if args.activate else ""))


def _get(args, ctx: Context):
    script = _repo(ctx).get(_user(ctx, args.address), args.name)
    ctx.out.write(script.text if script.text.endswith("\n") else script.text + "\n")


def _list(args, ctx: Context):
    for s in _repo(ctx).list(_user(ctx, args.address)):
        ctx.emit(f"{s.name}\t{s.size} bytes\t{'ACTIVE' if s.active else '-'}\t{_iso(s.updated)}")


def _activate(args, ctx: Context):
    _repo(ctx).activate(_user(ctx, args.address), args.name)
    ctx.say(f"active script of {args.address}: {args.name}")


def _deactivate(args, ctx: Context):
    _repo(ctx).deactivate(_user(ctx, args.address))
    ctx.say(f"{args.address} has no active script")


def _delete(args, ctx: Context):
    _repo(ctx).delete(_user(ctx, args.address), args.name)
    ctx.say(f"deleted script {args.name} of {args.address}")


def _rename(args, ctx: Context):
    _repo(ctx).rename(_user(ctx, args.address), args.old, args.new)
    ctx.say(f"renamed script {args.old} of {args.address} to {args.new}")


def _check(args, ctx: Context):
    _repo(ctx).check(_read(args.file, ctx))
    ctx.say("ok")


# --- sender lists ---------------------------------------------------------------------------------------
def _sender(args, ctx: Context):
    from .sieve.managed import Managed

    user = _user(ctx, args.address)
    m = Managed(_repo(ctx))
    if args.op == "list":
        r = m.rules(user)
        for e in r.allow:
            ctx.emit(f"allow\t{e}")
        for e in r.block:
            ctx.emit(f"block\t{e}")
        return
    if not args.sender:
        raise CliError(f"sender {args.op} needs a SENDER (an address or @domain)")
    getattr(m, {"allow": "allow", "block": "block", "remove": "unlist"}[args.op])(user, args.sender)
    ctx.say(f"{args.sender}: {args.op} for {user}")


# --- Junk expiry ----------------------------------------------------------------------------------------
def _junk_expire(args, ctx: Context):
    from .sieve.expiry import expire_junk

    days = ctx.settings.junk_expire_days if args.days is None else args.days
    users = args.addresses or [u.address for u in ctx.directory.list_users(None)]
    total = 0
    for user in users:
        n = expire_junk(ctx.store, user, days)
        total += n
        if n:
            ctx.emit(f"{user}\tremoved {n} Junk messages older than {days} days")
    ctx.say(f"checked {len(users)} users, removed {total} messages")


# --- registration ---------------------------------------------------------------------------------------
def register_user(sub) -> None:
    p = sub.add_parser("vacation", help="the automatic out-of-office reply (the managed Sieve script)")
    p.add_argument("address")
    p.add_argument("--subject", help="subject of the reply (default: 'Auto: ' + the original subject)")
    p.add_argument("--message-file", metavar="FILE", help="the reply's text (UTF-8; - for standard input)")
    p.add_argument("--html-file", metavar="FILE", help="an HTML version of the reply")
    p.add_argument("--from", dest="start", metavar="DATE", help="start replying on DATE (default: now)")
    p.add_argument("--until", metavar="DATE", help="stop replying after DATE (default: until --off)")
    p.add_argument("--days", type=int, default=7, help="reply to one sender at most once per DAYS (1-30; 7)")
    p.add_argument("--off", action="store_true", help="turn the reply off")
    p.set_defaults(func=_vacation)

    p = sub.add_parser("sieve", help="the user's own Sieve scripts (RFC 5228; as ManageSieve sees them)")
    g = p.add_subparsers(dest="sieve_action", metavar="ACTION", required=True)
    q = g.add_parser("put", help="store a script (checked first: errors as line:column, nothing stored)")
    q.add_argument("address")
    q.add_argument("name")
    q.add_argument("file", help="the script (UTF-8; - for standard input)")
    q.add_argument("--activate", action="store_true", help="also make it the active script")
    q.set_defaults(func=_put)
    q = g.add_parser("get", help="print a script")
    q.add_argument("address")
    q.add_argument("name")
    q.set_defaults(func=_get)
    q = g.add_parser("list", help="list the user's scripts (the active one marked)")
    q.add_argument("address")
    q.set_defaults(func=_list)
    q = g.add_parser("activate", help="make a script the one that runs at delivery")
    q.add_argument("address")
    q.add_argument("name")
    q.set_defaults(func=_activate)
    q = g.add_parser("deactivate", help="no script of the user's runs at delivery")
    q.add_argument("address")
    q.set_defaults(func=_deactivate)
    q = g.add_parser("delete", help="delete a script (not the active one)")
    q.add_argument("address")
    q.add_argument("name")
    q.set_defaults(func=_delete)
    q = g.add_parser("rename", help="rename a script")
    q.add_argument("address")
    q.add_argument("old")
    q.add_argument("new")
    q.set_defaults(func=_rename)
    q = g.add_parser("check", help="check a script without storing it")
    q.add_argument("file")
    q.set_defaults(func=_check, address=None)

    p = sub.add_parser("sender", help="allow and block lists: allowed senders skip the spam rule, blocked go to Junk")
    p.add_argument("op", choices=("allow", "block", "remove", "list"))
    p.add_argument("address")
    p.add_argument("sender", nargs="?", help="an address, or @domain")
    p.set_defaults(func=_sender)


def register(sub) -> None:
    p = sub.add_parser("junk", help="the Junk mailboxes")
    g = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    q = g.add_parser("expire", help="remove Junk messages older than POSTERN_JUNK_EXPIRE_DAYS (as the daily job)")
    q.add_argument("addresses", nargs="*", metavar="ADDRESS", help="users (default: every user)")
    q.add_argument("--days", type=int, help="older than this many days (default: the setting)")
    q.set_defaults(func=_junk_expire)

