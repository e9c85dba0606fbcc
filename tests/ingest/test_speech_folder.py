"""Importing a speech archive: good items land, bad files are reported one per line, nothing half-written."""

from __future__ import annotations

import shutil
from pathlib import Path

from sqlalchemy import func, select

from hearthkit.catalog.db import Catalog
from hearthkit.catalog.models import Consent, Item, Label
from hearthkit.ingest.speech_folder import import_speech_folder
from hearthkit.store.cas import ContentStore
from hearthkit.store.vault import workspace_store
from hearthkit.workspace import open_workspace
from tests.conftest import hearth


def _snapshot(ws_root: Path) -> tuple[list, list[str]]:
    ws = open_workspace(ws_root)
    cat = Catalog.open(ws.db_url)
    with cat.session() as s:
        rows = [(i.external_id, i.content_hash, i.text) for i in s.scalars(select(Item).order_by(Item.id))]
    files = sorted(str(p.relative_to(ws.store_dir)) for p in ws.store_dir.rglob("*") if p.is_file())
    cat.close()
    return rows, files


def test_import_records_items_consent_labels(workspace: Path, speech_archive: Path) -> None:
    ws = open_workspace(workspace)
    cat = Catalog.open(ws.db_url)
    report = import_speech_folder(cat, ContentStore(ws.store_dir), speech_archive)
    assert report.problems == [] and report.imported == 48
    with cat.session() as s:
        item = s.scalar(select(Item).where(Item.external_id == "hemi_0000"))
        assert item.speaker == "hemi" and item.dialect == "raki" and item.gender == "male"
        assert abs(item.duration_s - item.size_bytes / 32000) < 0.01  # 16-bit mono 16 kHz
        assert workspace_store(ws).get(item.content_hash) == (speech_archive / "hemi_0000.wav").read_bytes()
        assert s.scalar(select(func.count(Label.id)).where(Label.key == "tk:secret_sacred")) == 3
        assert {c.subject for c in s.scalars(select(Consent).where(Consent.scope == "individual"))} == {
            "hemi", "mere", "kiri"}
    again = import_speech_folder(cat, ContentStore(ws.store_dir), speech_archive)
    assert again.imported == 0 and again.unchanged == 48  # idempotent


def test_bad_files_reported_and_rest_imported(workspace: Path, speech_archive: Path) -> None:
    hearth("data", "import", str(speech_archive), ws=workspace)
    before = _snapshot(workspace)

    bad = speech_archive.parent / "bad"
    shutil.copytree(speech_archive, bad)
    for p in bad.glob("*.wav"):
        if not p.stem.endswith(("_0000", "_0001")):
            p.unlink()
            p.with_suffix(".txt").unlink()
    # A new good recording, plus four bad ones.
    # Distinct audio (the same bytes would be a duplicate of hemi_0000): the same voice, quieter by one bit.
    import numpy as np
    import soundfile as sf

    wav, sr = sf.read(bad / "hemi_0000.wav", dtype="int16")
    sf.write(bad / "hemi_0100.wav", (wav // 2).astype(np.int16), sr, subtype="PCM_16")
    (bad / "hemi_0100.txt").write_text("he pai te wai\n", encoding="utf-8")
    data = (bad / "hemi_0001.wav").read_bytes()
    (bad / "hemi_0101.wav").write_bytes(data[: len(data) // 3])  # truncated
    (bad / "hemi_0101.txt").write_text("kei te oma te kurī\n", encoding="utf-8")
    (bad / "hemi_0102.wav").write_bytes(b"")  # zero bytes
    (bad / "hemi_0102.txt").write_text("he iti te ika\n", encoding="utf-8")
    shutil.copy(bad / "mere_0000.wav", bad / "mere_0103.wav")
    (bad / "mere_0103.txt").write_bytes("ka haere ngā tāne".encode("latin-1", errors="replace") + b"\xe9\xff")
    shutil.copy(bad / "mere_0001.wav", bad / "mere_0104.wav")  # no transcript
    with (bad / "metadata.csv").open("a", encoding="utf-8") as f:
        for uid, spk, dia, gen in [("hemi_0100", "hemi", "raki", "male"), ("hemi_0101", "hemi", "raki", "male"),
                                   ("hemi_0102", "hemi", "raki", "male"), ("mere_0103", "mere", "tonga", "female"),
                                   ("mere_0104", "mere", "tonga", "female")]:
            f.write(f"{uid}.wav,{spk},{dia},{gen},s9999,\n")

    out = hearth("data", "import", str(bad), ws=workspace).stdout
    lines = out.splitlines()
    assert any("hemi_0101.wav" in x and "truncated" in x for x in lines)
    assert any("hemi_0102.wav" in x and "0 bytes" in x for x in lines)
    assert any("mere_0103.wav" in x and "not UTF-8" in x for x in lines)
    assert any("mere_0104.wav" in x and "no transcript" in x for x in lines)
    assert "1 imported" in out and "4 skipped" in out

    after_rows, after_files = _snapshot(workspace)
    assert after_rows[: len(before[0])] == before[0], "nothing already stored changed"
    assert set(before[1]) <= set(after_files)
    assert [r[0] for r in after_rows[len(before[0]):]] == ["hemi_0100"]


def test_failed_batch_leaves_catalog_untouched(workspace: Path, speech_archive: Path, monkeypatch) -> None:
    """A crash while writing the batch rolls back every row of it."""
    ws = open_workspace(workspace)
    cat = Catalog.open(ws.db_url)
    import hearthkit.ingest.speech_folder as sf

    real = sf.Label

    def boom(**kw):
        if kw.get("key") == "tk:secret_sacred":
            raise RuntimeError("disk full")
        return real(**kw)

    monkeypatch.setattr(sf, "Label", boom)
    try:
        import_speech_folder(cat, ContentStore(ws.store_dir), speech_archive)
    except RuntimeError:
        pass
    else:
        raise AssertionError("the simulated failure did not happen")
    with cat.session() as s:
        assert s.scalar(select(func.count(Item.id))) == 0
        assert s.scalar(select(func.count(Consent.id))) == 0


def test_bad_archive_yaml_names_the_field(workspace: Path, speech_archive: Path) -> None:
    text = (speech_archive / "archive.yaml").read_text().replace("language_revitalization", "world_domination", 1)
    (speech_archive / "archive.yaml").write_text(text)
    proc = hearth("data", "import", str(speech_archive), ws=workspace, check=False)
    assert proc.returncode == 2
    assert "archive.yaml: field collective_consent.0.purposes.1" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
