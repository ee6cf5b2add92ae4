"""The hostile-input harness measures what it claims (postern_local.liveness).

A benign "attack" passes the ceilings; a gateway frozen with SIGSTOP for longer than the stall
ceiling is caught by the canary; the gateway really runs under RLIMIT_AS; the peak-RSS reading
sees a short allocation spike that is gone again before it is read.
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from postern_local.liveness import ADDRESS_SPACE, STALL_CEILING, PeakRss


def test_benign_attack_is_within_ceilings(hostile):
    result = hostile.measure(lambda: time.sleep(0.5))
    result.check()
    assert result.probes >= 4 and result.longest_stall < STALL_CEILING
    assert 20 < result.peak_rss_mb < 512


def test_a_frozen_gateway_is_a_stall(hostile):
    def freeze():
        os.kill(hostile.pid, signal.SIGSTOP)
        try:
            time.sleep(STALL_CEILING + 0.5)
        finally:
            os.kill(hostile.pid, signal.SIGCONT)

    result = hostile.measure(freeze)
    assert result.longest_stall >= STALL_CEILING + 0.4, result
    with pytest.raises(AssertionError, match="stalled"):
        result.check()


def test_gateway_runs_under_an_address_space_limit(hostile):
    with open(f"/proc/{hostile.pid}/limits") as fh:
        row = next(line for line in fh if line.startswith("Max address space"))
    assert row.split()[3:5] == [str(ADDRESS_SPACE), str(ADDRESS_SPACE)]


def test_peak_rss_sees_a_spike():
    rss = PeakRss()
    rss.reset()
    before = rss.current_mb()
    spike = bytearray(96 * 1024 * 1024)
    spike[::4096] = b"x" * len(spike[::4096])  # touch every page
    del spike
    assert rss.peak_mb() - before > 80


def test_tree_rss_counts_child_processes():
    import subprocess
    import sys

    from postern_local.liveness import TreeRss

    tree = TreeRss(os.getpid()).start()
    before = tree.peak_kb / 1024
    child = subprocess.Popen([sys.executable, "-c", "import time; b = bytearray(200 << 20); b[::4096] = b'x' * "
                              "len(b[::4096]); time.sleep(0.5)"])
    child.wait(30)
    assert tree.stop() - before > 150
