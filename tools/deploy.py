#!/usr/bin/env python3
"""``make image`` and ``make deploy``: build the gateway image, push it to ECR, deploy the stack.

In:   ``image``: nothing but Docker with buildx; builds ``gateway/Dockerfile`` for
      ``IMAGE_PLATFORM`` (default ``linux/arm64``) as ``postern-gateway:<tag>``.
      ``preflight``: checks for Docker and buildx only (``make deploy`` runs it before
      ``sam build`` so a machine without Docker stops at once).
      ``deploy``: run with the aws-sam-cli tool venv's Python (it has boto3); AWS
      credentials and region as the AWS CLI reads them (``AWS_PROFILE``, ``AWS_REGION``;
      else samconfig.toml's deploy ``region``). Runs tools/preflight.py's checks on
      samconfig.toml's parameters (stops before pushing anything on a problem), creates the ECR repository
      ``IMAGE_REPOSITORY`` (default ``postern-gateway``) when missing (immutable tags, scan on
      push, the newest 30 images kept), logs Docker in, builds and pushes
      ``<account>.dkr.ecr.<region>.amazonaws.com/postern-gateway:<tag>``, then runs
      ``sam deploy`` with samconfig.toml's ``parameter_overrides`` plus ``GatewayImage``,
      ``GatewayArchitecture`` and ``FunctionArchitecture``, and any arguments after ``--``.
      The HTTPS front's certificate (``postern.webcert``, ACM in us-east-1 whatever the region):
      unless samconfig.toml sets ``WebCertificateArn`` (your own), the first deploy requests one
      for ``MailDomain`` and prints its validation CNAMEs, and every deploy passes the stack's
      issued certificate covering the most domains as ``WebCertificateArn`` with their names as
      ``WebAliases``; none issued yet -> the distribution answers on its cloudfront.net name only.
      It never waits for validation: publish the CNAMEs, then run ``make deploy`` again.
      The webmail: once ``sam deploy`` has succeeded (an unchanged stack included:
      ``--no-fail-on-empty-changeset``), the built app (``WEBMAIL_DIST``, default
      ``webmail/dist``, which must hold an index.html before anything is pushed) is uploaded to
      the stack's ``WebAppBucketName`` output, every file with its Content-Type and
      Cache-Control (:mod:`postern.webassets`: content-hashed names immutable, the rest
      ``no-cache``), index.html last so it never names a file not there yet; files the build no
      longer has are deleted; then one CloudFront invalidation of the ``WebDistributionId``
      output for ``/`` and every file that is not content-hashed. ``webmail`` does only that
      step (``make deploy-webmail``).
      ``SAM_CONFIG_FILE`` / ``SAM_CONFIG_ENV`` choose another samconfig file / environment,
      ``SAM`` another ``sam`` command (the tests use a recorder). The tag is
      ``IMAGE_TAG`` or the commit (``git rev-parse --short=12 HEAD``), with
      ``-dirty-<unix time>`` when the work tree has changes.
      ``rspamd-image`` (``make rspamd-image``; the same Python, credentials and region): the
      rspamd sidecar's image from ``rspamd/Dockerfile`` for ``IMAGE_PLATFORM``, pushed to the ECR
      repository ``RSPAMD_REPOSITORY`` (default ``postern-rspamd``, created as above) under the
      same tag scheme, and printed by digest as the ``RspamdImage=<repository>@sha256:...`` the
      template demands (its AllowedPattern, checked here before printing).
Out:  the image (and its URI on stdout), then ``sam deploy``'s own output.
Fails: exit 1 with one paragraph saying what is missing and what to do: no Docker client,
      no daemon, no buildx, no AWS credentials, no built webmail, a stack without the webmail's
      outputs; a failing docker/sam command's status is passed on (and nothing is uploaded).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PLATFORMS = {"linux/arm64": ("ARM64", "arm64"), "linux/amd64": ("X86_64", "x86_64")}  # -> GatewayArchitecture
KEEP_IMAGES = 30


class Stop(Exception):
    """A missing prerequisite: the message says what to do."""


def docker_check() -> None:
    """Docker client, a reachable daemon and buildx, or Stop with what to do about it."""
    fix = ("Install Docker (Docker Desktop, or docker-ce with the buildx plugin) and start it; to build the "
           "arm64 image on an x86 machine also enable emulation once: "
           "`docker run --privileged --rm tonistiigi/binfmt --install arm64`. Or run this on a machine "
           "that has Docker (an arm64 machine builds natively).")
    if shutil.which("docker") is None:
        raise Stop(f"`make image` and `make deploy` need Docker, and there is no `docker` command here. {fix}")
    info = subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"], capture_output=True, text=True)
    if info.returncode != 0:
        why = (info.stderr.strip().splitlines() or ["no answer"])[-1].rstrip(".")
        raise Stop(f"`make image` and `make deploy` need a running Docker daemon; `docker info` says: {why}. {fix}")
    buildx = subprocess.run(["docker", "buildx", "version"], capture_output=True, text=True)
    if buildx.returncode != 0:
        raise Stop(f"`make image` and `make deploy` build with `docker buildx`, which is not installed. {fix}")


def image_tag() -> str:
    if os.environ.get("IMAGE_TAG"):
        return os.environ["IMAGE_TAG"]
    commit = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=REPO, capture_output=True, text=True)
    tag = commit.stdout.strip() if commit.returncode == 0 else "dev"
    dirty = subprocess.run(["git", "status", "--porcelain"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    return f"{tag}-dirty-{int(time.time())}" if dirty or commit.returncode != 0 else tag


def platform() -> str:
    p = os.environ.get("IMAGE_PLATFORM", "linux/arm64")
    if p not in PLATFORMS:
        raise Stop(f"IMAGE_PLATFORM must be one of {', '.join(PLATFORMS)}, not {p!r}")
    return p


def buildx(tag: str, *, push: bool) -> None:
    cmd = ["docker", "buildx", "build", "--platform", platform(), "-f", "gateway/Dockerfile", "-t", tag,
           "--push" if push else "--load", "."]
    print("+", shlex.join(cmd), flush=True)
    subprocess.run(cmd, cwd=REPO, check=True)


def template_pattern(parameter: str) -> str:
    """A template parameter's AllowedPattern (template.yaml stays the one place the rule is written)."""
    import re

    text = (REPO / "template.yaml").read_text()
    block = re.search(rf"^  {parameter}:\n((?:    .*\n)+)", text, re.M)
    found = re.search(r'^    AllowedPattern: "(.*)"$', block.group(1), re.M) if block else None
    if not found:
        raise Stop(f"template.yaml has no AllowedPattern for {parameter}")
    return found.group(1).replace("\\\\", "\\")


