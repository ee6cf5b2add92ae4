"""Shared fixtures.

``aws``: moto's ``mock_aws`` with every resource template.yaml declares,
and Settings/Clients pointing at them. ``store``/``directory`` fixtures give
the DynamoDB-backed implementations on that mock.
"""

from __future__ import annotations

import os
import sys

import pytest

# Fake credentials before anything builds a client (moto docs: "How do I avoid tests from mutating my real infrastructure").
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_SECURITY_TOKEN", "testing")
os.environ.setdefault("AWS_SESSION_TOKEN", "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "PosternTest")
os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "postern")
os.environ.pop("AWS_ENDPOINT_URL", None)


@pytest.fixture
def aws():
    """(settings, clients, resources) on a fresh moto mock."""
    from moto import mock_aws

    from postern.aws import Clients
    from postern.config import Settings
    from postern_local import moto_speed
    from postern_local.moto_atomic import install
    from postern_local.resources import create_resources

    install()  # per-item atomicity, as DynamoDB has it (moto_atomic.py)
    moto_speed.install()  # the stack's moto: requests cost what they cost at any backlog
    with mock_aws():
        bootstrap = Clients(Settings())
        res = create_resources(bootstrap, prefix="t")
        settings = Settings.from_env({**os.environ, **res.environment(), "POSTERN_HOSTNAME": "mx.example.test"})
        clients = Clients(settings)
        yield settings, clients, res


@pytest.fixture
def dynamo_store(aws):
    from postern.store.dynamo import DynamoMailStore

    settings, clients, _ = aws
    return DynamoMailStore(settings=settings, clients=clients)


@pytest.fixture
def directory(aws):
    from postern.directory import dynamo_directory

    settings, clients, _ = aws
    return dynamo_directory(settings, clients)


def pytest_collection_modifyitems(config, items):
    """``dynamo`` marks every test that runs against the DynamoDB mail store on moto: those using the
    ``dynamo_store`` fixture and the "dynamo" parameter of the store suites (``pytest -m dynamo`` runs
    the DynamoDB side, ``-m "not dynamo"`` the rest; issue 10 asks for the time each backend adds)."""
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        if "dynamo_store" in getattr(item, "fixturenames", ()) or any(v == "dynamo" for v in params.values()):
            item.add_marker(pytest.mark.dynamo)


_PRODUCTION_HASHER: list = []  # what postern.passwords had before the session patched it


@pytest.fixture(scope="session", autouse=True)
def _test_sized_argon2():
    """argon2id at test-sized cost for the whole run: every login hashes, and module-scoped servers
    add their users before any function fixture runs. The one copy of this patch (issue 10).

    Tests marked ``real_argon2`` get the production parameters back (:func:`_real_argon2`).
    """
    from argon2 import PasswordHasher

    from postern import passwords

    _PRODUCTION_HASHER.append(passwords._HASHER)
    mp = pytest.MonkeyPatch()
    mp.setattr(passwords, "_HASHER", PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
    yield
    mp.undo()


@pytest.fixture(autouse=True)
def _real_argon2(request, monkeypatch):
    if request.node.get_closest_marker("real_argon2"):
        from postern import passwords

        monkeypatch.setattr(passwords, "_HASHER", _PRODUCTION_HASHER[0])


@pytest.fixture
def handler_env(aws, monkeypatch):
    """Factory: the Lambda handlers' process environment on the mock (what the template's
    Globals set, plus ``extra``), with the process-wide settings and clients rebuilt for it.
    Returns (settings, clients); everything is reset again after the test."""
    from postern import aws as aws_mod
    from postern import config

    _, _, res = aws

    def make(**extra: str):
        for k, v in {**res.environment(), "POSTERN_HOSTNAME": "mx.example.test", **extra}.items():
            monkeypatch.setenv(k, v)
        config.get_settings.cache_clear()
        aws_mod.reset_clients()
        return config.get_settings(), aws_mod.get_clients()

    yield make
    config.get_settings.cache_clear()
    aws_mod.reset_clients()



def pytest_terminal_summary(terminalreporter, exitstatus):
    """After a fuzz run: cases per target and the worst liveness figures (tests/unit/fuzz_harness.py);
    with POSTERN_FUZZ_REPORT set (``make fuzz-long``), the same as JSON in that file."""
    fh = sys.modules.get("fuzz_harness")
    if fh is None or not fh.RUNS:
        return
    cases = ", ".join(f"{k} {v}" for k, v in sorted(fh.RUNS.items()))
    worst = ", ".join(f"{k} {w[0]:.3f} s / {w[1]:.1f} MiB" for k, w in sorted(fh.WORST.items()))
    terminalreporter.write_line(f"fuzz cases: {cases} (total {sum(fh.RUNS.values())})")
    terminalreporter.write_line(f"fuzz worst per input (canary stall / peak RSS growth): {worst}")
    path = os.environ.get("POSTERN_FUZZ_REPORT")
    if path:
        fh.write_report(path, {k: len(terminalreporter.stats.get(k, [])) for k in ("passed", "failed", "error")},
                        exitstatus)
