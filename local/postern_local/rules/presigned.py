"""Presigned S3 requests, checked as S3 checks them (moto checks neither expiry nor POST policy).

In:   a request the proxy received: a GET/HEAD/PUT whose SigV4 authentication is in the query
      string (``X-Amz-Credential``, ``X-Amz-Date``, ``X-Amz-Expires``: a presigned URL), or a
      browser-based upload (``POST /<bucket>`` with ``multipart/form-data``: a presigned POST with
      its base64 ``policy`` and ``x-amz-signature``).
Out:  :func:`check_query` raises :class:`~.wire.AwsError` for a presigned URL S3 would refuse;
      :func:`post_upload` -> :class:`PostUpload` (the signer's access key, the bucket and key, the
      file's size) for a POST upload S3 would accept, the refusal as AwsError otherwise, None for
      a request that is no POST upload. The proxy then authorizes the signer for ``s3:PutObject``
      on the key, as S3 does (a presigned request can do what its signer may do, no more).
Fails: never otherwise; what cannot be parsed is refused as S3 refuses a malformed POST.

What S3 enforces and so do we (S3 API Reference, "Authenticating Requests: Using Query
Parameters" and "Browser-Based Uploads Using POST": "POST Policy", "Condition matching"):
  * a presigned URL: not before X-Amz-Date, not after X-Amz-Date + X-Amz-Expires (at most 7 days):
    ``AccessDenied`` "Request has expired"; no Authorization header beside it: ``InvalidArgument``
    "Only one auth mechanism allowed" (a client that follows the download redirect must drop its
    own credentials);
  * a POST upload: the policy's signature (SigV4 signing key of the credential's secret over the
    base64 policy), its expiration, every condition (exact ``{field: value}`` and ``eq``,
    ``starts-with``, ``content-length-range`` against the file's size: ``EntityTooLarge`` /
    ``EntityTooSmall``), and every form field named by a condition except ``policy``,
    ``x-amz-signature``, ``file`` and ``x-ignore-*`` ("Extra input fields").
Not checked: the signature of a presigned URL (moto checks no signature either; listed by
``python -m postern_local.rules`` with the other paper-only rules).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import io
import json
from dataclasses import dataclass

from .wire import AwsError

MAX_EXPIRES = 7 * 86400
NOT_IN_POLICY = {"policy", "x-amz-signature", "file"}


def _utc(value: str, fmt: str) -> dt.datetime | None:
    try:
        return dt.datetime.strptime(value, fmt).replace(tzinfo=dt.timezone.utc)
    except (TypeError, ValueError):
        return None


def check_query(query: dict[str, list[str]], headers: dict[str, str], now: dt.datetime | None = None) -> None:
    """A presigned URL (query-string SigV4): refused as S3 refuses it, or nothing."""
    if "X-Amz-Credential" not in query:
        return
    now = now or dt.datetime.now(dt.timezone.utc)
    if headers.get("authorization"):
        raise AwsError("InvalidArgument", "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, "
                       "Signature query string parameter or the Authorization header should be specified", 400)
    signed = _utc((query.get("X-Amz-Date") or [""])[0], "%Y%m%dT%H%M%SZ")
    try:
        expires = int((query.get("X-Amz-Expires") or [""])[0])
    except ValueError:
        expires = -1
    if signed is None or not 0 < expires <= MAX_EXPIRES:
        raise AwsError("AuthorizationQueryParametersError",
                       "X-Amz-Expires must be a number of seconds from 1 to 604800, X-Amz-Date a date", 400)
    if now < signed - dt.timedelta(minutes=15):  # S3 allows 15 minutes of clock skew
        raise AwsError("AccessDenied", "Request is not valid yet", 403)
    if now > signed + dt.timedelta(seconds=expires):
        raise AwsError("AccessDenied", "Request has expired", 403)


@dataclass(frozen=True)
class PostUpload:
    access_key: str
    region: str
    bucket: str
    key: str
    size: int


def is_post_upload(environ: dict) -> bool:
    path = environ.get("PATH_INFO", "/").strip("/")
    return (environ.get("REQUEST_METHOD") == "POST" and path != "" and "/" not in path
            and environ.get("CONTENT_TYPE", "").lower().startswith("multipart/form-data")
            and not environ.get("QUERY_STRING"))


def _denied(message: str) -> AwsError:
    return AwsError("AccessDenied", f"Invalid according to Policy: {message}", 403)


def post_upload(environ: dict, body: bytes, secret_of, now: dt.datetime | None = None) -> PostUpload | None:
    """The upload a presigned POST makes, after S3's checks (``secret_of(access_key)`` -> secret or None)."""
    if not is_post_upload(environ):
        return None
    from werkzeug.formparser import parse_form_data

    env = dict(environ)
    env["wsgi.input"] = io.BytesIO(body)
    env["CONTENT_LENGTH"] = str(len(body))
    _, form, files = parse_form_data(env)
    fields = {k.lower(): v for k, v in form.items()}
    upload = files.get("file")
    if upload is None:
        raise AwsError("InvalidArgument", "POST requires exactly one file upload per request.", 400)
    size = len(upload.read())
    bucket = environ.get("PATH_INFO", "/").strip("/")
    fields["bucket"] = bucket
    now = now or dt.datetime.now(dt.timezone.utc)

    credential = fields.get("x-amz-credential", "")
    parts = credential.split("/")
    if fields.get("x-amz-algorithm") != "AWS4-HMAC-SHA256" or len(parts) != 5 or parts[4] != "aws4_request":
        raise AwsError("InvalidArgument", "POST form fields x-amz-algorithm, x-amz-credential are required", 400)
    access_key, date, region, service = parts[:4]
    secret = secret_of(access_key)
    if secret is None:
        raise AwsError("InvalidAccessKeyId", "The AWS Access Key Id you provided does not exist in our records.", 403)
    policy_b64 = fields.get("policy", "")
    key = b"AWS4" + secret.encode()
    for part in (date, region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    expected = hmac.new(key, policy_b64.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, fields.get("x-amz-signature", "")):
        raise AwsError("SignatureDoesNotMatch", "The request signature we calculated does not match the signature "
                       "you provided. Check your key and signing method.", 403)
    try:
        policy = json.loads(base64.b64decode(policy_b64, validate=True))
        expiration = _utc(policy["expiration"].split(".")[0].rstrip("Z"), "%Y-%m-%dT%H:%M:%S")
        conditions = list(policy["conditions"])
    except (ValueError, KeyError, TypeError, AttributeError):
        raise AwsError("InvalidPolicyDocument", "Invalid Policy: Invalid JSON.", 400) from None
    if expiration is None or now > expiration:
        raise _denied("Policy expired.")
    covered = _check_conditions(conditions, fields, size)
    extra = [f for f in fields if f not in covered and f not in NOT_IN_POLICY and not f.startswith("x-ignore-")
             and f != "bucket"]
    if extra:
        raise _denied(f"Extra input fields: {extra[0]}")
    return PostUpload(access_key, region, bucket, fields.get("key", ""), size)


def _check_conditions(conditions: list, fields: dict[str, str], size: int) -> set[str]:
    covered: set[str] = set()
    for c in conditions:
        if isinstance(c, dict) and len(c) == 1:
            ((name, value),) = c.items()
            op, name = "eq", name.lower().lstrip("$")
        elif isinstance(c, list) and len(c) == 3 and str(c[0]).lower() == "content-length-range":
            lo, hi = int(c[1]), int(c[2])
            if size > hi:
                raise AwsError("EntityTooLarge", "Your proposed upload exceeds the maximum allowed size", 400)
            if size < lo:
                raise AwsError("EntityTooSmall", "Your proposed upload is smaller than the minimum allowed size", 400)
            continue
        elif isinstance(c, list) and len(c) == 3 and str(c[0]).lower() in ("eq", "starts-with"):
            op, name, value = str(c[0]).lower(), str(c[1]).lower().lstrip("$"), c[2]
        else:
            raise AwsError("InvalidPolicyDocument", "Invalid Policy: Invalid Simple-Condition.", 400)
        covered.add(name)
        have = fields.get(name, "")
        ok = have == value if op == "eq" else have.startswith(str(value))
        if not ok:
            raise _denied(f'Policy Condition failed: ["{op}", "${name}", "{value}"]')
    return covered
