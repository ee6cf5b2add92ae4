"""Stopping the child processes the local stack runs (rspamd, redis, the gateway processes).

In:   a ``subprocess.Popen`` (or ``None``), how long it may take to exit after SIGTERM, and how long
      to wait for it to die after SIGKILL.
Out:  :func:`stop_process`: the process has exited (SIGTERM, then SIGKILL past the grace period);
      one already gone is left alone.
Fails: ``subprocess.TimeoutExpired`` only if it outlives SIGKILL by ``kill_wait`` seconds.
"""

from __future__ import annotations

import subprocess


def stop_process(proc: subprocess.Popen | None, grace: float, kill_wait: float = 5) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(kill_wait)
