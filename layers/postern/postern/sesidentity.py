"""A mail domain as an SES sending identity: Easy DKIM, custom MAIL FROM, events, and its DNS records.

In:   a domain; settings ``region``, ``ses_configuration_set`` (events to the
      NDR function), ``ses_mail_from_subdomain`` (``bounce``); ``clients.sesv2``.
Out:  :func:`ensure_identity` creates the SESv2 email identity (Easy DKIM
      with 2048-bit keys, the configuration set as its default), sets its
      custom MAIL FROM domain ``<sub>.<domain>`` (so SPF aligns with the
      From: domain, RFC 7489 §3.1.2) and turns e-mail feedback forwarding off
      (the configuration set's events replace it), and returns the
      :class:`DnsRecord` list to publish (:func:`records`): three DKIM CNAMEs
      (``<token>._domainkey.<domain>`` -> ``<token>.dkim.amazonses.com``), the
      MAIL FROM domain's MX (``feedback-smtp.<region>.amazonses.com``) and SPF
      TXT. The template does the same for ``MailDomain``; ``postern domain
      add`` calls this for every later domain when the transport is ``ses``.
Fails: SES errors raise :class:`SesIdentityError` with SES's message (the
      directory entry stays: run ``postern domain add`` again, or fix it in
      the SES console); an identity that already exists is read, not
      recreated, so the call can be repeated.

Until the DKIM records are published SES cannot verify the domain and
refuses to send from it; until the account leaves the SES sandbox it sends
only to verified recipients (README, Deploy).
"""

from __future__ import annotations

from dataclasses import dataclass

from botocore.exceptions import BotoCoreError, ClientError

from .errors import PosternError


class SesIdentityError(PosternError):
    """SES refused to create or configure the identity."""


@dataclass(frozen=True)
class DnsRecord:
    name: str  # fully qualified, no trailing dot
    type: str  # CNAME | MX | TXT
    value: str  # as published (MX: "10 host.", TXT: the string, unquoted)

    def zone_line(self) -> str:
        value = f'"{self.value}"' if self.type == "TXT" else self.value
        return f"{self.name}. 3600 IN {self.type} {value}"


def mail_from_domain(settings, domain: str) -> str:
    return f"{settings.ses_mail_from_subdomain}.{domain.lower()}"


def records(settings, domain: str, dkim_tokens: list[str]) -> list[DnsRecord]:
    """What to publish for ``domain`` as an SES identity (tokens from SES's DkimAttributes)."""
    d = domain.lower()
    mf = mail_from_domain(settings, d)
    out = [DnsRecord(f"{t}._domainkey.{d}", "CNAME", f"{t}.dkim.amazonses.com.") for t in dkim_tokens]
    out.append(DnsRecord(mf, "MX", f"10 feedback-smtp.{settings.region}.amazonses.com."))
    out.append(DnsRecord(mf, "TXT", "v=spf1 include:amazonses.com ~all"))
    return out


def _call(fn, **kwargs):
    try:
        return fn(**kwargs)
    except ClientError as exc:
        err = exc.response.get("Error", {})
        raise SesIdentityError(f"SES {err.get('Code', '')}: {err.get('Message', '')}".strip()) from None
    except BotoCoreError as exc:
        raise SesIdentityError(f"SES unreachable: {exc}") from None


def ensure_identity(settings, clients, domain: str) -> list[DnsRecord]:
    """Create (or find) ``domain``'s SES identity, configure it, return the records to publish."""
    ses = clients.sesv2
    d = domain.lower()
    kwargs = {"EmailIdentity": d, "DkimSigningAttributes": {"NextSigningKeyLength": "RSA_2048_BIT"}}
    if settings.ses_configuration_set:
        kwargs["ConfigurationSetName"] = settings.ses_configuration_set
    try:
        r = ses.create_email_identity(**kwargs)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") not in ("AlreadyExistsException", "AlreadyExists"):
            err = exc.response.get("Error", {})
            raise SesIdentityError(f"SES {err.get('Code', '')}: {err.get('Message', '')}".strip()) from None
        r = _call(ses.get_email_identity, EmailIdentity=d)
    except BotoCoreError as exc:
        raise SesIdentityError(f"SES unreachable: {exc}") from None
    tokens = list((r.get("DkimAttributes") or {}).get("Tokens") or [])
    _call(ses.put_email_identity_mail_from_attributes, EmailIdentity=d,
          MailFromDomain=mail_from_domain(settings, d), BehaviorOnMxFailure="USE_DEFAULT_VALUE")
    if settings.ses_configuration_set:  # SES requires another way to learn of bounces before this
        _call(ses.put_email_identity_feedback_attributes, EmailIdentity=d, EmailForwardingEnabled=False)
    return records(settings, d, tokens)


def format_records(domain: str, recs: list[DnsRecord]) -> str:
    lines = [f"SES identity {domain.lower()}: publish these records (SES verifies the domain once the "
             "DKIM CNAMEs resolve):", ""]
    lines += [f"  {r.zone_line()}" for r in recs]
    return "\n".join(lines) + "\n"
