"""make image / make deploy (tools/deploy.py): a clear stop without Docker, and the commands they run.

Docker is replaced by a recorder script on PATH, AWS by moto, ``sam`` by a recorder (``SAM``).
"""

from __future__ import annotations

import json
import re
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "tools/deploy.py"

RECORDER = """#!/bin/sh
echo "$0 $*" >> "$RECORD"
if [ "${0##*/}" = sam ] && [ -n "$FAKE_SAM_STATUS" ]; then exit "$FAKE_SAM_STATUS"; fi
if [ "$1" = info ] && [ -n "$FAKE_DOCKER_DOWN" ]; then
    echo "Cannot connect to the Docker daemon at unix:///var/run/docker.sock." >&2; exit 1
fi
if [ "$1" = buildx ] && [ "$2" = version ] && [ -n "$FAKE_NO_BUILDX" ]; then
    echo "docker: 'buildx' is not a docker command." >&2; exit 1
fi
cat > /dev/null 2>&1 < /dev/null
exit 0
"""


@pytest.fixture
def fakes(tmp_path):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for name in ("docker", "sam"):
        script = bindir / name
        script.write_text(RECORDER)
        script.chmod(0o755)
    record = tmp_path / "record.log"
    env = {"PATH": f"{bindir}:/usr/bin:/bin", "RECORD": str(record), "HOME": str(tmp_path),
           "IMAGE_TAG": "t1", "SAM": str(bindir / "sam"), "WEBMAIL_DIST": str(standin_dist(tmp_path))}
    return env, record


def standin_dist(tmp_path) -> Path:
    """A built webmail's shape: index.html, content-hashed assets, a favicon, a dot-file never uploaded."""
    dist = tmp_path / "dist"
    (dist / "assets").mkdir(parents=True)
    (dist / "index.html").write_text('<!doctype html><script type="module" src="assets/app-0123456789ab.js"></script>')
    (dist / "assets/app-0123456789ab.js").write_text("console.log(1)")
    (dist / "assets/app-abcdef012345.css").write_text("body{}")
    (dist / "favicon.svg").write_text("<svg xmlns='http://www.w3.org/2000/svg'/>")
    (dist / ".DS_Store").write_bytes(b"\0")
    return dist


def app_stack(endpoint: str, stack: str = "postern") -> tuple[str, str]:
    """A deployed stack's webmail outputs on moto: (WebAppBucketName, WebDistributionId)."""
    import boto3

    kw = {"endpoint_url": endpoint, "region_name": "us-east-1"}
    dist = boto3.client("cloudfront", **kw).create_distribution(DistributionConfig={
        "CallerReference": stack, "Comment": "", "Enabled": True,
        "Origins": {"Quantity": 1, "Items": [{"Id": "webmail-app", "DomainName": "app.s3.amazonaws.com",
                                              "S3OriginConfig": {"OriginAccessIdentity": ""}}]},
        "DefaultCacheBehavior": {"TargetOriginId": "webmail-app", "ViewerProtocolPolicy": "redirect-to-https"},
    })["Distribution"]["Id"]
    bucket = f"{stack}-webappbucket-test"
    body = json.dumps({"Resources": {"WebAppBucket": {"Type": "AWS::S3::Bucket", "Properties": {"BucketName": bucket}}},
                       "Outputs": {"WebAppBucketName": {"Value": {"Ref": "WebAppBucket"}},
                                   "WebDistributionId": {"Value": dist}}})
    boto3.client("cloudformation", **kw).create_stack(StackName=stack, TemplateBody=body)
    return bucket, dist


def run(args, env, python=sys.executable):
    return subprocess.run([python, str(DEPLOY), *args], env=env, capture_output=True, text=True, timeout=120, cwd=REPO)


def recorded(record: Path) -> list[str]:
    return record.read_text().splitlines() if record.exists() else []


def test_image_without_docker_says_what_to_do(fakes):
    env, record = fakes
    env["PATH"] = "/nonexistent"
    r = run(["image"], env)
    assert r.returncode == 1
    assert "no `docker` command" in r.stderr and "Install Docker" in r.stderr


