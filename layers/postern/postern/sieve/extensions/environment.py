"""environment (RFC 5183): facts about where the script runs.

``environment [COMPARATOR] [MATCH-TYPE] <name> <keys>``; items (§4.1):
``domain`` and ``host`` (our host name and its domain), ``location`` ("MDA":
Sieve runs at delivery), ``phase`` ("during"), ``name`` ("Postern"),
``version``, and ``vnd.postern.quarantine`` ("yes" when the message failed a
DMARC policy of quarantine, else "no"), which the Postern-managed script uses
to file such mail into Junk. An unknown item has no value (the test fails).
"""

from __future__ import annotations

from dataclasses import dataclass

from .. import match
from ..compiler import COMPARATOR, MATCH_TYPES, STRING, STRING_LIST, Definition
from ..program import Str, Tst

CAPABILITIES = ("environment",)


@dataclass(frozen=True)
class EnvironmentTest(Tst):
    matcher: match.Matcher
    name: Str
    keys: tuple[Str, ...]
    line: int = 0

    def eval(self, rt) -> bool:
        item = self.name.value(rt).lower()
        if item == "vnd.postern.quarantine":
            value = "yes" if rt.ctx.envelope.auth.quarantine else "no"
        else:
            value = rt.ctx.environment.get(item)
        values = [] if value is None else [value]
        return rt.matches(self.matcher, values, [k.value(rt) for k in self.keys])


def _environment(node, args, cx):
    tags = args.tags(COMPARATOR, *MATCH_TYPES)
    name, keys = args.positional(STRING, STRING_LIST)
    return EnvironmentTest(args.matcher(tags), cx.string(name), cx.strings(keys), node.line)


COMMANDS = ()
TESTS = (Definition("environment", "environment", _environment),)
