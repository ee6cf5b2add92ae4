"""Debian packages a test needs (sieve-connect, rspamd, redis-server): installed with apt-get when missing.

In:   a package name and the programs it must put on PATH.
Out:  :func:`ensure` returns when they are there, after ``apt-get update`` and
      ``apt-get install -y`` if they were not (we are root on the developers' machines and CI).
Fails: ``pytest.fail`` when the install fails or there is no apt-get on CI; ``pytest.skip``
      without apt-get elsewhere (a developer's non-Debian machine).
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

_UPDATED: list[bool] = []


def ensure(package: str, *programs: str) -> None:
    programs = programs or (package,)
    if all(shutil.which(p) for p in programs):
        return
    if shutil.which("apt-get") is None:
        if os.environ.get("CI"):
            pytest.fail(f"{package} is missing and there is no apt-get to install it")
        pytest.skip(f"{package} missing and no apt-get: install Debian's {package} package")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    cmds = [] if _UPDATED else [["apt-get", "update", "-qq"]]
    cmds.append(["apt-get", "install", "-y", "-qq", "--no-install-recommends", package])
    for cmd in cmds:
        r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
        if r.returncode != 0:
            pytest.fail(f"{' '.join(cmd)} failed ({r.returncode}): {r.stderr[-2000:]}")
        if cmd[1] == "update":
            _UPDATED.append(True)
    missing = [p for p in programs if not shutil.which(p)]
    assert not missing, f"apt-get install {package} put no {missing} on PATH"
