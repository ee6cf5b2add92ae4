"""Where the gateway process's time went during a load: CPU, run-queue waits, and (optionally) py-spy.

In:   the gateway's pid (``postern_local.gatewayproc.GatewayProcess.pid``).
Out:  :class:`SchedSample` (``SchedSample.read(pid)``, then ``later - earlier``): per thread of the
      process, the seconds on a CPU and the seconds runnable but waiting for one (Linux
      ``/proc/<pid>/task/<tid>/schedstat``: run time, run-queue wait); :func:`sched_lines` says it
      for the event loop's thread (the main thread, tid == pid) and the others (executor threads:
      boto3, argon2). A loop that waits for a core as long as it runs is starved by the machine, not
      slow itself.
      :class:`PySpy`: ``py-spy record --gil`` of the process for a period (if py-spy is installed;
      ``pip install py-spy``), then :meth:`PySpy.summary`: the share of samples each thread held the
      GIL (the loop's own Python work against the executor threads' boto3 parsing) and the event
      loop's busiest functions.
Fails: a process that is gone reads as empty; py-spy missing or refused (ptrace) -> ``PySpy.start``
      returns False and the summary says why.
"""

from __future__ import annotations

import os
import shutil
import sys
import subprocess
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class SchedSample:
    threads: dict[int, tuple[float, float]] = field(default_factory=dict)  # tid -> (on-CPU s, run-queue wait s)

    @classmethod
    def read(cls, pid: int) -> SchedSample:
        out = cls()
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            return out
        for tid in tids:
            try:
                run_ns, wait_ns, _slices = Path(f"/proc/{pid}/task/{tid}/schedstat").read_text().split()
            except (OSError, ValueError):
                continue
            out.threads[int(tid)] = (int(run_ns) / 1e9, int(wait_ns) / 1e9)
        return out

    def __sub__(self, earlier: SchedSample) -> SchedSample:
        return SchedSample({tid: (run - earlier.threads.get(tid, (0.0, 0.0))[0],
                                  wait - earlier.threads.get(tid, (0.0, 0.0))[1])
                            for tid, (run, wait) in self.threads.items()})


def sched_lines(pid: int, delta: SchedSample, seconds: float) -> list[str]:
    """The event loop's and the other threads' CPU and run-queue wait over ``seconds``."""
    loop_run, loop_wait = delta.threads.get(pid, (0.0, 0.0))
    others = [v for tid, v in delta.threads.items() if tid != pid]
    o_run, o_wait = sum(r for r, _ in others), sum(w for _, w in others)
    return [f"gateway event loop thread: {loop_run:.1f} s on a CPU ({loop_run / seconds:.0%} of the {seconds:.0f} s),"
            f" {loop_wait:.1f} s runnable but waiting for a core ({loop_wait / seconds:.0%})",
            f"gateway other threads ({len(others)}: executor, change feed): {o_run:.1f} s on a CPU,"
            f" {o_wait:.1f} s waiting for a core"]


def process_line(what: str, delta: SchedSample, seconds: float) -> str:
    """All threads of a process together: seconds on a CPU and runnable but waiting for one."""
    run = sum(r for r, _ in delta.threads.values())
    wait = sum(w for _, w in delta.threads.values())
    return f"{what}: {run:.1f} s on a CPU, {wait:.1f} s runnable but waiting for a core, over {seconds:.0f} s"


class PySpy:
    """``py-spy record --gil --threads --nonblocking`` of a running process for ``seconds``."""

    def __init__(self, pid: int, seconds: float, out: str, rate: int = 100):
        self.pid, self.seconds, self.out, self.rate = pid, seconds, out, rate
        self.proc: subprocess.Popen | None = None
        self.why = ""

    def start(self) -> bool:
        exe = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        if not Path(exe).exists():
            self.why = "py-spy not installed (pip install py-spy)"
            return False
        self.proc = subprocess.Popen([exe, "record", "--pid", str(self.pid), "--duration", str(int(self.seconds)),
                                      "--rate", str(self.rate), "--format", "raw", "--output", self.out,
                                      "--gil", "--threads", "--nonblocking"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        return True

    def summary(self, top: int = 12) -> list[str]:
        if self.proc is None:
            return [f"py-spy: {self.why}"]
        try:
            _out, err = self.proc.communicate(timeout=self.seconds + 60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return ["py-spy: did not finish"]
        if not Path(self.out).exists():
            return [f"py-spy: no output ({err.decode(errors='replace').strip()[-200:]})"]
        by_thread: Counter = Counter()
        loop_frames: dict[str, int] = defaultdict(int)
        total = 0
        for line in Path(self.out).read_text().splitlines():
            stack, _, n = line.rpartition(" ")
            if not n.isdigit():
                continue
            count = int(n)
            total += count
            head, *frames = stack.split(";")  # "thread (tid): name", then the frames outermost first
            name = head.split(": ", 1)[-1]
            is_loop = head.startswith(f"thread ({self.pid})")
            by_thread["event loop" if is_loop else _kind(name, frames)] += count
            if is_loop:
                for fr in _own(frames):
                    loop_frames[fr] += count
        possible = self.seconds * self.rate
        lines = [f"py-spy --gil, {self.seconds:.0f} s at {self.rate}/s: the GIL was held in {total / possible:.0%}"
                 f" of the samples; by whom (share of all samples):"]
        lines += [f"  {who}: {n / possible:.1%}" for who, n in by_thread.most_common()]
        lines.append("  event loop, the functions its GIL samples were in (inclusive, gateway code):")
        lines += [f"    {n / possible:6.1%}  {fr}" for fr, n in sorted(loop_frames.items(), key=lambda kv: -kv[1])[:top]]
        lines.append(f"  raw stacks: {self.out}")
        return lines


def _kind(name: str, frames: list[str]) -> str:
    text = ";".join(frames)
    if "argon2" in text or "passwords.py" in text:
        return "executor: argon2"
    if "botocore" in text:
        return "executor: boto3"
    if name.startswith("postern-aws"):
        return "executor: other"
    return name.split(" (")[0] or "other"


def _own(frames: list[str]) -> set[str]:
    """The distinct gateway / layer frames of one stack (inclusive counts), without line numbers."""
    out = set()
    for fr in frames:
        if "postern" in fr or "aiosmtpd" in fr:
            out.add(fr.split(" (")[0] + " (" + fr.rsplit("(", 1)[-1].split(":")[0] + ")")
    return out
