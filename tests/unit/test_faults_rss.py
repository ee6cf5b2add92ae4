"""bench/faults.py reports peak RSS of the campaign process and of its whole process tree."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "faults.py"


def load_bench():
    spec = importlib.util.spec_from_file_location("postern_bench_faults", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_tree_peak_counts_descendants_memory():
    bench = load_bench()
    child = subprocess.Popen([sys.executable, "-c", "import sys, time\nx = bytearray(64 << 20)\nx[::4096] = b'y' * "
                              "len(x[::4096])\nprint('ready', flush=True)\ntime.sleep(120)"],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "ready"
        rss = bench.TreeRss(every=60)
        rss.sample()
    finally:
        child.kill()
        child.wait(30)
    assert rss.peak_self > 0
    assert rss.peak_tree - rss.peak_self >= 60 * 1024  # the child's 64 MiB, in kB
