"""template.yaml: lint-clean, and in step with the code that runs under it."""

from __future__ import annotations

import json

import ast
import re
from pathlib import Path

import pytest

from postern.config import Settings
from postern_local.lambdas import function_specs, load_functions
from postern_local.resources import BUCKET_ENV, QUEUE_ENV, TABLE_ENV
from postern_local.stack import LOCAL_DEFAULTS, PORT_VARS
from postern_local.template import deployed, load_template, resources_of_type

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "layers/postern/postern/config.py"


@pytest.fixture(scope="module")
def t():
    return load_template()


def test_every_handler_in_the_template_imports(t):
    fns = load_functions(t, required=True)
    assert set(fns) == set(resources_of_type(t, "AWS::Serverless::Function"))
    for f in fns.values():
        assert callable(f.handler)
        events = t["Resources"][f.logical_id]["Properties"].get("Events") or {}
        # Queue consumers, the stream's reader, a schedule (the cert function, plus the custom resource
        # that calls it), the HTTP API (the HTTPS function, served locally by postern_local.httpfront),
        # or a WebSocket API's integration (the push function, served locally by postern_local.wsfront).
        integrated = any(r["Type"] == "AWS::ApiGatewayV2::Integration"
                         and f.logical_id in json.dumps(r["Properties"].get("IntegrationUri"))
                         for r in t["Resources"].values())
        assert f.sources or f.streams or integrated or any(e["Type"] in ("Schedule", "HttpApi")
                                                           for e in events.values()), \
            f"{f.logical_id} has no SQS or stream event source, no schedule and no API"


def test_every_sqs_consumer_reports_partial_failures_and_has_room_to_retry(t):
    queues = resources_of_type(t, "AWS::SQS::Queue")
    for logical, spec in function_specs(t).items():
        for src in spec["sources"]:
            props = queues[src.queue]["Properties"]
            assert src.report_failures, logical
            # AWS: visibility timeout at least 6x the function timeout for SQS event sources.
            assert int(props["VisibilityTimeout"]) >= 6 * spec["timeout"], (logical, src.queue)
            assert "RedrivePolicy" in props, f"{src.queue} has no DLQ"
            assert src.batch_size <= 10


def _resource_vars() -> dict[str, str]:
    """Settings' resource variables (POSTERN_*_QUEUE_URL, *_TABLE, POSTERN_BUCKET) from config.py."""
    names = set(re.findall(r'"(POSTERN_[A-Z_]+)"', CONFIG.read_text()))
    return {n: n for n in names if n.endswith(("_QUEUE_URL", "_TABLE")) or n == "POSTERN_BUCKET"}


# Not in Globals: set in both gateway task definitions (and the HttpsFunction: JMAP's moves) only when rspamd
# runs (the spam lesson relay, postern/junk.py, postern_gateway/spam/relay.py).
GATEWAY_ONLY = {"POSTERN_LEARN_QUEUE_URL": "LearnQueue"}


def test_gateway_only_resource_variables_are_set_in_both_task_definitions(t):
    d = deployed(t, {"RspamdImage": "r@sha256:" + "a" * 64})
    for name in ("GatewayMailTaskDefinition", "GatewayAccessTaskDefinition"):
        (c,) = [c for c in d["Resources"][name]["Properties"]["ContainerDefinitions"] if c["Name"] == "gateway"]
        env = {e["Name"]: e["Value"] for e in c["Environment"]}
        for var, logical in GATEWAY_ONLY.items():
            assert env[var] == {"Ref": logical}, (name, var)
            assert var not in t["Globals"]["Function"]["Environment"]["Variables"]
    https = d["Resources"]["HttpsFunction"]["Properties"]["Environment"]["Variables"]
    assert https["POSTERN_LEARN_QUEUE_URL"] == {"Ref": "LearnQueue"}  # the webmail's Spam / Not spam
    without = deployed(t, {})["Resources"]["HttpsFunction"]["Properties"]["Environment"]["Variables"]
    assert without["POSTERN_LEARN_QUEUE_URL"] == ""  # no rspamd: nothing would read a lesson


