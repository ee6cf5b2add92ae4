"""``postern``: the admin command (domains, users, aliases; mail-table migrate and sweep).

In:   command-line arguments; settings from the environment (``POSTERN_*``)
      or, with ``--stack NAME`` / ``POSTERN_STACK``, the resource names from
      that CloudFormation stack's Outputs. The same code runs against the
      local stack (``. .postern-local/env`` first) and a deployed one.
Out:  one line per item on stdout for listings; nothing (exit 0) on success
      for changes, unless ``-v``.
Fails: one line on stderr, ``postern: <what went wrong>``, and a non-zero
      exit status: 1 for a refused operation (no such domain or user,
      already exists, invalid address), 2 for a usage error (argparse), 75
      (EX_TEMPFAIL) when AWS could not be reached or failed.

Other modules add commands without editing this file's parser code: a
module listed in :data:`COMMAND_MODULES` registers with

    from postern.cli import command, group_command

    @command                      # a new top-level command: postern queue ...
    def add_queue(sub):           # sub: the top-level argparse subparsers
        p = sub.add_parser("queue", help="...")
        p.set_defaults(func=run_queue)   # run_queue(args, ctx) -> int | None

    @group_command("domain")      # a new action of an existing group: postern domain dkim ...
    def add_dkim(sub):            # sub: the "domain" group's subparsers
        p = sub.add_parser("dkim", help="...")
        p.set_defaults(func=run_dkim)

``ctx`` is a :class:`Context` (settings, clients, directory, store, out).
Handlers may instead take ``(args, settings, clients)``; plain registrar
functions are listed in :data:`REGISTRARS` (``postern.cli_outbound`` is).
"""

from __future__ import annotations

import argparse
import getpass
import importlib
import inspect
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TextIO

from .errors import PosternError, StoreUnavailable

EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_USAGE = 2
EXIT_TEMPFAIL = 75  # sysexits.h EX_TEMPFAIL

# Modules imported for their @command / @group_command registrations (add yours here).
COMMAND_MODULES: list[str] = []

# Or plain registrar functions: (module, function, group). group None -> the function gets the
# top-level subparsers; "domain"/"user"/"alias" -> that group's subparsers.
REGISTRARS: list[tuple[str, str, str | None]] = [
    ("postern.cli_outbound", "register", None),  # queue, trace
    ("postern.cli_outbound", "register_domain", "domain"),  # domain dkim
    ("postern.cli_spam", "register_user", "user"),  # user spam
    ("postern.cli_spam", "register_domain", "domain"),  # domain spam
    ("postern.cli_dns", "register", None),  # dns
    ("postern.cli_sieve", "register_user", "user"),  # user vacation, user sieve, user sender
    ("postern.cli_sieve", "register", None),  # junk expire
    ("postern.cli_store", "register", None),  # migrate, sweep
    ("postern.cli_report", "register", None),  # report dmarc|tls
    ("postern.cli_doctor", "register", None),  # doctor
    ("postern.cli_web", "register", None),  # web certificate
]

_COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = []
_GROUP_COMMANDS: dict[str, list[Callable[[argparse._SubParsersAction], None]]] = {}

# CloudFormation Outputs (template.yaml) -> Settings fields.
STACK_OUTPUTS = {
    "MailBucketName": "bucket",
    "InboundQueueUrl": "inbound_queue_url",
    "StoreQueueUrl": "store_queue_url",
    "OutboundQueueUrl": "outbound_queue_url",
    "NdrQueueUrl": "ndr_queue_url",
    "DirectoryTableName": "directory_table",
    "MailTableName": "mail_table",
    "StateTableName": "state_table",
    "OutboundTransport": "outbound_transport",
    "SesConfigurationSetName": "ses_configuration_set",
}


def command(fn):
    """Register a function that adds a top-level command to the parser."""
    _COMMANDS.append(fn)
    return fn


def group_command(group: str):
    """Register a function that adds an action to an existing group (domain, user, alias)."""

    def deco(fn):
        _GROUP_COMMANDS.setdefault(group, []).append(fn)
        return fn

    return deco


class CliError(Exception):
    """A usage problem found after parsing (e.g. no password given)."""


