"""The workspace's store as the rest of hearthkit sees it: plaintext objects plus sealed ones."""

from __future__ import annotations

from pathlib import Path

from hearthkit.store.cas import ContentStore, read_file, sha256_bytes
from hearthkit.store.keys import KeyRing
from hearthkit.store.sealed import SealedStore


class Store:
    """One address space (plaintext SHA-256) over STORE/ab/… (open) and STORE/sealed/ab/… (encrypted)."""

    def __init__(self, store_dir: Path, key_dir: Path):
        self.root = Path(store_dir)
        self.plain = ContentStore(self.root)
        self.keys = KeyRing(key_dir, self.root)
        self.sealed = SealedStore(self.root / "sealed", self.keys)

    def has(self, digest: str) -> bool:
        return self.plain.has(digest) or self.sealed.has(digest)

    def put(self, data: bytes, seal_for: tuple[str, str] | None = None, sync: bool = True) -> str:
        """Store DATA; SEAL_FOR=(collection, community) encrypts it with that collection's data key."""
        if seal_for is None:
            digest = sha256_bytes(data)
            # A recording some restricted collection holds stays sealed, whoever else imports it.
            return digest if self.sealed.has(digest) else self.plain.put(data, sync=sync)
        return self.sealed.put(data, *seal_for, digest=sha256_bytes(data))

    def get(self, digest: str, verify: bool = True) -> bytes:
        """Plaintext of DIGEST, decrypted in memory when sealed; verified against DIGEST."""
        # Open rather than stat first: one system call per object on the hot path of training.
        try:
            blob = read_file(self.sealed.fspath(digest))
        except FileNotFoundError:
            return self.plain.get(digest, verify)
        return self.sealed.open_blob(digest, blob, verify)

    def is_sealed(self, digest: str) -> bool:
        return self.sealed.has(digest)

    def delete(self, digest: str) -> bool:
        """Erase DIGEST, clear and sealed copies alike (e.g. on withdrawal); True if anything was there."""
        return bool(self.plain.delete(digest) + self.sealed.delete(digest))


def as_store(store) -> Store:
    """STORE as a Store: a plain ContentStore gets the key folder of the workspace its folder lies in."""
    if isinstance(store, Store):
        return store
    from hearthkit.errors import HearthError
    from hearthkit.workspace import open_workspace

    root = Path(store.root)
    try:
        keys = open_workspace(root.parent).keys_dir
    except HearthError:
        keys = root.parent.parent / f"{root.parent.name}.keys"
    return Store(root, keys)


def workspace_store(ws) -> Store:
    """The store of workspace WS with its key folder."""
    return Store(ws.store_dir, ws.keys_dir)


def store_from_spec(spec: dict) -> Store:
    """The store a planned run reads from (run.json's `store` and `keys`; older plans: the default key folder)."""
    store_dir = Path(spec["store"])
    keys = spec.get("keys") or store_dir.parent.parent / f"{store_dir.parent.name}.keys"
    return Store(store_dir, Path(keys))
