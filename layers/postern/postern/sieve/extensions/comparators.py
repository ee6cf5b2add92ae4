"""Comparators (RFC 5228 §2.7.3, RFC 4790 §9): ``comparator-i;ascii-numeric``.

``i;octet`` and ``i;ascii-casemap`` are always available (requiring them is
allowed and changes nothing); ``i;ascii-numeric`` must be required. The
comparisons themselves live in :mod:`postern.sieve.match`.
"""

CAPABILITIES = ("comparator-i;ascii-numeric",)
IMPLICIT = ("comparator-i;octet", "comparator-i;ascii-casemap")
COMMANDS = ()
TESTS = ()
