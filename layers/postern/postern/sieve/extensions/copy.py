"""copy (RFC 3894): ``:copy`` on ``fileinto`` and ``redirect`` keeps the implicit keep.

The tag itself is declared beside the commands that take it (core's redirect,
fileinto); this module only makes the capability known. Without ``:copy`` a
fileinto or redirect cancels the implicit keep (RFC 5228 §4.2); with it the
message is also stored in INBOX unless something else cancels the keep.
"""

CAPABILITIES = ("copy",)
COMMANDS = ()
TESTS = ()
