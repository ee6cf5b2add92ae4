"""Presigned S3 requests for JMAP blobs: downloads (GET) and large uploads (POST), and download objects.

In:   Settings (bucket, ``presign_expires``, ``upload_url_expires``) and Clients (the calling
      role's credentials; ``s3_presign`` signs with SigV4 in every region).
Out:  :class:`BlobUrls`:
      ``download_url(key, name, type)`` -> a presigned GET of that object, valid
      ``POSTERN_PRESIGN_EXPIRES`` seconds, whose response S3 gives the Content-Type and the
      ``Content-Disposition: attachment; filename*=UTF-8''...`` (RFC 6266) the JMAP download URL
      asked for (RFC 8620 §6.2: ``name`` and ``type``);
      ``upload_form(key, max_size, type)`` -> (url, form fields, expiry): a presigned POST whose
      policy allows exactly that key, 1 byte to ``max_size`` (``content-length-range``), that
      Content-Type, until ``POSTERN_UPLOAD_URL_EXPIRES`` seconds from now (S3 enforces all of it);
      ``derived(user, blob_id, build)`` -> the key of a download object under ``dl/`` holding bytes
      S3 does not have as one object (a stored message with its trace prefix, a decoded MIME part):
      made once by ``build()`` and PUT, reused while it exists (blobs are immutable, so the id
      names the bytes), deleted by the bucket's ExpireDownloads lifecycle rule after a day;
      ``exists(key)``.
Fails: StoreUnavailable for an S3 fault (HEAD, PUT); presigning makes no request and cannot fail
      on the network.

A URL signed with temporary credentials (a Lambda role's) stops working when they expire, whatever
its own expiry; the expiries here are minutes, shorter than a Lambda's credentials live.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from urllib.parse import quote

from botocore.exceptions import BotoCoreError, ClientError

from .errors import StoreUnavailable
from .uploads import account_prefix

DOWNLOAD_PREFIX = "dl/"


def content_disposition(name: str) -> str:
    """``attachment`` with the name as an RFC 8187 ext-value (any character, no header injection)."""
    return f"attachment; filename*=UTF-8''{quote(name[:200] or 'blob', safe='')}"


class BlobUrls:
    def __init__(self, settings, clients):
        self.settings = settings
        self.bucket = settings.bucket
        self.clients = clients

    def download_url(self, key: str, name: str, content_type: str) -> str:
        return self.clients.s3_presign.generate_presigned_url(
            "get_object",
            Params={"Bucket": self.bucket, "Key": key, "ResponseContentType": content_type,
                    "ResponseContentDisposition": content_disposition(name),
                    "ResponseCacheControl": "private, max-age=300"},
            ExpiresIn=self.settings.presign_expires,
        )

    def upload_form(self, key: str, max_size: int, content_type: str) -> tuple[str, dict[str, str], float]:
        expires = self.settings.upload_url_expires
        post = self.clients.s3_presign.generate_presigned_post(
            Bucket=self.bucket, Key=key,
            Fields={"Content-Type": content_type},
            Conditions=[{"Content-Type": content_type}, ["content-length-range", 1, max_size]],
            ExpiresIn=expires,
        )
        return post["url"], dict(post["fields"]), time.time() + expires

    def exists(self, key: str) -> bool:
        try:
            self.clients.s3.head_object(Bucket=self.bucket, Key=key)
            return True
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise StoreUnavailable(f"blob not readable: {exc.__class__.__name__}") from exc
        except BotoCoreError as exc:
            raise StoreUnavailable(f"blob not readable: {exc.__class__.__name__}") from exc

    def derived(self, user: str, blob_id: str, build: Callable[[], bytes]) -> str:
        key = f"{DOWNLOAD_PREFIX}{account_prefix(user)}/{blob_id}"
        if self.exists(key):
            return key
        try:
            self.clients.s3.put_object(Bucket=self.bucket, Key=key, Body=build())
        except (ClientError, BotoCoreError) as exc:
            raise StoreUnavailable(f"download object not stored: {exc.__class__.__name__}") from exc
        return key
