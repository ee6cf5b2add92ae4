"""IMAP command families, one module each (Stalwart ``crates/imap/src/op``).

Every op is ``async def op(s: Session, cmd: Command) -> str | tuple | None``:
the text of the tagged OK, or ``(status, code, text)``, or None when the op
already sent its tagged reply (STARTTLS). Refusals are raised as errors that
carry their response (``errors.py``, ``postern.errors``).
"""
