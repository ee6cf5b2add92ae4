"""Token model shared by the IMAP command parser and the argument parsers that read its output.

A parsed argument list is a Python list whose items are:
  * :class:`Atom`  - atoms, numbers, sequence sets, flags (``\\Seen``), ``NIL``
                     (a ``str`` subclass; compare case-insensitively via ``.upper()``);
  * ``bytes``      - quoted strings and literals (already unescaped / read in full);
  * ``list``       - a parenthesised list of the same items.
Bracketed FETCH attributes such as ``BODY.PEEK[HEADER.FIELDS (A B)]<0.10>``
arrive as one :class:`Atom` for the part before ``[``, then the parser's own
section object; see ``parser.py``.
"""

from __future__ import annotations


class Atom(str):
    """An IMAP atom (RFC 3501 §9 ``atom``), kept as text."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"Atom({str.__repr__(self)})"

    @property
    def is_nil(self) -> bool:
        return self.upper() == "NIL"
