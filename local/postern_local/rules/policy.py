"""IAM identity-policy evaluation, as far as the local stack can do it.

In:   policy documents (already free of CloudFormation intrinsics, see
      :mod:`postern_local.rules.roles`) and the (action, resource ARN) pairs a
      request needs (:mod:`postern_local.rules.actions`).
Out:  :class:`Policy` with ``decide(action, resource)`` -> :class:`Decision`:
      an explicit ``Deny`` wins, then any ``Allow``, else the implicit deny (IAM
      User Guide, "Policy evaluation logic", identity-based policies within one
      account). ``Action``/``NotAction`` match case-insensitively with ``*`` and
      ``?``; ``Resource``/``NotResource`` case-sensitively with the same
      wildcards (IAM User Guide, "IAM JSON policy elements").
Fails: ``Policy.from_documents`` raises ValueError on a statement it cannot
      read (no Effect, no Action): a broken policy must stop the stack, not
      silently allow or deny.

Conditions are NOT evaluated: a statement with a ``Condition`` applies as if
the condition held (local requests carry none of the context keys, such as
``kms:ViaService`` or ``aws:SourceArn``, that the template's conditions test).
:attr:`Policy.conditional` lists those statements so the report can say which
grants are checked on paper only. Resource-based policies, permission
boundaries, SCPs and session policies do not exist locally.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache


@dataclass(frozen=True)
class Statement:
    effect: str  # Allow | Deny
    actions: tuple[str, ...] = ()
    not_actions: tuple[str, ...] = ()
    resources: tuple[str, ...] = ()
    not_resources: tuple[str, ...] = ()
    condition: dict | None = None
    source: str = ""  # where it came from (policy name), for messages

    def matches(self, action: str, resource: str) -> bool:
        if self.actions and not any(_match(p, action, case=False) for p in self.actions):
            return False
        if self.not_actions and any(_match(p, action, case=False) for p in self.not_actions):
            return False
        if self.resources and not any(_match(p, resource) for p in self.resources):
            return False
        if self.not_resources and any(_match(p, resource) for p in self.not_resources):
            return False
        return True


@dataclass(frozen=True)
class Decision:
    allowed: bool
    denied_by: Statement | None = None  # an explicit Deny

    def __bool__(self) -> bool:
        return self.allowed


@dataclass
class Policy:
    statements: list[Statement] = field(default_factory=list)

    @classmethod
    def from_documents(cls, docs: list[tuple[str, dict]]) -> Policy:
        """``docs``: (source name, policy document) pairs."""
        out = cls()
        for source, doc in docs:
            stmts = doc.get("Statement", [])
            for s in stmts if isinstance(stmts, list) else [stmts]:
                out.statements.append(_statement(s, source))
        return out

    def decide(self, action: str, resource: str) -> Decision:
        allowed = False
        for s in self.statements:
            if not s.matches(action, resource):
                continue
            if s.effect == "Deny":
                return Decision(False, s)
            allowed = True
        return Decision(allowed)

    @property
    def conditional(self) -> list[Statement]:
        return [s for s in self.statements if s.condition]


def _strings(value) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    return tuple(str(v) for v in value)


def _statement(s: dict, source: str) -> Statement:
    effect = s.get("Effect")
    if effect not in ("Allow", "Deny") or not ("Action" in s or "NotAction" in s):
        raise ValueError(f"{source}: unreadable IAM statement {s!r}")
    return Statement(
        effect=effect,
        actions=_strings(s.get("Action")),
        not_actions=_strings(s.get("NotAction")),
        resources=_strings(s.get("Resource", "*" if "NotResource" not in s else None)),
        not_resources=_strings(s.get("NotResource")),
        condition=s.get("Condition") or None,
        source=source,
    )


@lru_cache(maxsize=4096)
def _pattern(p: str, case: bool) -> re.Pattern:
    rx = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in p)
    return re.compile(f"^{rx}$", 0 if case else re.IGNORECASE)


def _match(pattern: str, value: str, case: bool = True) -> bool:
    return bool(_pattern(pattern, case).match(value))
