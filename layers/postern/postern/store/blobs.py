"""Immutable message bytes: S3, and its in-memory twin.

In:   object keys chosen by the mail store (``msg/<email id>`` for mailbox blobs,
      the spool prefix for bytes not yet committed to a mailbox).
Out:  :class:`S3Blobs` and :class:`MemoryBlobs` with ``put``, ``copy`` (the
      store's "adopt": spool object -> mailbox blob, idempotent), ``read``
      (optionally a byte range), ``delete``, ``exists`` and ``list_keys`` (a
      key range, for the spool sweep).
Fails: a key that does not exist raises :class:`~postern.errors.BlobMissing` (one
      domain error for "the bytes are gone", from both twins); a transient S3
      fault is retried (``items.retrying``); what still fails raises
      :class:`~postern.errors.StoreUnavailable` with a generic text (S3's message
      is logged).
"""

from __future__ import annotations

import logging
import threading

from botocore.exceptions import BotoCoreError, ClientError

from ..errors import BlobMissing, StoreUnavailable
from ..items import retrying

log = logging.getLogger("postern.store")

_MISSING = {"NoSuchKey", "404", "NotFound"}


class S3Blobs:
    def __init__(self, client_factory, bucket: str):
        self._client_factory = client_factory
        self.bucket = bucket

    @property
    def _s3(self):
        return self._client_factory()

    def _call(self, op: str, fn, **kwargs):
        try:
            return retrying(fn, **kwargs)  # every call here is safe to repeat
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in _MISSING:
                raise BlobMissing() from None
            log.warning("blob %s failed: %s", op, exc)
            raise StoreUnavailable(f"blob {op} failed") from exc
        except BotoCoreError as exc:
            log.warning("blob %s failed: %s", op, exc.__class__.__name__)
            raise StoreUnavailable(f"blob {op} failed") from exc

    def put(self, key: str, data: bytes) -> None:
        self._call("write", self._s3.put_object, Bucket=self.bucket, Key=key, Body=data)

    def copy(self, src: str, dst: str) -> None:
        """Same source, same destination: repeating the copy is harmless (idempotent)."""
        self._call("copy", self._s3.copy_object, Bucket=self.bucket, Key=dst, CopySource={"Bucket": self.bucket, "Key": src})

    def read(self, key: str, start: int = 0, end: int | None = None) -> bytes:
        kwargs = {"Bucket": self.bucket, "Key": key}
        if start > 0 or end is not None:
            if end is not None and end <= start:
                return b""
            kwargs["Range"] = f"bytes={start}-{'' if end is None else end - 1}"  # RFC 9110 §14.1.2: inclusive
        try:
            return self._call("read", self._s3.get_object, **kwargs)["Body"].read()
        except StoreUnavailable as exc:
            cause = exc.__cause__
            if isinstance(cause, ClientError) and cause.response.get("Error", {}).get("Code") == "InvalidRange":
                return b""
            raise

    def delete(self, key: str) -> None:
        self._call("delete", self._s3.delete_object, Bucket=self.bucket, Key=key)

    def exists(self, key: str) -> bool:
        try:
            self._call("head", self._s3.head_object, Bucket=self.bucket, Key=key)
        except BlobMissing:
            return False
        return True

    def list_keys(self, prefix: str, start_after: str, stop_before: str):
        """Keys under ``prefix`` after ``start_after`` and before ``stop_before``, in key order."""
        token = None
        while True:
            kw = {"Bucket": self.bucket, "Prefix": prefix, "StartAfter": start_after}
            if token:
                kw["ContinuationToken"] = token
            page = self._call("list", self._s3.list_objects_v2, **kw)
            for o in page.get("Contents", []):
                if o["Key"] >= stop_before:
                    return
                yield o["Key"]
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                return


class MemoryBlobs:
    def __init__(self):
        self._data: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def put(self, key: str, data: bytes) -> None:
        with self._lock:
            self._data[key] = bytes(data)

    def copy(self, src: str, dst: str) -> None:
        with self._lock:
            if src not in self._data:
                raise BlobMissing()
            self._data[dst] = self._data[src]

    def read(self, key: str, start: int = 0, end: int | None = None) -> bytes:
        with self._lock:
            if key not in self._data:
                raise BlobMissing()
            return self._data[key][start:end]

    def delete(self, key: str) -> None:
        with self._lock:
            self._data.pop(key, None)

    def exists(self, key: str) -> bool:
        with self._lock:
            return key in self._data

    def list_keys(self, prefix: str, start_after: str, stop_before: str):
        with self._lock:
            found = sorted(k for k in self._data if k.startswith(prefix) and start_after < k < stop_before)
        yield from found

    def keys(self) -> set[str]:
        with self._lock:
            return set(self._data)
