"""Counted bytes off the front of an input buffer: the literal readers of IMAP and ManageSieve.

In:   the connection's buffer of received bytes, how many bytes a literal (being read, or being
      skipped after a refusal) still owes, and where its bytes go (``None``: discarded).
Out:  :func:`take_counted` moves at most that many bytes out of the buffer and returns how many
      are still owed (0: the literal is complete).
Fails: never.
"""

from __future__ import annotations


def take_counted(buf: bytearray, owed: int, into: bytearray | None = None) -> int:
    take = min(owed, len(buf))
    if into is not None:
        into += buf[:take]
    del buf[:take]
    return owed - take