def test_every_resource_variable_the_code_reads_is_declared(t):
    env = t["Globals"]["Function"]["Environment"]["Variables"]
    expected_type = {"_QUEUE_URL": "AWS::SQS::Queue", "_TABLE": "AWS::DynamoDB::Table", "BUCKET": "AWS::S3::Bucket"}
    local_map = {**{v: k for k, v in QUEUE_ENV.items()}, **{v: k for k, v in TABLE_ENV.items()},
                 **{v: k for k, v in BUCKET_ENV.items()}}
    for var in set(_resource_vars()) - set(GATEWAY_ONLY):
        assert var in env, f"{var} is read by Settings but not set in the template's Globals"
        ref = env[var]["Ref"]
        rtype = next(v for k, v in expected_type.items() if var.endswith(k))
        assert t["Resources"][ref]["Type"] == rtype, var
        assert local_map.get(var) == ref, f"local mode maps {var} to {local_map.get(var)}, the template to {ref}"


def test_settings_attributes_used_by_code_exist():
    fields = set(Settings.__dataclass_fields__)
    used = set()
    for path in [*REPO.glob("functions/*/app.py"), *REPO.glob("layers/postern/postern/**/*.py"),
                 *REPO.glob("gateway/postern_gateway/**/*.py")]:
        used |= set(re.findall(r"\bsettings\.((?:\w+_queue_url)|(?:\w+_table)|bucket)\b", path.read_text()))
    assert used and used <= fields, used - fields


def test_gateway_task_gets_what_the_gateway_reads(t):
    t = deployed(t)  # the default profile (ha): behind the NLB
    tasks = resources_of_type(t, "AWS::ECS::TaskDefinition")
    for service in resources_of_type(t, "AWS::ECS::Service").values():
        task = tasks[service["Properties"]["TaskDefinition"]["Ref"]]
        (container,) = task["Properties"]["ContainerDefinitions"]
        env = {e["Name"]: e["Value"] for e in container["Environment"]}
        for var in ("POSTERN_BUCKET", "POSTERN_INBOUND_QUEUE_URL", "POSTERN_DIRECTORY_TABLE", "POSTERN_MAIL_TABLE",
                    "POSTERN_STATE_TABLE", "POSTERN_HOSTNAME"):
            assert var in env
        container_ports = {int(env[v]) for v in PORT_VARS.values()}
        health = int(env["POSTERN_HEALTH_PORT"])  # the NLB's and ECS's health checks (tests/unit/test_template_ops.py)
        mapped = {m["ContainerPort"] for m in container["PortMappings"]}
        served = {lb["ContainerPort"] for lb in service["Properties"]["LoadBalancers"]}
        assert served | {health} <= mapped <= container_ports | {health}
        # the container uses the local stack's ports, so one table of ports serves both
        assert container_ports == {int(LOCAL_DEFAULTS[v]) for v in PORT_VARS.values()}


def test_nlb_listeners_preserve_client_ip_without_proxy_protocol(t):
    t = deployed(t)  # the default profile (ha); the small one has no NLB (test_template_ops)
    listeners = resources_of_type(t, "AWS::ElasticLoadBalancingV2::Listener")
    assert sorted(int(l["Properties"]["Port"]) for l in listeners.values()) == [25, 110, 143, 465, 587, 993, 995, 4190]
    groups = resources_of_type(t, "AWS::ElasticLoadBalancingV2::TargetGroup")
    lb = {}
    for service in resources_of_type(t, "AWS::ECS::Service").values():
        attached = service["Properties"]["LoadBalancers"]
        assert len(attached) <= 5  # ECS: at most five target groups per service
        lb.update({x["TargetGroupArn"]["Ref"]: x["ContainerPort"] for x in attached})
    assert set(lb) == set(groups)
    for name, g in groups.items():
        attrs = {a["Key"]: a["Value"] for a in g["Properties"]["TargetGroupAttributes"]}
        assert attrs["preserve_client_ip.enabled"] == "true", name
        assert attrs.get("proxy_protocol_v2.enabled", "false") == "false", name
        assert g["Properties"]["Protocol"] == "TCP"
        assert lb[name] == g["Properties"]["Port"]
    for l in listeners.values():
        assert l["Properties"]["DefaultActions"][0]["TargetGroupArn"]["Ref"] in groups


