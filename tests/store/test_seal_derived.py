"""A collection imported open, trained on, then sealed: what the workspace derived from it is sealed with it.

A run planned while the collection was open copied its transcripts and translations into runs/NAME/manifest.json.
Sealing keeps that manifest's hash (it is evidence) and its words only sealed; reading it (resume, `hearth eval`,
publication, the ledger) still works and still verifies. Real archive (espeak-ng speech with translations), real
workspace, store and keys; the tiny run is trained in this process (tests/in_process.py) to keep the test short.
"""

from __future__ import annotations

import csv
import errno
import json
from pathlib import Path

import pytest
import yaml
from sqlalchemy import select

from hearthkit.catalog.db import Catalog
from hearthkit.catalog.models import Collection, Model
from hearthkit.governance import sealed_manifest
from hearthkit.governance.manifest import Manifest
from hearthkit.ingest.sealing import seal_collection
from hearthkit.ingest.speech_folder import import_speech_folder
from hearthkit.store.vault import workspace_store
from hearthkit.workspace import init_workspace, open_workspace
from tests import in_process
from tests.conftest import TINY_ASR_CONFIG
from tests.recipes.test_st import translated_archive
from tests.store.test_no_plaintext import files_containing
from tests.store.test_seal_on_label import cli, steward

COLLECTION = "demo-korero"


