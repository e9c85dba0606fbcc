"""The governed loader: reads only manifest items, decrypts sealed ones in memory, verifies each hash, logs reads."""

from __future__ import annotations

import json
import os
from pathlib import Path

from hearthkit.store.text import SEALED_TEXT, unpack
from hearthkit.store.vault import Store


class GovernedReader:
    """Reads item bytes for a run: only digests in its manifest, hash-verified, logged per rank.

    Sealed (encrypted) objects are decrypted in memory by the store; plaintext is never written to disk, and
    the SHA-256 of the decrypted bytes must equal the manifest's content hash.
    """

    def __init__(self, store: Store, entries: list[dict], access_log: Path | None = None):
        self.store = store
        self.allowed = {e["content_hash"]: e for e in entries}
        # A sealed collection's transcripts are objects of their own (store/text.py), readable like the audio.
        self.allowed.update({e["meta"][SEALED_TEXT]: e for e in entries if SEALED_TEXT in (e.get("meta") or {})})
        self.access_log = access_log
        self._log: int | None = None  # O_APPEND descriptor, opened on first read

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_log": None}  # data-loader workers open their own descriptor

    def __del__(self) -> None:
        if self._log is not None:
            os.close(self._log)

    def read(self, digest: str) -> bytes:
        """Bytes of item DIGEST; refuses anything the manifest does not include."""
        entry = self.allowed.get(digest)
        if entry is None:
            raise PermissionError(f"item {digest[:12]}… is not in this run's manifest; the loader will not read it")
        data = self.store.get(digest, verify=True)
        if self.access_log is not None:
            if self._log is None:
                self.access_log.parent.mkdir(parents=True, exist_ok=True)
                self._log = os.open(self.access_log, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
            # One unbuffered append per read, before the bytes are handed on: a crash loses no recorded read,
            # and O_APPEND keeps lines from several data-loader workers whole.
            item = entry["item_id"]
            item = item if isinstance(item, int) else json.dumps(item)  # digest is hex: no escaping needed
            os.write(self._log, f'{{"item_id": {item}, "content_hash": "{digest}", "pid": {os.getpid()}}}\n'.encode())
        return data

    def text(self, entry: dict) -> str:
        """ENTRY's transcript: from the manifest, or from its sealed text object (a restricted collection's)."""
        if entry.get("text") is not None:
            return entry["text"]
        digest = (entry.get("meta") or {}).get(SEALED_TEXT)
        return (unpack(self.read(digest))["text"] or "") if digest else ""
