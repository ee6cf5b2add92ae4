"""spamtest and spamtestplus (RFC 5235): the spam filter's verdict as a number.

``spamtest [:percent] [COMPARATOR] [MATCH-TYPE] <value>`` tests one value: by
default 0..10 (0 not tested, 1 clean - up to and including the user's Junk
threshold - 2..9 rising towards the reject threshold, 10 at or past it), with
``:percent`` (spamtestplus) 0..100, and no value at all when the message was
not tested (so ``:count "eq" "0"`` tells an untested message, §3.2.2). The
numbers come from :class:`postern.verdicts.SpamVerdict` (rspamd's score and
the thresholds it was judged with), never from a header a sender could write.
The default comparator is ``i;ascii-casemap``, as for every test; scripts
compare with ``:value "ge" :comparator "i;ascii-numeric"``.
"""

from __future__ import annotations

from dataclasses import dataclass

from .. import match
from ..compiler import COMPARATOR, MATCH_TYPES, STRING, Definition, TagSpec
from ..program import Str, Tst

CAPABILITIES = ("spamtest", "spamtestplus")
IMPLIES = {"spamtestplus": ("spamtest",)}  # RFC 5235 §3.2.2
PERCENT = TagSpec("percent", None, None, "spamtestplus")


@dataclass(frozen=True)
class SpamTest(Tst):
    matcher: match.Matcher
    percent: bool
    value: Str
    line: int = 0

    def eval(self, rt) -> bool:
        verdict = rt.ctx.envelope.spam
        if self.percent:
            p = verdict.percent()
            values = [] if p is None else [str(p)]
        else:
            values = [str(verdict.spamtest())]
        return rt.matches(self.matcher, values, [self.value.value(rt)])


def _spamtest(node, args, cx):
    tags = args.tags(PERCENT, COMPARATOR, *MATCH_TYPES)
    (value,) = args.positional(STRING)
    return SpamTest(args.matcher(tags), "percent" in tags, cx.string(value), node.line)


COMMANDS = ()
TESTS = (Definition("spamtest", "spamtest", _spamtest),)
