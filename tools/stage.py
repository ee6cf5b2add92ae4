#!/usr/bin/env python3
"""Copy what ``sam build`` reads into a clean directory, so its build cache works.

In:   a target directory (``make build``: ``.aws-sam/src``; the tests: ``.aws-sam/test/src``).
Out:  the target holding ``template.yaml``, ``samconfig.toml``, ``functions/`` and ``layers/``
      as in this checkout, without ``__pycache__``, ``*.pyc``, ``*.egg-info`` or
      ``.pytest_cache`` (files the tests and editable installs write, which change SAM's hash
      of a code directory and so force a full rebuild, pip downloads and all, every time); files
      no longer in the checkout are removed from it. Unchanged files are not rewritten.
Fails: OSError on an unreadable source or unwritable target.
"""

from __future__ import annotations

import filecmp
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ITEMS = ("template.yaml", "samconfig.toml", "functions", "layers")
SKIP_DIRS = {"__pycache__", ".pytest_cache", ".mypy_cache"}


def _wanted(path: Path) -> bool:
    return not (set(path.parts) & SKIP_DIRS or path.suffix == ".pyc"
                or any(p.endswith(".egg-info") for p in path.parts))


def stage(target: Path, source: Path = REPO) -> int:
    """Mirror ITEMS of ``source`` into ``target``; returns how many files were (re)written."""
    target.mkdir(parents=True, exist_ok=True)
    want: set[Path] = set()
    for item in ITEMS:
        top = source / item
        files = [top] if top.is_file() else [p for p in top.rglob("*") if p.is_file()]
        want |= {f.relative_to(source) for f in files if _wanted(f.relative_to(source))}
    written = 0
    for rel in sorted(want):
        src, dst = source / rel, target / rel
        if dst.is_file() and filecmp.cmp(src, dst, shallow=False):
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst)
        written += 1
    for item in ITEMS:
        top = target / item
        stale = [top] if top.is_file() else sorted(top.rglob("*"), reverse=True) if top.exists() else []
        for p in stale:
            rel = p.relative_to(target)
            if p.is_file() and rel not in want:
                p.unlink()
            elif p.is_dir() and not any(p.iterdir()):
                p.rmdir()
    return written


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: tools/stage.py TARGET_DIR")
    stage(Path(sys.argv[1]))