def test_image_with_a_stopped_daemon_says_so(fakes):
    env, record = fakes
    r = run(["image"], {**env, "FAKE_DOCKER_DOWN": "1"})
    assert r.returncode == 1
    assert "running Docker daemon" in r.stderr and "Cannot connect to the Docker daemon" in r.stderr
    assert not any("buildx build" in line for line in recorded(record))


def test_preflight_without_buildx_says_so(fakes):
    env, record = fakes
    r = run(["preflight"], {**env, "FAKE_NO_BUILDX": "1"})
    assert r.returncode == 1 and "docker buildx" in r.stderr


def test_image_builds_the_gateway_for_arm64(fakes):
    env, record = fakes
    r = run(["image"], env)
    assert r.returncode == 0, r.stderr
    (build,) = [line for line in recorded(record) if " buildx build " in line]
    assert build.endswith("buildx build --platform linux/arm64 -f gateway/Dockerfile -t postern-gateway:t1 --load .")
    assert r.stdout.strip().endswith("postern-gateway:t1")


@pytest.fixture
def moto_endpoint():
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    import urllib.request

    # moto's backends are per process, not per server: each test starts from an empty account
    urllib.request.urlopen(urllib.request.Request(f"http://{host}:{port}/moto-api/reset", method="POST"), timeout=30)
    yield f"http://{host}:{port}"
    server.stop()


def _aws_env(env, endpoint):
    return {**env, "AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_REGION": "us-east-1"}


def _samconfig(tmp_path, zone_id: str) -> Path:
    path = tmp_path / "samconfig.toml"
    path.write_text(
        'version = 0.1\n[default.deploy.parameters]\nregion = "us-east-1"\n'
        f'parameter_overrides = "MailDomain=\\"example.com\\" GatewayHostname=\\"mail.example.com\\" '
        f'HostedZoneId=\\"{zone_id}\\" GatewayImage=\\"placeholder\\""\n')
    return path