def open_archive(src: Path, dest: Path) -> Path:
    """The tiny archive with a translation beside each recording and no secret/sacred label: imported in the clear."""
    folder = translated_archive(src, dest, collection=COLLECTION)
    with (folder / "metadata.csv").open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        r["labels"] = ";".join(k for k in r["labels"].split(";") if k and k != "tk:secret_sacred")
    with (folder / "metadata.csv").open("w", encoding="utf-8", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return folder


def words_of(manifest: Path) -> dict[str, bytes]:
    """Every transcript and translation a run manifest holds in the clear, by item."""
    out = {}
    for e in json.loads(manifest.read_text(encoding="utf-8"))["included"]:
        if e.get("text"):
            out[e["external_id"]] = e["text"].encode("utf-8")
        for lang, t in ((e.get("meta") or {}).get("translations") or {}).items():
            out[f"{e['external_id']}:{lang}"] = t.encode("utf-8")
    return out


def outside_store(ws: Path, patterns: dict[str, bytes]) -> list[tuple[str, str]]:
    """Files under WS holding a pattern, the encrypted store left out (its sealed objects are ciphertext)."""
    return [(f, n) for f, n in files_containing(ws, patterns) if not f.startswith("store/")]




def open_workspace_with_run(tiny_speech_archive: Path, tmp_path: Path, steps: int,
                            root: Path | None = None) -> tuple[Path, Path, Path]:
    """A workspace (ROOT, or a new one) holding the open collection and a tiny asr run of STEPS planned (not trained)
    on it: (workspace, run folder, config)."""
    folder = open_archive(tiny_speech_archive, tmp_path / "archive")
    root = root or init_workspace(tmp_path / "ws").root
    ws = open_workspace(root)
    catalog = Catalog.open(ws.db_url)
    try:
        assert not import_speech_folder(catalog, workspace_store(ws), folder).sealed
        with open(folder / "archive.yaml", encoding="utf-8") as f:
            steward(catalog, yaml.safe_load(f)["collection"]["community"])
    finally:
        catalog.close()
    cfg = yaml.safe_load(TINY_ASR_CONFIG)
    cfg["model"]["decode"] = {"beam": 1}  # greedy: the test is about what is on disk, not decoding
    cfg["train"].update(steps=steps, checkpoint_every=steps, log_every=1, warmup=1)
    path = tmp_path / "tiny-asr.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return root, in_process.plan(root, path), path


def test_sealing_a_trained_collection_leaves_no_words_in_the_clear_and_the_run_still_verifies(
        tiny_speech_archive, tmp_path, monkeypatch):
    ws_root, run, cfg_path = open_workspace_with_run(tiny_speech_archive, tmp_path, steps=2)
    assert in_process.train_run(run, monkeypatch) == "finished"
    before = in_process.publish(ws_root, run).evaluation
    spec = json.loads((run / "run.json").read_text())
    words = words_of(run / "manifest.json")
    assert len(words) >= 40 and any(":xx" in k for k in words)  # transcripts and translations
    assert {f for f, _ in outside_store(ws_root, words)} >= {"runs/tiny-asr/manifest.json"}  # the search finds them

    # One recording the run does not read (its speaker consented to research only) is marked secret/sacred: the
    # whole collection is sealed, and the run's manifest still permits what it planned, so the run may resume.
    assert "kiri_0000" not in {e["external_id"] for e in json.loads((run / "manifest.json").read_text())["included"]}
    res = cli(ws_root, "labels", "apply", "tk:secret_sacred", "-c", COLLECTION, "-i", "kiri_0000", "--by", "aroha")
    assert res.exit_code == 0, res.output
    assert outside_store(ws_root, words) == []  # no file of the workspace holds a transcript or translation
    sealed = json.loads((run / "manifest.json").read_text(encoding="utf-8"))
    assert sealed["sealed_words"]["sha256"] == spec["manifest_hash"]
    assert all(e["text"] is None and "translations" not in e["meta"] for e in sealed["included"])

    # The manifest as planned comes back, decrypted in memory, and verifies against every recorded hash.
    manifest = Manifest.read(run / "manifest.json")
    ws = open_workspace(ws_root)
    catalog = Catalog.open(ws.db_url)
    with catalog.session() as s:
        assert s.scalar(select(Model.manifest_hash).where(Model.name == "tiny-asr")) == manifest.hash
    assert manifest.hash == spec["manifest_hash"] and words_of_manifest(manifest) == words
    from hearthkit.lineage.ledger import run_ledger

    assert run_ledger(ws, catalog, "tiny-asr")[0]["items"] == len(manifest.included)  # the ledger reads it too
    catalog.close()
    res = cli(ws_root, "eval", "tiny-asr")  # `hearth eval` reads the sealed words and audio, and re-publishes
    assert res.exit_code == 0, res.output
    after = json.loads((ws_root / "models" / "tiny-asr" / "evaluation.json").read_text())
    assert [(r["group"], r["n"], r["cer"]) for r in after["rows"]] == [
        (r["group"], r["n"], r["cer"]) for r in before["rows"]]
    cfg = yaml.safe_load(cfg_path.read_text())
    cfg["train"]["steps"] = 3
    cfg_path.write_text(yaml.safe_dump(cfg))
    assert in_process.plan(ws_root, cfg_path) == run  # a resume re-checks the manifest's hash: it holds
    assert in_process.train_run(run, monkeypatch) == "finished"
    assert outside_store(ws_root, words) == []  # nothing it did wrote the words back

    text = (run / "manifest.json").read_bytes()
    res = cli(ws_root, "keys", "seal")  # a second sealing has nothing left to do
    assert res.exit_code == 0, res.output
    assert f"{COLLECTION}: 0 objects encrypted, transcripts of 0 items sealed" in res.output
    assert (run / "manifest.json").read_bytes() == text


def words_of_manifest(manifest: Manifest) -> dict[str, bytes]:
    out = {}
    for e in manifest.included:
        if e.get("text"):
            out[e["external_id"]] = e["text"].encode("utf-8")
        for lang, t in ((e.get("meta") or {}).get("translations") or {}).items():
            out[f"{e['external_id']}:{lang}"] = t.encode("utf-8")
    return out


def test_an_interrupted_sealing_keeps_the_manifest_whole_and_running_it_again_finishes_and_reencrypts(
        tiny_speech_archive, tmp_path, monkeypatch):
    ws_root, run, _ = open_workspace_with_run(tiny_speech_archive, tmp_path, steps=2)
    words, planned = words_of(run / "manifest.json"), (run / "manifest.json").read_bytes()
    ws = open_workspace(ws_root)
    catalog, store = Catalog.open(ws.db_url), workspace_store(ws)

    def disk_full(path, data):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(sealed_manifest, "_replace", disk_full)  # the rewrite fails after the words were sealed
    with pytest.raises(OSError):
        seal_collection(catalog, store, COLLECTION)
    assert (run / "manifest.json").read_bytes() == planned  # the file as planned: nothing half-written
    assert not list(run.glob(".manifest.json.*"))
    monkeypatch.undo()

    objects, _ = seal_collection(catalog, store, COLLECTION)  # running it again finishes
    assert objects == 1  # the audio was sealed the first time; only the manifest was left
    assert outside_store(ws_root, words) == []
    assert Manifest.read(run / "manifest.json").hash == json.loads((run / "run.json").read_text())["manifest_hash"]
    assert seal_collection(catalog, store, COLLECTION) == (0, 0)  # and once more is a no-op

    # A key rotation with --reencrypt (a key may have leaked) re-encrypts the manifest's words too, not only items'.
    from hearthkit.store.rotate import reencrypt_collection

    words_object = json.loads((run / "manifest.json").read_text())["sealed_words"]["objects"][COLLECTION]
    old_key = store.sealed.key_id(words_object)
    with catalog.session() as s:
        community = s.scalar(select(Collection.community).where(Collection.name == COLLECTION))
    reencrypt_collection(catalog, store, COLLECTION, community)
    assert store.sealed.key_id(words_object) != old_key
    assert store.sealed.key_id(words_object) == store.keys.data_key_for(COLLECTION, community)[0]
    assert Manifest.read(run / "manifest.json").hash == json.loads((run / "run.json").read_text())["manifest_hash"]
    catalog.close()


def test_a_sealed_manifest_that_was_edited_or_cannot_be_opened_is_refused_in_one_line(
        tiny_speech_archive, tmp_path):
    from hearthkit.errors import HearthError

    ws_root, run, _ = open_workspace_with_run(tiny_speech_archive, tmp_path, steps=2)
    ws = open_workspace(ws_root)
    catalog, store = Catalog.open(ws.db_url), workspace_store(ws)
    seal_collection(catalog, store, COLLECTION)
    catalog.close()
    path = run / "manifest.json"
    doc = json.loads(path.read_text(encoding="utf-8"))
    edited = dict(doc, restrictions=[])  # a restriction dropped from the clear file
    path.write_text(json.dumps(edited), encoding="utf-8")
    with pytest.raises(HearthError, match="does not hash to the sha256 recorded when it was sealed"):
        Manifest.read(path)
    gone = dict(doc, sealed_words={**doc["sealed_words"], "objects": {COLLECTION: "0" * 64}})
    path.write_text(json.dumps(gone), encoding="utf-8")
    with pytest.raises(HearthError, match=f"the words of collection {COLLECTION} are sealed and could not be opened"):
        Manifest.read(path)


def test_run_manifests_are_sealed_when_the_store_lies_outside_the_workspace(tiny_speech_archive, tmp_path):
    from hearthkit.catalog.context import open_workspace_catalog

    root = init_workspace(tmp_path / "ws").root
    cfg = yaml.safe_load((root / "hearth.yaml").read_text())
    cfg["store"] = str(tmp_path / "shared" / "store")  # e.g. a store on another volume
    (root / "hearth.yaml").write_text(yaml.safe_dump(cfg))
    ws_root, run, _ = open_workspace_with_run(tiny_speech_archive, tmp_path, steps=2, root=root)
    words = words_of(run / "manifest.json")
    ws = open_workspace(ws_root)
    assert not ws.store_dir.is_relative_to(ws_root)
    catalog = open_workspace_catalog(ws)  # as every command opens it: the catalog knows its workspace
    seal_collection(catalog, workspace_store(ws), COLLECTION)
    catalog.close()
    assert outside_store(ws_root, words) == []
    assert Manifest.read(run / "manifest.json").hash == json.loads((run / "run.json").read_text())["manifest_hash"]
