"""The CloudFormation custom resource protocol: one JSON response PUT to the request's ResponseURL.

In:   the custom resource event (``RequestType``, ``ResponseURL``, ``StackId``, ``RequestId``,
      ``LogicalResourceId``, ``PhysicalResourceId`` on Update/Delete) and the outcome.
Out:  :func:`respond` PUTs {Status, Reason, PhysicalResourceId, StackId, RequestId,
      LogicalResourceId, Data} to the pre-signed S3 URL (no Content-Type: the URL was signed
      without one). CloudFormation shows ``Reason`` in the stack's events: it is the
      operator's error message, so it is a sentence, cut to fit the 4 KiB response limit.
Fails: the PUT is tried three times; if it still fails the error propagates (the stack then
      waits for the custom resource's ServiceTimeout, and the log says why).
"""

from __future__ import annotations

import json
import logging
import time
import urllib.request

log = logging.getLogger("postern.cert.cfn")

SUCCESS, FAILED = "SUCCESS", "FAILED"
MAX_REASON = 1500  # characters; the whole response must stay under 4096 bytes


def _put(url: str, body: bytes, timeout: float = 30.0) -> int:
    req = urllib.request.Request(url, data=body, method="PUT",
                                 headers={"Content-Type": "", "Content-Length": str(len(body))})
    with urllib.request.urlopen(req, timeout=timeout) as r:  # noqa: S310 - the URL is CloudFormation's
        return r.status


def response_body(event: dict, status: str, reason: str, physical_id: str, data: dict | None = None) -> bytes:
    if len(reason) > MAX_REASON:
        reason = reason[:MAX_REASON - 3] + "..."
    return json.dumps({
        "Status": status,
        "Reason": reason,
        "PhysicalResourceId": physical_id,
        "StackId": event["StackId"],
        "RequestId": event["RequestId"],
        "LogicalResourceId": event["LogicalResourceId"],
        "NoEcho": False,
        "Data": data or {},
    }).encode()


def respond(event: dict, status: str, reason: str, physical_id: str, data: dict | None = None,
            *, put=_put, attempts: int = 3, sleep=time.sleep) -> None:
    body = response_body(event, status, reason, physical_id, data)
    for attempt in range(1, attempts + 1):
        try:
            put(event["ResponseURL"], body)
            log.info("custom resource %s %s: %s", event["RequestType"], status, reason)
            return
        except OSError as exc:  # URLError, timeouts, resets
            log.warning("custom resource response failed (attempt %d): %s", attempt, exc)
            if attempt == attempts:
                raise
            sleep(2 * attempt)
