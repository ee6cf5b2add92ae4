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
           "IMAGE_TAG": "t1", "SAM": str(bindir / "sam")}
    return env, record


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

    r = run(["deploy", "--function-arch", "arm64", "--", "--no-confirm-changeset"], env)
    assert r.returncode == 0, r.stderr

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
