"""POP3 (RFC 1939, CAPA RFC 2449, AUTH RFC 5034, STLS RFC 2595).

``protocol`` is the sans-I/O wire format, ``maildrop`` the snapshot with
deletion marks, ``session`` the state machine, ``server`` the listener.
"""
