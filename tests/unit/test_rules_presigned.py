"""The local rules proxy's checks of presigned S3 requests (postern_local.rules.presigned), without a stack:
a POST policy signed with a known secret and a presigned URL's query, judged as S3 judges them."""

from __future__ import annotations

import datetime as dt

import boto3
import pytest
import requests
from botocore.config import Config

from postern_local.rules import presigned
from postern_local.rules.wire import AwsError

NOW = dt.datetime(2026, 12, 7, 12, 0, tzinfo=dt.timezone.utc)
SECRETS = {"AKIDEXAMPLE": "secret-one"}


def _s3(key: str = "AKIDEXAMPLE", secret: str = "secret-one"):
    return boto3.client("s3", region_name="us-east-1", aws_access_key_id=key, aws_secret_access_key=secret,
                        endpoint_url="http://127.0.0.1:9", config=Config(signature_version="s3v4"))


def _form(fields: dict, data: bytes) -> tuple[dict, bytes]:
    r = requests.Request("POST", "http://127.0.0.1:9/bucket", data=fields, files={"file": ("f", data)}).prepare()
    return {"REQUEST_METHOD": "POST", "PATH_INFO": "/bucket", "QUERY_STRING": "",
            "CONTENT_TYPE": r.headers["Content-Type"]}, r.body


def _post(max_size: int = 10, key: str = "upload/a/P1"):
    return _s3().generate_presigned_post(Bucket="bucket", Key=key, Fields={"Content-Type": "text/plain"},
                                         Conditions=[{"Content-Type": "text/plain"},
                                                     ["content-length-range", 1, max_size]], ExpiresIn=900)


def judge(fields: dict, data: bytes = b"hello", now: dt.datetime | None = None):
    environ, body = _form(fields, data)
    return presigned.post_upload(environ, body, SECRETS.get, now=now)


def test_a_post_within_its_policy_is_an_upload_of_that_key():
    post = _post()
    got = judge(post["fields"])
    assert (got.access_key, got.bucket, got.key, got.size) == ("AKIDEXAMPLE", "bucket", "upload/a/P1", 5)


@pytest.mark.parametrize("change, data, code", [
    ({"key": "upload/a/P2"}, b"hello", "AccessDenied"),
    ({"Content-Type": "text/html"}, b"hello", "AccessDenied"),
    ({"x-amz-meta-extra": "1"}, b"hello", "AccessDenied"),
    ({}, b"x" * 11, "EntityTooLarge"),
    ({}, b"", "EntityTooSmall"),
    ({"x-amz-signature": "0" * 64}, b"hello", "SignatureDoesNotMatch"),
    ({"x-amz-credential": "AKIDUNKNOWN/20261207/us-east-1/s3/aws4_request"}, b"hello", "InvalidAccessKeyId"),
])
def test_what_s3_refuses_the_proxy_refuses(change, data, code):
    with pytest.raises(AwsError) as e:
        judge({**_post()["fields"], **change}, data)
    assert e.value.code == code


def test_an_expired_policy_is_refused():
    with pytest.raises(AwsError, match="Policy expired"):
        judge(_post()["fields"], now=dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=901))


def test_a_presigned_url_expires_and_stands_alone():
    from urllib.parse import parse_qs, urlsplit

    url = _s3().generate_presigned_url("get_object", Params={"Bucket": "b", "Key": "k"}, ExpiresIn=300)
    q = parse_qs(urlsplit(url).query)
    signed = dt.datetime.strptime(q["X-Amz-Date"][0], "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.timezone.utc)
    presigned.check_query(q, {}, now=signed + dt.timedelta(seconds=299))
    with pytest.raises(AwsError, match="Request has expired"):
        presigned.check_query(q, {}, now=signed + dt.timedelta(seconds=301))
    with pytest.raises(AwsError, match="Only one auth mechanism"):
        presigned.check_query(q, {"authorization": "Bearer x"}, now=signed)
    with pytest.raises(AwsError) as e:
        presigned.check_query({**q, "X-Amz-Expires": ["604801"]}, {}, now=signed)
    assert e.value.code == "AuthorizationQueryParametersError"
    presigned.check_query({"Other": ["1"]}, {"authorization": "x"}, now=NOW)  # not presigned: not judged here
