"""template.yaml's webmail part: the app's own private bucket read by the distribution alone, the cache
behaviours (the function's paths uncached, the rest the app, cached), and the one security policy."""

from __future__ import annotations

import re

import pytest

from postern_local.template import load_template

CACHING_DISABLED = "4135ea2d-6df8-44a3-9df3-4b5a84be39ad"
CACHING_OPTIMIZED = "658327ea-f89d-4fab-a63d-7e88639e58f6"


@pytest.fixture(scope="module")
def t():
    return load_template()


@pytest.fixture(scope="module")
def dist(t):
    return t["Resources"]["WebDistribution"]["Properties"]["DistributionConfig"]


def csp(t) -> tuple[str, dict]:
    policy = t["Resources"]["WebSecurityHeaders"]["Properties"]["ResponseHeadersPolicyConfig"]
    fmt, variables = policy["SecurityHeadersConfig"]["ContentSecurityPolicy"]["ContentSecurityPolicy"]["Fn::Sub"]
    return fmt, variables


def directives(policy: str) -> dict[str, list[str]]:
    out = {}
    for part in policy.split(";"):
        name, *sources = part.split()
        assert name not in out, f"{name} twice"
        out[name] = sources
    return out


def test_the_app_has_its_own_private_encrypted_bucket(t):
    props = t["Resources"]["WebAppBucket"]["Properties"]
    assert t["Resources"]["WebAppBucket"]["DeletionPolicy"] == "RetainExceptOnCreate"  # never stops a stack's deletion
    assert set(props["PublicAccessBlockConfiguration"].values()) == {True} and len(props["PublicAccessBlockConfiguration"]) == 4
    (rule,) = props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    assert props["OwnershipControls"]["Rules"] == [{"ObjectOwnership": "BucketOwnerEnforced"}]
    (origin,) = [o for o in dist_of(t)["Origins"] if "S3OriginConfig" in o]
    assert origin["DomainName"] == {"Fn::GetAtt": ["WebAppBucket", "RegionalDomainName"]}  # never MailBucket
    assert origin["S3OriginConfig"] == {"OriginAccessIdentity": ""}
    assert origin["OriginAccessControlId"] == {"Fn::GetAtt": ["WebAppOriginAccess", "Id"]}
    oac = t["Resources"]["WebAppOriginAccess"]["Properties"]["OriginAccessControlConfig"]
    assert (oac["OriginAccessControlOriginType"], oac["SigningBehavior"], oac["SigningProtocol"]) == ("s3", "always", "sigv4")


def dist_of(t):
    return t["Resources"]["WebDistribution"]["Properties"]["DistributionConfig"]


def test_only_this_distribution_reads_the_app_bucket_and_only_over_tls(t):
    policy = t["Resources"]["WebAppBucketPolicy"]["Properties"]
    assert policy["Bucket"] == {"Ref": "WebAppBucket"}
    allow, deny = policy["PolicyDocument"]["Statement"]
    assert allow["Effect"] == "Allow" and allow["Principal"] == {"Service": "cloudfront.amazonaws.com"}
    assert allow["Action"] == ["s3:GetObject", "s3:ListBucket"]  # ListBucket: a missing file is 404, not 403
    source = allow["Condition"]["StringEquals"]["AWS:SourceArn"]["Fn::Sub"]
    assert source.endswith(":distribution/${WebDistribution}") and ":cloudfront::${AWS::AccountId}:" in source
    assert deny["Effect"] == "Deny" and deny["Principal"] == "*" and deny["Action"] == "s3:*"
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert len(deny["Resource"]) == 2  # the bucket and its objects
    # nothing else grants anything on it
    for name, r in t["Resources"].items():
        if name not in ("WebAppBucketPolicy", "WebDistribution") and r["Type"] != "AWS::S3::Bucket":
            assert "WebAppBucket" not in str(r), name


