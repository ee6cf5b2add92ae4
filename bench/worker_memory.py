"""How much memory an IMAP work-budget worker needs: its peak RSS on the worst a message may hold.

In:   ``RLIMIT_AS`` values in MiB to try (default: 160 192 320); ``--size MIB`` (25, the default
      ``POSTERN_MAX_MESSAGE_SIZE``).
Out:  one line per limit, message and task: the task's outcome (ok, or LIMIT when the worker hit
      its memory budget) and the worker process's peak RSS (``VmHWM``). Messages: one with a
      base64 attachment filling the size, one of thousands of small parts. Tasks: BODYSTRUCTURE,
      one section, SEARCH TEXT of a string it does not hold (every part read). What
      ``POSTERN_WORK_MEMORY_MB`` and the template's task sizes rest on (docs/cost.md, "Task sizes").
Fails: never on a LIMIT (that is a result); exits 1 when a worker cannot start.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import types
from email.message import EmailMessage

from postern_gateway.imap import search as SS
from postern_gateway.workers import WorkerPool, WorkLimit

MIB = 1024 * 1024


def attachment_message(size: int) -> bytes:
    m = EmailMessage()
    m["From"], m["To"], m["Subject"] = "a@example.test", "b@example.test", "one big attachment"
    m.set_content("hello " * 100)
    m.add_attachment(os.urandom(int(size * 0.74)), maintype="application", subtype="octet-stream",
                     filename="big.bin")  # base64: 4/3, plus line ends
    return m.as_bytes()


def many_parts_message(size: int) -> bytes:
    m = EmailMessage()
    m["From"], m["To"], m["Subject"] = "a@example.test", "b@example.test", "many parts"
    m.set_content("hello")
    for i in range(size // 5000):
        m.add_attachment("z" * 3000 + "\n", subtype="plain", filename=f"p{i}.txt")
    return m.as_bytes()


def peak_rss_mib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM"):
                return int(line.split()[1]) // 1024
    return -1


async def measure(limit_mb: int, messages: dict[str, bytes]) -> list[str]:
    out = []
    for name, raw in messages.items():
        split = raw.index(b"\n\n") + 2
        msg = types.SimpleNamespace(raw=raw, header=raw[:split], uid=1, seq=1, flags=(), keywords=(),
                                    internal_date=None, size=len(raw), modseq=1)
        tasks = [("bodystructure", (raw, True)), ("section", (raw, (2,), None, ())),
                 ("search", (SS.BodyKey(needle="not-in-this-message", text=True), [msg]))]
        for task, args in tasks:
            pool = WorkerPool(workers=1, memory_mb=limit_mb)
            try:
                try:
                    await pool.run(task, *args, budget=300)
                    result = "ok"
                except WorkLimit as exc:
                    result = f"LIMIT ({exc})"
                proc = pool._all[0].proc
                peak = peak_rss_mib(proc.pid) if proc is not None and proc.poll() is None else -1
                out.append(f"RLIMIT_AS {limit_mb} MiB | {name} ({len(raw) / MIB:.1f} MiB) | {task}: {result},"
                           f" worker peak RSS {peak} MiB")
            finally:
                pool.shutdown()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bench/worker_memory.py", description=__doc__.split("\n")[0])
    ap.add_argument("limits", nargs="*", type=int, default=[160, 192, 320], help="RLIMIT_AS values, MiB")
    ap.add_argument("--size", type=float, default=25.0, help="message size, MiB")
    args = ap.parse_args(argv)
    size = int(args.size * MIB)
    messages = {"base64 attachment": attachment_message(size), "many parts": many_parts_message(size)}
    idle = WorkerPool(workers=1, memory_mb=min(args.limits))
    try:
        asyncio.run(idle.run("selftest", "echo", 1, budget=60))
        print(f"idle worker: peak RSS {peak_rss_mib(idle._all[0].proc.pid)} MiB")
    except Exception as exc:  # noqa: BLE001 - reported, the measurement cannot run
        print(f"a worker did not start: {exc}", file=sys.stderr)
        return 1
    finally:
        idle.shutdown()
    for limit in args.limits:
        for line in asyncio.run(measure(limit, messages)):
            print(line, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
