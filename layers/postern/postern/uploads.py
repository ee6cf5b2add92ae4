"""Blobs uploaded to the JMAP upload URL (RFC 8620 §6.1), kept in the mail bucket for a day.

In:   the account's canonical address and the bytes a client POSTed (the HTTPS function's upload
      route has checked ``maxSizeUpload``); Settings (bucket) and Clients (S3).
Out:  :class:`Uploads`: ``put(user, data)`` -> the blobId (``U`` + SHA-256 of the bytes: the same
      upload twice is one object); ``get(user, blob_id)`` -> the bytes or None. Objects live at
      ``upload/<SHA-256 of the user>/<blobId>``: one account never reads another's upload, and the
      bucket's ExpireUploads lifecycle rule deletes them after a day (§6.1 lets a server drop
      unreferenced uploads after an hour; Email/import and attachments copy what they use).
Fails: an S3 fault raises StoreUnavailable (the route answers 503); a malformed id is just absent.
"""

from __future__ import annotations

import hashlib
import re

from botocore.exceptions import BotoCoreError, ClientError

from .errors import StoreUnavailable

PREFIX = "upload/"
_ID = re.compile(r"^U[0-9a-f]{64}$")


class Uploads:
    def __init__(self, settings, clients):
        self.bucket = settings.bucket
        self.clients = clients

    @staticmethod
    def _key(user: str, blob_id: str) -> str:
        return f"{PREFIX}{hashlib.sha256(user.lower().encode()).hexdigest()[:32]}/{blob_id}"

    def put(self, user: str, data: bytes) -> str:
        blob_id = "U" + hashlib.sha256(data).hexdigest()
        try:
            self.clients.s3.put_object(Bucket=self.bucket, Key=self._key(user, blob_id), Body=data)
        except (ClientError, BotoCoreError) as exc:
            raise StoreUnavailable(f"upload not stored: {exc.__class__.__name__}") from exc
        return blob_id

    def get(self, user: str, blob_id: str) -> bytes | None:
        if not _ID.match(blob_id or ""):
            return None
        try:
            return self.clients.s3.get_object(Bucket=self.bucket, Key=self._key(user, blob_id))["Body"].read()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise StoreUnavailable(f"upload not readable: {exc.__class__.__name__}") from exc
        except BotoCoreError as exc:
            raise StoreUnavailable(f"upload not readable: {exc.__class__.__name__}") from exc
