"""relational (RFC 5231): the ``:value <op>`` and ``:count <op>`` match types.

Declared with the other match types (:data:`postern.sieve.compiler.MATCH_TYPES`)
and run by :mod:`postern.sieve.match`; this module makes the capability
known. Operators: gt ge lt le eq ne. ``:count`` compares the number of values
(addresses, header fields, flags...) with each key using the comparator - as
RFC 5231 §4.2 says, usually ``i;ascii-numeric``.
"""

CAPABILITIES = ("relational",)
COMMANDS = ()
TESTS = ()
