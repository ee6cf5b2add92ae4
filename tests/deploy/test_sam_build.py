"""What `sam build` makes is what Lambda can load and run.

Two builds of the one template (FunctionArchitecture=arm64, the deployed one, and x86_64):
- arm64: tools/check_build.py finds every native extension aarch64 and asking for no GLIBC
  newer than Amazon Linux 2's 2.26, every wheel tag fit for cp311, every distribution the
  pinned version and complete (a cached build once shipped a layer without its native module);
- x86_64: each function runs on this machine as Lambda would run it: a fresh interpreter whose
  path is the function's directory, then the built layer, then the standard library (no
  repository, no venv), handling a sample event from events/ against moto, with X-Ray on. Every
  module it loads must come from those three places, and the layer's native code it loads must
  be on the function's list (what it uses).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(1800)


def _load_check_build():
    spec = importlib.util.spec_from_file_location("check_build", REPO / "tools/check_build.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["check_build"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


check_build = sys.modules.get("check_build") or _load_check_build()

# The layer's native code each function may load, and why it needs it.
NATIVE_FROM_LAYER = {
    "RouterFunction": {"wrapt"},  # wrapt: X-Ray (Powertools Tracer) patches botocore with it
    "StoreFunction": {"wrapt"},
    "DeliverFunction": {"wrapt", "nacl", "_cffi_backend"},  # PyNaCl signs ed25519 DKIM (RFC 8463)
    "NdrFunction": {"wrapt"},
    "CertFunction": {"wrapt"},  # its ACME client and cryptography come from its own directory
    "JunkExpiryFunction": {"wrapt"},
    "FeedFunction": {"wrapt"},
    "ReportsFunction": {"wrapt"},
    "HttpsFunction": {"wrapt"},  # argon2 and cryptography are in its own directory, loaded only for a login/profile
    "PushFunction": {"wrapt"},
}
# One sample event per function, and what must hold afterwards (checked in the test below).
SAMPLES = {
    "RouterFunction": "router/local.json",
    "StoreFunction": "store/normal.json",
    "DeliverFunction": "deliver/ses.json",
    "NdrFunction": "ndr/failed-local.json",
    "CertFunction": "cert/schedule-s3.json",
    "JunkExpiryFunction": "junk/schedule.json",
    "FeedFunction": "feed/change.json",
    "ReportsFunction": "reports/missing-spool.json",
    "HttpsFunction": "https/mta-sts.json",
    "PushFunction": "push/authorizer.json",
}
TRACE_ID = "Root=1-67a0c3b2-0123456789abcdef01234567;Parent=53995c3f42cd8ad8;Sampled=1"

RUNNER = r'''
import importlib, json, os, sys, time
fn_dir, layer_dir, handler_spec, event_path, out_path = sys.argv[1:6]
sys.path[:0] = [fn_dir, layer_dir]  # as Lambda: /var/task, then the layer's /opt/python
module_name, _, func = handler_spec.rpartition(".")


class Context:  # what Lambda's context object offers (Powertools reads these)
    function_name = os.environ["AWS_LAMBDA_FUNCTION_NAME"]
    function_version = "$LATEST"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:" + function_name
    memory_limit_in_mb = 256
    aws_request_id = "00000000-0000-4000-8000-000000000001"
    log_group_name = "/aws/lambda/" + function_name
    log_stream_name = "test"

    @staticmethod
    def get_remaining_time_in_millis():
        return 30000


start = time.monotonic()
handler = getattr(importlib.import_module(module_name), func)
init = time.monotonic() - start
with open(event_path) as fh:
    event = json.load(fh)
result = handler(event, Context())
modules = {n: os.path.realpath(m.__file__) for n, m in list(sys.modules.items()) if getattr(m, "__file__", None)}
with open(out_path, "w") as fh:
    json.dump({"result": result, "init_seconds": init, "modules": modules}, fh)
'''


# --- arm64: the deployed build ------------------------------------------------------------
def test_arm64_build_is_loadable_by_the_python311_runtime(sam_builds):
    build = sam_builds["arm64"]
    report = check_build.check(build.build_dir, "arm64")
    assert report.problems == []
    native = {Path(n["path"]).name: n for n in report.native}
    assert len(native) >= 3, report.native  # the checker saw real native code, not an empty layer
    assert any(name.startswith("_sodium") for name in native), "PyNaCl's native module is in the layer"
    assert {n["machine"] for n in report.native} == {183}  # EM_AARCH64
    newest = max(tuple(map(int, n["glibc"].split("."))) for n in report.native)
    assert newest <= (2, 26)
    assert set(SAMPLES) <= set(report.artefacts)


def test_the_checker_refuses_another_machines_build(sam_builds):
    report = check_build.check(sam_builds["x86_64"].build_dir, "arm64")
    machine = [p for p in report.problems if "ELF machine 62" in p]
    assert machine and len(machine) == len([n for n in report.native if n["machine"] == 62])
    assert any("do not fit cp311/aarch64" in p for p in report.problems)  # the wheel tags say so too


def test_the_checker_refuses_a_layer_missing_its_native_module(sam_builds, tmp_path):
    """The cached-build failure: the distribution is there, its native module is not."""
    copy = tmp_path / "build"
    shutil.copytree(sam_builds["x86_64"].build_dir, copy, symlinks=True)
    (so,) = (copy / "PosternLayer/python/nacl").glob("_sodium*.so")
    so.unlink()
    report = check_build.check(copy, "x86_64")
    assert report.problems == [f"PosternLayer: pynacl is incomplete: nacl/{so.name} is missing"]


def test_the_checker_refuses_a_newer_glibc(tmp_path):
    ls = Path(shutil.which("ls")).resolve()
    needs = check_build.read_elf(ls).glibc
    if needs <= (2, 26):
        pytest.skip(f"{ls} needs only GLIBC_{needs[0]}.{needs[1]} on this machine")
    (tmp_path / "L/python").mkdir(parents=True)
    shutil.copy(ls, tmp_path / "L/python/_fake.so")
    problems = check_build.check(tmp_path, "x86_64").problems
    assert f"L/python/_fake.so: needs GLIBC_{needs[0]}.{needs[1]}, the runtime has 2.26" in problems


def test_every_function_has_a_sample_run(moto_stack):
    functions = {k for k, r in moto_stack.template["Resources"].items() if r["Type"] == "AWS::Serverless::Function"}
    assert functions == set(SAMPLES) == set(NATIVE_FROM_LAYER), "add the new function's sample run here"


# --- x86_64: run what was built ----------------------------------------------------------------
def _run(build_dir: Path, logical: str, spec: dict, env: dict, tmp_path: Path) -> dict:
    fn_dir = build_dir / logical
    layer = build_dir / "PosternLayer" / "python"
    runner = tmp_path / "runner.py"
    runner.write_text(RUNNER)
    out = tmp_path / f"{logical}.json"
    cmd = [sys.executable, "-I", "-S", str(runner), str(fn_dir), str(layer), spec["handler"],
           str(REPO / "events" / SAMPLES[logical]), str(out)]
    r = subprocess.run(cmd, cwd=fn_dir, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, f"{logical} failed in its built form:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return json.loads(out.read_text())


def _origins(modules: dict, fn_dir: Path, layer: Path) -> dict[str, set[str]]:
    stdlib = {os.path.realpath(sysconfig.get_paths()[k]) for k in ("stdlib", "platstdlib")}
    places = {"function": str(fn_dir.resolve()), "layer": str(layer.resolve())}
    out: dict[str, set[str]] = {"function": set(), "layer": set(), "stdlib": set(), "elsewhere": set()}
    for name, path in modules.items():
        if name in ("__main__", "__mp_main__"):  # the runner itself
            continue
        where = next((k for k, p in places.items() if path.startswith(p + os.sep)), None)
        if where is None:
            where = "stdlib" if any(path.startswith(s + os.sep) for s in stdlib) else "elsewhere"
        out[where].add(f"{name}={path}" if where == "elsewhere" else name)
    return out


def _native(modules: dict, root: Path) -> set[str]:
    """The top-level packages (or lone extension modules) under ``root`` whose native code was loaded."""
    root = root.resolve()
    out = set()
    for path in modules.values():
        p = Path(path)
        if p.suffix == ".so" and p.is_relative_to(root):
            out.add(p.relative_to(root).parts[0].split(".")[0])
    return out


def test_x86_64_build_runs_each_function_on_a_sample_event(sam_builds, moto_stack, tmp_path):
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.ses.models import ses_backends

    from postern.envelope import StoreJob
    from postern.store.dynamo import DynamoMailStore
    from postern_local.lambdas import drain_queue, function_specs

    build = sam_builds["x86_64"]
    report = check_build.check(build.build_dir, "x86_64")
    assert report.problems == []
    specs = function_specs(moto_stack.template)
    xray = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    xray.bind(("127.0.0.1", 0))
    xray.settimeout(0.2)
    base = {
        "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": str(tmp_path), "TZ": "UTC",
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing",
        "AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": moto_stack.endpoint,
        "LOG_LEVEL": "WARNING", "_X_AMZN_TRACE_ID": TRACE_ID, "AWS_XRAY_CONTEXT_MISSING": "LOG_ERROR",
        "AWS_XRAY_DAEMON_ADDRESS": "127.0.0.1:%d" % xray.getsockname()[1],
    }
    store = DynamoMailStore(moto_stack.settings, moto_stack.clients)
    ses = ses_backends[DEFAULT_ACCOUNT_ID]["us-east-1"]
    results, init = {}, {}
    for logical in ("RouterFunction", "StoreFunction", "DeliverFunction", "NdrFunction", "CertFunction",
                    "JunkExpiryFunction", "FeedFunction", "ReportsFunction", "HttpsFunction", "PushFunction"):
        env = {**base, **moto_stack.resolver.function_environment(logical), "LOG_LEVEL": "WARNING",
               "AWS_LAMBDA_FUNCTION_NAME": logical, "LAMBDA_TASK_ROOT": str(build.build_dir / logical)}
        out = _run(build.build_dir, logical, specs[logical], env, tmp_path)
        results[logical], init[logical] = out["result"], out["init_seconds"]
        origins = _origins(out["modules"], build.build_dir / logical, build.build_dir / "PosternLayer/python")
        assert origins["elsewhere"] == set(), f"{logical} loaded modules from outside its artefacts"
        assert "boto3" in origins["layer"] and (logical == "CertFunction" or "postern" in origins["layer"])
        native = _native(out["modules"], build.build_dir / "PosternLayer/python")
        assert native <= NATIVE_FROM_LAYER[logical], f"{logical} loads native code it does not use: {native}"
        assert "argon2" not in out["modules"] and "cryptography" not in origins["layer"]

        if logical == "RouterFunction":
            (job,) = drain_queue(moto_stack.clients, moto_stack.settings.store_queue_url)
            assert isinstance(job, StoreJob) and job.user == "alice@example.test"
        elif logical == "StoreFunction":
            inbox = store.get_mailbox("alice@example.test", "INBOX")
            assert len(list(store.list_messages(inbox))) == 1
        elif logical == "DeliverFunction":
            assert native == NATIVE_FROM_LAYER[logical]  # the ed25519 signature below needed PyNaCl
            sent = ses.sent_messages[-1]
            raw = sent.raw_data if isinstance(sent.raw_data, str) else sent.raw_data.decode()
            assert "a=ed25519-sha256" in raw and "a=rsa-sha256" in raw and "d=example.test" in raw
            assert {"dave@example.net", "erin@example.net"} <= set(sent.destinations)
        elif logical == "NdrFunction":
            inbox = store.get_mailbox("alice@example.test", "INBOX")
            assert len(list(store.list_messages(inbox))) == 2  # the failure report joined the stored message
        elif logical == "CertFunction":
            assert {"acme", "cryptography"} <= origins["function"]
        elif logical == "JunkExpiryFunction":
            assert out["result"]["users"] >= 1 and out["result"]["errors"] == 0
        elif logical == "ReportsFunction":
            assert out["result"] == {"batchItemFailures": []}  # a report whose spool object is gone: refused, done
        elif logical == "HttpsFunction":
            r = out["result"]
            assert r["statusCode"] == 200 and r["body"].startswith("version: STSv1\r\nmode: testing\r\n"), r
        elif logical == "PushFunction":  # a ticket never issued: the conditional DeleteItem finds nothing
            assert out["result"]["policyDocument"]["Statement"][0]["Effect"] == "Deny", out["result"]
    for logical in ("RouterFunction", "StoreFunction", "DeliverFunction", "NdrFunction", "FeedFunction"):
        assert results[logical] == {"batchItemFailures": []}, (logical, results[logical])
    assert results["CertFunction"] == {"Action": "unchecked"}
    segments = []
    while True:
        try:
            segments.append(xray.recv(65536))
        except (TimeoutError, socket.timeout):
            break
    xray.close()
    assert any(b'"namespace": "aws"' in s or b'"namespace":"aws"' in s for s in segments), \
        "X-Ray (Tracer, through wrapt) traced the AWS calls"
    print(f"\nsam build seconds {json.dumps({a: round(b.seconds, 1) for a, b in sam_builds.items()})}; "
          f"cold import seconds {json.dumps({k: round(v, 2) for k, v in init.items()})}")
