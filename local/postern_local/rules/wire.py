"""AWS requests and errors as they look on the wire (the rules proxy's only HTTP knowledge).

In:   a WSGI environ and the request body the proxy read from it.
Out:  :func:`parse` -> :class:`Call` (service, operation, parameters, the caller's
      access key) or None for a request that is not an AWS API call (moto's own
      ``/moto-api``, an unsigned probe); :class:`AwsError`, a refusal that knows
      its AWS error code and HTTP status; :func:`error_response` renders it in the
      protocol of the call (JSON 1.0/1.1 with ``__type``, SQS's query-compatible
      ``x-amzn-query-error`` header, query XML, REST-JSON ``x-amzn-ErrorType``,
      S3's XML), so botocore raises exactly the ``ClientError`` AWS would cause.
Fails: never; what cannot be parsed is passed through unparsed (``Call.params``
      empty) and judged as the operation ``Unknown``.

Which service a request is for comes from its SigV4 credential scope
(``Credential=AKID/date/region/<service>/aws4_request``), as AWS routes it; the
operation from ``X-Amz-Target`` (JSON protocols), the ``Action`` field (query
protocol), or method and path (S3, and the REST services through botocore's own
service models: SES v2, Route 53, Lambda).
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass, field
from functools import lru_cache
from urllib.parse import parse_qs, unquote
from xml.sax.saxutils import escape

_CREDENTIAL = re.compile(r"Credential=([^/,\s]+)/(\d{8})/([^/]+)/([^/]+)/aws4_request")

JSON_NAMESPACES = {  # the __type prefix each JSON service puts before an error code
    "sqs": "com.amazonaws.sqs#",
    "dynamodb": "com.amazonaws.dynamodb.v20120810#",
}


@dataclass
class Call:
    service: str  # the SigV4 signing name: sqs, dynamodb, s3, ses, secretsmanager, ssm, ...
    operation: str  # SendMessage, PutItem, GetObject, SendEmail ... ("Unknown" when not recognised)
    protocol: str  # json | query | rest-json | rest-xml
    access_key: str
    region: str
    method: str
    path: str  # decoded path
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-case names
    body: bytes
    params: dict = field(default_factory=dict)  # JSON body, query fields, or path parameters + JSON body
    json_version: str = "1.0"

    @property
    def target(self) -> str:
        return f"{self.service}:{self.operation}"


class AwsError(Exception):
    """A refusal as AWS words it: ``code`` is what botocore puts in ``Error.Code``."""

    def __init__(self, code: str, message: str, status: int = 400, sender: bool = True):
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status
        self.sender = sender


# ---------------------------------------------------------------- parsing
def parse(environ: dict, body: bytes) -> Call | None:
    headers = {k[5:].replace("_", "-").lower(): v for k, v in environ.items() if k.startswith("HTTP_")}
    if environ.get("CONTENT_TYPE"):
        headers["content-type"] = environ["CONTENT_TYPE"]
    query = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
    m = _CREDENTIAL.search(headers.get("authorization", "")) or _CREDENTIAL.search(
        "Credential=" + unquote((query.get("X-Amz-Credential") or [""])[0]))
    if m is None:
        return None
    access_key, _date, region, service = m.groups()
    method = environ.get("REQUEST_METHOD", "GET").upper()
    path = environ.get("PATH_INFO", "/") or "/"
    call = Call(service=service, operation="Unknown", protocol="rest-json", access_key=access_key, region=region,
                method=method, path=path, query=query, headers=headers, body=body)
    target = headers.get("x-amz-target")
    ctype = headers.get("content-type", "")
    if target:
        call.protocol = "json"
        call.operation = target.rsplit(".", 1)[-1]
        call.json_version = "1.1" if "1.1" in ctype else "1.0"
        call.params = _json(body)
    elif service == "s3":
        call.protocol = "rest-xml"
        call.operation, call.params = _s3_operation(method, path, query, headers)
    elif "Action" in query or (method == "POST" and "x-www-form-urlencoded" in ctype):
        call.protocol = "query"
        fields = {k: v[-1] for k, v in query.items()}
        if method == "POST" and body:
            fields.update({k: v[-1] for k, v in parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True).items()})
        call.operation = fields.get("Action", "Unknown")
        call.params = fields
    else:
        model = _rest_model(service, path)
        if model is not None:
            call.protocol = model.protocol
            op, path_params = _route(model, method, path)
            call.operation = op
            call.params = {**(_json(body) if model.protocol == "rest-json" else {}), **path_params}
    return call


def _json(body: bytes) -> dict:
    if not body:
        return {}
    try:
        out = json.loads(body)
    except ValueError:
        return {}
    return out if isinstance(out, dict) else {}


# --- REST services through botocore's models ------------------------------
@dataclass(frozen=True)
class _Route:
    method: str
    pattern: re.Pattern
    operation: str
    literals: int


@dataclass(frozen=True)
class _RestModel:
    protocol: str
    routes: tuple[_Route, ...]


# signing name (+ path prefix) -> botocore service model name
_REST_SERVICES = {"ses": ("sesv2", "/v2/"), "route53": ("route53", "/"), "lambda": ("lambda", "/")}


@lru_cache(maxsize=None)
def _load_rest_model(name: str) -> _RestModel | None:
    import botocore.session

    try:
        model = botocore.session.get_session().get_service_model(name)
    except Exception:  # noqa: BLE001 - an unknown service is simply not routed
        return None
    routes = []
    for op in model.operation_names:
        http = model.operation_model(op).http
        uri = http.get("requestUri", "/").split("?", 1)[0]
        rx, literals = "", 0
        for part in re.split(r"(\{[^}]+\})", uri):
            if part.startswith("{"):
                name_, greedy = part[1:-1].rstrip("+"), part.endswith("+}")
                rx += f"(?P<{re.sub(r'[^A-Za-z0-9_]', '_', name_)}>{'.+' if greedy else '[^/]+'})"
            else:
                rx += re.escape(part)
                literals += len(part)
        routes.append(_Route(http.get("method", "POST").upper(), re.compile(f"^{rx}/?$"), op, literals))
    routes.sort(key=lambda r: -r.literals)  # the most specific template first
    return _RestModel(model.metadata.get("protocol", "rest-json"), tuple(routes))


def _rest_model(service: str, path: str) -> _RestModel | None:
    spec = _REST_SERVICES.get(service)
    if spec is None or not path.startswith(spec[1]):
        return None
    return _load_rest_model(spec[0])


def _route(model: _RestModel, method: str, path: str) -> tuple[str, dict]:
    for r in model.routes:
        if r.method != method:
            continue
        m = r.pattern.match(path)
        if m:
            return r.operation, {k: unquote(v) for k, v in m.groupdict().items()}
    return "Unknown", {}


# --- S3 (path-style, as botocore addresses a custom endpoint) --------------
_S3_BUCKET_SUBRESOURCES = {  # GET/PUT/DELETE /bucket?<key> -> operation stem
    "lifecycle": "BucketLifecycleConfiguration", "policy": "BucketPolicy", "versioning": "BucketVersioning",
    "encryption": "BucketEncryption", "tagging": "BucketTagging", "cors": "BucketCors", "acl": "BucketAcl",
    "notification": "BucketNotificationConfiguration", "publicAccessBlock": "PublicAccessBlock",
    "ownershipControls": "BucketOwnershipControls", "location": "BucketLocation", "logging": "BucketLogging",
}


def _s3_operation(method: str, path: str, query: dict, headers: dict) -> tuple[str, dict]:
    parts = path.lstrip("/").split("/", 1)
    bucket = parts[0]
    key = parts[1] if len(parts) > 1 else ""
    params = {"Bucket": bucket, "Key": key}
    if not bucket:
        return ("ListBuckets" if method == "GET" else "Unknown"), params
    if not key:
        for sub, stem in _S3_BUCKET_SUBRESOURCES.items():
            if sub in query:
                verb = {"GET": "Get", "PUT": "Put", "DELETE": "Delete"}.get(method)
                return (f"{verb}{stem}" if verb else "Unknown"), params
        if method == "POST" and "delete" in query:
            return "DeleteObjects", params
        if method == "GET" and "uploads" in query:
            return "ListMultipartUploads", params
        if method == "GET" and "versions" in query:
            return "ListObjectVersions", params
        return {"GET": "ListObjectsV2" if query.get("list-type") == ["2"] else "ListObjects",
                "HEAD": "HeadBucket", "PUT": "CreateBucket", "DELETE": "DeleteBucket"}.get(method, "Unknown"), params
    if "uploadId" in query:
        op = {"PUT": "UploadPart", "POST": "CompleteMultipartUpload", "DELETE": "AbortMultipartUpload",
              "GET": "ListParts"}.get(method, "Unknown")
        if op == "UploadPart" and "x-amz-copy-source" in headers:
            op = "UploadPartCopy"
        return op, params
    if method == "POST" and "uploads" in query:
        return "CreateMultipartUpload", params
    if "tagging" in query:
        return {"GET": "GetObjectTagging", "PUT": "PutObjectTagging", "DELETE": "DeleteObjectTagging"}.get(
            method, "Unknown"), params
    if "acl" in query:
        return {"GET": "GetObjectAcl", "PUT": "PutObjectAcl"}.get(method, "Unknown"), params
    if method == "PUT" and "x-amz-copy-source" in headers:
        params["CopySource"] = unquote(headers["x-amz-copy-source"]).lstrip("/").split("?", 1)[0]
        return "CopyObject", params
    return {"GET": "GetObject", "HEAD": "HeadObject", "PUT": "PutObject", "DELETE": "DeleteObject"}.get(
        method, "Unknown"), params


# ---------------------------------------------------------------- errors
def error_response(call: Call, err: AwsError) -> tuple[str, list[tuple[str, str]], bytes]:
    """``(status line, headers, body)`` for ``err`` in ``call``'s protocol."""
    request_id = secrets.token_hex(16)
    status = f"{err.status} {_REASONS.get(err.status, 'Error')}"
    kind = "Sender" if err.sender else "Receiver"
    headers = [("x-amzn-RequestId", request_id)]
    if call.protocol == "json":
        ns = JSON_NAMESPACES.get(call.service, "")
        body = json.dumps({"__type": f"{ns}{err.code}", "message": err.message}).encode()
        headers += [("Content-Type", f"application/x-amz-json-{call.json_version}"), ("X-Amzn-ErrorType", err.code)]
        if call.service == "sqs":  # awsQueryCompatible: botocore takes the code from this header
            headers.append(("x-amzn-query-error", f"{err.code};{kind}"))
    elif call.protocol == "rest-json":
        body = json.dumps({"message": err.message}).encode()
        headers += [("Content-Type", "application/json"), ("x-amzn-ErrorType", err.code)]
    elif call.protocol == "query":
        body = (f'<ErrorResponse><Error><Type>{kind}</Type><Code>{escape(err.code)}</Code>'
                f'<Message>{escape(err.message)}</Message></Error><RequestId>{request_id}</RequestId>'
                f'</ErrorResponse>').encode()
        headers.append(("Content-Type", "text/xml"))
    else:  # rest-xml (S3, Route 53)
        body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{escape(err.code)}</Code>'
                f'<Message>{escape(err.message)}</Message><RequestId>{request_id}</RequestId></Error>').encode()
        headers.append(("Content-Type", "application/xml"))
    headers.append(("Content-Length", str(len(body))))
    return status, headers, body


_REASONS = {400: "Bad Request", 403: "Forbidden", 404: "Not Found", 413: "Request Entity Too Large"}