def test_gateway_protocol_factories_exist():
    from postern_gateway.app import LISTENERS, _factory

    for listener in LISTENERS:
        assert callable(_factory(listener)), f"{listener.module}.{listener.factory} does not import"


# --- layering -------------------------------------------------------------------------
def _imports(path: Path) -> set[str]:
    mods = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            mods |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            mods.add(node.module)
    return mods


PRODUCTION = ["functions", "layers", "gateway"]


def test_production_code_never_imports_the_local_package():
    offenders = [
        str(p.relative_to(REPO))
        for top in PRODUCTION
        for p in (REPO / top).rglob("*.py")
        if any(m == "postern_local" or m.startswith("postern_local.") for m in _imports(p))
    ]
    assert offenders == []


def test_functions_do_not_import_each_other():
    names = {p.name for p in (REPO / "functions").iterdir() if p.is_dir()}
    for app in (REPO / "functions").glob("*/*.py"):
        bad = {m for m in _imports(app) if m.split(".")[0] in names | {"functions", "app"}}
        assert not bad, f"{app.relative_to(REPO)} imports {bad}"


def test_shared_package_does_not_import_the_gateway():
    offenders = [str(p.relative_to(REPO)) for p in (REPO / "layers").rglob("*.py")
                 if any(m.startswith("postern_gateway") for m in _imports(p))]
    assert offenders == []


def test_readme_documents_every_setting():
    readme = (REPO / "README.md").read_text()
    names = set(re.findall(r'"(POSTERN_[A-Z0-9_]+)"', CONFIG.read_text()))
    missing = sorted(n for n in names if f"`{n}`" not in readme)
    assert missing == [], "add these to README.md's Settings table"


# --- README: every setting and every template parameter --------------------------------
ENV_NAME = re.compile(r"POSTERN_[A-Z0-9_]*[A-Z0-9]")
ENV_CODE = ["functions", "layers/postern/postern", "gateway/postern_gateway", "local/postern_local", "tools"]


def _environment_names(path: Path) -> set[str]:
    """Variables a module reads: every "POSTERN_..." string in it (settings are read by name, in
    config.py and the local stack), and the name in each os.environ[...] / os.environ.get(...) /
    os.getenv(...) (tools/ read a few others)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and ENV_NAME.fullmatch(node.value):
            names.add(node.value)
        key = None
        if isinstance(node, ast.Subscript) and ast.unparse(node.value) == "os.environ":
            key = node.slice
        elif isinstance(node, ast.Call) and ast.unparse(node.func) in ("os.environ.get", "os.getenv") and node.args:
            key = node.args[0]
        if isinstance(key, ast.Constant) and isinstance(key.value, str):
            names.add(key.value)
    return names


def test_readme_documents_every_environment_variable_the_code_reads():
    readme = (REPO / "README.md").read_text()
    read: dict[str, str] = {}
    for top in ENV_CODE:
        for path in sorted((REPO / top).rglob("*.py")):
            if "build" in path.relative_to(REPO).parts:  # setuptools' build/lib copies
                continue
            for name in _environment_names(path):
                read.setdefault(name, str(path.relative_to(REPO)))
    assert "POSTERN_HOSTNAME" in read and "IMAGE_TAG" in read  # the scan sees settings and tools
    # set by others for themselves: the Lambda runtime (the local worker imitates it), pytest
    theirs = ("AWS_LAMBDA_", "PYTEST_")
    missing = {n: where for n, where in read.items() if f"`{n}`" not in readme and not n.startswith(theirs)}
    assert missing == {}, "document these in README.md (Settings, or Build for tools/)"


def test_the_deploy_walk_through_names_every_template_parameter(t):
    readme = (REPO / "README.md").read_text()
    start = readme.index("## Deploy to AWS")
    end = readme.find("\n## ", start + 1)
    deploy = readme[start:end if end > 0 else None]
    missing = sorted(p for p in t["Parameters"] if f"`{p}`" not in deploy)
    assert missing == [], "README.md 'Deploy to AWS', step 2: say what each of these parameters is for"
