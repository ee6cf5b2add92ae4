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


# --- the script repository (ManageSieve response codes, RFC 5804 §1.3) -------------------------------
class ScriptRepositoryError(SieveError):
    """A refused repository operation; ``managesieve_code`` is the RFC 5804 response code."""

    managesieve_code: str | None = None


class ScriptNotFound(ScriptRepositoryError):
    managesieve_code = "NONEXISTENT"
    imap_code = "NONEXISTENT"

    @classmethod
    def default_message(cls) -> str:
        return "No such script"


class ScriptExists(ScriptRepositoryError):
    managesieve_code = "ALREADYEXISTS"
    imap_code = "ALREADYEXISTS"

    @classmethod
    def default_message(cls) -> str:
        return "A script of that name already exists"


class ScriptActive(ScriptRepositoryError):
    managesieve_code = "ACTIVE"

    @classmethod
    def default_message(cls) -> str:
        return "The active script cannot be deleted (deactivate it first)"


class ScriptQuota(ScriptRepositoryError):
    """Over the per-user limits: ``QUOTA/MAXSCRIPTS`` or ``QUOTA/MAXSIZE`` (RFC 5804 §1.3)."""

    managesieve_code = "QUOTA"
    imap_code = "OVERQUOTA"

    def __init__(self, message: str | None = None, code: str = "QUOTA"):
        self.managesieve_code = code
        super().__init__(message)

    @classmethod
    def default_message(cls) -> str:
        return "Script quota exceeded"


class ScriptNameInvalid(ScriptRepositoryError):
    @classmethod
    def default_message(cls) -> str:
        return "Invalid script name"
