"""Issue 19, class 1 and 8a: a sheet row that cannot be read exactly never loses its restrictions.

Each case is a real archive folder (soundfile-written WAVs, a CSV or YAML sheet, archive.yaml) imported into a real
workspace, through the library or through the CLI in-process (typer's CliRunner), and the catalog and store are read
back to check what was and was not stored.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import yaml
from sqlalchemy import select
from typer.testing import CliRunner

from hearthkit.catalog.db import Catalog
from hearthkit.catalog.models import Collection, Consent, Item, Label
from hearthkit.cli.main import app
from hearthkit.errors import HearthError
from hearthkit.ingest.speech_folder import import_speech_folder
from hearthkit.store.vault import Store
from hearthkit.workspace import open_workspace
from tests.catalog.conftest import db_url  # noqa: F401  (the SQLite + PostgreSQL fixture)
from tests.ingest.archive_maker import speech_items, write_info


def cli(ws: Path, *args: str):
    """The CLI in-process, as a user would run it."""
    return CliRunner().invoke(app, list(args), env={"HEARTH_WORKSPACE": str(ws), "COLUMNS": "200"})


def stored(ws_root: Path) -> dict[str, set[str]]:
    """Item id -> its label keys, as the catalog holds them."""
    ws = open_workspace(ws_root)
    with Catalog.open(ws.db_url).session() as s:
        out = {i.external_id: set() for i in s.scalars(select(Item))}
        for ext, key in s.execute(select(Item.external_id, Label.key).join(Label, Label.item_id == Item.id)):
            out[ext].add(key)
    return out


def no_audio_of(ws_root: Path, folder: Path, ids: list[str]) -> bool:
    """True when none of IDS' recordings lies in the store, clear or sealed."""
    ws = open_workspace(ws_root)
    store = Store(ws.store_dir, ws.keys_dir)
    return not any(store.has(hashlib.sha256((folder / f"{i}.wav").read_bytes()).hexdigest()) for i in ids)


def archive(tmp_path: Path, n: int = 4) -> Path:
    folder = tmp_path / "archive"
    speech_items(folder, n)
    write_info(folder)
    return folder


def write_yaml_sheet(folder: Path, rows: list[dict]) -> None:
    (folder / "metadata.yaml").write_text(yaml.safe_dump(rows, allow_unicode=True), encoding="utf-8")


def test_misspelt_label_holds_its_item_back_instead_of_falling_to_the_glob_csv_cli(tmp_path, workspace):
    folder = archive(tmp_path)
    (folder / "metadata.csv").write_text(
        "file,speaker,labels,consent_purposes,consent_given_by,consent_given_at\n"
        "*,kui,,,,\n"
        "utt001.wav,hemi,tk:seasnal;tk:secret_sacred,research,hemi,2026-01-02\n", encoding="utf-8")
    res = cli(workspace, "data", "import", str(folder))
    assert res.exit_code == 0, res.output
    lines = [ln for ln in res.output.splitlines() if ln.startswith("skipped utt001.wav")]
    assert len(lines) == 1 and "metadata.csv:3" in lines[0] and "tk:seasnal" in lines[0], res.output
    assert "3 imported" in res.output
    items = stored(workspace)
    assert set(items) == {"utt000", "utt002", "utt003"}  # never under the glob row's lesser restrictions
    assert no_audio_of(workspace, folder, ["utt001"])
    with Catalog.open(open_workspace(workspace).db_url).session() as s:
        assert not s.scalars(select(Consent).where(Consent.subject == "hemi")).all()  # nothing of the row stored


def test_misspelt_label_yaml_library(tmp_path, workspace):
    folder = archive(tmp_path)
    write_yaml_sheet(folder, [{"file": "*", "speaker": "kui"},
                              {"file": "utt002", "speaker": "hemi", "labels": ["tk:seasnal", "tk:secret_sacred"]}])
    ws = open_workspace(workspace)
    report = import_speech_folder(Catalog.open(ws.db_url), Store(ws.store_dir, ws.keys_dir), folder)
    held = [p for p in report.problems if p[0] == "utt002.wav"]
    assert len(held) == 1 and "metadata.yaml:row 2" in held[0][1] and "unknown label 'tk:seasnal'" in held[0][1]
    assert report.imported == 3 and "utt002" not in stored(workspace)
    assert no_audio_of(workspace, folder, ["utt002"])


