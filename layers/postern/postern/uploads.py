"""Blobs uploaded to an account (RFC 8620 §6.1), kept in the mail bucket for a day.

In:   the account's canonical address and either the bytes a client POSTed to the upload URL
      (the HTTPS function's upload route has checked ``maxSizeUpload``) or a request for a presigned
      S3 POST (the Postern upload capability, ``postern.jmap.upload``); Settings (bucket, the SMTP
      size limit, ``upload_url_expires``) and Clients (S3).
Out:  :class:`Uploads`:
      ``put(user, data)`` -> the blobId (``U`` + SHA-256 of the bytes: the same upload twice is one
      object);
      ``presign(user, type)`` -> :class:`PresignedUpload`: a fresh blobId (``P`` + 128 random bits)
      and the presigned POST a client sends the file with, straight to S3 (``postern.presign``:
      exactly that key, 1 byte up to the SMTP size limit, the declared Content-Type, a short expiry);
      ``get(user, blob_id)`` -> the bytes or None; ``key_of(user, blob_id)`` -> the S3 key when the
      object exists (a presigned POST not made yet is absent).
      Objects live at ``upload/<SHA-256 of the user>/<blobId>``: one account never reads another's
      upload, and the bucket's ExpireUploads lifecycle rule deletes them after a day whether or not
      they were used (RFC 8620 §6.1 lets a server drop unreferenced uploads after an hour;
      Email/import and Email/set attachments copy what they use into the message).
Fails: an S3 fault raises StoreUnavailable (the route answers 503); a malformed id is just absent.

A ``P`` blob is written by the client, not by us: until its POST policy expires (minutes) the
client could send it again with other bytes. Only its own not-yet-used blob changes (the key is
the account's, the policy names it exactly), so RFC 8620 §6's immutability holds for everything
else; a message built from it is immutable like any other.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass

from botocore.exceptions import BotoCoreError, ClientError

from .errors import StoreUnavailable

PREFIX = "upload/"
_ID = re.compile(r"^(U[0-9a-f]{64}|P[0-9a-f]{32})$")


def account_prefix(user: str) -> str:
    """The account's path element in the bucket (uploads and derived download objects)."""
    return hashlib.sha256(user.lower().encode()).hexdigest()[:32]


@dataclass(frozen=True)
class PresignedUpload:
    blob_id: str
    url: str  # where the client POSTs the multipart/form-data
    fields: dict[str, str]  # form fields to send before the file, exactly as given
    expires: float  # epoch seconds: the POST is refused after this
    max_size: int  # bytes (the policy's content-length-range)


class Uploads:
    def __init__(self, settings, clients):
        self.settings = settings
        self.bucket = settings.bucket
        self.clients = clients

    @staticmethod
    def _key(user: str, blob_id: str) -> str:
        return f"{PREFIX}{account_prefix(user)}/{blob_id}"

    @staticmethod
    def valid(blob_id) -> bool:
        return isinstance(blob_id, str) and _ID.match(blob_id) is not None

    def put(self, user: str, data: bytes) -> str:
        blob_id = "U" + hashlib.sha256(data).hexdigest()
        try:
            self.clients.s3.put_object(Bucket=self.bucket, Key=self._key(user, blob_id), Body=data)
        except (ClientError, BotoCoreError) as exc:
            raise StoreUnavailable(f"upload not stored: {exc.__class__.__name__}") from exc
        return blob_id

    def presign(self, user: str, content_type: str) -> PresignedUpload:
        from .presign import BlobUrls

        blob_id = "P" + secrets.token_hex(16)
        max_size = self.settings.max_message_size  # an attachment can never be larger than the message
        url, fields, expires = BlobUrls(self.settings, self.clients).upload_form(
            self._key(user, blob_id), max_size, content_type)
        return PresignedUpload(blob_id, url, fields, expires, max_size)

    def get(self, user: str, blob_id: str) -> bytes | None:
        if not self.valid(blob_id):
            return None
        try:
            return self.clients.s3.get_object(Bucket=self.bucket, Key=self._key(user, blob_id))["Body"].read()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise StoreUnavailable(f"upload not readable: {exc.__class__.__name__}") from exc
        except BotoCoreError as exc:
            raise StoreUnavailable(f"upload not readable: {exc.__class__.__name__}") from exc

    def key_of(self, user: str, blob_id: str) -> str | None:
        """The upload's S3 key when it exists (a download redirects to it)."""
        if not self.valid(blob_id):
            return None
        from .presign import BlobUrls

        key = self._key(user, blob_id)
        return key if BlobUrls(self.settings, self.clients).exists(key) else None


class Presigner:
    """One account's presigned uploads, as the JMAP layer sees them: ``presigner(type)`` ->
    :class:`PresignedUpload`, ``max_size`` and ``expires`` (the account capability's values)."""

    def __init__(self, uploads: Uploads, user: str):
        self.uploads = uploads
        self.user = user

    @property
    def max_size(self) -> int:
        return self.uploads.settings.max_message_size

    @property
    def expires(self) -> int:
        return self.uploads.settings.upload_url_expires

    def __call__(self, content_type: str) -> PresignedUpload:
        return self.uploads.presign(self.user, content_type)
