#!/usr/bin/env python3
"""Check a ``sam build`` output before it is deployed: will the Lambda runtime load it?

In:   a build directory (``.aws-sam/build`` or a test's), the functions' architecture
      (``arm64`` | ``x86_64``), the newest glibc the runtime has (python3.11 runs on
      Amazon Linux 2: glibc 2.26), ``layers/postern/requirements.txt`` and
      ``constraints.txt``. Standard library only: ``make build`` runs it with any Python.
Out:  one line per finding on stderr, a summary on stdout, exit status 0 when the build is
      deployable, 1 when it is not, 2 on bad usage. ``--json`` prints the summary as JSON
      (the tests read it).
Fails: never on a broken build (that is a finding); only on an unreadable directory.

What it checks, each because a build has shipped without it:
- every installed distribution (``*.dist-info``) is the version constraints.txt pins, the
  layer holds exactly the layer's requirements, and every file its RECORD lists exists
  (a cached ``sam build`` once "succeeded" with a layer missing ``_argon2_cffi_bindings``);
- every wheel it came from has a tag the runtime accepts: pure Python, or CPython 3.11
  (``cp311`` or the stable ABI ``abi3``) for ``manylinux`` of that architecture with a
  glibc no newer than the runtime's (PEP 600);
- every ELF file (native extension) is 64-bit, for that machine (EM_AARCH64 / EM_X86_64),
  and asks for no GLIBC symbol version newer than the runtime's (read from the
  ``.gnu.version_r`` section, as ``objdump -T`` would show it): the tag can lie, the
  symbol versions cannot.
"""

from __future__ import annotations

import argparse
import json
import re
import struct
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RUNTIME_GLIBC = (2, 26)  # python3.11 on Amazon Linux 2
PYTHON_TAG = (3, 11)
MACHINES = {"arm64": (183, "aarch64"), "x86_64": (62, "x86_64")}  # ELF e_machine, wheel platform suffix
LEGACY_MANYLINUX = {"manylinux1": (2, 5), "manylinux2010": (2, 12), "manylinux2014": (2, 17)}
SHT_GNU_VERNEED = 0x6FFFFFFE


# --- ELF ----------------------------------------------------------------------------------
@dataclass
class Elf:
    path: str
    machine: int
    glibc: tuple[int, int]  # newest GLIBC_x.y it needs; (0, 0) when none


def read_elf(path: Path) -> Elf | None:
    """The machine and newest GLIBC version an ELF file needs; None when not ELF. ValueError if unreadable."""
    data = path.read_bytes()
    if data[:4] != b"\x7fELF":
        return None
    if data[4] != 2 or data[5] != 1:
        raise ValueError("not a 64-bit little-endian ELF file")
    machine = struct.unpack_from("<H", data, 18)[0]
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
    sections = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)]
    newest = (0, 0)
    for _name, stype, _flags, _addr, offset, _size, link, count, _align, _entsize in sections:
        if stype != SHT_GNU_VERNEED:
            continue
        strtab = sections[link][4]
        need = offset
        for _ in range(count):  # Elf64_Verneed: version, cnt, file, aux, next
            _version, cnt, _file, aux, nxt = struct.unpack_from("<HHIII", data, need)
            entry = need + aux
            for _ in range(cnt):  # Elf64_Vernaux: hash, flags, other, name, next
                _hash, _vflags, _other, name, anext = struct.unpack_from("<IHHII", data, entry)
                end = data.index(b"\0", strtab + name)
                label = data[strtab + name:end].decode("ascii", "replace")
                m = re.fullmatch(r"GLIBC_(\d+)\.(\d+)(?:\.\d+)?", label)
                if m:
                    newest = max(newest, (int(m.group(1)), int(m.group(2))))
                entry += anext
            need += nxt
    return Elf(str(path), machine, newest)


# --- wheel tags -----------------------------------------------------------------------------
def tag_ok(tag: str, arch_suffix: str, glibc: tuple[int, int]) -> bool:
    """Whether one wheel tag (``python-abi-platform``) runs on CPython 3.11 / this arch / this glibc."""
    try:
        py, abi, plat = tag.split("-")
    except ValueError:
        return False
    if plat == "any":
        return abi == "none" and (py.startswith("py3") or py in ("py2.py3", "py3"))
    m = re.fullmatch(r"(manylinux1|manylinux2010|manylinux2014|manylinux_(\d+)_(\d+))_(\w+)", plat)
    if not m or m.group(4) != arch_suffix:
        return False
    need = LEGACY_MANYLINUX.get(m.group(1)) or (int(m.group(2)), int(m.group(3)))
    if need > glibc:
        return False
    pm = re.fullmatch(r"cp(\d)(\d+)", py)
    if not pm:
        return False
    version = (int(pm.group(1)), int(pm.group(2)))
    if abi == "abi3":
        return version <= PYTHON_TAG
    return abi == f"cp{PYTHON_TAG[0]}{PYTHON_TAG[1]}" and version == PYTHON_TAG


# --- pins -----------------------------------------------------------------------------------
def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()  # PEP 503


