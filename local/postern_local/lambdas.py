"""Load the real Lambda handlers the way Lambda does: from template.yaml.

In:   the parsed template: each ``AWS::Serverless::Function``'s ``CodeUri``
      and ``Handler`` (``module.function``), its ``Timeout``/``MemorySize``
      (or the Globals), and its SQS and DynamoDB stream event sources.
Out:  :func:`worker_functions` -> {logical id: :class:`LocalFunction`} whose
      handler runs in worker processes (what the local stack uses), the queue
      it consumes and its batch size; :func:`load_functions`, the same with the
      handler imported into this process (unit tests); :class:`FakeContext`,
      the Lambda context object handlers receive.
Fails: a function whose code directory does not exist yet is skipped with a
      warning only when ``required=False`` (development); otherwise
      ImportError/FileNotFoundError propagate.

Each handler module is imported from its file with
``importlib.util.spec_from_file_location`` under a unique module name
(``postern_fn_<logical id>``), so every function may call its module
``app.py`` without clashing. As on Lambda, the function's directory is on
``sys.path`` for its own modules (which must have names of their own, such as
the cert function's ``postern_cert`` package).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .template import REPO_ROOT, load_template, resources_of_type

log = logging.getLogger("postern.local")


@dataclass
class FakeContext:
    """The attributes of Lambda's context object that handlers and Powertools use."""

    function_name: str
    memory_limit_in_mb: int = 256
    timeout: float = 30.0
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    region: str = "us-east-1"
    account: str = "123456789012"
    function_version: str = "$LATEST"
    log_group_name: str = ""
    log_stream_name: str = "local"
    _deadline: float = field(default=0.0, repr=False)

    def __post_init__(self) -> None:
        self._deadline = time.monotonic() + self.timeout
        self.log_group_name = self.log_group_name or f"/aws/lambda/{self.function_name}"

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:{self.region}:{self.account}:function:{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


@dataclass
class SqsSource:
    queue: str  # logical id of the queue
    batch_size: int = 10
    report_failures: bool = True


@dataclass
class StreamSource:
    """A DynamoDB stream event source (``Type: DynamoDB``)."""

    table: str  # logical id of the table whose StreamArn it reads
    batch_size: int = 100
    report_failures: bool = True
    filters: list[dict] = field(default_factory=list)  # FilterCriteria patterns, parsed
    on_failure: str = ""  # logical id of the DestinationConfig.OnFailure queue


@dataclass
class LocalFunction:
    logical_id: str
    handler: Callable[[dict, Any], Any]
    module_name: str
    timeout: float
    memory: int
    sources: list[SqsSource]
    streams: list[StreamSource] = field(default_factory=list)

    def context(self, region: str = "us-east-1") -> FakeContext:
        return FakeContext(function_name=self.logical_id, memory_limit_in_mb=self.memory,
                           timeout=self.timeout, region=region)


def _queue_logical(ref) -> str:
    if isinstance(ref, dict) and "Fn::GetAtt" in ref:
        return ref["Fn::GetAtt"][0]
    if isinstance(ref, dict) and "Ref" in ref:
        return ref["Ref"]
    raise ValueError(f"unsupported SQS Queue reference {ref!r}")


def load_handler(code_uri: str | Path, handler: str, module_name: str):
    """Import ``<code_uri>/<module>.py`` as ``module_name`` and return its handler function."""
    mod_path, _, fn_name = handler.rpartition(".")
    path = Path(REPO_ROOT, code_uri, *mod_path.split(".")).with_suffix(".py")
    if not path.is_file():
        raise FileNotFoundError(f"handler module {path} not found")
    # Lambda puts the function's root (/var/task) on sys.path: a function's own modules (the cert
    # function's postern_cert package) import as they do there. Each function names its own
    # modules apart (app.py itself is loaded under module_name, never as "app").
    root = str(Path(REPO_ROOT, code_uri))
    if root not in sys.path:
        sys.path.append(root)
    module = sys.modules.get(module_name)
    if module is None or getattr(module, "__file__", None) != str(path):
        spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            sys.modules.pop(module_name, None)
            raise
    return getattr(module, fn_name)


def function_specs(template: dict | None = None) -> dict[str, dict]:
    """{logical id: {"code_uri", "handler", "timeout", "memory", "sources"}} from the template."""
    t = template or load_template()
    glob = t.get("Globals", {}).get("Function", {})
    out: dict[str, dict] = {}
    for logical, r in resources_of_type(t, "AWS::Serverless::Function").items():
        props = r.get("Properties", {})
        sources, streams = [], []
        for ev in (props.get("Events") or {}).values():
            p = ev.get("Properties", {})
            if ev.get("Type") == "DynamoDB":
                streams.append(StreamSource(
                    table=_queue_logical(p["Stream"]),
                    batch_size=int(p.get("BatchSize", 100)),
                    report_failures="ReportBatchItemFailures" in (p.get("FunctionResponseTypes") or []),
                    filters=[json.loads(f["Pattern"]) for f in (p.get("FilterCriteria") or {}).get("Filters", [])],
                    on_failure=_queue_logical(dest) if (dest := ((p.get("DestinationConfig") or {}).get(
                        "OnFailure") or {}).get("Destination")) else "",
                ))
                continue
            if ev.get("Type") != "SQS":
                continue
            sources.append(SqsSource(
                queue=_queue_logical(p["Queue"]),
                batch_size=int(p.get("BatchSize", 10)),
                report_failures="ReportBatchItemFailures" in (p.get("FunctionResponseTypes") or []),
            ))
        out[logical] = {
            "code_uri": props.get("CodeUri", glob.get("CodeUri", "")),
            "handler": props.get("Handler", glob.get("Handler", "")),
            "timeout": float(props.get("Timeout", glob.get("Timeout", 3))),
            "memory": int(props.get("MemorySize", glob.get("MemorySize", 128))),
            "sources": sources,
            "streams": streams,
        }
    return out


def worker_functions(template: dict, env_for: Callable[[str, dict], dict[str, str]],
                     required: bool = False) -> dict[str, LocalFunction]:
    """Each function of the template with its handler in worker processes
    (:class:`postern_local.worker.RemoteHandler`): how the local stack runs them.
    ``env_for(logical id, spec)`` gives the environment of the function's processes."""
    from .worker import FunctionSpec, RemoteHandler

    out: dict[str, LocalFunction] = {}
    for logical, spec in function_specs(template).items():
        if not Path(REPO_ROOT, spec["code_uri"]).is_dir():
            if required:
                raise FileNotFoundError(f"{logical}: code directory {spec['code_uri']} not found")
            log.warning("skipping %s: no directory %s", logical, spec["code_uri"])
            continue
        fs = FunctionSpec(logical, spec["code_uri"], spec["handler"], spec["timeout"], spec["memory"])
        out[logical] = LocalFunction(logical, RemoteHandler(fs, env_for(logical, spec), REPO_ROOT),
                                     f"postern_fn_{logical}", fs.timeout, fs.memory, spec["sources"],
                                     spec["streams"])
    return out


def runtime_environment(logical: str, spec: dict, region: str) -> dict[str, str]:
    """The variables Lambda's runtime sets for a function (Lambda Developer Guide, "Defined runtime
    environment variables"), the ones Powertools and the handlers can see."""
    return {
        "AWS_LAMBDA_FUNCTION_NAME": logical,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec["memory"]),
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{logical}",
        "AWS_LAMBDA_LOG_STREAM_NAME": "local",
        "_HANDLER": spec["handler"],
        "LAMBDA_TASK_ROOT": str(Path(REPO_ROOT, spec["code_uri"]).resolve()),
        "AWS_REGION": region,
        "AWS_DEFAULT_REGION": region,
        "MALLOC_ARENA_MAX": "2",  # glibc reserves 64 MiB of address space per arena: RLIMIT_AS counts it
        "PYTHONUNBUFFERED": "1",
    }


def load_functions(template: dict | None = None, required: bool = True) -> dict[str, LocalFunction]:
    out: dict[str, LocalFunction] = {}
    for logical, spec in function_specs(template).items():
        module_name = f"postern_fn_{logical}"
        try:
            handler = load_handler(spec["code_uri"], spec["handler"], module_name)
        except FileNotFoundError as exc:
            if required:
                raise
            log.warning("skipping %s: %s", logical, exc)
            continue
        out[logical] = LocalFunction(logical, handler, module_name, spec["timeout"], spec["memory"], spec["sources"],
                                     spec["streams"])
    return out


def drain_queue(clients, url: str) -> list:
    """Receive and delete everything on a queue; the parsed bodies in the order received
    (tests read what a handler sent without running the next function)."""
    from postern.envelope import parse_body

    out = []
    while True:
        msgs = clients.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
        if not msgs:
            return out
        for m in msgs:
            out.append(parse_body(m["Body"]))
            clients.sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
