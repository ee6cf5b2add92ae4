"""The in-memory twin of the mail store: the same implementation over in-memory layers.

In:   nothing (or an item layer / blob layer to share with another instance,
      which is how tests simulate a second gateway task or a restarted process).
Out:  :class:`MemoryMailStore`: ``engine.LogStore`` over
      :class:`~postern.items.MemoryItems` and :class:`~postern.store.blobs.MemoryBlobs`,
      plus test helpers (``put_spool``, ``blob_count``).
Fails: the same domain errors as the DynamoDB store.

Used by unit and protocol tests (the contract suite runs against both) and by
the IMAP benchmark's in-memory mode.
"""

from __future__ import annotations

from ..items import MemoryItems
from .blobs import MemoryBlobs
from .engine import LogStore


class MemoryMailStore(LogStore):
    def __init__(self, items: MemoryItems | None = None, blobs: MemoryBlobs | None = None):
        super().__init__(items if items is not None else MemoryItems(), blobs if blobs is not None else MemoryBlobs())

    def put_spool(self, key: str, raw: bytes) -> None:
        """Test helper: what the gateway's S3 PUT does."""
        self.blobs.put(key, raw)

    def blob_count(self) -> int:
        """Mailbox blobs held (spool objects excluded)."""
        return sum(1 for k in self.blobs.keys() if k.startswith(self.message_prefix))
