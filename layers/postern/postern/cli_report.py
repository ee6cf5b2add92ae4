"""``postern report dmarc|tls [--domain D] [--days N]``: what the DMARC and TLS-RPT reports say.

In:   the summaries the reports function stored in the state table (``postern.reports.summaries``)
      for one domain or, without ``--domain``, every domain Postern serves.
Out:  the text of :func:`postern.reports.summaries.render`: reporters, pass/fail message (DMARC) or
      session (TLS) counts, the failing source / sending IPs, refused reports by reason. Exit 0.
Fails: an unknown domain -> exit 3 (NoSuchDomain); a state-table fault -> exit 75.
"""

from __future__ import annotations

from .reports.summaries import KINDS, MAX_DAYS, render, report_store, summary_for


def run(args, ctx) -> int:
    summary = summary_for(ctx.directory, report_store(ctx.settings, ctx.clients), args.kind, args.domain, args.days)
    ctx.emit(render(summary).rstrip("\n"))
    return 0


def _days(text: str) -> int:
    n = int(text)
    if not 1 <= n <= MAX_DAYS:
        raise ValueError(text)
    return n


def register(subparsers) -> None:
    p = subparsers.add_parser("report", help="summarise the DMARC aggregate or TLS-RPT reports sent to reports@",
                              description="Summarise the DMARC aggregate (dmarc) or SMTP TLS (tls) reports other "
                                          "mail systems sent to reports@<domain>: reporters, pass/fail counts, "
                                          "failing IPs, refused reports.")
    p.add_argument("kind", choices=KINDS)
    p.add_argument("--domain", help="one domain (default: every domain Postern serves)")
    p.add_argument("--days", type=_days, default=7, metavar="N", help="reports whose period ended in the last N "
                   "days (1-400, default 7)")
    p.set_defaults(func=run)