def test_function_paths_are_uncached_and_the_rest_is_the_app_cached(t, dist):
    assert dist["DefaultRootObject"] == "index.html"
    default = dist["DefaultCacheBehavior"]
    assert default["TargetOriginId"] == "webmail-app" and default["CachePolicyId"] == CACHING_OPTIMIZED
    assert default["AllowedMethods"] == ["GET", "HEAD"] and "FunctionAssociations" not in default
    patterns = [b["PathPattern"] for b in dist["CacheBehaviors"]]
    assert len(patterns) == len(set(patterns)) <= 25  # CloudFront's default quota per distribution
    for b in dist["CacheBehaviors"]:
        assert b["TargetOriginId"] == "https-api", b["PathPattern"]
        assert b["CachePolicyId"] == CACHING_DISABLED and b["ViewerProtocolPolicy"] == "redirect-to-https"
        assert set(b["AllowedMethods"]) == {"GET", "HEAD", "OPTIONS", "PUT", "PATCH", "POST", "DELETE"}
        # the viewer's host and address reach the function on every one of its paths (postern.edge)
        assert b["FunctionAssociations"][0]["EventType"] == "viewer-request"
    for b in [*dist["CacheBehaviors"], default]:
        assert b["ResponseHeadersPolicyId"] == {"Ref": "WebSecurityHeaders"} and b["Compress"] is True
    # each origin id names a declared origin
    assert {b["TargetOriginId"] for b in [*dist["CacheBehaviors"], default]} == {o["Id"] for o in dist["Origins"]}


def test_the_apps_policy_is_strict_for_the_app_and_lets_the_reader_frame_work(t):
    fmt, variables = csp(t)
    d = directives(fmt)
    assert d["script-src"] == ["'self'"]  # no inline script, no eval, no third party
    assert d["default-src"] == ["'self'"] and d["object-src"] == ["'none'"] and d["base-uri"] == ["'none'"]
    assert d["frame-ancestors"] == ["'none'"]
    # the srcdoc reader frame inherits this policy on top of its own meta CSP (the webmail contract)
    assert "'unsafe-inline'" in d["style-src"] and {"data:", "blob:", "https:"} <= set(d["img-src"])
    assert d["connect-src"] == ["'self'", "${PushOrigin}", "${BlobOrigins}"]
    assert variables["PushOrigin"] == {"Fn::Sub": "wss://${PushApi}.execute-api.${AWS::Region}.${AWS::URLSuffix}"}
    # the S3 names presigned URLs use: boto3 signs for the global one; the regional one is a new bucket's redirect
    assert variables["BlobOrigins"] == {"Fn::Sub": "https://${MailBucket.DomainName} https://${MailBucket.RegionalDomainName}"}
    # no host of anyone else's anywhere in it
    hosts = re.findall(r"(?:https?|wss?)://[^\s;]+", fmt)
    assert hosts == [], hosts


def test_the_headers_policy_keeps_hsts_and_frames_denied(t):
    sec = t["Resources"]["WebSecurityHeaders"]["Properties"]["ResponseHeadersPolicyConfig"]["SecurityHeadersConfig"]
    assert sec["StrictTransportSecurity"]["AccessControlMaxAgeSec"] >= 31536000
    assert sec["FrameOptions"]["FrameOption"] == "DENY" and sec["ContentTypeOptions"]["Override"] is True
    assert sec["ContentSecurityPolicy"]["Override"] is True
    # CloudFront's limit on the policy's value, with the longest names the variables can take
    fmt, _ = csp(t)
    longest = fmt.replace("${PushOrigin}", "wss://" + "a" * 10 + ".execute-api.ap-southeast-4.amazonaws.com")
    longest = longest.replace("${BlobOrigins}", " ".join(["https://" + "b" * 63 + ".s3.ap-southeast-4.amazonaws.com"] * 2))
    assert len(longest) <= 1783


def test_deploy_finds_the_bucket_and_the_distribution_in_the_outputs(t):
    assert t["Outputs"]["WebAppBucketName"]["Value"] == {"Ref": "WebAppBucket"}
    assert t["Outputs"]["WebDistributionId"]["Value"] == {"Ref": "WebDistribution"}


def test_the_app_may_fetch_blobs_from_the_mail_bucket_on_every_name_it_is_served_on(t):
    """Downloads (a 302 to S3 followed by fetch) and presigned uploads are CORS requests from the app's origin."""
    from postern_local.template import deployed

    def origins(params):
        (rule,) = deployed(t, params)["Resources"]["MailBucket"]["Properties"]["CorsConfiguration"]["CorsRules"]
        assert set(rule["AllowedMethods"]) == {"GET", "POST"}
        return rule["AllowedOrigins"]

    # before the certificate is issued the distribution answers on its own cloudfront.net name only
    assert "https://*.cloudfront.net" in origins({"MailDomain": "example.com"})
    with_cert = origins({"MailDomain": "example.com", "WebCertificateArn": "arn:aws:acm:us-east-1:1:certificate/x",
                         "WebAliases": "webmail.example.com,webmail.example.org"})
    assert "https://*.cloudfront.net" not in str(with_cert)
