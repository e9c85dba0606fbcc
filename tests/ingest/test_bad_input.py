"""Bad input: each bad file is reported with its reason, every valid file imported, nothing stored changes."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

from sqlalchemy import select

from hearthkit.catalog.db import Catalog
from hearthkit.catalog.models import Collection, Consent, Item, Label
from hearthkit.ingest.speech_folder import import_speech_folder
from hearthkit.store.vault import Store
from hearthkit.workspace import open_workspace
from tests.conftest import hearth
from tests.ingest.archive_maker import audio_bytes, speech_items, write_audio, write_info

ROWS = "file,speaker,labels\n*,kui,\n"


def snapshot(workspace: Path) -> tuple[dict, dict]:
    """Every catalog row (as a tuple of its columns) and every store file's bytes hash."""
    ws = open_workspace(workspace)
    rows = {}
    with Catalog.open(ws.db_url).session() as s:
        for model in (Collection, Item, Label, Consent):
            cols = [c.key for c in model.__table__.columns]
            for obj in s.scalars(select(model)):
                rows[(model.__tablename__, obj.id)] = tuple(repr(getattr(obj, c)) for c in cols)
    files = {str(p.relative_to(ws.store_dir)): hashlib.sha256(p.read_bytes()).hexdigest()
             for p in ws.store_dir.rglob("*") if p.is_file()}
    return rows, files


def bad_archive(folder: Path, outside: Path) -> dict[str, str]:
    """Valid recordings plus one of each kind of bad input; returns {reported name: reason fragment}."""
    speech_items(folder, 3, prefix="good")
    write_info(folder, layout={"sample_rates": [16000]})
    full = audio_bytes(".wav", seconds=1.0, seed=7)
    (folder / "truncated.wav").write_bytes(full[: len(full) // 2])  # header promises twice the data
    (folder / "empty.wav").write_bytes(b"")
    write_audio(folder / "rate11k.wav", sr=11025, seed=8)
    write_audio(folder / "latin1.wav", seed=9)
    (folder / "latin1.txt").write_bytes("caf\xe9 m\xe3ori".encode("latin-1"))
    write_audio(folder / "dup.wav", seed=10)
    write_audio(folder / "dup.flac", seed=11)
    (folder / "zcopy.wav").write_bytes((folder / "good000.wav").read_bytes())  # same audio, another name
    (folder / "orphan.txt").write_text("he kupu anake\n", encoding="utf-8")
    write_audio(folder / "notext.wav", seed=12)
    write_audio(outside / "secret.wav", seed=13)
    os.symlink(outside / "secret.wav", folder / "link.wav")
    (folder / "link.txt").write_text("link\n", encoding="utf-8")
    write_audio(folder / "tworows.wav", seed=14)
    for name in ("dup", "zcopy", "notext", "tworows", "truncated", "empty", "rate11k"):
        if not (folder / f"{name}.txt").exists():
            (folder / f"{name}.txt").write_text(f"{name}\n", encoding="utf-8")
    (folder / "notext.txt").unlink()
    (folder / "metadata.csv").write_text(ROWS + "../escape.wav,kui,\n/etc/passwd,kui,\n"
                                         "tworows.wav,kui,\ntworows,tama,\n", encoding="utf-8")
    return {
        "truncated.wav": "truncated",
        "empty.wav": "empty file (0 bytes)",
        "rate11k.wav": "sample rate 11025 Hz is not accepted",
        "latin1.wav": "latin1.txt is not UTF-8",
        "dup.wav": "duplicate id 'dup'",
        "dup.flac": "duplicate id 'dup'",
        "zcopy.wav": "same audio as 'good000'",
        "orphan.txt": "text with no recording",
        "notext.wav": "no transcript notext.txt",
        "link.wav": "symbolic link pointing outside the archive",
        "metadata.csv:3": "is a path, not a file name",
        "metadata.csv:4": "is a path, not a file name",
        "metadata.csv:6": "duplicate row for 'tworows'",
        "tworows.wav": "several rows",
    }


def test_each_bad_file_reported_valid_ones_imported_nothing_stored_changes(tmp_path: Path, workspace: Path):
    # An earlier, good import into the same collection, including an item the bad archive tries to replace.
    first = tmp_path / "first"
    speech_items(first, 2, prefix="old", seed0=100)
    write_info(first)
    (first / "metadata.csv").write_text(ROWS, encoding="utf-8")
    hearth("data", "import", str(first), ws=workspace)
    before_rows, before_files = snapshot(workspace)

    folder, outside = tmp_path / "archive", tmp_path / "outside"
    folder.mkdir()
    outside.mkdir()
    expected = bad_archive(folder, outside)
    write_audio(folder / "old000.wav", seed=999)  # same id as a stored item, different audio
    (folder / "old000.txt").write_text("changed\n", encoding="utf-8")
    expected["old000.wav"] = "already imported with different content"

    proc = hearth("data", "import", str(folder), ws=workspace)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("skipped ")]
    reported = {ln.split(" ", 1)[1].split(": ", 1)[0]: ln.split(": ", 1)[1] for ln in lines}
    assert set(reported) == set(expected), proc.stdout
    for name, fragment in expected.items():
        assert fragment in reported[name], (name, reported[name])
    assert len(lines) == len(expected)  # one line per bad file, no double reports
    assert "3 imported, 0 already present" in proc.stdout

    after_rows, after_files = snapshot(workspace)
    assert {k: after_rows[k] for k in before_rows} == before_rows  # no stored row changed
    assert {k: after_files[k] for k in before_files} == before_files  # no stored object changed
    ws = open_workspace(workspace)
    with Catalog.open(ws.db_url).session() as s:
        names = set(s.scalars(select(Item.external_id)))
    assert names == {"old000", "old001", "good000", "good001", "good002"}
    # The file behind the outward symlink was never read into the store.
    secret_hash = hashlib.sha256((outside / "secret.wav").read_bytes()).hexdigest()
    assert not Store(ws.store_dir, ws.keys_dir).has(secret_hash)


def test_truncated_accepted_when_asked(tmp_path: Path, workspace: Path):
    folder = tmp_path / "a"
    folder.mkdir()
    full = audio_bytes(".wav", seconds=1.0, seed=7)
    (folder / "cut.wav").write_bytes(full[: len(full) // 2])
    (folder / "cut.txt").write_text("cut\n", encoding="utf-8")
    write_info(folder)
    ws = open_workspace(workspace)
    catalog, store = Catalog.open(ws.db_url), Store(ws.store_dir, ws.keys_dir)
    assert import_speech_folder(catalog, store, folder).problems[0][1].startswith("truncated")
    report = import_speech_folder(catalog, store, folder, accept_truncated=True)
    assert (report.imported, report.problems) == (1, [])


def test_unreadable_sheet_and_info_are_one_line_errors(tmp_path: Path, workspace: Path):
    folder = tmp_path / "a"
    speech_items(folder, 1)
    write_info(folder)
    (folder / "metadata.csv").write_bytes(b"file,speaker\nx,\xff\xfe\n")
    proc = hearth("data", "import", str(folder), ws=workspace, check=False)
    assert proc.returncode == 2 and "metadata.csv: not UTF-8" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    (folder / "metadata.csv").unlink()
    shutil.copy(folder / "archive.yaml", tmp_path / "info.yaml")
    (tmp_path / "info.yaml").write_text("collection: {name: x}\n", encoding="utf-8")
    proc = hearth("data", "import", str(folder), "--info", str(tmp_path / "info.yaml"), ws=workspace, check=False)
    assert proc.returncode == 2 and "field collection.community" in proc.stderr
