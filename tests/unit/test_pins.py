"""One pinned set of versions (constraints.txt) for the layer, the gateway image and the test venv."""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
OURS = {"postern", "postern-gateway", "postern-local"}
VENV_TOOLING = {"pip", "setuptools", "wheel"}  # the venv's own; setuptools is pinned for the image's builds


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        m = re.fullmatch(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==(\S+)\s*", line)
        if m:
            out[normalise(m.group(1))] = m.group(2)
    return out


def requirement_names(path: Path) -> list[str]:
    lines = [ln.split("#")[0].strip() for ln in path.read_text().splitlines()]
    return [ln for ln in lines if ln and not ln.startswith("-")]


CONSTRAINTS = pins(REPO / "constraints.txt")


def test_layer_requirements_repeat_the_constraints_exactly():
    layer = pins(REPO / "layers/postern/requirements.txt")
    assert layer, "the layer's requirements pin every package (sam build caches on that file)"
    wrong = {n: (v, CONSTRAINTS.get(n)) for n, v in layer.items() if CONSTRAINTS.get(n) != v}
    assert wrong == {}, "layers/postern/requirements.txt differs from constraints.txt: (layer, constraints)"
    assert len(layer) == len(requirement_names(REPO / "layers/postern/requirements.txt")), "every line is name==version"


def test_other_requirement_files_name_packages_and_leave_versions_to_the_constraints():
    for rel in ("requirements-dev.txt", "gateway/requirements.txt"):
        text = (REPO / rel).read_text()
        assert re.search(r"^-c .*constraints\.txt$", text, re.M), f"{rel} must install under constraints.txt"
        pinned = [n for n in requirement_names(REPO / rel) if re.search(r"[=<>~!]", n)]
        assert pinned == [], f"{rel}: versions belong in constraints.txt, not here"


def test_the_image_installs_under_the_constraints():
    dockerfile = (REPO / "gateway/Dockerfile").read_text()
    installs = re.findall(r"pip install ([^&\n\\]*(?:\\\n[^&\n\\]*)*)", dockerfile)
    third_party = [i for i in installs if "-r " in i or "setuptools" in i]
    assert third_party and all("-c /app/constraints.txt" in i for i in third_party), installs
    assert all("--no-deps" in i for i in installs if i not in third_party), "our own packages add no unpinned deps"


def test_everything_in_the_test_venv_is_pinned():
    unpinned, different = [], []
    for dist in metadata.distributions():
        name = normalise(dist.metadata["Name"])
        if name in OURS or name in VENV_TOOLING:
            continue
        if name not in CONSTRAINTS:
            unpinned.append(f"{name}=={dist.version}")
        elif CONSTRAINTS[name] != dist.version:
            different.append(f"{name}: venv {dist.version}, constraints {CONSTRAINTS[name]}")
    assert unpinned == [], "add these to constraints.txt"
    assert different == [], "the test venv is not the pinned set: run `make venv`"



def test_function_requirements_use_the_pinned_versions():
    """A function with dependencies of its own (functions/cert) pins them as constraints.txt does."""
    files = sorted(REPO.glob("functions/*/requirements.txt"))
    for path in files:
        own = pins(path)
        assert len(own) == len(requirement_names(path)), f"{path}: every line is name==version"
        wrong = {n: (v, CONSTRAINTS.get(n)) for n, v in own.items() if CONSTRAINTS.get(n) != v}
        assert wrong == {}, f"{path.relative_to(REPO)} differs from constraints.txt: (function, constraints)"