def read_pins(path: Path) -> dict[str, str]:
    """``name==version`` lines of a requirements or constraints file (other lines ignored)."""
    pins = {}
    for line in path.read_text().splitlines():
        m = re.fullmatch(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;#]+).*", line)
        if m:
            pins[normalise(m.group(1))] = m.group(2)
    return pins


@dataclass
class Distribution:
    name: str
    version: str
    where: str  # the artefact directory (layer or function) it was found in
    tags: list[str]


def distributions(root: Path) -> list[tuple[Distribution, Path]]:
    found = []
    for info in sorted(root.rglob("*.dist-info")):
        meta = (info / "METADATA").read_text(errors="replace") if (info / "METADATA").exists() else ""
        name = re.search(r"^Name: (.+)$", meta, re.M)
        version = re.search(r"^Version: (.+)$", meta, re.M)
        wheel = (info / "WHEEL").read_text() if (info / "WHEEL").exists() else ""
        tags = re.findall(r"^Tag: (\S+)$", wheel, re.M)
        found.append((Distribution(normalise(name.group(1).strip()) if name else info.name,
                                   version.group(1).strip() if version else "?",
                                   info.relative_to(root).parts[0], tags), info))
    return found


# --- the check ------------------------------------------------------------------------------
@dataclass
class Report:
    build_dir: str
    arch: str
    glibc: str
    artefacts: list[str] = field(default_factory=list)
    distributions: int = 0
    native: list[dict] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def check(build_dir: Path, arch: str, glibc: tuple[int, int] = RUNTIME_GLIBC,
          constraints: Path = REPO / "constraints.txt",
          layer_requirements: Path = REPO / "layers/postern/requirements.txt") -> Report:
    machine, suffix = MACHINES[arch]
    report = Report(str(build_dir), arch, "%d.%d" % glibc)
    problem = report.problems.append
    if not build_dir.is_dir():
        problem(f"{build_dir}: no such build directory")
        return report
    report.artefacts = sorted(p.name for p in build_dir.iterdir() if p.is_dir())
    pinned = read_pins(constraints)
    layer_pins = read_pins(layer_requirements)
    layers = [p for p in build_dir.iterdir() if (p / "python").is_dir()]
    if not layers:
        problem("no layer (a directory with python/) in the build")
    for layer in layers:
        if not (layer / "python/postern/__init__.py").exists():
            problem(f"{layer.name}: the postern package is missing from the layer")
        present = {d.name: d.version for d, _ in distributions(layer)}
        for name, version in layer_pins.items():
            if present.get(name) != version:
                problem(f"{layer.name}: {name}=={version} is in the layer's requirements but the layer has "
                        f"{present.get(name, 'nothing')}")
        for name in sorted(set(present) - set(layer_pins)):
            problem(f"{layer.name}: {name} is in the layer but not in layers/postern/requirements.txt")
    for dist, info in distributions(build_dir):
        report.distributions += 1
        if pinned.get(dist.name) != dist.version:
            problem(f"{dist.where}: {dist.name} {dist.version} is not the version constraints.txt pins "
                    f"({pinned.get(dist.name, 'not pinned')})")
        if not dist.tags:
            problem(f"{dist.where}: {dist.name} has no wheel tags (built from an sdist on this machine?)")
        elif not any(tag_ok(t, suffix, glibc) for t in dist.tags):
            problem(f"{dist.where}: {dist.name} {dist.version} wheel tags {dist.tags} do not fit "
                    f"cp311/{suffix}/glibc {report.glibc}")
        record = info / "RECORD"
        site = info.parent
        for line in record.read_text().splitlines() if record.exists() else []:
            rel = line.split(",", 1)[0]
            if rel and not rel.startswith("..") and not (site / rel).exists():
                problem(f"{dist.where}: {dist.name} is incomplete: {rel} is missing")
    for path in sorted(build_dir.rglob("*")):
        if not path.is_file() or path.suffix in (".py", ".pyc", ".txt", ".json", ".typed", ".pyi"):
            continue
        try:
            elf = read_elf(path)
        except (ValueError, struct.error, IndexError) as exc:
            problem(f"{path.relative_to(build_dir)}: unreadable ELF file ({exc})")
            continue
        if elf is None:
            continue
        rel = str(path.relative_to(build_dir))
        report.native.append({"path": rel, "machine": elf.machine, "glibc": "%d.%d" % elf.glibc})
        if elf.machine != machine:
            problem(f"{rel}: built for ELF machine {elf.machine}, the functions run on {arch} ({machine})")
        if elf.glibc > glibc:
            problem(f"{rel}: needs GLIBC_{elf.glibc[0]}.{elf.glibc[1]}, the runtime has {report.glibc}")
    return report


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("build_dir", type=Path)
    ap.add_argument("--arch", choices=sorted(MACHINES), default="arm64")
    ap.add_argument("--glibc", default="%d.%d" % RUNTIME_GLIBC, help="newest glibc of the runtime (default 2.26)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    major, minor = (int(x) for x in args.glibc.split("."))
    report = check(args.build_dir, args.arch, (major, minor))
    for p in report.problems:
        print(f"check_build: {p}", file=sys.stderr)
    if args.json:
        print(json.dumps(asdict(report), indent=1))
    else:
        newest = max((n["glibc"] for n in report.native), key=lambda v: tuple(map(int, v.split("."))), default="-")
        verdict = "OK" if not report.problems else f"{len(report.problems)} problem(s)"
        print(f"check_build: {args.build_dir} ({args.arch}): {len(report.artefacts)} artefacts, "
              f"{report.distributions} distributions, {len(report.native)} native extensions "
              f"(newest GLIBC needed {newest}, runtime {report.glibc}): {verdict}")
    return 1 if report.problems else 0


if __name__ == "__main__":
    sys.exit(main())
