"""Fixtures of the deploy tests: the tool venvs, the two ``sam build`` outputs, a moto stack.

``tools``: ``make tools`` (aws-sam-cli, cfn-lint and checkov venvs, built once per pin file
and linked at .tools/NAME); returns the .tools path.
``sam_builds``: ``sam build`` of template.yaml for arm64 and for x86_64 (the
FunctionArchitecture parameter), run side by side from a clean copy of the sources
(tools/stage.py), cached between runs in .aws-sam/test/ARCH; returns {arch: SamBuild}.
``moto_stack``: a moto server on a loopback port with every queue, table, bucket and secret
template.yaml declares (``postern_local.resources``), the demo directory the sample events
in events/ refer to, their spool objects, and a :class:`~cfnresolve.Resolver` whose resource
references point at all of it.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import pytest

from cfnresolve import Resolver, example_parameters

REPO = Path(__file__).resolve().parents[2]
TOOLS = REPO / ".tools"
STAGE = REPO / ".aws-sam" / "test"
ARCHES = ("arm64", "x86_64")
RAW = b"From: bob@example.org\r\nTo: alice@example.test\r\nSubject: hi\r\n\r\nHello.\r\n"
RAW_OUT = b"From: alice@example.test\r\nTo: dave@example.net\r\nSubject: out\r\n\r\nHello.\r\n"


@pytest.fixture(scope="session")
def tools() -> Path:
    r = subprocess.run(["make", "--no-print-directory", "-s", "tools"], cwd=REPO, capture_output=True, text=True,
                       timeout=1500)
    assert r.returncode == 0, f"make tools failed:\n{r.stdout[-2000:]}\n{r.stderr[-4000:]}"
    return TOOLS


@dataclass
class SamBuild:
    arch: str
    build_dir: Path
    seconds: float
    output: str


def _sam_build(arch: str) -> SamBuild:
    # Each architecture in its own directory, and run from there: SAM keeps build.toml beside the
    # build directory and its dependency cache in .aws-sam/deps under the working directory, and
    # deletes there whatever its own build.toml does not name (the other architecture's).
    build_dir = STAGE / arch / "build"
    (STAGE / arch).mkdir(parents=True, exist_ok=True)  # a clean clone has none yet (it is the cwd below)
    cmd = [str(TOOLS / "sam/bin/sam"), "build", "--template-file", str(STAGE / "src/template.yaml"),
           "--build-dir", str(build_dir),
           "--cache-dir", str(STAGE / arch / "cache"), "--cached", "--parallel",
           "--parameter-overrides", f"FunctionArchitecture={arch}"]
    env = {**os.environ, "SAM_CLI_TELEMETRY": "0"}
    env.pop("AWS_ENDPOINT_URL", None)
    start = time.monotonic()
    r = subprocess.run(cmd, cwd=STAGE / arch, capture_output=True, text=True, timeout=1200, env=env)
    out = r.stdout + r.stderr
    assert r.returncode == 0 and "Build Succeeded" in out, f"sam build ({arch}) failed:\n{out[-6000:]}"
    return SamBuild(arch, build_dir, time.monotonic() - start, out)


@pytest.fixture(scope="session")
def sam_builds(tools) -> dict[str, SamBuild]:
    spec = importlib.util.spec_from_file_location("postern_stage", REPO / "tools/stage.py")
    stage = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(stage)
    stage.stage(STAGE / "src")  # a clean copy: what a fresh clone holds, and a stable hash for SAM's cache
    with ThreadPoolExecutor(len(ARCHES)) as pool:
        builds = dict(zip(ARCHES, pool.map(_sam_build, ARCHES)))
    (STAGE / "timings.json").write_text(json.dumps({a: round(b.seconds, 1) for a, b in builds.items()}))
    return builds


@pytest.fixture(scope="module")
def moto_stack():
    import boto3
    from moto.server import ThreadedMotoServer

    from postern.dkim import KeyStore, generate
    from postern.config import Settings
    from postern.aws import Clients
    from postern.directory import dynamo_directory
    from postern.envelope import parse_body
    from postern_local.resources import create_resources, physical_name
    from postern_local.template import load_template

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AWS_ENDPOINT_URL", endpoint)
        kw = {"endpoint_url": endpoint, "region_name": "us-east-1"}
        c = SimpleNamespace(**{n: boto3.client(n, **kw) for n in ("s3", "sqs", "dynamodb", "secretsmanager", "sesv2",
                                                                          "sns")})
        t = load_template()
        res = create_resources(c, prefix="d", template=t)
        refs: dict[str, str] = {}
        for logical, r in t["Resources"].items():
            refs[logical] = physical_name(res, logical, r["Type"])
        refs.update(res.queues)  # Ref of a queue is its URL
        refs.update(res.topics)  # Ref of a topic is its ARN
        for logical, arn in res.queue_arns.items():
            refs[f"{logical}.Arn"] = arn
            refs[f"{logical}.QueueName"] = res.queues[logical].rsplit("/", 1)[-1]
        for logical, r in t["Resources"].items():
            if r["Type"] == "AWS::SecretsManager::Secret":  # Ref of a secret is its ARN
                value = {"SrsSecret": json.dumps({"secret": "s" * 48}),
                         # events/https/mta-sts.json carries it, as CloudFront would
                         "HttpsOriginSecret": json.dumps({"value": "origin-secret-of-the-sample-stack"})}.get(logical)
                kwargs = {"SecretString": value} if value else {}
                refs[logical] = c.secretsmanager.create_secret(Name=f"postern/d/{logical.lower()}", **kwargs)["ARN"]
            elif r["Type"] == "AWS::SES::ConfigurationSet":
                c.sesv2.create_configuration_set(ConfigurationSetName=refs[logical])
        resolver = Resolver(t, example_parameters(), refs)

        settings = Settings.from_env({**os.environ, **res.environment(), "AWS_REGION": "us-east-1",
                                      "POSTERN_HOSTNAME": "mx.example.test"})
        clients = Clients(settings)
        d = dynamo_directory(settings, clients)
        d.add_domain("example.test")
        d.add_user("alice@example.test", "pw-alice")
        d.add_alias("team@example.test", ["alice@example.test", "dave@example.net"])
        c.sesv2.create_email_identity(EmailIdentity="example.test")
        # an RSA and an ed25519 key: the deliver function signs with both (PyNaCl for ed25519)
        KeyStore(settings, clients).put("example.test", generate(settings, "both", 1024))
        for name in ("router/local.json", "store/normal.json", "deliver/ses.json", "ndr/failed-local.json"):
            for record in json.loads((REPO / "events" / name).read_text())["Records"]:
                body = RAW_OUT if name.startswith("deliver/") else RAW
                c.s3.put_object(Bucket=settings.bucket, Key=parse_body(record["body"]).s3_key, Body=body)
        try:
            yield SimpleNamespace(endpoint=endpoint, boto=c, resources=res, resolver=resolver, settings=settings,
                                  clients=clients, template=t)
        finally:
            # moto's backends live in this process, whichever server serves them: empty them for the next module
            import urllib.request

            urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST"), timeout=10)
            server.stop()
