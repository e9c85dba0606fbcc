"""A content-addressed store: bytes live under their SHA-256, written atomically, verified on read."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from hearthkit.errors import HearthError


def sha256_bytes(data: bytes) -> str:
    """Hex SHA-256 of DATA."""
    return hashlib.sha256(data).hexdigest()


class IntegrityError(HearthError):
    """Stored bytes no longer match their content hash."""


class ContentStore:
    """Objects addressed by the SHA-256 of their content, in ROOT/ab/cdef…"""

    def __init__(self, root: Path):
        self.root = Path(root)

    def path(self, digest: str) -> Path:
        """Where the object DIGEST lives (it may not exist)."""
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise HearthError(f"not a content hash: {digest!r}")
        return self.root / digest[:2] / digest[2:]

    def has(self, digest: str) -> bool:
        return self.path(digest).is_file()

    def put(self, data: bytes, sync: bool = True) -> str:
        """Store DATA, return its hash; the same content is stored once.

        SYNC=False skips the per-object fsync for bulk imports, which must call `os.sync()` before the
        catalog refers to the objects (one flush instead of one per object)."""
        digest = sha256_bytes(data)
        dest = self.path(digest)
        if dest.is_file():
            return digest
        dest.parent.mkdir(parents=True, exist_ok=True)
        # Write to a temp file in the same folder, fsync, rename: a crash never leaves half an object.
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                if sync:
                    os.fsync(f.fileno())
            os.replace(tmp, dest)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return digest

    def get(self, digest: str, verify: bool = True) -> bytes:
        """Read object DIGEST; with VERIFY, fail if its bytes do not hash to DIGEST."""
        p = self.path(digest)
        if not p.is_file():
            raise IntegrityError(f"store object {digest[:12]}… is missing from {self.root}")
        data = p.read_bytes()
        if verify and sha256_bytes(data) != digest:
            raise IntegrityError(f"store object {digest[:12]}… does not match its hash (corrupted or tampered)")
        return data

    def delete(self, digest: str) -> bool:
        """Remove object DIGEST; True if it existed."""
        p = self.path(digest)
        if p.is_file():
            p.unlink()
            return True
        return False
