"""The governed loader: reads only manifest items, decrypts sealed ones in memory, verifies each hash, logs reads."""

from __future__ import annotations

import json
import os
from pathlib import Path

from hearthkit.store.vault import Store


class GovernedReader:
    """Reads item bytes for a run: only digests in its manifest, hash-verified, logged per rank.

    Sealed (encrypted) objects are decrypted in memory by the store; plaintext is never written to disk, and
    the SHA-256 of the decrypted bytes must equal the manifest's content hash.
    """

    def __init__(self, store: Store, entries: list[dict], access_log: Path | None = None):
        self.store = store
        self.allowed = {e["content_hash"]: e for e in entries}
        self.access_log = access_log
        self._log = None  # opened on first read; line-buffered so a crash loses no recorded read

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_log": None}  # data-loader workers open their own handle

    def read(self, digest: str) -> bytes:
        """Bytes of item DIGEST; refuses anything the manifest does not include."""
        entry = self.allowed.get(digest)
        if entry is None:
            raise PermissionError(f"item {digest[:12]}… is not in this run's manifest; the loader will not read it")
        data = self.store.get(digest, verify=True)
        if self.access_log is not None:
            if self._log is None:
                self.access_log.parent.mkdir(parents=True, exist_ok=True)
                self._log = self.access_log.open("a", encoding="utf-8", buffering=1)
            rec = {"item_id": entry["item_id"], "content_hash": digest, "pid": os.getpid()}
            self._log.write(json.dumps(rec) + "\n")
        return data
