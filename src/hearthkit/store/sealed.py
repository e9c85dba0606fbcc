"""Sealed objects: AES-GCM ciphertext addressed by the SHA-256 of the plaintext, under STORE/sealed/."""

from __future__ import annotations

from pathlib import Path

from hearthkit.store import crypto
from hearthkit.store.cas import ContentStore, IntegrityError, atomic_write, sha256_bytes
from hearthkit.store.keys import KeyRing


class SealedStore:
    """Encrypted objects of restricted collections; plaintext exists only in memory."""

    def __init__(self, root: Path, keys: KeyRing):
        self.root = Path(root)
        self.keys = keys
        self._addr = ContentStore(self.root)  # same ab/cdef… layout and hash validation
        self._ciphers: dict[bytes, crypto.AESGCM] = {}  # data key id -> cipher, in memory only

    def path(self, digest: str) -> Path:
        return self._addr.path(digest)

    def fspath(self, digest: str) -> str:
        return self._addr.fspath(digest)

    def has(self, digest: str) -> bool:
        return self._addr.has(digest)

    def put(self, data: bytes, collection: str, community: str, digest: str | None = None) -> str:
        """Seal DATA with COLLECTION's data key; the address stays the plaintext's SHA-256."""
        digest = digest or sha256_bytes(data)
        dest = self.path(digest)
        if not dest.is_file():
            kid, key = self.keys.data_key_for(collection, community)
            atomic_write(dest, crypto.seal(key, kid, digest, data), mode=0o600)
        return digest

    def delete(self, digest: str) -> bool:
        """Remove sealed object DIGEST; True if it existed."""
        return self._addr.delete(digest)

    def key_id(self, digest: str) -> bytes:
        """The data key id object DIGEST is sealed with (reads the header only)."""
        with self.path(digest).open("rb") as f:
            return crypto.object_key_id(f.read(crypto.HEADER_LEN + crypto.TAG_LEN))

    def get(self, digest: str, verify: bool = True) -> bytes:
        """Decrypt object DIGEST in memory; with VERIFY, fail unless the plaintext hashes to DIGEST."""
        try:
            blob = self.path(digest).read_bytes()
        except FileNotFoundError:
            raise IntegrityError(f"sealed object {digest[:12]}… is missing from {self.root}") from None
        return self.open_blob(digest, blob, verify)

    def open_blob(self, digest: str, blob: bytes, verify: bool = True) -> bytes:
        """Decrypt BLOB, the sealed object stored at DIGEST; with VERIFY, check the plaintext's hash."""
        kid = crypto.object_key_id(blob)
        cipher = self._ciphers.get(kid)
        if cipher is None:
            cipher = self._ciphers[kid] = crypto.AESGCM(self.keys.data_key(kid))
        data = crypto.unseal(cipher, digest, blob)
        if verify and sha256_bytes(data) != digest:
            raise IntegrityError(f"sealed object {digest[:12]}… decrypts to bytes that do not match its hash")
        return data

    def reseal(self, digest: str, collection: str, community: str) -> bool:
        """Re-encrypt DIGEST with COLLECTION's active data key if it uses another; True if rewritten."""
        kid, key = self.keys.data_key_for(collection, community)
        if self.key_id(digest) == kid:
            return False
        data = self.get(digest)
        atomic_write(self.path(digest), crypto.seal(key, kid, digest, data), mode=0o600)
        return True
