"""A compiled script and the state of one run of it.

In:   typed commands and tests built by the compiler from the extension modules
      (each subclasses :class:`Cmd` or :class:`Tst` and says how it runs);
      strings as :class:`Str` (constant, or parts to expand: RFC 5229 variables).
Out:  :class:`Program` (the script's commands, the extensions it requires and
      which tests it uses); :class:`Runtime`, the run: variables, match
      variables, the imap4flags internal variable, the budget, the result.
Fails: :class:`~postern.sieve.errors.SieveRuntimeError` from the budget or a
      limit; :class:`Stop` ends the script (RFC 5228 §3.3), not an error.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .actions import Result
from .errors import SieveRuntimeError
from .limits import Limits
from .match import Budget
from .match import test as match_test
from .message import Context


class Stop(Exception):
    """RFC 5228 §3.3: end the script; the actions so far stand."""


@dataclass(frozen=True, slots=True)
class VarRef:
    name: str  # lower case (RFC 5229 §3: names are case-insensitive)


@dataclass(frozen=True, slots=True)
class MatchRef:
    index: int  # ${0}..${9}


@dataclass(frozen=True, slots=True)
class Str:
    """A string argument: its text, or (with variables) the parts to expand at run time."""

    text: str
    parts: tuple | None = None  # str | VarRef | MatchRef items; None: constant

    def value(self, rt: Runtime) -> str:
        return self.text if self.parts is None else rt.expand(self.parts)

    @property
    def constant(self) -> bool:
        return self.parts is None


class Cmd:
    line: int = 0

    def run(self, rt: Runtime) -> None:  # pragma: no cover - every command overrides it
        raise NotImplementedError


class Tst:
    line: int = 0

    def eval(self, rt: Runtime) -> bool:  # pragma: no cover
        raise NotImplementedError


@dataclass(frozen=True)
class Program:
    commands: tuple[Cmd, ...]
    requires: frozenset[str]  # the capabilities the script required
    uses: frozenset[str] = frozenset()  # names of the tests and commands it contains (e.g. "spamtest")
    size: int = 0  # bytes of source


@dataclass
class Runtime:
    ctx: Context
    result: Result
    origin: str
    limits: Limits = field(default_factory=Limits)
    budget: Budget = None  # type: ignore[assignment]
    variables: dict[str, str] = field(default_factory=dict)
    match_vars: list[str] = field(default_factory=list)
    internal_flags: str = ""  # RFC 5232 §3: the internal variable holding the flags
    requires: frozenset[str] = frozenset()  # the program's required capabilities
    stopped: bool = False  # the script ended with stop (RFC 5228 §3.3)

    @property
    def uses_variables(self) -> bool:
        return "variables" in self.requires

    def __post_init__(self):
        if self.budget is None:
            self.budget = Budget(self.limits.steps)

    def step(self, n: int = 1) -> None:
        self.budget.charge(n)

    def run_block(self, block) -> None:
        for cmd in block:
            self.step()
            cmd.run(self)

    # --- RFC 5229 variables -------------------------------------------------------------------
    def expand(self, parts: tuple) -> str:
        out: list[str] = []
        size = 0
        for p in parts:
            if isinstance(p, str):
                s = p
            elif isinstance(p, VarRef):
                s = self.variables.get(p.name, "")
            else:
                s = self.match_vars[p.index] if p.index < len(self.match_vars) else ""
            size += len(s)
            if size > self.limits.max_string:
                raise SieveRuntimeError(f"string longer than {self.limits.max_string} characters")
            out.append(s)
        self.step(1 + size // 1024)
        return "".join(out)

    def set_variable(self, name: str, value: str) -> None:
        if name not in self.variables and len(self.variables) >= self.limits.max_variables:
            raise SieveRuntimeError(f"more than {self.limits.max_variables} variables")
        self.variables[name] = value[: self.limits.max_variable_size]  # RFC 5229 §4: truncated, not an error

    def matches(self, matcher, values: list[str], keys: list[str]) -> bool:
        """Compare ``values`` with ``keys`` by the test's matcher within this run's budget; a success
        records the match variables. Every test that compares strings (RFC 5228 §2.7) ends here."""
        ok, caps = match_test(matcher, values, keys, self.budget)
        if ok:
            self.set_matches(caps)
        return ok

    def set_matches(self, values: list[str] | None) -> None:
        """RFC 5229 §3.2: a successful :matches sets ${0}..${9} (later ones are dropped)."""
        if values is not None and self.uses_variables:
            self.match_vars = [v[: self.limits.max_variable_size] for v in values[:10]]
