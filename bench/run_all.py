"""`make bench`: run every benchmark in bench/ and print one summary table.

In:   the benchmark scripts in this directory (each has ``main(argv)`` and
      ``--quick``); ``--full`` runs them at full size (much longer: the fault
      campaign alone is minutes), ``--only a,b`` picks some, ``--timeout``
      bounds each (default 900 s quick, 3600 s full).
Out:  each benchmark's own output (streamed), then one table: benchmark,
      status (ok / exit N / timeout / missing), seconds, and its headline
      figures - every line the benchmark printed that carries a ratio against
      its same-run baseline (``ratio ...``, ``... 1.23x``), or its summary
      (fault table totals, load RSS, cost totals). Nothing is computed here:
      figures are quoted from the benchmark that measured them.
Fails: exit status 1 if a benchmark that exists failed; a missing one is
      reported as missing, never faked.

Each benchmark runs in its own interpreter (``python bench/NAME.py --quick``,
which calls its ``main(argv)``): they start local stacks that set process
environment variables, and isolation keeps one from skewing the next.
``cost`` runs with ``--no-write`` so docs/cost.md changes only by ``make cost``.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
# name -> (what it compares, extra arguments)
EXPECTED = {
    "smtp_ingest": ("gateway MX vs bare aiosmtpd (same run)", []),
    "imap": ("Postern IMAP vs Dovecot (same run)", []),
    "outbound": ("pipeline to a fake MX vs smtplib straight to it", []),
    "faults": ("2,000 messages, 20 clients, 10% of AWS calls failing", []),
    "load": ("200 SMTP + 100 IDLE + 20 IMAP + 50 POP3 sessions", []),
    "cost": ("AWS requests counted -> $ per million messages", ["--no-write"]),
    "store_order": ("4 writers on one mailbox, a watcher following the change log", []),
    "sieve": ("store pipeline with a 50-rule Sieve script vs without Sieve (same run)", []),
    "feed": ("change feed: delivery and a flag on another task -> IDLE; requests per idle client", []),
    "webmail": ("webmail's first message list (chromium) vs IMAP headers-only, same mailbox (same run)", []),
}
HEADLINE = re.compile(
    r"(ratio|\d+(\.\d+)?x\b|summary:|gateway RSS|idle floor|SMTP messages accepted|^(inbound|outbound|POP3|IMAP)\b"
    r"|requests per|lost|duplicated|in DLQ|target)",
    re.IGNORECASE,
)


def discover() -> list[str]:
    found = sorted(p.stem for p in HERE.glob("*.py") if p.stem not in ("run_all", "common") and not p.stem.startswith("_"))
    return list(EXPECTED) + [n for n in found if n not in EXPECTED]


def run_one(name: str, full: bool, timeout: float) -> dict:
    path = HERE / f"{name}.py"
    if not path.exists():
        return {"name": name, "status": "missing", "seconds": 0.0, "headline": []}
    args = [sys.executable, str(path)] + ([] if full else ["--quick"]) + EXPECTED.get(name, ("", []))[1]
    print(f"\n===== {name}: {' '.join(args[1:])}", flush=True)
    t0 = time.monotonic()
    lines: list[str] = []
    try:
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=HERE.parent)
        deadline = t0 + timeout
        assert proc.stdout is not None
        for line in proc.stdout:
            if not line.startswith("{"):  # Powertools JSON logs: noise here
                sys.stdout.write(line)
                lines.append(line.rstrip("\n"))
            if time.monotonic() > deadline:
                proc.kill()
                break
        rc = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
        status = "ok" if rc == 0 else f"exit {rc}"
    except subprocess.TimeoutExpired:
        proc.kill()
        status = "timeout"
    seconds = time.monotonic() - t0
    if seconds > timeout:
        status = "timeout"
    headline = [ln.strip() for ln in lines if HEADLINE.search(ln) and len(ln.strip()) < 200]
    return {"name": name, "status": status, "seconds": seconds, "headline": headline[:12]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bench/run_all.py", description=__doc__.split("\n")[0])
    ap.add_argument("--full", action="store_true", help="full-size runs (default: each with --quick)")
    ap.add_argument("--only", default="", help="comma-separated benchmark names")
    ap.add_argument("--timeout", type=float, default=None, help="seconds per benchmark")
    args = ap.parse_args(argv)
    names = [n for n in discover() if not args.only or n in args.only.split(",")]
    timeout = args.timeout or (3600.0 if args.full else 900.0)
    results = [run_one(n, args.full, timeout) for n in names]

    print("\n" + "=" * 78)
    print(f"Postern benchmarks ({'full' if args.full else 'quick'}): each figure against its baseline in the same run")
    print("=" * 78)
    w = max(len(r["name"]) for r in results)
    for r in results:
        what = EXPECTED.get(r["name"], ("",))[0]
        print(f"{r['name']:<{w}}  {r['status']:<8}  {r['seconds']:7.1f} s  {what}")
        for h in r["headline"]:
            print(f"{'':<{w}}    {h}")
    failed = [r["name"] for r in results if r["status"] not in ("ok", "missing")]
    missing = [r["name"] for r in results if r["status"] == "missing"]
    if missing:
        print(f"missing (not run, not estimated): {', '.join(missing)}")
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
