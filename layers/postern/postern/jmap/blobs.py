"""Blob ids of stored mail, and their bytes: a whole message or one of its MIME parts.

In:   a blobId as Email/get hands them out: ``B<hex>`` (the logical message,
      :attr:`~postern.store.base.MessageMeta.blob_id`) or ``B<hex>-<partId>``
      (a leaf part, decoded: ``mime``).
      ``Z<sha256>`` is a Sieve script's content (``sievescript.read_blob``).
      Any other id is asked of :attr:`Account.uploads` (the blobs the front's
      upload route stored for this account).
Out:  :func:`read` -> (bytes, the part's type and name) or None when the id
      names nothing this account holds (Email/import, Email/parse and Email/set
      create's attachments come here);
      :func:`source` -> where the download route finds the bytes
      (:class:`Source`): an S3 object holding exactly them (an upload; a message
      stored without a trace prefix), or a ``build`` that makes them (a message
      with its trace prefix, a decoded part: the route materialises those once,
      ``postern.presign.BlobUrls.derived``), or None.
Fails: the store's errors.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from . import mime

_BLOB = re.compile(r"B([0-9a-f]{1,64})(?:-(\d{1,4}))?")


def read(call, blob_id: str) -> tuple[bytes, str, str | None] | None:
    m = _BLOB.fullmatch(blob_id or "") if isinstance(blob_id, str) else None
    if m is None and isinstance(blob_id, str) and blob_id.startswith("Z"):  # a Sieve script's content (RFC 9661)
        from .sievescript import read_blob

        script = read_blob(call.account, blob_id)
        return None if script is None else (script, "application/sieve", None)
    if m is None:
        uploaded = call.account.uploads(blob_id) if call.account.uploads and isinstance(blob_id, str) else None
        return None if uploaded is None else (uploaded, "application/octet-stream", None)
    view = call.view()
    entry = view.entries(["E" + m.group(1)]).get("E" + m.group(1))
    if entry is None:
        return None
    raw = call.account.store.read(view.full(entry))
    if m.group(2) is None:
        return raw, "message/rfc822", None
    parsed = mime.parse(raw, entry.first.blob_id)
    part = parsed.leaves.get(m.group(2))
    if part is None:
        return None
    return mime.part_bytes(parsed, m.group(2)) or b"", part.type, part.name


@dataclass(frozen=True)
class Source:
    type: str
    name: str | None
    key: str = ""  # an S3 object holding exactly the blob's bytes
    build: Callable[[], bytes] | None = None  # else: makes them (read and parse once, when needed)


def source(call, blob_id: str) -> Source | None:
    m = _BLOB.fullmatch(blob_id or "") if isinstance(blob_id, str) else None
    if m is None and isinstance(blob_id, str) and blob_id.startswith("Z"):  # a Sieve script: built once (immutable id)
        from .sievescript import read_blob

        script = read_blob(call.account, blob_id)
        return None if script is None else Source("application/sieve", None, build=lambda: script)
    if m is None:
        key = call.account.upload_key(blob_id) if call.account.upload_key and isinstance(blob_id, str) else None
        return None if key is None else Source("application/octet-stream", None, key=key)
    view = call.view()
    entry = view.entries(["E" + m.group(1)]).get("E" + m.group(1))
    if entry is None:
        return None
    meta = view.full(entry)
    store = call.account.store
    if m.group(2) is None:
        if not meta.prefix and meta.blob_key:
            return Source("message/rfc822", None, key=meta.blob_key)  # S3 holds the message as it is
        return Source("message/rfc822", None, build=lambda: store.read(meta))
    parsed = mime.parse(store.read(meta), entry.first.blob_id)
    part = parsed.leaves.get(m.group(2))
    if part is None:
        return None
    return Source(part.type, part.name, build=lambda: mime.part_bytes(parsed, m.group(2)) or b"")