def test_deploy_creates_the_repository_pushes_and_deploys_with_that_image(fakes, moto_endpoint, tmp_path, monkeypatch):
    import boto3
    import moto.settings

    monkeypatch.setattr(moto.settings, "ACM_VALIDATION_WAIT", 10**6)  # pending until the test issues it

    env, record = fakes
    env = _aws_env(env, moto_endpoint)
    kw = {"endpoint_url": moto_endpoint, "region_name": "us-east-1"}
    zone = boto3.client("route53", **kw).create_hosted_zone(Name="example.com", CallerReference="t")
    zone_id = zone["HostedZone"]["Id"].split("/")[-1]
    env["SAM_CONFIG_FILE"] = str(_samconfig(tmp_path, zone_id))
    bucket, distribution = app_stack(moto_endpoint)  # what `sam deploy` (a recorder here) leaves behind

    r = run(["deploy", "--function-arch", "arm64", "--", "--no-confirm-changeset"], env)
    assert r.returncode == 0, r.stderr
    # after sam deploy, the webmail: in the stack's app bucket, the distribution invalidated
    keys = [o["Key"] for o in boto3.client("s3", **kw).list_objects_v2(Bucket=bucket)["Contents"]]
    assert sorted(keys) == ["assets/app-0123456789ab.js", "assets/app-abcdef012345.css", "favicon.svg", "index.html"]
    assert len(boto3.client("cloudfront", **kw).list_invalidations(DistributionId=distribution)
               ["InvalidationList"]["Items"]) == 1
    assert f"webmail: 4 files to s3://{bucket}" in r.stdout

    ecr = boto3.client("ecr", **kw)
    repo = ecr.describe_repositories(repositoryNames=["postern-gateway"])["repositories"][0]
    assert repo["imageTagMutability"] == "IMMUTABLE" and repo["imageScanningConfiguration"]["scanOnPush"]
    policy = json.loads(ecr.get_lifecycle_policy(repositoryName="postern-gateway")["lifecyclePolicyText"])
    assert policy["rules"][0]["selection"]["countNumber"] == 30
    image = f"{repo['repositoryUri']}:t1"
    lines = recorded(record)
    login = [line for line in lines if " login " in line]
    push = [line for line in lines if " buildx build " in line]
    deploy = [line for line in lines if line.split()[0].endswith("/sam")]
    assert login and login[0].endswith(repo["repositoryUri"].split("/")[0])
    assert push == [push[0]] and f"-t {image} --push ." in push[0] and "--platform linux/arm64" in push[0]
    assert len(deploy) == 1
    assert f'GatewayImage="{image}"' in deploy[0] and 'GatewayArchitecture="ARM64"' in deploy[0]
    assert 'FunctionArchitecture="arm64"' in deploy[0] and 'MailDomain="example.com"' in deploy[0]
    assert "placeholder" not in deploy[0] and deploy[0].endswith("--no-confirm-changeset")
    assert " --no-fail-on-empty-changeset " in deploy[0]  # an unchanged stack still gets the new webmail
    # the order: log in, push, then deploy
    assert lines.index(login[0]) < lines.index(push[0]) < lines.index(deploy[0])

    # The HTTPS certificate: requested in us-east-1 for MailDomain, its CNAME printed, not waited for: this
    # deploy gives the distribution no certificate or aliases
    acm = boto3.client("acm", **{**kw, "region_name": "us-east-1"})
    (summary,) = acm.list_certificates()["CertificateSummaryList"]
    cert = acm.describe_certificate(CertificateArn=summary["CertificateArn"])["Certificate"]
    assert cert["SubjectAlternativeNames"] == ["*.example.com"] and cert["Status"] == "PENDING_VALIDATION"
    assert {"Key": "postern:stack", "Value": "postern"} in acm.list_tags_for_certificate(
        CertificateArn=cert["CertificateArn"])["Tags"]
    rr = cert["DomainValidationOptions"][0]["ResourceRecord"]
    assert rr["Name"] in r.stdout and rr["Value"] in r.stdout and "does not wait" in r.stdout
    assert "WebCertificateArn" not in deploy[0] and "WebAliases" not in deploy[0]
    # once ACM has issued it, the next deploy puts it and the four names on the distribution
    monkeypatch.setattr(moto.settings, "ACM_VALIDATION_WAIT", -1)
    env["IMAGE_TAG"] = "t2"
    r = run(["deploy", "--function-arch", "arm64", "--", "--no-confirm-changeset"], env)
    assert r.returncode == 0, r.stderr
    deploy = [line for line in recorded(record) if line.split()[0].endswith("/sam")]
    assert len(deploy) == 2 and len(acm.list_certificates()["CertificateSummaryList"]) == 1
    assert f'WebCertificateArn="{cert["CertificateArn"]}"' in deploy[1]
    assert ('WebAliases="webmail.example.com,autoconfig.example.com,autodiscover.example.com,'
            'mta-sts.example.com"') in deploy[1]


def test_deploy_stops_before_pushing_when_preflight_finds_a_problem(fakes, moto_endpoint, tmp_path):
    env, record = fakes
    env = _aws_env(env, moto_endpoint)
    env["SAM_CONFIG_FILE"] = str(_samconfig(tmp_path, "Z0NOSUCHZONE"))
    r = run(["deploy"], env)
    assert r.returncode == 1
    assert "no such Route 53 hosted zone" in r.stderr and "nothing was pushed or deployed" in r.stderr
    lines = recorded(record)
    assert not any(" buildx build " in line or line.split()[0].endswith("/sam") for line in lines)


def test_deploy_without_credentials_says_so(fakes, tmp_path):
    env, record = fakes
    env = {**env, "AWS_REGION": "us-east-1", "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
           "AWS_EC2_METADATA_DISABLED": "true", "SAM_CONFIG_FILE": str(_samconfig(tmp_path, "Z1"))}
    r = run(["deploy"], env)
    assert r.returncode == 1 and "no AWS credentials" in r.stderr


METADATA_RECORDER = RECORDER.replace("exit 0\n", """\
if [ "$1" = buildx ] && [ "$2" = build ]; then
    while [ $# -gt 0 ]; do
        if [ "$1" = --metadata-file ]; then printf '%s' "$FAKE_METADATA" > "$2"; fi
        shift
    done
fi
exit 0
""")


