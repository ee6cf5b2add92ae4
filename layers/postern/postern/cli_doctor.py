"""``postern doctor DOMAIN``: the live checks of :mod:`postern.doctor`, one line each; exit 1 if any is wrong.

In:   the domain, the deployment's facts (``postern dns``'s :func:`postern.cli_dns.gather`, with
      ``--stack`` from the stack), the resolver of the settings (``POSTERN_DNS_NAMESERVERS``), the
      listeners the stack offers (:func:`postern.clientoffer.offer`). ``--https-url`` sends the
      HTTPS checks to another base URL with the site's Host header (the local front:
      ``http://127.0.0.1:8080``); ``--connect`` dials another address for the certificate checks
      (the local gateway); ``--cafile`` trusts another CA (a private or the local certificate).
Out:  one line per check (``ok`` / ``wrong`` and what to change), then the counts. Exit 0 or 1.
Fails: an AWS fault while gathering the facts -> exit 75.
"""

from __future__ import annotations

import argparse


def run(args, settings, clients) -> int:
    from .cli_dns import gather
    from .clientoffer import offer
    from .dns import Resolver
    from .doctor import Probe, render, run_checks

    facts = gather(args, settings, clients)
    probe = Probe(Resolver(settings), https_base=args.https_url or "", cafile=args.cafile)
    checks = run_checks(facts, probe, offer(settings.replace(hostname=facts.gateway_host)), connect=args.connect or "")
    print(render(checks), end="")
    return 0 if all(c.ok for c in checks) else 1


def register(subparsers) -> None:
    p = subparsers.add_parser("doctor", help="check, live, every DNS record and endpoint of a mail domain",
                              description="Check what is published and served for a mail domain against what "
                                          "`postern dns` says it needs: MX, SPF, DKIM, DMARC, TLS-RPT, MTA-STS "
                                          "(record and policy), SRV, the HTTPS names, the certificate on each "
                                          "TLS port, PTR. One line per check; exit status 1 when one is wrong.")
    p.add_argument("domain")
    p.add_argument("--stack", metavar="NAME", default=argparse.SUPPRESS,
                   help="read the deployment from this CloudFormation stack (as the global --stack)")
    p.add_argument("--https-url", metavar="URL", help="fetch the HTTPS documents from this base URL (Host header: "
                   "the site's name), e.g. the local front http://127.0.0.1:8080")
    p.add_argument("--connect", metavar="ADDRESS", help="dial this address for the certificate checks (the name "
                   "checked stays the gateway host)")
    p.add_argument("--cafile", metavar="PEM", help="trust this CA bundle (default: the system's)")
    p.set_defaults(func=run)
