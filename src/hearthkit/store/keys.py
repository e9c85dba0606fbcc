"""Community keys (0600 files outside the workspace) and the per-collection data keys they wrap."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import stat
from datetime import UTC, datetime
from pathlib import Path

from hearthkit.errors import HearthError
from hearthkit.store import crypto
from hearthkit.store.cas import atomic_write


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode()


def _unb64(s: str) -> bytes:
    return base64.b64decode(s.encode())


def community_slug(community: str) -> str:
    """A file-name-safe, collision-free name for COMMUNITY (names may hold spaces and macrons)."""
    readable = re.sub(r"[^A-Za-z0-9_-]+", "-", community).strip("-")[:40] or "community"
    return f"{readable}-{hashlib.sha256(community.encode()).hexdigest()[:8]}"


class KeyRing:
    """Key files in KEY_DIR (one per community, mode 0600) and wrapped data keys in STORE_DIR/keys/."""

    def __init__(self, key_dir: Path, store_dir: Path):
        self.key_dir = Path(key_dir)
        self.records_dir = Path(store_dir) / "keys"
        self._data_keys: dict[bytes, bytes] = {}
        self._active: dict[str, bytes] = {}  # collection -> id of its active data key (saves a folder scan per put)

    # -- community keys -------------------------------------------------------------------------------
    def key_file(self, community: str) -> Path:
        return self.key_dir / f"{community_slug(community)}.key"

    def _read_key_file(self, community: str) -> dict | None:
        path = self.key_file(community)
        if not path.is_file():
            return None
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            raise HearthError(f"{path}: key file is readable by others (mode {mode:o}); run `chmod 600 {path}`")
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError):
            raise HearthError(f"{path}: not a hearthkit key file (invalid JSON); restore it from your backup") from None

    def _write_key_file(self, community: str, doc: dict) -> None:
        self.key_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.key_dir, 0o700)
        atomic_write(self.key_file(community), json.dumps(doc, indent=1).encode(), mode=0o600)

    def community_key(self, community: str, create: bool = False) -> tuple[str, bytes]:
        """(key id, key) of COMMUNITY's current community key; made on first use when CREATE."""
        doc = self._read_key_file(community)
        if doc is None:
            if not create:
                raise HearthError(f"no community key for {community!r} in {self.key_dir}; the encrypted data "
                                  "cannot be read without it (set $HEARTH_KEYS or `keys:` in hearth.yaml)")
            kid = os.urandom(8).hex()
            doc = {"community": community, "current": kid, "keys": {kid: _b64(crypto.new_key())},
                   "created_at": datetime.now(UTC).isoformat()}
            self._write_key_file(community, doc)
        return doc["current"], _unb64(doc["keys"][doc["current"]])

    def _kek(self, community: str, kek_id: str) -> bytes:
        doc = self._read_key_file(community)
        if doc is None or kek_id not in doc["keys"]:
            raise HearthError(f"community key {kek_id} of {community!r} is not in {self.key_dir}; "
                              "restore the key file from your backup")
        return _unb64(doc["keys"][kek_id])

    # -- data keys --------------------------------------------------------------------------------------
    def records(self) -> list[dict]:
        """Every wrapped data key record (no secrets in the clear)."""
        if not self.records_dir.is_dir():
            return []
        return [json.loads(p.read_text()) for p in sorted(self.records_dir.glob("*.json"))]

    def _write_record(self, rec: dict) -> None:
        atomic_write(self.records_dir / f"{rec['key_id']}.json", json.dumps(rec, indent=1).encode())

    @staticmethod
    def _context(rec: dict) -> str:
        return f"collection {rec['collection']} key {rec['key_id']}"

    def active_record(self, collection: str) -> dict | None:
        """The data key record new objects of COLLECTION are sealed with."""
        live = [r for r in self.records() if r["collection"] == collection and not r.get("retired")]
        return max(live, key=lambda r: r["created_at"]) if live else None

    def data_key_for(self, collection: str, community: str) -> tuple[bytes, bytes]:
        """(key id, key) to seal COLLECTION's objects with; a new random data key on first use."""
        kid = self._active.get(collection)
        if kid is None:
            rec = self.active_record(collection) or self.new_data_key(collection, community)
            kid = self._active[collection] = bytes.fromhex(rec["key_id"])
        return kid, self.data_key(kid)

    def new_data_key(self, collection: str, community: str) -> dict:
        """Make, wrap and record a fresh data key for COLLECTION."""
        kek_id, kek = self.community_key(community, create=True)
        rec = {"key_id": os.urandom(crypto.KEY_ID_LEN).hex(), "collection": collection, "community": community,
               "kek_id": kek_id, "created_at": datetime.now(UTC).isoformat(), "retired": False}
        key = crypto.new_key()
        nonce, wrapped = crypto.wrap(kek, key, self._context(rec))
        rec.update(nonce=_b64(nonce), wrapped=_b64(wrapped))
        self._write_record(rec)
        self._data_keys[bytes.fromhex(rec["key_id"])] = key
        self._active[collection] = bytes.fromhex(rec["key_id"])
        return rec

    def data_key(self, key_id: bytes) -> bytes:
        """The data key with KEY_ID, unwrapped with its community's key (cached in memory only)."""
        if key_id not in self._data_keys:
            path = self.records_dir / f"{key_id.hex()}.json"
            if not path.is_file():
                raise HearthError(f"data key {key_id.hex()} is missing from {self.records_dir}")
            rec = json.loads(path.read_text())
            kek = self._kek(rec["community"], rec["kek_id"])
            self._data_keys[key_id] = crypto.unwrap(kek, _unb64(rec["nonce"]), _unb64(rec["wrapped"]),
                                                    self._context(rec))
        return self._data_keys[key_id]

    def retire(self, key_id: bytes) -> None:
        """Mark a data key as no longer used for new objects (after re-encryption)."""
        path = self.records_dir / f"{key_id.hex()}.json"
        rec = json.loads(path.read_text())
        rec["retired"] = True
        self._write_record(rec)
        self._active.pop(rec["collection"], None)

    def rotate(self, community: str) -> int:
        """New community key; re-wrap every data key of COMMUNITY with it; drop the old key. Returns re-wrapped."""
        doc = self._read_key_file(community)
        if doc is None:
            raise HearthError(f"no community key for {community!r} in {self.key_dir}; nothing to rotate")
        # 1. add the new key while keeping the old ones: a crash here leaves every record readable.
        kid = os.urandom(8).hex()
        doc["keys"][kid] = _b64(crypto.new_key())
        doc["current"] = kid
        self._write_key_file(community, doc)
        new = _unb64(doc["keys"][kid])
        # 2. re-wrap each record (one atomic file each); re-running after a crash finishes the job.
        n = 0
        for rec in self.records():
            if rec["community"] != community or rec["kek_id"] == kid:
                continue
            key = crypto.unwrap(_unb64(doc["keys"][rec["kek_id"]]), _unb64(rec["nonce"]), _unb64(rec["wrapped"]),
                                self._context(rec))
            nonce, wrapped = crypto.wrap(new, key, self._context(rec))
            rec.update(kek_id=kid, nonce=_b64(nonce), wrapped=_b64(wrapped))
            self._write_record(rec)
            n += 1
        # 3. only now forget the old keys: nothing is wrapped by them any more.
        doc["keys"] = {kid: doc["keys"][kid]}
        doc["rotated_at"] = datetime.now(UTC).isoformat()
        self._write_key_file(community, doc)
        return n


def local_secret(key_dir: Path, name: str) -> bytes:
    """A 32-byte secret of this key folder (file NAME.secret, mode 0600), made on first use: MAC keys of anchors.

    It lives beside the community keys, outside the workspace, so whoever can rewrite the workspace (its catalog,
    its model folders) cannot forge what it signs.
    """
    path = Path(key_dir) / f"{name}.secret"
    if not path.is_file():
        Path(key_dir).mkdir(parents=True, exist_ok=True)
        os.chmod(key_dir, 0o700)
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        atomic_write(tmp, _b64(os.urandom(32)).encode(), mode=0o600)
        try:  # link, not rename: two processes making it at once keep the first secret, never half of one
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink(missing_ok=True)
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise HearthError(f"{path}: secret is readable by others (mode {mode:o}); run `chmod 600 {path}`")
    raw = path.read_text(encoding="utf-8").strip()
    try:
        key = _unb64(raw)
    except ValueError:
        key = b""
    if len(key) != 32:
        raise HearthError(f"{path}: not a hearthkit secret (expected 32 base64 bytes); restore it from your backup")
    return key
