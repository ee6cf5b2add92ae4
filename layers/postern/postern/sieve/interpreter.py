"""The interpreter: a compiled script + a delivery's context -> actions. A pure function.

In:   a :class:`~.program.Program`, a :class:`~.message.Context` (envelope,
      header view, body loader, clock, mailbox lookup), the
      :class:`~.actions.Result` the actions go into (shared by the scripts of
      one delivery), which script this is (``origin``) and the :class:`~.limits.Limits`.
Out:  :func:`run` -> None; the actions are in the result. Nothing is sent or
      stored here: the delivery code carries the result out.
Fails: :class:`~.errors.SieveRuntimeError` (budget, limits, conflicting
      actions): the caller drops this script's actions and keeps the message
      (RFC 5228 §2.10.6). ``stop`` is not an error.
"""

from __future__ import annotations

from . import extensions
from .actions import Result
from .compiler import Compiler
from .errors import SieveSyntaxError
from .extensions.imap4flags import split, valid
from .lexer import decode
from .limits import MAX_SCRIPT_BYTES, Limits
from .message import Context
from .parser import parse
from .program import Program, Runtime, Stop


def compile_script(source: bytes | str, max_size: int = MAX_SCRIPT_BYTES) -> Program:
    """Parse and validate a script (upload time). SieveSyntaxError with line:column on any problem."""
    if isinstance(source, bytes) and len(source) > max_size:
        raise SieveSyntaxError(f"script too large ({len(source)} bytes, at most {max_size})")
    text = decode(source)
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > max_size:
        raise SieveSyntaxError(f"script too large ({size} bytes, at most {max_size})")
    return Compiler(extensions).program(parse(text), size)


def run(program: Program, ctx: Context, result: Result, origin: str, limits: Limits | None = None) -> Runtime:
    """Run ``program`` against ``ctx``, adding its actions to ``result``; returns the finished run."""
    rt = Runtime(ctx, result, origin, limits or result.limits, requires=program.requires)
    try:
        rt.run_block(program.commands)
    except Stop:
        rt.stopped = True
    if "imap4flags" in program.requires:
        result.keep_flags = valid(split([rt.internal_flags]))  # RFC 5232 §5: the implicit keep's flags
    return rt
