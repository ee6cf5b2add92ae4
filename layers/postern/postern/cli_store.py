"""``postern migrate`` and ``postern sweep``: the mail table's layout version, and pending store work.

In:   the CLI context (settings, clients: the local stack or a deployed one).
Out:  ``postern migrate [--dry-run]`` brings the mail table to the layout this
      code writes (``postern.store.schema``; one step per version, each
      resumable) and prints "mail table layout N" (before -> after);
      ``postern sweep [ADDRESS...]`` finishes what a crash or a DELETE left for
      later (changes committed but not yet written out, messages of deleted
      mailboxes) for the given users, or every user, and prints what it released.
Fails: exit 75 when AWS is unreachable; 1 when the table is newer than this code.
"""

from __future__ import annotations

from .store import schema


def register(sub) -> None:
    p = sub.add_parser("migrate", help="bring the mail table to this release's layout (run after every deploy)")
    p.add_argument("--dry-run", action="store_true", help="say what would be done, change nothing")
    p.set_defaults(func=_migrate)
    p = sub.add_parser("sweep", help="finish pending mail-store work (deleted mailboxes, interrupted changes)")
    p.add_argument("addresses", nargs="*", metavar="ADDRESS", help="users to sweep (default: every user)")
    p.set_defaults(func=_sweep)


def _migrate(args, ctx):
    try:
        before, after = schema.migrate(ctx.store.items, say=ctx.say, dry_run=args.dry_run)
    except schema.SchemaError as exc:
        from .errors import PosternError

        raise PosternError(str(exc)) from None
    was = "new" if before is None else str(before)
    ctx.emit(f"mail table layout {after}" + ("" if before == after else f" (was {was})")
             + (" [dry run]" if args.dry_run else ""))


def _sweep(args, ctx):
    users = args.addresses or [u.address for u in ctx.directory.list_users(None)]
    total = 0
    for user in users:
        released = ctx.store.sweep(user)
        total += released
        if released:
            ctx.emit(f"{user}\treleased {released} messages of deleted mailboxes")
    ctx.say(f"swept {len(users)} users, released {total} messages")
