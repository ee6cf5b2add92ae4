"""The Postern upload capability: presigned S3 POSTs for attachments past ``maxSizeUpload``.

Capability ``https://postern.dev/jmap/upload`` (session and account; offered when the account has
a presigner: the HTTPS function gives one, ``postern.uploads.Presigner``). Its account capability
object says ``maxSize`` (the SMTP size limit, ``POSTERN_MAX_MESSAGE_SIZE``: an attachment can never
be larger than the message) and ``expiresIn`` (seconds a form works, ``POSTERN_UPLOAD_URL_EXPIRES``).
RFC 8620 §6.1's upload URL stays honest at ``maxSizeUpload`` (4 MB: what the HTTP API -> Lambda
path carries, base64-encoded); bigger files go to S3 directly:

  ["Upload/create", {"accountId": A, "create": {"c1": {"type": "application/pdf", "size": 6291456}}}, "0"]
  -> ["Upload/create", {"accountId": A, "created": {"c1": {"blobId": "P...", "url": "https://...",
      "fields": {...}, "expires": UTCDate, "maxSize": N, "type": "application/pdf"}}, "notCreated": {}}, "0"]

The client then POSTs ``multipart/form-data`` to ``url``: every entry of ``fields`` as given, then
the file as the field ``file`` (S3 "Browser-Based Uploads Using POST"). S3 answers 204 and the
blobId names the bytes in Email/import, Email/parse, Email/set attachments (and so
EmailSubmission) like any upload; unused, it is deleted after a day (the ExpireUploads rule).

In:   ``create``: creation id -> ``{type, size?}`` (type: a media type, ``size``: optional, refused
      early past ``maxSize``).
Out:  ``created`` / ``notCreated`` (SetErrors ``invalidProperties``, ``tooLarge``).
Fails: ``invalidArguments`` / ``requestTooLarge`` as any /set; presigning makes no request.
"""

from __future__ import annotations

import datetime as _dt
import re

from . import args as A
from .session import UPLOAD  # noqa: F401 - the capability, named once (session.py)

_MEDIA_TYPE = re.compile(r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,63}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}")


def account_capability(presigner) -> dict:
    return {"maxSize": presigner.max_size, "expiresIn": presigner.expires}


def _one(presigner, obj) -> dict:
    from .errors import set_error

    if not isinstance(obj, dict) or set(obj) - {"type", "size"}:
        return set_error("invalidProperties", "an upload is {type, size}", properties=["type", "size"])
    ctype = obj.get("type")
    if not isinstance(ctype, str) or _MEDIA_TYPE.fullmatch(ctype) is None:
        return set_error("invalidProperties", "type must be a media type (type/subtype)", properties=["type"])
    size = obj.get("size")
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 0):
        return set_error("invalidProperties", "size must be a number of bytes", properties=["size"])
    if size is not None and size > presigner.max_size:
        return set_error("tooLarge", f"at most {presigner.max_size} bytes", maxSize=presigner.max_size)
    up = presigner(ctype.lower())
    expires = _dt.datetime.fromtimestamp(int(up.expires), _dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"blobId": up.blob_id, "url": up.url, "fields": up.fields, "expires": expires, "maxSize": up.max_size,
            "type": ctype.lower()}


def create(call, args: dict) -> dict:
    from .errors import MethodError

    A.known(args, {"accountId", "create"})
    presigner = call.account.presign_upload
    if presigner is None:
        raise MethodError("unknownMethod", "this account offers no presigned uploads")
    items = A.obj(args, "create") or {}
    A.set_limit(items, None, None)
    out = {"accountId": call.account.id, "created": {}, "notCreated": {}}
    for cid, obj in items.items():
        made = _one(presigner, obj)
        out["notCreated" if "type" in made and "blobId" not in made else "created"][cid] = made
    return out