@pytest.mark.parametrize("form", ["csv", "yaml"])
def test_unambiguous_spelling_is_normalised_and_reported(tmp_path, workspace, form):
    folder = archive(tmp_path, 2)
    if form == "csv":
        (folder / "metadata.csv").write_text("File,speaker,Labels\n*,kui,\nutt001.wav,hemi, TK:Secret-Sacred \n",
                                             encoding="utf-8")
    else:
        write_yaml_sheet(folder, [{"file": "*", "speaker": "kui"},
                                  {"file": "utt001", "speaker": "hemi", "LABELS": "TK:Secret_Sacred"}])
    ws = open_workspace(workspace)
    report = import_speech_folder(Catalog.open(ws.db_url), Store(ws.store_dir, ws.keys_dir), folder)
    assert report.problems == [] and report.imported == 2
    assert stored(workspace)["utt001"] == {"tk:secret_sacred"}
    assert report.sealed  # the label, read exactly, seals the collection as it would have spelt right
    notes = " | ".join(f"{w}: {t}" for w, t in report.notes)
    assert "read as 'tk:secret_sacred'" in notes and "read as 'labels'" in notes, notes


@pytest.mark.parametrize("row,reason", [
    ({"consent_purposes": "research", "consent_given_by": "hemi", "consent_given_at": "02/01/2026"}, "YYYY-MM-DD"),
    ({"consent_purposes": "reserch", "consent_given_by": "hemi", "consent_given_at": "2026-01-02"},
     "unknown consent purpose"),
    ({"consent_given_by": "hemi", "consent_given_at": "2026-01-02"}, "consent_purposes is empty"),
    ({"consent_purposes": "research", "consent_given_by": "hemi", "consent_given_at": "2026-01-02",
      "consent_expires_at": "soon"}, "YYYY-MM-DD"),
    ({"lables": "tk:secret_sacred"}, "did you mean 'labels'"),
    ({"protocol": "women-knowledge"}, "did you mean 'protocols'"),
    ({"speaker": ["a", "b"]}, "speaker is list"),
    ({"labels": {"tk:secret_sacred": True}}, "labels is dict"),
    ({"dialect": "north\0"}, "NUL byte"),
])
def test_each_kind_of_unreadable_row_holds_its_item_back(tmp_path, workspace, row, reason):
    folder = archive(tmp_path, 3)
    write_yaml_sheet(folder, [{"file": "*", "speaker": "kui"}, {"file": "utt001.wav", **row}])
    ws = open_workspace(workspace)
    report = import_speech_folder(Catalog.open(ws.db_url), Store(ws.store_dir, ws.keys_dir), folder)
    held = [r for w, r in report.problems if w == "utt001.wav"]
    assert len(held) == 1 and reason in held[0], report.problems
    assert set(stored(workspace)) == {"utt000", "utt002"}


def test_bad_glob_row_holds_back_every_item_it_matches(tmp_path, workspace):
    folder = tmp_path / "archive"
    speech_items(folder, 2, prefix="sec")
    speech_items(folder, 2, prefix="pub", seed0=10)
    write_info(folder)
    (folder / "metadata.csv").write_text("file,speaker,labels\n*,kui,\nsec*,kui,tk:secret_sacred;tk:womens\n",
                                         encoding="utf-8")
    res = cli(workspace, "data", "import", str(folder))
    assert res.exit_code == 0, res.output
    assert set(stored(workspace)) == {"pub000", "pub001"}
    for i in ("sec000", "sec001"):
        assert f"skipped {i}.wav: not imported: metadata.csv:3" in res.output
    assert no_audio_of(workspace, folder, ["sec000", "sec001"])


def test_row_naming_a_recording_in_another_case_holds_it_back(tmp_path, workspace):
    folder = archive(tmp_path, 2)
    (folder / "metadata.csv").write_text("file,speaker,labels\n*,kui,\nUTT001.WAV,hemi,tk:secret_sacred\n",
                                         encoding="utf-8")
    ws = open_workspace(workspace)
    report = import_speech_folder(Catalog.open(ws.db_url), Store(ws.store_dir, ws.keys_dir), folder)
    assert set(stored(workspace)) == {"utt000"}
    assert any(w == "utt001.wav" and "may mean it (case or suffix differs)" in r for w, r in report.problems)


def test_row_naming_a_recordings_text_file_holds_the_recording_back(tmp_path, workspace):
    folder = archive(tmp_path, 3)
    (folder / "metadata.csv").write_text("file,speaker,labels\n*,kui,\nutt001.txt,hemi,tk:secret_sacred\n"
                                         "utt002.wav.bak,hemi,tk:clan\n", encoding="utf-8")
    ws = open_workspace(workspace)
    report = import_speech_folder(Catalog.open(ws.db_url), Store(ws.store_dir, ws.keys_dir), folder)
    assert set(stored(workspace)) == {"utt000"}  # neither falls back to the glob row's lesser restrictions
    assert {w for w, r in report.problems if "may mean it" in r} == {"utt001.wav", "utt002.wav"}


