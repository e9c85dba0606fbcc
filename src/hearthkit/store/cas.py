"""A content-addressed store: bytes live under their SHA-256, written atomically, verified on read."""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path

from hearthkit.errors import HearthError


def sha256_bytes(data: bytes) -> str:
    """Hex SHA-256 of DATA."""
    return hashlib.sha256(data).hexdigest()


class IntegrityError(HearthError):
    """Stored bytes no longer match their content hash."""


TMP_PREFIX = ".tmp-"
_DIGEST = re.compile(r"[0-9a-f]{64}")


def atomic_write(dest: Path, data: bytes, mode: int = 0o644, sync: bool = True) -> None:
    """Write DATA to DEST via a temp file in the same folder, fsync, rename: a crash never leaves half a file."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    # The writer's pid is in the temp name, so `sweep_partial` can tell a dead writer's leftovers from live ones.
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f"{TMP_PREFIX}{os.getpid()}-")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            if sync:  # bulk importers pass False and call os.sync() once before the catalog commit
                os.fsync(f.fileno())
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_file(path: Path | str) -> bytes:
    """The whole file at PATH with the fewest system calls (the loader's hot path); FileNotFoundError if absent."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        size = os.fstat(fd).st_size
        data = os.read(fd, size)
        if len(data) == size:  # store objects never change after their atomic rename
            return data
        chunks = [data]
        while chunks[-1]:  # a short read: keep reading to the end
            chunks.append(os.read(fd, 1 << 20))
        return b"".join(chunks)
    finally:
        os.close(fd)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_partial(root: Path) -> int:
    """Remove temp files left under ROOT by writers that died (e.g. `kill -9` mid-import); return how many."""
    n = 0
    for p in Path(root).rglob(f"{TMP_PREFIX}*"):
        pid = p.name[len(TMP_PREFIX):].split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            p.unlink(missing_ok=True)
            n += 1
    return n


class ContentStore:
    """Objects addressed by the SHA-256 of their content, in ROOT/ab/cdef…"""

    def __init__(self, root: Path):
        self.root = Path(root)
        self._root = str(self.root)

    def path(self, digest: str) -> Path:
        """Where the object DIGEST lives (it may not exist)."""
        if not _DIGEST.fullmatch(digest):
            raise HearthError(f"not a content hash: {digest!r}")
        return self.root / digest[:2] / digest[2:]

    def fspath(self, digest: str) -> str:
        """`path` as a string: the loader's hot path skips building a Path object per read."""
        if not _DIGEST.fullmatch(digest):
            raise HearthError(f"not a content hash: {digest!r}")
        return f"{self._root}/{digest[:2]}/{digest[2:]}"

    def has(self, digest: str) -> bool:
        return self.path(digest).is_file()

    def put(self, data: bytes, sync: bool = True) -> str:
        """Store DATA, return its hash; the same content is stored once.

        SYNC=False skips the per-object fsync for bulk imports, which must call `os.sync()` before the
        catalog refers to the objects (one flush instead of one per object)."""
        digest = sha256_bytes(data)
        dest = self.path(digest)
        if not dest.is_file():
            atomic_write(dest, data, sync=sync)
        return digest

    def get(self, digest: str, verify: bool = True) -> bytes:
        """Read object DIGEST; with VERIFY, fail if its bytes do not hash to DIGEST."""
        try:
            data = read_file(self.fspath(digest))
        except FileNotFoundError:
            raise IntegrityError(f"store object {digest[:12]}… is missing from {self.root}") from None
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
