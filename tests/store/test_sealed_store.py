"""The encrypted store: AES-GCM objects addressed by the plaintext hash, keys outside the workspace, rotation."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from hearthkit.errors import HearthError
from hearthkit.store import crypto
from hearthkit.store.cas import IntegrityError, sha256_bytes
from hearthkit.store.vault import Store
from hearthkit.workspace import open_workspace

COMMUNITY = "Ngāti Tauira"


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "ws" / "store", tmp_path / "ws.keys")


def test_sealed_object_is_ciphertext_addressed_by_plaintext_hash(store: Store):
    data = os.urandom(4000) + b"kupu tapu" * 50
    digest = store.put(data, seal_for=("c1", COMMUNITY))
    assert digest == sha256_bytes(data)  # manifests and lineage keep the plaintext hash
    blob = store.sealed.path(digest).read_bytes()
    assert b"kupu tapu" not in blob and data[1000:1064] not in blob
    assert len(blob) == len(data) + crypto.HEADER_LEN + crypto.TAG_LEN  # magic + key id + nonce + ct + tag
    assert not store.plain.has(digest) and store.is_sealed(digest)
    assert store.get(digest) == data
    assert stat.S_IMODE(store.sealed.path(digest).stat().st_mode) == 0o600


def test_same_content_twice_is_stored_once(store: Store):
    data = os.urandom(300)
    a = store.put(data, seal_for=("c1", COMMUNITY))
    before = store.sealed.path(a).read_bytes()
    assert store.put(data, seal_for=("c1", COMMUNITY)) == a
    assert store.sealed.path(a).read_bytes() == before


def test_tampered_ciphertext_is_refused(store: Store):
    digest = store.put(os.urandom(500), seal_for=("c1", COMMUNITY))
    p = store.sealed.path(digest)
    blob = bytearray(p.read_bytes())
    blob[-20] ^= 1
    p.write_bytes(bytes(blob))
    with pytest.raises(crypto.DecryptError, match="tampered"):
        store.get(digest)


def test_object_moved_to_another_address_is_refused(store: Store):
    a = store.put(b"first recording", seal_for=("c1", COMMUNITY))
    b = store.put(b"second recording", seal_for=("c1", COMMUNITY))
    store.sealed.path(b).write_bytes(store.sealed.path(a).read_bytes())  # swap content under b's address
    with pytest.raises(crypto.DecryptError):
        store.get(b)


def test_plaintext_hash_is_verified_after_decryption(store: Store):
    """Even a validly encrypted object must decrypt to bytes with the hash it is stored under."""
    digest = sha256_bytes(b"what the manifest promised")
    kid, key = store.keys.data_key_for("c1", COMMUNITY)
    store.sealed.path(digest).parent.mkdir(parents=True, exist_ok=True)
    store.sealed.path(digest).write_bytes(crypto.seal(key, kid, digest, b"something else"))
    with pytest.raises(IntegrityError, match="do not match"):
        store.get(digest)
    assert store.get(digest, verify=False) == b"something else"


def test_key_files_are_0600_in_a_0700_folder_and_hold_no_data_keys(store: Store, tmp_path: Path):
    store.put(b"x" * 100, seal_for=("c1", COMMUNITY))
    files = list((tmp_path / "ws.keys").iterdir())
    assert len(files) == 1 and files[0].suffix == ".key"
    assert stat.S_IMODE(files[0].stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "ws.keys").stat().st_mode) == 0o700
    # The data key lives only wrapped, in the store; its record holds no usable secret without the key file.
    rec = json.loads(next((store.root / "keys").glob("*.json")).read_text())
    assert {"wrapped", "nonce", "kek_id", "collection", "community"} <= set(rec)
    assert "key" not in rec


def test_key_file_readable_by_others_is_refused(store: Store, tmp_path: Path):
    digest = store.put(b"y" * 100, seal_for=("c1", COMMUNITY))
    key_file = next((tmp_path / "ws.keys").iterdir())
    key_file.chmod(0o644)
    fresh = Store(store.root, tmp_path / "ws.keys")
    with pytest.raises(HearthError, match="chmod 600"):
        fresh.get(digest)


def test_missing_community_key_names_the_folder(store: Store, tmp_path: Path):
    digest = store.put(b"z" * 100, seal_for=("c1", COMMUNITY))
    other = Store(store.root, tmp_path / "elsewhere.keys")
    with pytest.raises(HearthError, match="elsewhere.keys"):
        other.get(digest)


def test_rotate_rewraps_data_keys_and_destroys_the_old_key(store: Store, tmp_path: Path):
    payloads = [os.urandom(256) for _ in range(3)]
    digests = [store.put(p, seal_for=("c1", COMMUNITY)) for p in payloads] + [
        store.put(b"other collection", seal_for=("c2", COMMUNITY))]
    key_file = next((tmp_path / "ws.keys").iterdir())
    old = json.loads(key_file.read_text())
    objects_before = {d: store.sealed.path(d).read_bytes() for d in digests}
    assert store.keys.rotate(COMMUNITY) == 2  # one data key per collection
    new = json.loads(key_file.read_text())
    assert new["current"] != old["current"] and list(new["keys"]) == [new["current"]]
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    # Objects are untouched (only the wrapping changed) and read back through a fresh key ring.
    assert {d: store.sealed.path(d).read_bytes() for d in digests} == objects_before
    fresh = Store(store.root, tmp_path / "ws.keys")
    assert [fresh.get(d) for d in digests[:3]] == payloads
    # The old community key no longer unwraps anything: its file content is gone.
    key_file.write_text(json.dumps(old))
    key_file.chmod(0o600)
    with pytest.raises(HearthError, match="not in"):
        Store(store.root, tmp_path / "ws.keys").get(digests[0])


def test_interrupted_rotation_is_finished_by_running_it_again(store: Store, tmp_path: Path, monkeypatch):
    payloads = [os.urandom(64) for _ in range(2)]
    digests = [store.put(p, seal_for=(f"c{i}", COMMUNITY)) for i, p in enumerate(payloads)]
    real = store.keys._write_record
    calls = {"n": 0}

    def crash_after_one(rec):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt("simulated crash between two re-wraps")
        real(rec)

    monkeypatch.setattr(store.keys, "_write_record", crash_after_one)
    with pytest.raises(KeyboardInterrupt):
        store.keys.rotate(COMMUNITY)
    monkeypatch.setattr(store.keys, "_write_record", real)
    # Mid-rotation everything is still readable: the key file kept both keys.
    assert [Store(store.root, tmp_path / "ws.keys").get(d) for d in digests] == payloads
    store.keys.rotate(COMMUNITY)
    doc = json.loads(next((tmp_path / "ws.keys").iterdir()).read_text())
    assert len(doc["keys"]) == 1
    assert {r["kek_id"] for r in store.keys.records()} == {doc["current"]}
    assert [Store(store.root, tmp_path / "ws.keys").get(d) for d in digests] == payloads


def test_open_content_already_sealed_stays_sealed(store: Store):
    data = os.urandom(128)
    digest = store.put(data, seal_for=("restricted", COMMUNITY))
    assert store.put(data) == digest  # an open collection importing the same recording
    assert not store.plain.has(digest) and store.get(digest) == data


def test_workspace_key_folder_default_env_and_refusal_inside(workspace: Path, monkeypatch):
    ws = open_workspace(workspace)
    monkeypatch.delenv("HEARTH_KEYS", raising=False)
    assert ws.keys_dir == workspace.parent / f"{workspace.name}.keys"
    monkeypatch.setenv("HEARTH_KEYS", str(workspace.parent / "vault"))
    assert ws.keys_dir == workspace.parent / "vault"
    monkeypatch.setenv("HEARTH_KEYS", str(workspace / "keys"))
    with pytest.raises(HearthError, match="inside the workspace"):
        _ = ws.keys_dir


def test_sweep_removes_only_temp_files_of_dead_writers(tmp_path: Path):
    import subprocess
    import sys

    from hearthkit.store.cas import sweep_partial

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / "ab").mkdir()
    stale = tmp_path / "ab" / f".tmp-{dead.pid}-x1"
    live = tmp_path / "ab" / f".tmp-{os.getpid()}-x2"
    stale.write_bytes(b"half an obj")
    live.write_bytes(b"being written")
    assert sweep_partial(tmp_path) == 1
    assert not stale.exists() and live.exists()
