"""Every module of every package imports on its own, in an interpreter that has imported none of ours.

An import cycle (``imap/state.py`` importing the ops and the ops importing it back) only shows
when the cycle is entered from the "wrong" module first; in a test run something else usually
imported the right one before. So each module is imported alone: a parent interpreter that has
loaded the heavy third-party libraries (boto3, email, ...) but none of postern, postern_gateway,
postern_local or the functions forks once per module, and the child imports just that module
(a Lambda's ``app.py`` and its own packages as Lambda loads them: the function's folder on
``sys.path``, the handler module named ``app``).
A fork of that parent is a fresh interpreter as far as our modules go, and costs milliseconds
instead of a Python start-up per module.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGES = {
    "postern": REPO / "layers" / "postern" / "postern",
    "postern_gateway": REPO / "gateway" / "postern_gateway",
    "postern_local": REPO / "local" / "postern_local",
}
FUNCTIONS = REPO / "functions"

CHILD = r"""
import json, os, sys, traceback
for lib in ("boto3", "botocore.session", "email.policy", "email.parser", "asyncio", "ssl", "dns.resolver", "moto",
            "moto.server", "aws_lambda_powertools", "aws_lambda_powertools.utilities.batch", "aiosmtpd.smtp", "dkim",
            "authheaders", "spf", "argon2", "cryptography.x509", "yaml", "josepy", "acme.client"):
    try:
        __import__(lib)
    except Exception:
        pass
ours = {"postern", "postern_gateway", "postern_local", "app"} | {n for n, p in json.loads(sys.argv[1]) if p}
assert not any(m.split(".")[0] in ours for m in sys.modules)
failures = {}
for name, path in json.loads(sys.argv[1]):
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        code = 0
        try:
            if path:
                sys.path.insert(0, path)
            __import__(name)
        except BaseException:
            os.write(w, traceback.format_exc()[-1500:].encode())
            code = 1
        os._exit(code)
    os.close(w)
    err = b""
    while chunk := os.read(r, 65536):
        err += chunk
    os.close(r)
    _, status = os.waitpid(pid, 0)
    if status != 0:
        failures[name if not path else f"{path}: {name}"] = err.decode(errors="replace") or f"status {status}"
print(json.dumps(failures))
"""


def modules() -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for root in PACKAGES.values():
        for f in sorted(root.rglob("*.py")):
            rel = f.relative_to(root.parent).with_suffix("")
            parts = list(rel.parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            if parts[-1] == "__main__":
                continue  # running it would start the program
            out.append((".".join(parts), ""))
    for app in sorted(FUNCTIONS.glob("*/app.py")):
        folder = app.parent  # what Lambda puts on sys.path: the handler and its own packages
        out.append(("app", str(folder)))
        for f in sorted(folder.glob("*/**/*.py")):
            parts = list(f.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out.append((".".join(parts), str(folder)))
    return out


@pytest.mark.timeout(420)  # liveness ceiling: ~400 forked imports took past the default 120 s at load 18
def test_every_module_imports_alone():
    mods = modules()
    assert len(mods) > 100  # the walk found the packages
    assert ("postern_gateway.imap.ops.auth", "") in mods and ("postern_gateway.imap.ops.select", "") in mods
    done = subprocess.run([sys.executable, "-c", CHILD, json.dumps(mods)], check=False, capture_output=True,
                          text=True, timeout=300, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    failures = json.loads(done.stdout.strip().splitlines()[-1])
    assert failures == {}, "\n\n".join(f"{k}:\n{v}" for k, v in failures.items())
