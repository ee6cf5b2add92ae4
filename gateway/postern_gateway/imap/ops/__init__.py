"""IMAP command families, one module each (Stalwart ``crates/imap/src/op``).

Every op is an :data:`Op`: ``async def op(s: Session, cmd: Command) -> OpResult``,
where the result is the text of the tagged OK, or ``(status, code, text)``, or
None when the op already sent its tagged reply (STARTTLS). Refusals are raised
as errors that carry their response (``errors.py``, ``postern.errors``).
State changes go through the session's methods (``Session.logged_in``,
``enter_selected``, ``deselect``, ``logout``), never by assigning ``s.state``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Union

if TYPE_CHECKING:
    from ..parser import Command
    from ..session import Session

OpResult = Union[str, tuple[str, "str | None", str], None]
Op = Callable[["Session", "Command"], Awaitable[OpResult]]
