"""subaddress (RFC 5233): the ``:user`` and ``:detail`` address parts.

With the separator ``+`` (as the router's plus-addressing): ``ken+sieve@`` has
user ``ken`` and detail ``sieve``; ``ken+@`` has an empty detail; ``ken@`` has
no detail at all, so a ``:detail`` test does not match it (§4). Declared with
the other address parts (:data:`postern.sieve.compiler.ADDRESS_PARTS`).
"""

CAPABILITIES = ("subaddress",)
COMMANDS = ()
TESTS = ()
