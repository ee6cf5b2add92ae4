"""How the webmail's built files are served: each file's Content-Type and Cache-Control.

In:   a file's path relative to ``webmail/dist`` (``index.html``, ``assets/app-3f2a9c1b0d4e.js``).
Out:  :func:`content_type` (by extension; unknown ones ``application/octet-stream``, which no
      browser runs as a script or a style sheet: nosniff is on), :func:`cache_control` (a file
      whose name carries its content hash, ``name-<hex>.ext``, is ``public, max-age=31536000,
      immutable``: a new build gives it a new name; everything else, index.html first, ``no-cache``,
      revalidated on every load, so a deploy shows at once), :func:`publishable` (dot-files and
      directories are never uploaded).
      `make deploy` (tools/deploy.py) stores both headers on the S3 objects, which CloudFront then
      serves; the local front (postern_local.httpfront) sends the same: one rule for both.
Fails: nothing (pure functions of the path).
"""

from __future__ import annotations

import posixpath
import re

IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"
DEFAULT_TYPE = "application/octet-stream"

# Explicit, not mimetypes: the host's /etc/mime.types must not decide what a browser runs.
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",  # RFC 9239
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".map": "application/json",
    ".webmanifest": "application/manifest+json",
    ".txt": "text/plain; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
    ".avif": "image/avif",
    ".ico": "image/vnd.microsoft.icon",
    ".woff2": "font/woff2",
    ".woff": "font/woff",
    ".wasm": "application/wasm",
}

# app-3f2a9c1b0d4e.js, chunk.8c1d2e3f.css: at least 8 hex digits before the last extension
_HASHED = re.compile(r"[-.][0-9a-f]{8,}\.[A-Za-z0-9]+$")


def content_type(path: str) -> str:
    ext = posixpath.splitext(path)[1].lower()
    return CONTENT_TYPES.get(ext, DEFAULT_TYPE)


def is_hashed(path: str) -> bool:
    return bool(_HASHED.search(posixpath.basename(path)))


def cache_control(path: str) -> str:
    return IMMUTABLE if is_hashed(path) else REVALIDATE


def publishable(path: str) -> bool:
    """False for anything under a dot-directory or named with a leading dot (.DS_Store, .gitkeep)."""
    return not any(part.startswith(".") for part in path.split("/"))
