"""``postern dns DOMAIN``: every DNS record to publish for a mail domain, as zone-file lines and a table.

In:   the domain; with ``--stack NAME`` (or ``POSTERN_STACK``) the stack's Parameters
      (GatewayHostname, OutboundTransport, SmarthostHost, SesMailFromSubdomain) and Outputs
      (GatewayAddresses, GatewayDnsName, DeliverNatAddress), otherwise the ``POSTERN_*``
      settings; SES's identity for the domain (Easy DKIM tokens, MAIL FROM domain); Postern's
      DKIM key store; the directory (is the domain served?). The NLB's name is resolved when
      the stack has no Elastic IPs.
Out:  stdout: zone-file lines then a table (``--format zone|table`` for one of them), built
      by :mod:`postern.dnsplan`; exit 0. What is not known yet (no SES identity, no DKIM key,
      no stack) is printed as advice naming the command that fixes it.
Fails: AWS unreachable -> exit 75 (the CLI's StoreUnavailable); a stack that does not exist ->
      exit 75 with CloudFormation's message.
"""

from __future__ import annotations

import argparse

from botocore.exceptions import BotoCoreError, ClientError

from .dnsplan import Advice, Facts, plan, table_text, zone_text
from .errors import PosternError, StoreUnavailable


def _stack(clients, name: str) -> tuple[dict[str, str], dict[str, str]]:
    try:
        r = clients.client("cloudformation").describe_stacks(StackName=name)["Stacks"][0]
    except ClientError as exc:
        raise StoreUnavailable(f"cannot read stack {name}: {exc.response.get('Error', {}).get('Message', exc)}") \
            from None
    except BotoCoreError as exc:
        raise StoreUnavailable(f"cannot read stack {name}: {exc}") from None
    params = {p["ParameterKey"]: p.get("ResolvedValue", p.get("ParameterValue", "")) for p in r.get("Parameters", [])}
    outputs = {o["OutputKey"]: o["OutputValue"] for o in r.get("Outputs", [])}
    return params, outputs


def _resolve(settings, name: str) -> tuple[str, ...]:
    from .dns import DnsError, Resolver

    try:
        return tuple(a for a in Resolver(settings).addresses(name) if ":" not in a)  # A records only
    except DnsError:
        return ()


def _ses(settings, clients, domain: str, subdomain: str) -> dict:
    try:
        r = clients.sesv2.get_email_identity(EmailIdentity=domain)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "NotFoundException":
            return {"ses_note": f"{domain} is no SES identity yet, so SES will not send as it: "
                                f"`postern domain add {domain}` (or `postern domain ses {domain}`) creates it; "
                                "run `postern dns` again for its DKIM and MAIL FROM records"}
        raise StoreUnavailable(f"SES: {exc.response.get('Error', {}).get('Code', exc)}") from None
    except BotoCoreError as exc:
        raise StoreUnavailable(f"SES unreachable: {exc}") from None
    from .sesidentity import mail_from_domain, records

    s = settings.replace(ses_mail_from_subdomain=subdomain)
    tokens = (r.get("DkimAttributes") or {}).get("Tokens") or []
    mail_from = mail_from_domain(s, domain)
    notes = []
    actual = (r.get("MailFromAttributes") or {}).get("MailFromDomain")
    if actual and actual != mail_from:
        notes.append(f"SES's MAIL FROM domain for {domain} is {actual}, not {mail_from}: "
                     f"`postern domain ses {domain}` sets it")
    if not r.get("VerifiedForSendingStatus"):
        notes.append("SES has not verified the domain yet: it will once the DKIM CNAMEs resolve (minutes to "
                     "hours); until then it refuses to send as it")
    if not tokens:
        notes.append("SES returned no Easy DKIM tokens: see the identity in the SES console")
    return {"ses_records": tuple((x.name, x.type, x.value) for x in records(s, domain, tokens)),
            "ses_mail_from": mail_from, "ses_note": "; ".join(notes)}


def acm_client(settings):
    """ACM in us-east-1, where CloudFront's certificates live (postern.webcert), whatever the stack's region."""
    from .aws import Clients
    from .webcert import REGION

    return Clients(settings.replace(region=REGION)).client("acm")


