"""Sieve (RFC 5228) for Postern: a strict parser, a validator per extension, a pure interpreter.

In:   scripts as UTF-8 text (at most 64 KiB); at delivery, a context built
      from the StoreJob (envelope, the capped header view, the body on demand).
Out:  the pieces, each its own module:
        :mod:`.lexer`, :mod:`.parser` (text -> syntax tree), :mod:`.compiler`
        (syntax tree -> typed program, one module per extension under
        :mod:`.extensions`), :mod:`.interpreter` (program + context -> actions,
        :mod:`.actions`), :mod:`.match` (comparators and match types);
        :mod:`.repository` (scripts per user), :mod:`.managed` (the
        Postern-managed script: spam/quarantine to Junk, vacation, simple
        filters, allow/block lists), :mod:`.delivery` (run both at delivery)
        and :mod:`.effects` (carry out redirect, vacation, reject), and
        :mod:`.expiry` (Junk older than 30 days goes).
      :data:`EXTENSIONS` is THE list of supported extensions.
Fails: :class:`~.errors.SieveSyntaxError` at upload (``line:column: message``),
      :class:`~.errors.SieveRuntimeError` at delivery (the message is kept).
"""

from .errors import SieveError, SieveRuntimeError, SieveSyntaxError
from .extensions import EXTENSIONS, capability_string
from .interpreter import compile_script, run

__all__ = ["EXTENSIONS", "SieveError", "SieveRuntimeError", "SieveSyntaxError", "capability_string",
           "compile_script", "run"]
