"""The Sieve extensions Postern supports: one module each (as Pigeonhole's ``src/lib-sieve/``).

In:   the modules below; each declares ``CAPABILITIES`` (the ``require`` names
      it answers to), ``COMMANDS`` and ``TESTS`` (:class:`~postern.sieve.compiler.Definition`:
      name, the capability it needs, how to build it) and optionally
      ``IMPLIES`` (a capability that brings another along).
Out:  :data:`EXTENSIONS`, THE list of supported extensions - ManageSieve's
      ``SIEVE`` capability (RFC 5804 §1.7) and JMAP's ``sieveExtensions``
      (RFC 9661) print exactly it; :func:`known`, :func:`implied`,
      :func:`command`, :func:`test`, :func:`build_if` for the compiler.
Fails: importing fails loudly if two modules define one name, or a module
      offers a capability missing from :data:`EXTENSIONS` (a test checks the
      list and the modules agree).
"""

from __future__ import annotations

from . import (body, comparators, copy, core, date, encoded_character, envelope, environment, fileinto,
               imap4flags, mailbox, reject, relational, spamtest, subaddress, vacation, variables)

MODULES = (core, fileinto, reject, envelope, encoded_character, variables, vacation, relational, comparators,
           subaddress, body, copy, imap4flags, date, mailbox, spamtest, environment)

# The advertised list, in this order (RFC 5804 §1.7: space-separated in the SIEVE capability).
EXTENSIONS: tuple[str, ...] = (
    "fileinto", "reject", "ereject", "envelope", "encoded-character", "variables", "vacation", "vacation-seconds",
    "relational", "comparator-i;ascii-numeric", "subaddress", "body", "copy", "imap4flags", "date", "index",
    "mailbox", "spamtest", "spamtestplus", "environment",
)

_COMMANDS = {}
_TESTS = {}
_IMPLIES: dict[str, tuple[str, ...]] = {}
_OFFERED: set[str] = set()
for _m in MODULES:
    for _d in _m.COMMANDS:
        assert _d.name not in _COMMANDS, _d.name
        _COMMANDS[_d.name] = _d
    for _d in _m.TESTS:
        assert _d.name not in _TESTS, _d.name
        _TESTS[_d.name] = _d
    _IMPLIES.update(getattr(_m, "IMPLIES", {}))
    _OFFERED.update(_m.CAPABILITIES)
assert _OFFERED == set(EXTENSIONS), sorted(_OFFERED ^ set(EXTENSIONS))
_IMPLICIT = frozenset(comparators.IMPLICIT)


def capability_string() -> str:
    """The ManageSieve ``SIEVE`` capability value."""
    return " ".join(EXTENSIONS)


def known(capability: str) -> bool:
    return capability in _OFFERED or capability in _IMPLICIT


def implied(capability: str) -> tuple[str, ...]:
    return _IMPLIES.get(capability, ())


def command(name: str):
    return _COMMANDS.get(name)


def test(name: str):
    return _TESTS.get(name)


def build_if(chain, cx):
    return core.build_if(chain, cx)
