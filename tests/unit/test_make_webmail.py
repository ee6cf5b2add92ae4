"""make webmail (what make run and make test depend on): one clear line without Node/npm or with a Node
older than package.json's engines, npm ci only when the lock changed, npm run build only when a source
did; dist/ and node_modules/ ignored by git.

Each test runs the real Makefile and tools/node_check.sh in a copy of the webmail's sources under
tmp_path, with PATH holding only stand-ins for node and npm (or none); `make -n`/`-q` show what would run.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MAKE = shutil.which("make")
pytestmark = pytest.mark.skipif(MAKE is None, reason="no make")
MIN = re.search(r"\d+", json.loads((REPO / "webmail/package.json").read_text())["engines"]["node"]).group()


@pytest.fixture
def tree(tmp_path):
    """A copy of what make webmail reads: the Makefile, the check, the webmail's sources."""
    root = tmp_path / "repo"
    (root / "tools").mkdir(parents=True)
    shutil.copy(REPO / "Makefile", root)
    shutil.copy(REPO / "tools/node_check.sh", root / "tools")
    web = root / "webmail"
    web.mkdir()
    for name in ("package.json", "package-lock.json", "build.mjs", "tsconfig.json"):
        shutil.copy(REPO / "webmail" / name, web)
    for name in ("src", "static"):
        shutil.copytree(REPO / "webmail" / name, web / name)
    return root


def bin_with(tmp_path, **programs: str) -> str:
    """A PATH directory with `find`, `touch`, `mkdir` and the given stand-ins (name -> shell script body)."""
    d = tmp_path / "bin"
    d.mkdir(exist_ok=True)
    for tool in ("find", "touch", "mkdir"):
        if not (d / tool).exists():
            (d / tool).symlink_to(shutil.which(tool))
    for name, body in programs.items():
        (d / name).write_text(f"#!/bin/sh\n{body}\n")
        (d / name).chmod(0o755)
    return str(d)


def make(tree: Path, path: str, *args: str) -> subprocess.CompletedProcess:
    env = {"PATH": path, "HOME": str(tree), "LC_ALL": "C"}
    return subprocess.run([MAKE, "--no-print-directory", "-C", str(tree), *args], env=env, capture_output=True,
                          text=True, timeout=120)


def check_lines(r) -> list[str]:
    return [line for line in r.stderr.splitlines() if line.startswith("make: ") and "***" not in line]


def test_without_node_one_line_says_what_to_install(tree, tmp_path):
    r = make(tree, bin_with(tmp_path), "webmail")
    assert r.returncode != 0
    (line,) = check_lines(r)
    assert "no `node` on PATH" in line and f"Node.js {MIN} or later" in line and "run make again" in line
    assert not (tree / "webmail/node_modules").exists()


def test_an_old_node_is_named_with_the_version_needed(tree, tmp_path):
    r = make(tree, bin_with(tmp_path, node="echo v18.19.1", npm="exit 0"), "webmail")
    assert r.returncode != 0
    (line,) = check_lines(r)
    assert f"needs Node.js >= {MIN}" in line and "`node` here is v18.19.1" in line and "engines" in line


def test_node_without_npm_says_so(tree, tmp_path):
    r = make(tree, bin_with(tmp_path, node=f"echo v{MIN}.5.0"), "webmail")
    assert r.returncode != 0
    (line,) = check_lines(r)
    assert "no `npm` on PATH" in line


def _age(tree: Path, seconds_ago: int, *paths: str) -> None:
    t = 1_700_000_000 - seconds_ago
    for p in paths:
        os.utime(tree / p, (t, t))


def _stamps(tree: Path) -> None:
    """A finished install and build, newer than every source."""
    (tree / "webmail/node_modules").mkdir(exist_ok=True)
    (tree / "webmail/dist").mkdir(exist_ok=True)
    (tree / "webmail/node_modules/.postern-installed").touch()
    (tree / "webmail/dist/index.html").touch()
    sources = [p.relative_to(tree).as_posix() for p in (tree / "webmail").rglob("*") if p.is_file()]
    _age(tree, 1000, *sources)
    _age(tree, 100, "webmail/node_modules/.postern-installed")
    _age(tree, 10, "webmail/dist/index.html")


def test_nothing_runs_when_nothing_changed_and_only_what_a_change_needs(tree, tmp_path):
    npm = 'case "$1" in ci) mkdir node_modules ;; run) mkdir -p dist && echo built > dist/index.html ;; esac'
    path = bin_with(tmp_path, node=f"echo v{MIN}.0.0", npm=npm)
    r = make(tree, path, "webmail")  # nothing built yet: install, then build
    assert r.returncode == 0, r.stderr
    assert r.stdout.index("npm ci") < r.stdout.index("npm run build")
    assert (tree / "webmail/dist/index.html").read_text() == "built\n"

    _stamps(tree)
    assert make(tree, path, "-q", "webmail").returncode == 0  # up to date: make test/run start at once
    os.utime(tree / "webmail/src/main.ts")  # a source edited now
    dry = make(tree, path, "-n", "webmail").stdout
    assert "npm run build" in dry and "npm ci" not in dry

    _stamps(tree)
    os.utime(tree / "webmail/package-lock.json")  # a dependency changed
    dry = make(tree, path, "-n", "webmail").stdout
    assert dry.index("npm ci") < dry.index("npm run build")


@pytest.mark.parametrize("target, then", [("run", "postern-local"), ("test", "-m pytest")])
def test_make_run_and_make_test_build_the_webmail_first(tree, tmp_path, target, then):
    stamp = re.search(r"^\$\(STAMP\): ((?:.*\\\n)*.*)$", (tree / "Makefile").read_text(), re.M).group(1)
    for name in stamp.replace("\\", " ").split():  # the venv's inputs, and the venv older than none of them
        (tree / name).parent.mkdir(parents=True, exist_ok=True)
        (tree / name).touch()
        _age(tree, 2000, name)
    (tree / ".venv").mkdir()
    (tree / ".venv/.installed").touch()
    _stamps(tree)
    os.utime(tree / "webmail/static/app.css")
    dry = make(tree, bin_with(tmp_path, node=f"echo v{MIN}.0.0", npm="exit 0"), "-n", target).stdout
    assert "npm run build" in dry and dry.index("npm run build") < dry.index(then)


def test_build_output_is_never_committed():
    paths = ["webmail/dist/index.html", "webmail/dist/assets/app-0123456789ab.js", "webmail/dist.tmp/index.html",
             "webmail/node_modules/.postern-installed", "webmail/node_modules/esbuild/package.json"]
    r = subprocess.run(["git", "check-ignore", "--no-index", *paths], cwd=REPO, capture_output=True, text=True)
    assert r.stdout.split() == paths
    assert subprocess.run(["git", "ls-files", "webmail/dist", "webmail/node_modules"], cwd=REPO,
                          capture_output=True, text=True).stdout == ""
