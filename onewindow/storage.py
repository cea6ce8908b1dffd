"""Stored files: content-addressed (SHA-256), written once, behind a small interface.

`DiskStore` keeps them under the data directory; an S3-compatible store can replace it by
implementing `BlobStore`. A file is written to disk before the row that names it commits: a crash
in between leaves an unreferenced file (harmless, the same content reuses it), never a row naming
a missing file.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import tempfile
from pathlib import Path
from typing import Protocol

# The signatures we recognise: the first bytes of a file are what it is, whatever its header says.
_SIGNATURES: tuple[tuple[bytes, int, str], ...] = (
    (b"\xff\xd8\xff", 0, "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n", 0, "image/png"),
    (b"%PDF-", 0, "application/pdf"),
)
_HEIF_BRANDS = frozenset({b"heic", b"heix", b"heim", b"heis", b"mif1", b"msf1"})


def sniff_media_type(content: bytes) -> str | None:
    """The media type the content's own signature says, or None when we do not recognise it."""
    for magic, offset, media_type in _SIGNATURES:
        if content[offset : offset + len(magic)] == magic:
            return media_type
    if content[:4] == b"RIFF" and content[8:12] == b"WEBP":
        return "image/webp"
    if content[4:8] == b"ftyp" and content[8:12] in _HEIF_BRANDS:
        return "image/heic"
    return None


def digest(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


class BlobStore(Protocol):
    async def put(self, sha256: str, content: bytes) -> None:
        """Store `content` under its digest; storing the same content again is a no-op."""
        ...

    async def get(self, sha256: str) -> bytes | None: ...


class DiskStore:
    """Files under `root/ab/cd/<sha256>`, written to a temporary file, flushed and renamed."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, sha256: str) -> Path:
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise ValueError("not a SHA-256 hex digest")
        return self.root / sha256[:2] / sha256[2:4] / sha256

    async def put(self, sha256: str, content: bytes) -> None:
        await asyncio.to_thread(self._put, sha256, content)

    def _put(self, sha256: str, content: bytes) -> None:
        target = self.path(sha256)
        if target.exists():
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=target.parent, prefix=".incoming-")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(content)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise

    async def get(self, sha256: str) -> bytes | None:
        target = self.path(sha256)
        try:
            return await asyncio.to_thread(target.read_bytes)
        except FileNotFoundError:
            return None