@dataclass
class Context:
    settings: object
    clients: object
    out: TextIO = field(default_factory=lambda: sys.stdout)
    stdin: TextIO = field(default_factory=lambda: sys.stdin)
    verbose: bool = False
    _directory: object = None
    _store: object = None

    @property
    def directory(self):
        if self._directory is None:
            from .directory import dynamo_directory

            self._directory = dynamo_directory(self.settings, self.clients)
        return self._directory

    @property
    def store(self):
        if self._store is None:
            from .store.dynamo import DynamoMailStore

            self._store = DynamoMailStore(self.settings, self.clients)
        return self._store

    def say(self, text: str) -> None:
        if self.verbose:
            print(text, file=self.out)

    def emit(self, text: str) -> None:
        print(text, file=self.out)


# --- helpers ------------------------------------------------------------------
_SIZE = re.compile(r"^\s*(\d+)\s*([kmgt]?)(i?b)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def parse_size(text: str) -> int:
    """``1048576``, ``500M``, ``2GiB`` -> bytes (binary multiples)."""
    m = _SIZE.match(text)
    if not m:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (bytes, or a number with K, M, G or T)")
    return int(m.group(1)) * _UNITS[m.group(2).lower()]


def human(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n} B" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def read_password(ctx: Context, from_stdin: bool, confirm: bool = True) -> str:
    if from_stdin:
        pw = ctx.stdin.readline().rstrip("\r\n")
    elif sys.stdin.isatty():
        pw = getpass.getpass("Password: ")
        if confirm and getpass.getpass("Again: ") != pw:
            raise CliError("passwords do not match")
    else:
        raise CliError("no terminal to ask for the password: use --password-stdin")
    from .credentials import password_problem

    problem = password_problem(pw)  # the one password policy (JMAP's Password/change applies it too)
    if problem is not None:
        raise CliError(problem)
    return pw


# --- domain ---------------------------------------------------------------------
def _domain_add(args, ctx: Context):
    """Serve the domain (again: re-runnable) and print every record to publish for it, the HTTPS
    certificate's validation CNAMEs among them (that step requests the certificate when needed)."""
    from .errors import AlreadyExists

    try:
        d = ctx.directory.add_domain(args.domain)
        ctx.say(f"added domain {d.name}")
    except AlreadyExists:
        d = ctx.directory.get_domain(args.domain)
        ctx.say(f"{d.name} is served already; its records again")
    if ctx.settings.outbound_transport == "ses":  # its SES identity (`postern domain ses`)
        from .sesidentity import SesIdentityError, ensure_identity

        try:
            ensure_identity(ctx.settings, ctx.clients, d.name)
        except SesIdentityError as exc:
            raise SesIdentityError(f"added domain {d.name}, but not its SES identity: {exc.text}; "
                                   f"then run `postern domain ses {d.name}`") from None
    stack = args.stack or ctx.settings.stack_name
    if stack:  # the HTTPS certificate covering it (postern.webcert)
        from .cli_web import certificate_step
        from .webcert import WebCertError

        try:
            certificate_step(ctx, stack, records=False)
        except WebCertError as exc:
            raise WebCertError(f"added domain {d.name}, but not to the HTTPS certificate: {exc.text}; then run "
                               "`postern web certificate`") from None
    from .cli_dns import gather
    from .dnsplan import plan, zone_text

    facts = gather(argparse.Namespace(domain=d.name, stack=stack), ctx.settings, ctx.clients)
    ctx.emit(zone_text(facts, *plan(facts)).rstrip("\n"))


def _domain_remove(args, ctx: Context):
    ctx.directory.remove_domain(args.domain, force=args.force)
    ctx.say(f"removed domain {args.domain}")


def _domain_list(args, ctx: Context):
    for d in ctx.directory.list_domains():
        ctx.emit(d.name + (f"\tcatch-all -> {d.catchall}" if d.catchall else ""))


def _domain_catchall(args, ctx: Context):
    if args.clear and args.target:
        raise CliError("give a TARGET or --clear, not both")
    if not args.clear and not args.target:
        d = ctx.directory.get_domain(args.domain)
        if d is None:
            from .errors import NoSuchDomain

            raise NoSuchDomain(f"No such domain {args.domain}")
        ctx.emit(d.catchall or "(none)")
        return
    ctx.directory.set_catchall(args.domain, None if args.clear else args.target)
    ctx.say(f"catch-all of {args.domain}: {args.target or 'cleared'}")


# --- user -----------------------------------------------------------------------
def _user_add(args, ctx: Context):
    pw = read_password(ctx, args.password_stdin)
    u = ctx.directory.add_user(args.address, pw, quota=args.quota or 0)
    # INBOX and the SPECIAL-USE mailboxes now, not on the first delivery (which would cost ~20 requests).
    ctx.store.ensure_mailboxes(u.address)
    ctx.say(f"added user {u.address}")


def _user_passwd(args, ctx: Context):
    ctx.directory.require_user(args.address)
    pw = read_password(ctx, args.password_stdin)
    ctx.directory.set_password(args.address, pw)
    ctx.say(f"password of {args.address} changed")


def _user_quota(args, ctx: Context):
    ctx.directory.set_quota(args.address, args.bytes)
    ctx.say(f"quota of {args.address}: {human(args.bytes) if args.bytes else 'default'}")


def _user_admin(args, ctx: Context):
    ctx.directory.set_admin(args.address, not args.revoke)
    ctx.say(f"{args.address}: {'no longer an admin' if args.revoke else 'admin (reads DMARC and TLS reports over HTTPS)'}")


def _user_list(args, ctx: Context):
    if args.domain and not ctx.directory.is_local_domain(args.domain):
        from .errors import NoSuchDomain

        raise NoSuchDomain(f"No such domain {args.domain}")
    for u in ctx.directory.list_users(args.domain):
        quota = ctx.directory.quota_of(u)
        line = f"{u.address}\tquota {human(quota) if quota else 'unlimited'}{'' if u.quota else ' (default)'}"
        if args.usage:
            line += f"\tused {human(ctx.store.usage(u.address))}"
        ctx.emit(line)


def _user_remove(args, ctx: Context):
    ctx.directory.remove_user(args.address)
    ctx.say(f"removed user {args.address} (stored mail is kept)")


# --- alias ----------------------------------------------------------------------
def _alias_add(args, ctx: Context):
    a = ctx.directory.add_alias(args.address, args.targets)
    ctx.say(f"added alias {a.address} -> {', '.join(a.targets)}")


def _alias_list(args, ctx: Context):
    if args.domain and not ctx.directory.is_local_domain(args.domain):
        from .errors import NoSuchDomain

        raise NoSuchDomain(f"No such domain {args.domain}")
    for a in ctx.directory.list_aliases(args.domain):
        ctx.emit(f"{a.address}\t-> {', '.join(a.targets)}")


def _alias_remove(args, ctx: Context):
    ctx.directory.remove_alias(args.address)
    ctx.say(f"removed alias {args.address}")


# --- parser ---------------------------------------------------------------------
def _group(sub, name: str, help_text: str) -> argparse._SubParsersAction:
    p = sub.add_parser(name, help=help_text, description=help_text)
    g = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    return g


def _registrars(group: str | None):
    out = []
    for mod, fn, g in REGISTRARS:
        if g == group:
            out.append(getattr(importlib.import_module(mod), fn))
    return out


def build_parser() -> argparse.ArgumentParser:
    for mod in COMMAND_MODULES:
        importlib.import_module(mod)
    parser = argparse.ArgumentParser(
        prog="postern",
        description="Administer Postern: domains, users, aliases. Resources come from POSTERN_* "
                    "settings (the local stack writes them to .postern-local/env) or from --stack.",
    )
    parser.add_argument("--stack", metavar="NAME", help="read resource names from this CloudFormation stack's "
                        "Outputs (default: $POSTERN_STACK; without either, the POSTERN_* variables)")
    parser.add_argument("--region", help="AWS region (default: AWS_REGION / AWS_DEFAULT_REGION)")
    parser.add_argument("-v", "--verbose", action="store_true", help="say what was done")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    g = _group(sub, "domain", "local domains and their catch-all")
    p = g.add_parser("add", help="serve mail for a domain (re-runnable) and print every record to publish for it")
    p.add_argument("domain")
    p.set_defaults(func=_domain_add)
    p = g.add_parser("remove", help="stop serving a domain")
    p.add_argument("domain")
    p.add_argument("--force", action="store_true", help="also remove its users and aliases")
    p.set_defaults(func=_domain_remove)
    p = g.add_parser("list", help="list local domains")
    p.set_defaults(func=_domain_list)
    p = g.add_parser("catchall", help="show, set or clear the address that receives mail for unknown local parts")
    p.add_argument("domain")
    p.add_argument("target", nargs="?", help="the catch-all address (omit to show the current one)")
    p.add_argument("--clear", action="store_true", help="remove the catch-all")
    p.set_defaults(func=_domain_catchall)
    for fn in _GROUP_COMMANDS.get("domain", []) + _registrars("domain"):
        fn(g)

    g = _group(sub, "user", "mailbox users")
    p = g.add_parser("add", help="create a user (asks for the password, or reads one line with --password-stdin)")
    p.add_argument("address")
    p.add_argument("--password-stdin", action="store_true", help="read the password from the first line of stdin")
    p.add_argument("--quota", type=parse_size, metavar="BYTES", help="quota (e.g. 500M, 2G; default: the "
                   "POSTERN_DEFAULT_QUOTA setting)")
    p.set_defaults(func=_user_add)
    p = g.add_parser("passwd", help="change a user's password")
    p.add_argument("address")
    p.add_argument("--password-stdin", action="store_true", help="read the password from the first line of stdin")
    p.set_defaults(func=_user_passwd)
    p = g.add_parser("quota", help="set a user's quota (0 = the default quota)")
    p.add_argument("address")
    p.add_argument("bytes", type=parse_size, metavar="BYTES")
    p.set_defaults(func=_user_quota)
    p = g.add_parser("list", help="list users (of one domain, or of all)")
    p.add_argument("domain", nargs="?")
    p.add_argument("--usage", action="store_true", help="also show the bytes each user has stored")
    p.set_defaults(func=_user_list)
    p = g.add_parser("admin", help="give a user the admin role (DMARC and TLS reports over HTTPS), or --revoke it")
    p.add_argument("address")
    p.add_argument("--revoke", action="store_true", help="take the role back")
    p.set_defaults(func=_user_admin)
    p = g.add_parser("remove", help="remove a user (the stored mail is kept)")
    p.add_argument("address")
    p.set_defaults(func=_user_remove)
    for fn in _GROUP_COMMANDS.get("user", []) + _registrars("user"):
        fn(g)

    g = _group(sub, "alias", "aliases: an address delivering to one or more others (local or remote)")
    p = g.add_parser("add", help="create an alias")
    p.add_argument("address")
    p.add_argument("targets", nargs="+", metavar="TARGET")
    p.set_defaults(func=_alias_add)
    p = g.add_parser("list", help="list aliases (of one domain, or of all)")
    p.add_argument("domain", nargs="?")
    p.set_defaults(func=_alias_list)
    p = g.add_parser("remove", help="remove an alias")
    p.add_argument("address")
    p.set_defaults(func=_alias_remove)
    for fn in _GROUP_COMMANDS.get("alias", []) + _registrars("alias"):
        fn(g)

    for fn in _COMMANDS + _registrars(None):
        fn(sub)
    return parser


def _run(func, args, ctx: Context):
    """Handlers take ``(args, ctx)``, or ``(args, settings, clients)``."""
    if len(inspect.signature(func).parameters) >= 3:
        return func(args, ctx.settings, ctx.clients)
    return func(args, ctx)


def stack_settings(settings, clients, stack: str):
    """Settings with the resource names from a CloudFormation stack's Outputs."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        r = clients.client("cloudformation").describe_stacks(StackName=stack)
    except ClientError as exc:
        raise StoreUnavailable(f"cannot read stack {stack}: {exc.response.get('Error', {}).get('Message', exc)}") \
            from None
    except BotoCoreError as exc:
        raise StoreUnavailable(f"cannot read stack {stack}: {exc}") from None
    outputs = {o["OutputKey"]: o["OutputValue"] for o in r["Stacks"][0].get("Outputs", [])}
    changes = {f: outputs[k] for k, f in STACK_OUTPUTS.items() if k in outputs}
    if not changes:
        raise CliError(f"stack {stack} has none of the outputs {', '.join(STACK_OUTPUTS)}")
    return settings.replace(**changes)


def main(argv: list[str] | None = None, *, settings=None, clients=None, out: TextIO | None = None,
         stdin: TextIO | None = None) -> int:
    from .aws import Clients
    from .config import get_settings

    parser = build_parser()
    args = parser.parse_args(argv)
    err = sys.stderr
    try:
        s = settings or get_settings()
        if args.region:
            s = s.replace(region=args.region)
        c = clients or Clients(s)
        stack = args.stack or s.stack_name
        if stack:
            s = stack_settings(s, c, stack)
            c = clients or Clients(s)
        ctx = Context(settings=s, clients=c, out=out or sys.stdout, stdin=stdin or sys.stdin, verbose=args.verbose)
        rc = _run(args.func, args, ctx)
        return EXIT_OK if rc is None else int(rc)
    except CliError as exc:
        print(f"postern: {exc}", file=err)
        return EXIT_USAGE
    except StoreUnavailable as exc:
        print(f"postern: {exc.text} (is AWS reachable? for the local stack: . .postern-local/env)", file=err)
        return EXIT_TEMPFAIL
    except PosternError as exc:
        print(f"postern: {exc.text}", file=err)
        return EXIT_REFUSED
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