def test_rspamd_image_is_pushed_and_printed_by_digest_as_the_template_demands(fakes, moto_endpoint, tmp_path):
    """make rspamd-image: the ECR repository created, rspamd/Dockerfile built for arm64 and pushed, and the
    RspamdImage value printed by digest, which the template's AllowedPattern accepts (a tag would be refused)."""
    import re

    import boto3

    from postern_local.template import load_template

    env, record = fakes
    (Path(env["PATH"].split(":")[0]) / "docker").write_text(METADATA_RECORDER)
    digest = "sha256:" + "3f" * 32
    env = {**_aws_env(env, moto_endpoint), "SAM_CONFIG_FILE": str(_samconfig(tmp_path, "Z1")),
           "FAKE_METADATA": json.dumps({"containerimage.digest": digest, "image.name": "x"})}
    r = run(["rspamd-image"], env)
    assert r.returncode == 0, r.stderr
    kw = {"endpoint_url": moto_endpoint, "region_name": "us-east-1"}
    repo = boto3.client("ecr", **kw).describe_repositories(repositoryNames=["postern-rspamd"])["repositories"][0]
    assert repo["imageTagMutability"] == "IMMUTABLE"
    (build,) = [line for line in recorded(record) if " buildx build " in line]
    assert "--platform linux/arm64 -f rspamd/Dockerfile" in build and f"-t {repo['repositoryUri']}:t1 --push" in build
    assert build.endswith(" rspamd/")
    value = r.stdout.strip().splitlines()[-1]
    assert value == f"RspamdImage={repo['repositoryUri']}@{digest}"
    pattern = load_template()["Parameters"]["RspamdImage"]["AllowedPattern"]
    assert re.fullmatch(pattern, value.split("=", 1)[1])

    # no digest reported: a clear stop, never a tag passed off as a pin
    r = run(["rspamd-image"], {**env, "FAKE_METADATA": "{}", "IMAGE_TAG": "t2"})
    assert r.returncode == 1 and "no usable digest" in r.stderr and "imagetools inspect" in r.stderr
    assert "RspamdImage=" not in r.stdout


def test_make_rspamd_image_runs_the_tool_with_the_sam_venv():
    recipe = re.search(r"^rspamd-image:.*\n((?:\t.*\n)+)", (REPO / "Makefile").read_text(), re.M).group(1)
    assert "tools/deploy.py rspamd-image" in recipe and "$(TOOLS)/sam/bin/python" in recipe


def test_the_readme_walks_through_the_rspamd_image():
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## Spam filtering"):readme.index("## Sieve")]
    assert "make rspamd-image" in section and "RspamdImage=" in section and "MailInMemory=1024" in section
    assert "docker buildx imagetools inspect" in section  # the by-hand way to the digest


# --- the webmail's upload (make deploy after sam deploy; make deploy-webmail alone) ------------------
def _tool():
    import importlib.util

    spec = importlib.util.spec_from_file_location("deploy_tool", DEPLOY)
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(DEPLOY.parent))
    spec.loader.exec_module(module)
    return module


