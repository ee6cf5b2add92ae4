"""The work budget of Sieve: what a script may be, and what one run may cost.

In:   nothing (constants); :class:`Limits` is built from settings by the caller.
Out:  parse-time caps (checked by the lexer, parser and compiler: a script over
      them is refused at upload with a line and column) and run-time caps
      (checked by the interpreter: a run over them stops with
      :class:`~postern.sieve.errors.SieveRuntimeError`, and the message is kept).
Fails: n/a.

Why these numbers: a script is at most 64 KiB (the ManageSieve limit Postern
advertises, ``POSTERN_SIEVE_MAX_SCRIPT_SIZE``); nesting and node counts keep
the recursive-descent parser and the interpreter's recursion far below
Python's stack; the step budget bounds CPU per delivery (one step per command,
test, and value x key comparison, plus one per 256 characters compared), the
variable caps bound memory (Pigeonhole's defaults: 4 KiB per variable, 255
variables).
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_SCRIPT_BYTES = 64 * 1024  # the default per-script limit (POSTERN_SIEVE_MAX_SCRIPT_SIZE may lower or raise it)
HARD_MAX_SCRIPT_BYTES = 1024 * 1024  # what the lexer ever reads, whatever the setting
MAX_NESTING = 32  # blocks inside blocks, tests inside tests
MAX_NODES = 4096  # commands + tests in one script
MAX_LIST_ITEMS = 1024  # strings in one string list
MAX_NUMBER = 2**63 - 1  # RFC 5228 §2.4.1: numbers are at least 31 bits; larger ones are an error
MAX_PATTERN = 1024  # characters of one :matches key after variable expansion (run time)


@dataclass(frozen=True)
class Limits:
    """Per-run caps (the interpreter's budget)."""

    steps: int = 200_000
    max_redirects: int = 4  # POSTERN_SIEVE_MAX_REDIRECTS (Pigeonhole's sieve_max_redirects)
    max_actions: int = 32  # actions in one run (fileinto, redirect, ...)
    max_variables: int = 255  # per script (RFC 5229 §4: implementations may limit)
    max_variable_size: int = 4096  # characters of one variable value
    max_string: int = 64 * 1024  # characters of a string after expansion
    body_bytes: int = 1024 * 1024  # POSTERN_SIEVE_BODY_MAX: bytes of a message read for the body test
    body_parts: int = 100  # MIME parts looked at by the body test