# --- deploy (needs boto3: the aws-sam-cli tool venv) -------------------------------------------
def overrides_string(values: dict[str, str]) -> str:
    """``Key="value" ...`` as samconfig.toml writes ``parameter_overrides``."""
    return " ".join(f'{k}="{v}"' for k, v in values.items())


def ensure_repository(ecr, name: str) -> str:
    try:
        repo = ecr.describe_repositories(repositoryNames=[name])["repositories"][0]
    except ecr.exceptions.RepositoryNotFoundException:
        repo = ecr.create_repository(
            repositoryName=name,
            imageTagMutability="IMMUTABLE",
            imageScanningConfiguration={"scanOnPush": True},
            encryptionConfiguration={"encryptionType": "AES256"},
        )["repository"]
        ecr.put_lifecycle_policy(repositoryName=name, lifecyclePolicyText=json.dumps({"rules": [{
            "rulePriority": 1, "description": f"keep the newest {KEEP_IMAGES} images",
            "selection": {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": KEEP_IMAGES},
            "action": {"type": "expire"}}]}))
        print(f"created ECR repository {repo['repositoryUri']}", flush=True)
    return repo["repositoryUri"]


def docker_login(ecr, registry: str) -> None:
    token = ecr.get_authorization_token()["authorizationData"][0]["authorizationToken"]
    user, password = base64.b64decode(token).decode().split(":", 1)
    subprocess.run(["docker", "login", "--username", user, "--password-stdin", registry],
                   input=password, text=True, check=True, stdout=subprocess.DEVNULL)


def web_certificate(session, stack: str, params: dict[str, str]) -> dict[str, str]:
    """``WebCertificateArn``/``WebAliases`` for the distribution: the stack's issued certificate
    (postern.webcert), requested for MailDomain when the stack has none; {} while none is issued."""
    if params.get("WebCertificateArn"):
        print(f"HTTPS certificate: WebCertificateArn from samconfig.toml ({params['WebCertificateArn']})", flush=True)
        return {}
    sys.path.insert(0, str(REPO / "layers" / "postern"))  # postern.webcert: botocore and the stdlib only
    from postern import webcert

    acm = session.client("acm", region_name=webcert.REGION)
    certs = webcert.certificates(acm, stack)
    if not certs and params.get("MailDomain"):
        cert, _ = webcert.ensure(acm, stack, [params["MailDomain"]])
        cert = webcert.with_records(acm, cert)
        print(f"HTTPS certificate requested in {webcert.REGION}: {cert.arn} ({', '.join(cert.names)}); publish its "
              "validation CNAME (`postern --stack NAME web certificate` prints it again):", flush=True)
        for line in webcert.zone_lines(cert):
            print(f"  {line}", flush=True)
        certs = [cert]
    used = webcert.for_distribution(certs)
    pending = [c for c in certs if c.status == "PENDING_VALIDATION"]
    for c in pending:
        print(f"HTTPS certificate {c.arn} is {c.status}: not used until ACM issues it (this deploy does not wait)",
              flush=True)
    if used is None:
        print("HTTPS front: no issued certificate yet, so the distribution answers on its cloudfront.net name only; "
              "run `make deploy` again once ACM says ISSUED", flush=True)
        return {}
    names = webcert.aliases(used.domains)
    print(f"HTTPS front: {used.arn} for {', '.join(names)}", flush=True)
    return {"WebCertificateArn": used.arn, "WebAliases": ",".join(names)}


def stack_name(config_file: Path, env: str) -> str:
    import tomllib

    with config_file.open("rb") as fh:
        cfg = tomllib.load(fh).get(env, {})
    for section in ("deploy", "global"):
        name = cfg.get(section, {}).get("parameters", {}).get("stack_name")
        if name:
            return name
    return "postern"


def aws_session(command: str):
    """(boto3 session, account, samconfig parameters, config file, config env), or Stop saying what is missing."""
    try:
        import boto3
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError
    except ImportError:
        raise Stop(f"`tools/deploy.py {command}` runs with the aws-sam-cli tool venv's Python: `make {command}`") from None
    import preflight  # tools/preflight.py: the AWS checks that would otherwise fail half-way

    config_env = os.environ.get("SAM_CONFIG_ENV", "default")
    config_file = Path(os.environ.get("SAM_CONFIG_FILE") or REPO / "samconfig.toml")
    params, config_region = preflight.samconfig_parameters(config_file, config_env)
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or config_region
    session = boto3.Session(region_name=region or None)
    if not session.region_name:
        raise Stop("no AWS region: set AWS_REGION or `region` in samconfig.toml's deploy parameters")
    try:
        account = session.client("sts").get_caller_identity()["Account"]
    except NoCredentialsError:
        raise Stop("no AWS credentials: configure them as for the AWS CLI (AWS_PROFILE, `aws configure`, "
                   "or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY)") from None
    except (BotoCoreError, ClientError) as exc:
        raise Stop(f"cannot use the AWS credentials: {exc}") from None
    return session, account, params, config_file, config_env


def ecr_repository(session, account: str, name: str) -> str:
    """The repository's URI (created when missing), Docker logged in to its registry."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        ecr = session.client("ecr")
        repo_uri = ensure_repository(ecr, name)
        docker_login(ecr, repo_uri.split("/", 1)[0])
    except (BotoCoreError, ClientError) as exc:
        raise Stop(f"AWS refused the ECR step in account {account}: {exc}") from None
    return repo_uri


def rspamd_image() -> int:
    """Build rspamd/Dockerfile, push it, print ``RspamdImage=<repository>@sha256:...``."""
    import re
    import tempfile

    docker_check()
    session, account, _params, _f, _e = aws_session("rspamd-image")
    repo_uri = ecr_repository(session, account, os.environ.get("RSPAMD_REPOSITORY", "postern-rspamd"))
    tag = f"{repo_uri}:{image_tag()}"
    with tempfile.TemporaryDirectory() as tmp:
        meta = Path(tmp) / "metadata.json"
        cmd = ["docker", "buildx", "build", "--platform", platform(), "-f", "rspamd/Dockerfile", "-t", tag,
               "--push", "--metadata-file", str(meta), "rspamd/"]
        print("+", shlex.join(cmd), flush=True)
        subprocess.run(cmd, cwd=REPO, check=True)
        digest = json.loads(meta.read_text()).get("containerimage.digest", "") if meta.exists() else ""
    image = f"{repo_uri}@{digest}"
    if not re.fullmatch(template_pattern("RspamdImage"), image):
        raise Stop(f"pushed {tag}, but buildx reported no usable digest ({digest!r}): read it with "
                   f"`docker buildx imagetools inspect {tag}` and set RspamdImage=<repository>@sha256:<digest>")
    print(f"pushed {tag}\nRspamdImage={image}", flush=True)
    return 0


# --- the webmail: webmail/dist to the app bucket, then an invalidation ------------------------
def webmail_dist() -> Path:
    """The built app, or Stop: it is checked before anything is pushed or deployed."""
    dist = Path(os.environ.get("WEBMAIL_DIST") or REPO / "webmail" / "dist")
    if not (dist / "index.html").is_file():
        raise Stop(f"there is no built webmail in {dist} (no index.html): `make webmail` builds it (`make deploy` "
                   "does it first; it needs Node.js and npm)")
    return dist


def webassets():
    sys.path.insert(0, str(REPO / "layers" / "postern"))  # postern.webassets: the standard library only
    from postern import webassets

    return webassets


def dist_files(dist: Path) -> dict[str, Path]:
    """S3 key -> file for everything the build wrote that is served (no dot-files)."""
    rules = webassets()
    files = {p.relative_to(dist).as_posix(): p for p in sorted(dist.rglob("*")) if p.is_file()}
    return {key: path for key, path in files.items() if rules.publishable(key)}


def stack_outputs(session, stack: str) -> dict[str, str]:
    (found,) = session.client("cloudformation").describe_stacks(StackName=stack)["Stacks"]
    return {o["OutputKey"]: o["OutputValue"] for o in found.get("Outputs", [])}


def publish_webmail(session, stack: str, dist: Path) -> dict:
    """Upload the app, delete what the build no longer has, invalidate what is not content-hashed.
    Returns what it did: {"bucket", "uploaded", "deleted", "invalidation", "paths"}."""
    from botocore.exceptions import BotoCoreError, ClientError

    rules = webassets()
    try:
        outputs = stack_outputs(session, stack)
    except (BotoCoreError, ClientError) as exc:
        raise Stop(f"cannot read stack {stack}'s outputs to upload the webmail: {exc}") from None
    bucket, distribution = outputs.get("WebAppBucketName"), outputs.get("WebDistributionId")
    if not bucket or not distribution:
        raise Stop(f"stack {stack} has no WebAppBucketName/WebDistributionId output: deploy this template first")
    files = dist_files(dist)
    # index.html last: while the upload runs, the old one keeps naming assets that are still there
    order = sorted(files, key=lambda key: (key == "index.html", not rules.is_hashed(key), key))
    try:
        s3 = session.client("s3")
        existing = [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
                    for o in page.get("Contents", [])]
        for key in order:
            with files[key].open("rb") as body:
                s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType=rules.content_type(key),
                              CacheControl=rules.cache_control(key))
        stale = sorted(set(existing) - set(files))
        for i in range(0, len(stale), 1000):  # DeleteObjects takes 1,000 keys at a time
            s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in stale[i:i + 1000]],
                                                     "Quiet": True})
        # hashed names are new names: never cached before, nothing to invalidate
        paths = ["/", *(f"/{k}" for k in order if not rules.is_hashed(k))]
        inv = session.client("cloudfront").create_invalidation(
            DistributionId=distribution,
            InvalidationBatch={"Paths": {"Quantity": len(paths), "Items": paths},
                               "CallerReference": f"postern-webmail-{time.time_ns()}"})["Invalidation"]
    except (BotoCoreError, ClientError) as exc:
        raise Stop(f"AWS refused the webmail upload (s3://{bucket}, distribution {distribution}): {exc}") from None
    immutable = sum(1 for k in files if rules.is_hashed(k))
    print(f"webmail: {len(files)} files to s3://{bucket} ({immutable} content-hashed, cached for a year; the rest "
          f"revalidated), {len(stale)} stale removed; CloudFront invalidation {inv['Id']} of {', '.join(paths)}",
          flush=True)
    return {"bucket": bucket, "uploaded": order, "deleted": stale, "invalidation": inv["Id"], "paths": paths}


def webmail() -> int:
    """`make deploy-webmail`: only the app's upload and invalidation, to the deployed stack."""
    dist = webmail_dist()
    session, _account, _params, config_file, config_env = aws_session("deploy-webmail")
    publish_webmail(session, stack_name(config_file, config_env), dist)
    return 0


def deploy(function_arch: str, sam_args: list[str]) -> int:
    docker_check()
    dist = webmail_dist()
    session, account, params, config_file, config_env = aws_session("deploy")
    import preflight
    from botocore.exceptions import BotoCoreError, ClientError

    if not preflight.report(*preflight.check(session, params)):
        raise Stop("nothing was pushed or deployed: fix the problems above (samconfig.toml's parameter_overrides)")
    repo_uri = ecr_repository(session, account, os.environ.get("IMAGE_REPOSITORY", "postern-gateway"))
    try:
        web = web_certificate(session, stack_name(config_file, config_env), params)
    except (BotoCoreError, ClientError) as exc:
        raise Stop(f"AWS refused the HTTPS certificate step (ACM, us-east-1): {exc}") from None
    except Exception as exc:  # postern.webcert's WebCertError / StoreUnavailable: their text says what to do
        if not hasattr(exc, "text"):
            raise
        raise Stop(f"HTTPS certificate: {exc.text}") from None
    image = f"{repo_uri}:{image_tag()}"
    buildx(image, push=True)
    print(f"pushed {image}", flush=True)
    gateway_arch = PLATFORMS[platform()][0]
    overrides = overrides_string({**params, **web, "GatewayImage": image, "GatewayArchitecture": gateway_arch,
                                  "FunctionArchitecture": function_arch})
    sam = os.environ.get("SAM") or str(Path(sys.executable).with_name("sam"))
    # an unchanged stack is a success: the webmail may be all that changed
    cmd = [sam, "deploy", "--config-file", str(config_file), "--config-env", config_env, "--region", session.region_name,
           "--parameter-overrides", overrides, "--no-fail-on-empty-changeset", *sam_args]
    print("+", shlex.join(cmd), flush=True)
    status = subprocess.run(cmd, cwd=REPO).returncode
    if status != 0:
        return status
    publish_webmail(session, stack_name(config_file, config_env), dist)
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Build, push and deploy the gateway image (make image / make deploy).")
    sub = ap.add_subparsers(dest="command", required=True)
    sub.add_parser("image", help="build postern-gateway:<tag> for IMAGE_PLATFORM (default linux/arm64)")
    sub.add_parser("preflight", help="check for Docker with buildx")
    sub.add_parser("rspamd-image", help="build rspamd/Dockerfile, push it to ECR (RSPAMD_REPOSITORY) and print"
                                        " RspamdImage by digest (run with the aws-sam-cli venv's python)")
    sub.add_parser("webmail", help="upload webmail/dist to the deployed stack's app bucket and invalidate the"
                                   " distribution (run with the aws-sam-cli venv's python)")
    d = sub.add_parser("deploy", help="push to ECR, sam deploy, upload the webmail (run with the aws-sam-cli venv's python)")
    d.add_argument("--function-arch", choices=["arm64", "x86_64"], default="arm64")
    d.add_argument("sam_args", nargs=argparse.REMAINDER, help="after --: extra `sam deploy` arguments")
    args = ap.parse_args(argv)
    try:
        if args.command == "preflight":
            docker_check()
            return 0
        if args.command == "rspamd-image":
            return rspamd_image()
        if args.command == "webmail":
            return webmail()
        if args.command == "image":
            docker_check()
            tag = f"postern-gateway:{image_tag()}"
            buildx(tag, push=False)
            print(tag)
            return 0
        extra = [a for a in args.sam_args if a != "--"]
        return deploy(args.function_arch, extra)
    except Stop as exc:
        print(f"\n{exc}\n", file=sys.stderr)
        return 1
    except subprocess.CalledProcessError as exc:
        print(f"\n`{shlex.join(map(str, exc.cmd))}` failed with status {exc.returncode}\n", file=sys.stderr)
        return exc.returncode or 1


if __name__ == "__main__":
    sys.exit(main())
