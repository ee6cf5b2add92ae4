"""`make faults`: 2,000 messages from 20 concurrent SMTP clients while 10% of AWS calls fail.

In:   the local stack (started here), the fault layer (postern_local.faults).
Out:  the table (sent, accepted, temp-failed, delivered, duplicated, lost, in
      DLQ; before and after redriving the DLQs with faults off), what was
      injected, the DLQ contents with the reason each message failed; exit
      status 1 when anything accepted was lost or duplicated; the elapsed time
      against the bound (``--time-limit``, 1,500 s by default), whether the
      queues drained within it, and the peak resident memory of the campaign
      process (moto, the rules proxy, the gateway, the pollers) and of its
      whole process tree (the Lambda workers included), sampled from /proc
      every 5 s.
      ``main(argv)``: ``--quick`` (200 messages, 10 clients), ``--messages``,
      ``--clients``, ``--spec`` (POSTERN_FAULTS syntax), ``--time-limit``.
Fails: stack errors propagate.

Faults are per API call as Postern's code sees them (botocore's own retries
bypassed): errors (500/503/throttling), timeouts before the request and
timeouts after AWS executed it, plus Lambda handler crashes after their side
effects (the batch is redelivered). The pollers' own SQS calls stand for
Lambda's event source mapping and are not faulted. Clients retry a 4xx up to
5 times, for the recipients not yet accepted, as MTAs do.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading

from postern_local.liveness import _descendants, _rss_kb  # one reading of /proc for every RSS figure

DEFAULT_SPEC = "s3=0.1,sqs=0.1,dynamodb=0.1,timeout=0.02,crash=0.02,seed=1"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bench/faults.py", description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--messages", type=int)
    ap.add_argument("--clients", type=int)
    ap.add_argument("--rcpts", type=int, default=2, help="recipients per message cycle 1..N (default 2)")
    ap.add_argument("--spec", default=DEFAULT_SPEC)
    ap.add_argument("--time-limit", type=float, default=None)
    ap.add_argument("--out", help="also write the report to this file (markdown)")
    args = ap.parse_args(argv)
    os.environ.setdefault("LOG_LEVEL", "ERROR")  # the handlers' Powertools loggers: quiet unless asked
    messages = args.messages or (200 if args.quick else 2000)
    clients = args.clients or (10 if args.quick else 20)
    limit = args.time_limit or (300 if args.quick else 1500)
    logging.basicConfig(level=logging.CRITICAL)
    logging.getLogger("postern").setLevel(logging.CRITICAL)
    logging.getLogger("postern.local").setLevel(logging.ERROR)  # poller failures: worth seeing
    from postern_local.faultrun import run_campaign

    rss = TreeRss().start()
    try:
        r = run_campaign(args.spec, messages=messages, clients=clients, users=10, max_rcpts=args.rcpts,
                         time_limit=limit)
    finally:
        rss.stop()
    print(r.report())
    drained = not (r.before.stuck or r.before.pending)
    print(f"bound: {r.seconds:.0f} s of {limit:.0f} s, "
          f"{'drained within it' if drained and r.seconds <= limit else 'NOT drained within it'}; "
          f"peak RSS: campaign process {rss.peak_self // 1024} MB, process tree {rss.peak_tree // 1024} MB "
          f"(sampled every {rss.every:.0f} s); load average at the end {os.getloadavg()[0]:.1f}")
    bad = (r.after.lost or r.after.duplicated or r.before.lost or r.before.duplicated
           or r.after.stuck or r.after.pending)
    summary = {"sent": sum(1 for s in r.sent if s.replies), "accepted": r.accepted, "lost": r.after.lost,
               "duplicated": r.after.duplicated, "twice_after_4xx": r.after.dup_after_4xx, "in_dlq": r.before.in_dlq,
               "seconds": round(r.seconds, 1), "bound": limit, "drained": drained,
               "peak_rss_mb": rss.peak_self // 1024, "peak_tree_rss_mb": rss.peak_tree // 1024}
    print("summary:", summary)
    if args.out:
        from pathlib import Path

        given = sys.argv[1:] if argv is None else argv
        cmd = "make faults" if not given else "bench/faults.py " + " ".join(given)
        Path(args.out).write_text(f"# Fault campaign\n\nMeasured by `{cmd}`.\n\n```\n{r.report()}\nsummary: {summary}\n```\n")
    main.result = summary
    return 1 if bad else 0


class TreeRss:
    """Peak resident memory of this process and of this process with all its descendants (the
    Lambda workers), sampled from /proc every ``every`` seconds (kB)."""

    def __init__(self, every: float = 5.0):
        self.every = every
        self.peak_self = 0
        self.peak_tree = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def start(self) -> TreeRss:
        self.sample()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        self.sample()

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.sample()

    def sample(self) -> None:
        me = os.getpid()
        own = _rss_kb(me)
        self.peak_self = max(self.peak_self, own)
        self.peak_tree = max(self.peak_tree, own + sum(_rss_kb(p) for p in _descendants(me)))


if __name__ == "__main__":
    sys.exit(main())
