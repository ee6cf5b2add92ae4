"""``GET https://mta-sts.<domain>/.well-known/mta-sts.txt``: our inbound MTA-STS policy (RFC 8461 §3.3).

The policy (:func:`postern.mtasts.settings_policy`: mode ``POSTERN_MTA_STS_MODE``, the gateway's
host name as the one ``mx``, ``max_age`` ``POSTERN_MTA_STS_MAX_AGE``) is the same text for every
domain, and ``postern dns`` publishes the TXT id of that same text; it is served only for
``mta-sts.<a domain Postern serves>`` (404 otherwise). ``text/plain``, as §3.3 requires; senders
do not follow redirects, so there are none.
"""

from __future__ import annotations

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router

from postern.mtasts import settings_policy

from ..errors import not_found

router = Router()


@router.get("/.well-known/mta-sts.txt")
def policy():
    ctx = router.context
    svc, viewer = ctx["services"], ctx["viewer"]
    domain = viewer.domain_under("mta-sts")
    if domain is None or not svc.directory.is_local_domain(domain):
        raise not_found("The MTA-STS policy is served at https://mta-sts.<a domain Postern serves>/")
    return Response(status_code=200, content_type="text/plain; charset=utf-8", body=settings_policy(svc.settings),
                    headers={"Cache-Control": "max-age=300"})
