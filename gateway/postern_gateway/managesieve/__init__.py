"""ManageSieve (RFC 5804): users upload and activate their Sieve scripts (port 4190).

reader.py (sans-I/O command reader) -> session.py (one connection) -> gate.py
(which commands each state allows) -> ops/ (one module per command family) ->
postern.sieve.repository (the scripts, shared with the CLI, JMAP and delivery).
server.py is the listener.
"""
