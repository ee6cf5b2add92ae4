"""Sieve errors: where a script is wrong (upload time) and why a run stopped (delivery time).

In:   raised by the lexer, parser and compiler (:class:`SieveSyntaxError`, with
      the line and column of the offending token) and by the interpreter
      (:class:`SieveRuntimeError`: a work budget exhausted, conflicting actions,
      a value too large).
Out:  ``str(err)`` is ``"line:column: message"`` for script errors, the form
      ManageSieve's PUTSCRIPT/CHECKSCRIPT answer (RFC 5804 §2.6) and
      ``postern user sieve put`` print.
Fails: n/a.

A script error is found when the script is stored, never at delivery: the
repository refuses a script that does not compile. A runtime error never loses
mail: the delivery falls back to the implicit keep (RFC 5228 §2.10.6).
"""

from __future__ import annotations

from ..errors import PosternError


class SieveError(PosternError):
    """Base of every Sieve error."""

    permanent = True


class SieveSyntaxError(SieveError):
    """The script is not valid Sieve (grammar, unknown command, wrong arguments, missing require)."""

    def __init__(self, message: str, line: int = 0, column: int = 0):
        self.message = message
        self.line = line
        self.column = column
        super().__init__(f"{line}:{column}: {message}" if line else message)


class SieveRuntimeError(SieveError):
    """A run had to stop: budget exhausted, conflicting actions, a limit. The message is kept."""