def test_the_webmail_is_uploaded_with_its_headers_index_last_stale_files_removed_and_invalidated(moto_endpoint,
                                                                                                 tmp_path):
    import boto3

    from postern import webassets

    tool = _tool()
    bucket, distribution = app_stack(moto_endpoint)
    session = boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1")
    kw = {"endpoint_url": moto_endpoint}
    s3 = boto3.client("s3", region_name="us-east-1", **kw)
    s3.put_object(Bucket=bucket, Key="assets/app-000000000000.js", Body=b"the previous build's")
    s3.put_object(Bucket=bucket, Key="index.html", Body=b"the previous index")
    dist = standin_dist(tmp_path)

    puts = []
    real_client = session.client

    def client(name, **k):
        c = real_client(name, endpoint_url=moto_endpoint, **k)
        if name == "s3":
            c.meta.events.register("before-call.s3.PutObject", lambda params, **_: puts.append(params["url_path"]))
        return c

    session.client = client
    done = tool.publish_webmail(session, "postern", dist)

    objects = {o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]}
    assert objects == {"index.html", "assets/app-0123456789ab.js", "assets/app-abcdef012345.css", "favicon.svg"}
    assert done["deleted"] == ["assets/app-000000000000.js"]  # the .DS_Store never went up
    for key in objects:
        head = s3.head_object(Bucket=bucket, Key=key)
        assert head["ContentType"] == webassets.content_type(key), key
        assert head["CacheControl"] == webassets.cache_control(key), key
        assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == (dist / key).read_bytes()
    assert s3.head_object(Bucket=bucket, Key="index.html")["CacheControl"] == "no-cache"
    assert s3.head_object(Bucket=bucket, Key="assets/app-0123456789ab.js")["CacheControl"] == \
        "public, max-age=31536000, immutable"
    assert s3.head_object(Bucket=bucket, Key="index.html")["ContentType"] == "text/html; charset=utf-8"
    # the hashed assets before anything that names them, index.html last
    assert [p.rsplit("/", 1)[-1] for p in puts][-1] == "index.html" and len(puts) == 4
    assert done["uploaded"][:2] == ["assets/app-0123456789ab.js", "assets/app-abcdef012345.css"]

    cf = boto3.client("cloudfront", region_name="us-east-1", **kw)
    (inv,) = cf.list_invalidations(DistributionId=distribution)["InvalidationList"]["Items"]
    paths = cf.get_invalidation(DistributionId=distribution, Id=inv["Id"])["Invalidation"]["InvalidationBatch"]["Paths"]
    assert sorted(paths["Items"]) == ["/", "/favicon.svg", "/index.html"]  # a hashed name was never cached


def test_deploy_stops_before_pushing_anything_without_a_built_webmail(fakes, tmp_path):
    env, record = fakes
    r = run(["deploy"], {**env, "WEBMAIL_DIST": str(tmp_path / "nothing")})
    assert r.returncode == 1 and "no built webmail" in r.stderr and "make webmail" in r.stderr
    assert not any(" buildx build " in line or line.split()[0].endswith("/sam") for line in recorded(record))


def test_a_failed_sam_deploy_uploads_no_webmail(fakes, moto_endpoint, tmp_path):
    import boto3

    env, record = fakes
    kw = {"endpoint_url": moto_endpoint, "region_name": "us-east-1"}
    zone = boto3.client("route53", **kw).create_hosted_zone(Name="example.com", CallerReference="t")
    env = {**_aws_env(env, moto_endpoint), "FAKE_SAM_STATUS": "3",
           "SAM_CONFIG_FILE": str(_samconfig(tmp_path, zone["HostedZone"]["Id"].split("/")[-1]))}
    bucket, _ = app_stack(moto_endpoint)
    r = run(["deploy"], env)
    assert r.returncode == 3
    assert "Contents" not in boto3.client("s3", **kw).list_objects_v2(Bucket=bucket)


def test_deploy_webmail_alone_and_a_stack_without_the_outputs(fakes, moto_endpoint, tmp_path):
    import boto3

    env, _ = fakes
    env = {**_aws_env(env, moto_endpoint), "SAM_CONFIG_FILE": str(_samconfig(tmp_path, "Z1"))}
    r = run(["webmail"], env)
    assert r.returncode == 1 and "cannot read stack postern's outputs" in r.stderr
    bucket, _ = app_stack(moto_endpoint)
    r = run(["webmail"], env)
    assert r.returncode == 0, r.stderr
    kw = {"endpoint_url": moto_endpoint, "region_name": "us-east-1"}
    assert boto3.client("s3", **kw).list_objects_v2(Bucket=bucket)["KeyCount"] == 4


def test_make_deploy_builds_the_webmail_first_and_deploy_webmail_uses_the_sam_venv():
    text = (REPO / "Makefile").read_text()
    assert re.search(r"^deploy: .*\bwebmail\b", text, re.M)
    recipe = re.search(r"^deploy-webmail: (.*)\n((?:\t.*\n)+)", text, re.M)
    assert "webmail" in recipe.group(1).split() and "$(TOOLS)/sam/bin/python tools/deploy.py webmail" in recipe.group(2)
