"""``GET /admin/reports/{kind}?domain=D&days=N``: the DMARC (``dmarc``) or TLS-RPT (``tls``) summary, admins only.

The same summary ``postern report dmarc|tls`` prints (:func:`postern.reports.summaries.collect`),
as JSON: reporters, pass/fail counts, failing IPs, refused reports by reason. Authenticated
(Basic over TLS or a bearer token) and the account must have the admin role (``postern user
admin ADDRESS``): 403 otherwise. Without ``domain``, every domain Postern serves; ``days``
defaults to 7 (at most 400). JMAP's Report/get (the Postern capability) shows the same summary.
"""

from __future__ import annotations

from aws_lambda_powertools.event_handler.api_gateway import Router

from postern.errors import InvalidAddress, NoSuchDomain
from postern.reports.summaries import KINDS, MAX_DAYS, as_json, report_store, summary_for

from .. import auth
from ..errors import bad_request, forbidden, not_found

router = Router()


@router.get("/admin/reports/<kind>")
def reports(kind: str):
    svc, viewer = router.context["services"], router.context["viewer"]
    principal = auth.require(svc, viewer, router.current_event.headers)
    current = svc.directory.get_user(principal.address)  # fresh: the login cache may hold the role as it was
    if current is None or not current.admin:
        raise forbidden("Reports are for admins (postern user admin ADDRESS)")
    if kind not in KINDS:
        raise not_found(f"Report kinds: {', '.join(KINDS)}")
    qs = router.current_event.query_string_parameters or {}
    try:
        days = int(qs.get("days", "7"))
    except ValueError:
        raise bad_request("days must be a number") from None
    if not 1 <= days <= MAX_DAYS:
        raise bad_request(f"days must be between 1 and {MAX_DAYS}")
    try:
        summary = summary_for(svc.directory, report_store(svc.settings, svc.clients), kind, qs.get("domain"), days)
    except InvalidAddress:
        raise bad_request("domain is not a domain name") from None
    except NoSuchDomain:
        raise not_found("No such mail domain here") from None
    return as_json(summary)
