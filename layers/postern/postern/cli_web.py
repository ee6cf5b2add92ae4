"""``postern web certificate``: the HTTPS front's certificate for every served domain (re-runnable).

In:   the served domains (the directory), the stack's name (``--stack`` / ``POSTERN_STACK``: the
      certificates carry it as a tag), ACM in us-east-1 (:mod:`postern.webcert`).
Out:  stdout: the certificate's ARN and state, the validation CNAMEs to publish (zone-file lines), the
      names the distribution will answer for, and what ``make deploy`` will pass as
      ``WebCertificateArn`` / ``WebAliases``. Requests a certificate when none of the stack's covers
      every served domain (``postern domain add`` runs the same step); never waits for validation.
Fails: no stack -> exit 1 saying the local front needs none; ACM's refusal (quota) -> exit 1 with
      what to do; ACM unreachable -> exit 75.
"""

from __future__ import annotations

from . import webcert
from .cli_dns import acm_client


class NoStack(webcert.WebCertError):
    pass


def certificate_step(ctx, stack: str, wait: float = 30.0, records: bool = True) -> webcert.Cert:
    """Ensure the certificate covers every served domain; print its state and (``records``) its
    validation CNAMEs (``postern domain add`` prints its domain's among all its records). Returns it."""
    if not stack:
        raise NoStack("the HTTPS certificate belongs to a deployed stack (--stack NAME or POSTERN_STACK); the "
                      "local front (make run) is plain HTTP on 127.0.0.1 and needs none")
    domains = [d.name for d in ctx.directory.list_domains()]
    acm = acm_client(ctx.settings)
    cert, requested = webcert.ensure(acm, stack, domains)
    cert = webcert.with_records(acm, cert, wait if requested or not cert.records_ready else 0)
    ctx.emit(f"; HTTPS certificate ({webcert.REGION}) {'requested now' if requested else 'existing'}: {cert.arn}")
    ctx.emit(f"; status {cert.status}; names {', '.join(cert.names)}")
    lines = webcert.zone_lines(cert) if records else []
    if lines:
        ctx.emit("; publish these validation CNAMEs (and keep them: ACM renews with them):")
        for ln in lines:
            ctx.emit(ln)
    if not cert.records_ready:
        ctx.emit("; ACM has not made every validation record yet: run this again in a minute")
    used = webcert.for_distribution(webcert.certificates(acm, stack))
    if used is None:
        ctx.emit("; no certificate is issued yet: the distribution answers on its cloudfront.net name only; once "
                 "ACM says ISSUED (minutes after the CNAMEs resolve), run `make deploy`")
    else:
        ctx.emit(f"; make deploy passes WebCertificateArn={used.arn}")
        ctx.emit(f";   WebAliases={','.join(webcert.aliases(used.domains))}")
        missing = sorted(set(domains) - set(used.domains))
        if missing:
            ctx.emit(f"; not covered by it yet (their certificate is {cert.status}): {', '.join(missing)}")
    return cert


def _run(args, ctx):
    certificate_step(ctx, args.stack or ctx.settings.stack_name)


def register(sub) -> None:
    g = sub.add_parser("web", help="the HTTPS front (CloudFront): its certificate",
                       description="the HTTPS front (CloudFront): its certificate")
    a = g.add_subparsers(dest="action", metavar="ACTION", required=True)
    p = a.add_parser("certificate", help="request (when needed) and show the HTTPS certificate for every domain",
                     description="Make sure one ACM certificate in us-east-1 covers the HTTPS names of every served "
                                 "domain (requesting one when not, never waiting for validation) and print its DNS "
                                 "validation records and what `make deploy` will put on the distribution.")
    p.set_defaults(func=_run)
