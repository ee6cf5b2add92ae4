"""A report attachment's bytes -> the one document inside it, within caps on size and ratio.

In:   the attachment's bytes as received (gzip, zip, or the bare XML/JSON document) and
      :class:`Caps` (``POSTERN_REPORT_MAX_COMPRESSED``, ``POSTERN_REPORT_MAX_SIZE``,
      ``POSTERN_REPORT_MAX_RATIO``).
Out:  :func:`unpack` -> the document's bytes.
Fails: :class:`~postern.reports.errors.ReportRefused` for an attachment over the compressed cap,
      output that would pass the size cap or the ratio cap (a decompression bomb: both are
      checked while decompressing, chunk by chunk, so a bomb costs at most the cap in memory
      and the time to produce it, never the size it claims), a zip holding anything but one
      plain document (several files, encryption, a nested archive), or bytes that are no archive
      and no document. Nothing else is raised: zlib and zipfile errors become refusals.

Formats: DMARC aggregate reports are XML, gzip or zip (RFC 7489 §7.2.1.1); TLS-RPT reports are
gzip-compressed JSON (RFC 8460 §5.3; plain JSON is accepted too).
"""

from __future__ import annotations

import io
import zipfile
import zlib
from dataclasses import dataclass

from .errors import ReportRefused

CHUNK = 64 * 1024
RATIO_FLOOR = 1024 * 1024  # below this much output the ratio is not judged (tiny files compress absurdly well)
GZIP_MAGIC = b"\x1f\x8b"
ZIP_MAGIC = b"PK\x03\x04"


@dataclass(frozen=True)
class Caps:
    max_compressed: int = 4 * 1024 * 1024
    max_size: int = 32 * 1024 * 1024
    max_ratio: int = 100

    @classmethod
    def from_settings(cls, s) -> Caps:
        return cls(s.report_max_compressed, s.report_max_size, s.report_max_ratio)


class _Budget:
    """Counts output against the caps as it is produced."""

    def __init__(self, caps: Caps, compressed: int):
        self.caps = caps
        self.compressed = max(1, compressed)
        self.size = 0

    def take(self, n: int) -> None:
        self.size += n
        if self.size > self.caps.max_size:
            raise ReportRefused("too_large", f"decompresses to more than {self.caps.max_size} bytes")
        if self.size > RATIO_FLOOR and self.size > self.caps.max_ratio * self.compressed:
            raise ReportRefused("ratio", f"decompression ratio above {self.caps.max_ratio}:1 (a decompression bomb)")

    def room(self) -> int:
        return min(CHUNK, self.caps.max_size - self.size + 1)


def _gunzip(data: bytes, caps: Caps) -> bytes:
    budget = _Budget(caps, len(data))
    out = bytearray()
    rest = data
    while rest:
        d = zlib.decompressobj(16 + zlib.MAX_WBITS)  # gzip framing (RFC 1952); members one after another
        pending = rest
        try:
            while True:
                chunk = d.decompress(pending, budget.room())
                budget.take(len(chunk))
                out += chunk
                if d.eof:
                    break
                tail = d.unconsumed_tail
                if not chunk and (not tail or tail == pending):
                    break  # needs input there is none of: truncated (below)
                pending = tail
        except zlib.error as exc:
            raise ReportRefused("malformed", f"broken gzip data ({exc})") from None
        if not d.eof:
            raise ReportRefused("malformed", "truncated gzip data")
        rest = d.unused_data
        if rest and not rest.startswith(GZIP_MAGIC):
            break  # trailing bytes after the last member (some writers pad): ignored, as gzip(1) warns and does
    return bytes(out)


def _unzip(data: bytes, caps: Caps) -> bytes:
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
        members = [m for m in zf.infolist() if not m.is_dir()]
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError) as exc:
        raise ReportRefused("malformed", f"broken zip archive ({exc})") from None
    if len(members) != 1:
        raise ReportRefused("malformed", f"a zip report holds one file, this one {len(members)}")
    (m,) = members
    if m.flag_bits & 0x1:
        raise ReportRefused("malformed", "encrypted zip member")
    name = m.filename.lower()
    if name.endswith((".zip", ".gz", ".gzip", ".tgz", ".bz2", ".xz", ".7z")):
        raise ReportRefused("malformed", "a nested archive inside the zip")
    if m.file_size > caps.max_size:  # the declared size: refused before any work (the real one is counted below)
        raise ReportRefused("too_large", f"declares {m.file_size} bytes, more than {caps.max_size}")
    budget = _Budget(caps, len(data))
    out = bytearray()
    try:
        with zf.open(m) as fh:
            while True:
                chunk = fh.read(budget.room())
                if not chunk:
                    break
                budget.take(len(chunk))
                out += chunk
    except ReportRefused:
        raise
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError, RuntimeError, ValueError) as exc:
        raise ReportRefused("malformed", f"broken zip member ({exc.__class__.__name__})") from None
    return bytes(out)


def unpack(data: bytes, caps: Caps) -> bytes:
    """The document inside ``data`` (see the module docstring)."""
    if len(data) > caps.max_compressed:
        raise ReportRefused("too_large", f"attachment of {len(data)} bytes, more than {caps.max_compressed}")
    if data.startswith(GZIP_MAGIC):
        return _gunzip(data, caps)
    if data.startswith(ZIP_MAGIC):
        return _unzip(data, caps)
    head = data.lstrip()[:1]
    if head in (b"<", b"{"):
        if len(data) > caps.max_size:
            raise ReportRefused("too_large", f"more than {caps.max_size} bytes")
        return data
    raise ReportRefused("malformed", "neither gzip, zip, XML nor JSON")