def test_duplicate_rows_never_fall_back_to_a_glob(tmp_path, workspace):
    folder = archive(tmp_path, 2)
    (folder / "metadata.csv").write_text("file,speaker,labels\n*,kui,\nutt001,hemi,tk:secret_sacred\n"
                                         "utt001.wav,hemi,tk:secret_sacred;tk:clan\n", encoding="utf-8")
    ws = open_workspace(workspace)
    import_speech_folder(Catalog.open(ws.db_url), Store(ws.store_dir, ws.keys_dir), folder)
    assert set(stored(workspace)) == {"utt000"}


@pytest.mark.parametrize("sheet,fragment", [
    ("file,speaker,labels\n*,kui,\n,hemi,tk:secret_sacred\n", "metadata.csv:3: column 'file' is empty"),
    ("speaker,labels\nhemi,tk:secret_sacred\n", "column 'file' is empty or missing"),
    ("file,labels,Labels\nutt000,,tk:secret_sacred\n", "appears twice in the header"),
    ("file,speaker\nutt000,kui\0\n", "line 2: holds a NUL byte"),
])
def test_a_row_that_cannot_be_tied_to_items_refuses_the_whole_import(tmp_path, workspace, sheet, fragment):
    folder = archive(tmp_path, 2)
    (folder / "metadata.csv").write_text(sheet, encoding="utf-8")
    res = cli(workspace, "data", "import", str(folder))
    assert res.exit_code == 2 and fragment in res.stderr, (res.output, res.stderr)
    assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.output
    with Catalog.open(open_workspace(workspace).db_url).session() as s:
        assert s.scalar(select(Collection)) is None and s.scalar(select(Item)) is None
    assert no_audio_of(workspace, folder, ["utt000", "utt001"])


def test_yaml_file_that_is_not_text_refuses_the_import(tmp_path, workspace):
    folder = archive(tmp_path, 2)
    write_yaml_sheet(folder, [{"file": "*", "speaker": "kui"}, {"file": 1, "labels": "tk:secret_sacred"}])
    ws = open_workspace(workspace)
    with pytest.raises(HearthError, match="metadata.yaml: metadata.yaml:row 2: file 1 is int"):
        import_speech_folder(Catalog.open(ws.db_url), Store(ws.store_dir, ws.keys_dir), folder)
    assert stored(workspace) == {}


def test_field_beyond_the_csv_limit_is_read_not_a_traceback(tmp_path, workspace):
    folder = archive(tmp_path, 2)
    note = "kōrero " * 30_000  # 240 000 characters: past the csv module's default 131 072
    (folder / "metadata.csv").write_text(f"file,speaker,note\n*,kui,\nutt001,hemi,\"{note}\"\n", encoding="utf-8")
    res = cli(workspace, "data", "import", str(folder))
    assert res.exit_code == 0 and "2 imported" in res.output, res.output
    ws = open_workspace(workspace)
    with Catalog.open(ws.db_url).session() as s:
        assert s.scalar(select(Item).where(Item.external_id == "utt001")).meta["note"] == note


@pytest.mark.parametrize("content,fragment", [
    (b'file,speaker\nutt000,"kui\nutt001,hemi\n', "metadata.csv: line 2: not readable CSV"),  # unclosed quote
    (b'file,speaker\nutt000,kui\nutt001,"hemi" x\n', "metadata.csv: line 3: not readable CSV"),  # stray quote
    ("file,speaker\nutt000,Māori\n".encode("utf-16"), "not UTF-8"),
    ("file,speaker\nutt000,caf\xe9\n".encode("latin-1"), "not UTF-8 (line 2"),
])
def test_malformed_csv_is_one_line(tmp_path, workspace, content, fragment):
    folder = archive(tmp_path, 2)
    (folder / "metadata.csv").write_bytes(content)
    res = cli(workspace, "data", "import", str(folder))
    assert res.exit_code == 2 and fragment in res.stderr, (res.output, res.stderr)
    assert len(res.stderr.strip().splitlines()) == 1


def test_ragged_row_holds_its_item_back(tmp_path, workspace):
    folder = archive(tmp_path, 3)
    (folder / "metadata.csv").write_text("file,speaker,labels\n*,kui,\nutt001,hemi,tk:secret_sacred,extra\n"
                                         "utt002,hemi\n", encoding="utf-8")
    ws = open_workspace(workspace)
    report = import_speech_folder(Catalog.open(ws.db_url), Store(ws.store_dir, ws.keys_dir), folder)
    assert any(w == "utt001.wav" and "more field(s) than the header" in r for w, r in report.problems)
    # A short row may have been cut off before the cell that restricted it: held back too.
    assert any(w == "utt002.wav" and "fewer fields than the header" in r for w, r in report.problems)
    assert set(stored(workspace)) == {"utt000"}


