"""What Postern's AWS usage costs: one price table, one function from usage to dollars.

In:   ``postern/data/prices.json`` (us-east-1 list prices with their date and
      source; the one place prices live) and a usage mapping in billing units:
      ``{"lambda_requests": 3, "ddb_wru": 12.0, "sqs_requests": 7, ...}`` whose
      keys are the price table's item names.
      For ``postern trace ID --cost``: ``postern/data/cost_profile.json``, the
      usage of each pipeline stage per message as measured by ``make cost``
      (bench/cost.py writes it from counted AWS requests).
Out:  :func:`cost_of` -> :class:`Breakdown` (lines of quantity x unit price,
      a total, ``to_text()``); :func:`message_cost` -> the Breakdown of one
      message from the stages its trace shows.
Fails: :class:`KeyError` naming an unknown usage item; a missing profile
      gives an empty estimate that says so (``Breakdown.note``).

Estimate method of :func:`message_cost`: the trace says which stages a
message went through (accepted by the gateway, routed, stored to N mailboxes,
delivered to M remote domains with K attempts, a notice); each stage's cost
is the measured mean usage of that stage in the last ``make cost`` run
(requests by the same code on the local stack, Lambda duration as measured
there), scaled by the message's 64 KB chunks for SQS and by its size for S3
storage. It is an estimate from a profile, not a bill: it does not see this
message's own retries inside botocore or its exact item sizes.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources

GB = 1024 ** 3


@lru_cache(maxsize=4)
def _load(name: str) -> dict:
    with resources.files("postern").joinpath("data", name).open("r", encoding="utf-8") as fh:
        return json.load(fh)


def load_prices() -> dict:
    """The price table (``items``: name -> {price, per, unit, label}; ``as_of``; ``source``)."""
    return _load("prices.json")


def load_profile() -> dict:
    """The per-stage usage profile written by ``make cost`` ({} if it has never run)."""
    try:
        return _load("cost_profile.json")
    except FileNotFoundError:
        return {}


@dataclass(frozen=True)
class Line:
    item: str
    label: str
    quantity: float
    unit: str
    unit_price: float  # dollars per ``per`` units
    per: int
    cost: float


@dataclass
class Breakdown:
    lines: list[Line] = field(default_factory=list)
    note: str = ""

    @property
    def total(self) -> float:
        return sum(line.cost for line in self.lines)

    def scaled(self, factor: float) -> Breakdown:
        return Breakdown(
            [Line(l.item, l.label, l.quantity * factor, l.unit, l.unit_price, l.per, l.cost * factor) for l in self.lines],
            self.note,
        )

    def to_dict(self) -> dict:
        return {
            "lines": [{"item": l.item, "quantity": l.quantity, "unit": l.unit, "cost": l.cost} for l in self.lines],
            "total": self.total,
            "note": self.note,
        }

    def to_text(self, money_digits: int = 6) -> str:
        rows = [(l.label, f"{l.quantity:.3g}" if l.quantity < 0.01 else f"{l.quantity:,.3f}".rstrip("0").rstrip("."), l.unit,
                 f"${l.unit_price:g}/{l.per:,}" if l.per != 1 else f"${l.unit_price:g}", f"${l.cost:.{money_digits}f}")
                for l in self.lines if l.quantity]
        rows.append(("total", "", "", "", f"${self.total:.{money_digits}f}"))
        widths = [max(len(r[i]) for r in rows) for i in range(5)]
        out = ["  ".join(c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in rows]
        if self.note:
            out.append(self.note)
        return "\n".join(out)


def cost_of(usage: Mapping[str, float], prices: dict | None = None) -> Breakdown:
    """Dollars for ``usage`` (item name -> quantity in the table's units)."""
    table = (prices or load_prices())["items"]
    lines = []
    for item, qty in usage.items():
        if item not in table:
            raise KeyError(f"no price for {item!r} (known: {', '.join(sorted(table))})")
        p = table[item]
        lines.append(Line(item, p["label"], float(qty), p["unit"], p["price"], p["per"], float(qty) * p["price"] / p["per"]))
    return Breakdown(lines)


def add_usage(*usages: Mapping[str, float]) -> dict[str, float]:
    out: dict[str, float] = {}
    for u in usages:
        for k, v in u.items():
            out[k] = out.get(k, 0.0) + v
    return out


def scale_usage(usage: Mapping[str, float], factor: float) -> dict[str, float]:
    return {k: v * factor for k, v in usage.items()}


def message_cost(stages: Mapping[str, int], size: int = 0, profile: dict | None = None,
                 storage_months: float = 1.0) -> Breakdown:
    """Estimated cost of one message from the stages its trace shows.

    ``stages``: stage name -> how many times it ran for this message, with the
    profile's names: ``accept`` (gateway spool), ``route`` (router), ``store``
    (one per mailbox delivery), ``deliver`` (one per outbound attempt),
    ``notice`` (an NDR). ``size`` in bytes scales SQS chunks and S3 storage
    (kept ``storage_months`` in each mailbox it was stored to).
    """
    prof = profile if profile is not None else load_profile()
    per_stage = prof.get("stages", {})
    if not per_stage:
        return Breakdown(note="no cost profile: run `make cost` to measure one")
    usage: dict[str, float] = {}
    missing = []
    chunks = max(1, math.ceil(size / (64 * 1024))) if size else 1
    for stage, n in stages.items():
        if not n:
            continue
        u = per_stage.get(stage)
        if u is None:
            missing.append(stage)
            continue
        u = dict(u)
        if "sqs_requests" in u:
            u["sqs_requests"] *= chunks
        usage = add_usage(usage, scale_usage(u, n))
    stored = stages.get("store", 0)
    if size and stored:
        # One blob shared by every mailbox copy of this queue id (refcounted).
        usage["s3_gb_month"] = usage.get("s3_gb_month", 0.0) + size / GB * storage_months
    b = cost_of(usage)
    b.note = (f"estimate: per-stage profile measured by `make cost` on {prof.get('measured', '?')}"
              f" ({prof.get('method', 'counted AWS requests')})")
    if missing:
        b.note += f"; stages without a profile: {', '.join(sorted(missing))}"
    return b
