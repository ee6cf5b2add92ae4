"""The mail store on DynamoDB (index, change log) and S3 (immutable message bytes).

In:   settings (mail table, bucket, spool and message prefixes) and clients.
Out:  :class:`DynamoMailStore`: the one store implementation (``engine.LogStore``)
      over :class:`~postern.items.DynamoItems` and :class:`~postern.store.blobs.S3Blobs`.
Fails: as ``engine``: domain errors, StoreUnavailable for backend faults (their
      AWS text is logged, never shown to a client), BlobMissing for lost bytes.
"""

from __future__ import annotations

from ..aws import Clients, get_clients
from ..config import Settings, get_settings
from ..items import DynamoItems
from .blobs import S3Blobs
from .engine import LogStore


class DynamoMailStore(LogStore):
    def __init__(self, settings: Settings | None = None, clients: Clients | None = None):
        self.settings = settings or get_settings()
        self.clients = clients or get_clients()
        self.table = self.settings.mail_table
        self.bucket = self.settings.bucket
        super().__init__(
            DynamoItems(lambda: self.clients.dynamodb, self.table, label="mail store"),
            S3Blobs(lambda: self.clients.s3, self.bucket),
            spool_prefix=self.settings.spool_prefix,
            message_prefix=self.settings.message_prefix,
            spool_days=self.settings.spool_retention_days,
        )