@pytest.mark.parametrize("edit,fragment", [
    (lambda i: i["layout"].update(labels=["TK:Secret_Sacred"]), "field layout.labels: label 'TK:Secret_Sacred'"),
    (lambda i: i["collection"].update(restriced=True), "field collection.restriced: not a field"),
    (lambda i: i.update(colective_consent=[]), "field colective_consent"),
    (lambda i: i.update(labels=[{"key": "tk:seasnal"}]), "field labels.0.key"),
    (lambda i: i["collective_consent"][0].update(purposes=["reserch"]), "field collective_consent.0.purposes.0"),
    (lambda i: i["collective_consent"][0].update(given_at="yesterday"), "field collective_consent.0.given_at"),
    (lambda i: i["collection"].update(community="Te\0Hapori"), "field collection.community: holds a NUL byte"),
])
def test_corrupt_archive_yaml_refuses_the_import_naming_the_field(tmp_path, workspace, edit, fragment):
    folder = archive(tmp_path, 2)
    info = yaml.safe_load((folder / "archive.yaml").read_text())
    info.setdefault("layout", {})
    edit(info)
    (folder / "archive.yaml").write_text(yaml.safe_dump(info, allow_unicode=True), encoding="utf-8")
    res = cli(workspace, "data", "import", str(folder))
    assert res.exit_code == 2 and fragment in res.stderr and "nothing was imported" in res.stderr, res.stderr
    assert stored(workspace) == {}


def test_archive_yaml_collection_labels_bind_and_seal_speech_items(tmp_path, workspace):
    folder = archive(tmp_path, 2)
    info = yaml.safe_load((folder / "archive.yaml").read_text())
    info["labels"] = [{"key": "tk:secret_sacred", "text": "kept by the elders"}]
    (folder / "archive.yaml").write_text(yaml.safe_dump(info, allow_unicode=True), encoding="utf-8")
    ws = open_workspace(workspace)
    store = Store(ws.store_dir, ws.keys_dir)
    report = import_speech_folder(Catalog.open(ws.db_url), store, folder)
    assert report.sealed and report.imported == 2
    with Catalog.open(ws.db_url).session() as s:
        assert s.scalars(select(Label.key).where(Label.collection_id.is_not(None))).all() == ["tk:secret_sacred"]
        assert all(store.is_sealed(i.content_hash) for i in s.scalars(select(Item)))


def test_rows_a_database_could_not_store_are_held_back_on_both_backends(tmp_path, db_url):  # noqa: F811
    """A NUL byte or a list where text belongs would fail the commit on PostgreSQL (and lose the batch)."""
    folder = archive(tmp_path, 4)
    write_yaml_sheet(folder, [{"file": "*", "speaker": "kui"}, {"file": "utt001", "speaker": "he\0mi"},
                              {"file": "utt002", "dialect": ["raki", "tonga"]},
                              {"file": "utt003", "speaker": "hemi", "labels": "TK:Secret_Sacred",
                               "consent_purposes": "Research", "consent_given_by": "hemi",
                               "consent_given_at": "2026-01-02"}])
    catalog = Catalog.open(db_url, create=True)
    store = Store(tmp_path / "store", tmp_path / "keys")
    report = import_speech_folder(catalog, store, folder)
    assert {w for w, _ in report.problems} == {"metadata.yaml:row 2", "metadata.yaml:row 3", "utt001.wav",
                                               "utt002.wav"}
    with catalog.session() as s:
        assert sorted(s.scalars(select(Item.external_id))) == ["utt000", "utt003"]
        assert s.scalars(select(Label.key)).all() == ["tk:secret_sacred"]
        consent = s.scalars(select(Consent).where(Consent.subject == "hemi")).one()
        assert consent.purposes == ["research"]


def test_cli_prints_each_normalisation_as_a_note(tmp_path, workspace):
    folder = archive(tmp_path, 2)
    (folder / "metadata.csv").write_text("file,speaker,labels\n*,kui,\nutt001,hemi,TK:Secret_Sacred\n"
                                         "utt009,hemi,\n", encoding="utf-8")
    res = cli(workspace, "data", "import", str(folder))
    assert res.exit_code == 0 and "2 imported" in res.output, res.output
    assert "note metadata.csv:3: label 'TK:Secret_Sacred' read as 'tk:secret_sacred'" in res.output
    assert "note metadata.csv:4: names 'utt009', which is no recording in the folder" in res.output
    assert stored(workspace)["utt001"] == {"tk:secret_sacred"}