def certificate_facts(settings, stack: str, domain: str) -> dict:
    """The HTTPS certificate's validation CNAME for the domain and a note on its state (Facts fields)."""
    from . import webcert

    if not stack:
        return {}
    try:
        certs = webcert.certificates(acm_client(settings), stack)
    except PosternError as exc:  # no ACM rights in us-east-1, say: the other records are still worth printing
        return {"cert_note": f"the HTTPS certificate could not be read ({exc.text}); `postern --stack {stack} web "
                             "certificate` shows it"}
    covering = [c for c in certs if c.covers(domain)]
    if not covering:
        return {"cert_note": f"no HTTPS certificate covers *.{domain} yet: `postern --stack {stack} web certificate` "
                             f"(or `postern domain add {domain}`) requests one in {webcert.REGION}"}
    cert = covering[0]  # the newest: a pending replacement's records are the ones still to publish
    used = webcert.for_distribution(certs)
    records = tuple((v.name, v.value) for v in cert.validations if v.domain == f"*.{domain}" and v.name)
    note = f"certificate {cert.arn} ({webcert.REGION}): {cert.status}"
    if cert.status == "ISSUED":
        note += "" if used is None or used.arn != cert.arn else "; the distribution's certificate after `make deploy`"
    else:
        note += (f"; ACM issues it once the validation CNAME{'s' if len(cert.validations) > 1 else ''} of "
                 f"{', '.join(cert.names)} resolve{'' if len(cert.validations) > 1 else 's'}, then `make deploy` puts "
                 f"{', '.join(webcert.aliases([domain]))} on the distribution")
        if not records:
            note += "; ACM has not made the validation record yet: run this again in a minute"
    return {"cert_records": records, "cert_note": note}


def gather(args, settings, clients) -> Facts:
    from .address import normalize_domain
    from .directory import dynamo_directory
    from .dkim import KeyStore
    from .mtasts import settings_policy

    domain = normalize_domain(args.domain)
    stack = args.stack or settings.stack_name
    params, outputs = _stack(clients, stack) if stack else ({}, {})
    transport = params.get("OutboundTransport") or settings.outbound_transport
    addresses = tuple(outputs.get("GatewayAddresses", "").split())
    dns_name = outputs.get("GatewayDnsName", "")
    notes = []
    if not dynamo_directory(settings, clients).is_local_domain(domain):
        notes.append(Advice("DOMAIN", f"{domain} is not served by Postern yet: `postern domain add {domain}`"))
    extra = {}
    if transport == "ses":
        extra = _ses(settings, clients, domain, params.get("SesMailFromSubdomain") or settings.ses_mail_from_subdomain)
    keys = KeyStore(settings, clients).get(domain)
    host = (params.get("GatewayHostname") or settings.hostname).lower().rstrip(".")
    return Facts(
        self_published=params.get("GatewayProfile") == "small",
        domain=domain,
        gateway_host=host,
        transport=transport,
        region=settings.region,
        stack=stack,
        gateway_addresses=addresses,
        gateway_dns_name=dns_name,
        nlb_addresses=_resolve(settings, dns_name) if dns_name and not addresses else (),
        smarthost=params.get("SmarthostHost") or settings.smarthost,
        nat_address=outputs.get("DeliverNatAddress", ""),
        dkim_records=tuple((k.record_name(domain), k.txt_record()) for k in keys),
        mta_sts_policy=settings_policy(settings, mode=params.get("MtaStsMode"), hostname=host),
        web_target=outputs.get("WebDistributionDomain", ""),
        notes=tuple(notes),
        **certificate_facts(settings, stack, domain),
        **extra,
    )


def run(args, settings, clients) -> int:
    facts = gather(args, settings, clients)
    records, advice = plan(facts)
    if args.format in ("both", "zone"):
        print(zone_text(facts, records, advice), end="")
    if args.format == "both":
        print()
    if args.format in ("both", "table"):
        print(table_text(records, advice), end="")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("dns", help="print every DNS record to publish for a mail domain",
                              description="Print the records a mail domain needs (MX, the gateway's A records, "
                                          "SPF, DKIM, DMARC, TLS-RPT, MTA-STS, SES's MAIL FROM, the HTTPS names, client "
                                          "SRV) and PTR advice, as "
                                          "zone-file lines and as a table. With --stack, from the deployed stack.")
    p.add_argument("domain")
    # `postern dns DOMAIN --stack NAME` as well as `postern --stack NAME dns DOMAIN` (SUPPRESS: when absent
    # here, the global option's value stands).
    p.add_argument("--stack", metavar="NAME", default=argparse.SUPPRESS,
                   help="read the deployment from this CloudFormation stack (as the global --stack)")
    p.add_argument("--format", choices=("both", "zone", "table"), default="both",
                   help="zone-file lines, a table, or both (default)")
    p.set_defaults(func=run)
